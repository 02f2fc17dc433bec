package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Audit completeness: over a whole HTTP matrix run
// (A's fixture, B's probes, the identity-argument spoofs, a shared user id,
// refused requests at the edge), every state-changing call and every
// refusal writes exactly one audit row, and nothing else writes one. The
// expectation of each call is derived from the tool's read-only hint and
// the answer, never from the audit table: a successful call of a tool that
// is not read-only is a state change (one row); a refusal (forbidden,
// tenant mismatch, an EATP denial) is one row; a read-only call, a
// not-found, a validation error or a JSON-RPC error writes none; a tool in
// mxConditionalWrites changes state only when its answer says so.

// mxAudit, when set, counts audit rows around every mxCall. The matrix
// tests do not run in parallel, so the calls it sees are serial.
var mxAudit *mxAuditCounter

// mxRefusals are the answers of refused calls: tools/errors.go's
// forbidden messages and the delegation sentinels IsDenial accepts
// (without not found).
var mxRefusals = []string{"forbidden", "invalid delegation chain", "an agent cannot call itself", "constraints widen the parent",
	"bad EATP signature", "expired", "revoked", "untrusted"}

type mxAuditCounter struct {
	t        *testing.T
	store    *memory.Store
	readOnly map[string]bool
	tenants  []string

	mu         sync.Mutex
	calls      int
	expected   int
	got        int
	mismatches []string
}

// rows is the number of audit rows of every tenant of the run.
func (a *mxAuditCounter) rows() int { return a.rowsOf(a.tenants) }

// callRows counts the tenants' rows a tool call can write (a tool call is
// authenticated, so never in the unauthenticated chain; the run's total
// still counts that chain).
func (a *mxAuditCounter) callRows() int { return a.rowsOf([]string{mxTenantA, mxTenantB}) }

func (a *mxAuditCounter) rowsOf(tenants []string) int {
	n := 0
	for _, tn := range tenants {
		_, total, err := a.store.AuditLog(actAs(tn), memory.AuditFilter{Limit: 1})
		if err != nil {
			a.t.Fatalf("audit log of %s: %v", tn, err)
		}
		n += total
	}
	return n
}

// want is the number of audit rows a call's answer implies.
func (a *mxAuditCounter) want(tool, text string, isErr, rpcErr bool) int {
	switch {
	case rpcErr:
		return 0
	case isErr:
		for _, p := range mxRefusals {
			if strings.HasPrefix(text, p) {
				return 1
			}
		}
		return 0
	case a.readOnly[tool]:
		return 0
	}
	if cond, ok := mxConditionalWrites[tool]; ok && !cond(text) {
		return 0
	}
	return 1
}

// mxConditionalWrites are the tools, not read-only, whose successful call
// changes state only sometimes, with the rule read from the answer.
var mxConditionalWrites = map[string]func(answer string) bool{
	// a read of the inbox; a change only when it marked messages read
	"get_ai_messages": func(answer string) bool {
		var v struct {
			MarkedRead int `json:"markedRead"`
		}
		return json.Unmarshal([]byte(answer), &v) != nil || v.MarkedRead > 0
	},
}

func (a *mxAuditCounter) observe(tool, text string, isErr, rpcErr bool, delta int) {
	w := a.want(tool, text, isErr, rpcErr)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	a.expected += w
	a.got += delta
	if w != delta && len(a.mismatches) < 30 {
		a.mismatches = append(a.mismatches, fmt.Sprintf("%s (isError=%v %.80q): %d rows, want %d", tool, isErr, text, delta, w))
	}
}

// TestAuditCompleteness runs the HTTP matrix with mxAudit set and compares
// the audit rows expected from the calls with the rows written.
func TestAuditCompleteness(t *testing.T) {
	fx := mxHTTPFixture(t)
	names, readOnly := mxToolNames(t, fx.b)
	a := &mxAuditCounter{t: t, store: fx.env.store, readOnly: readOnly, tenants: []string{mxTenantA, mxTenantB, memory.UnauthenticatedTenant}}
	start := a.rows()
	mxAudit = a
	t.Cleanup(func() { mxAudit = nil })
	// the raw (duplicate-key) spoof calls bypass mxCall: count them here
	for _, raw := range []*func(tool, rawArgs string) string{&fx.rawA, &fx.rawB} {
		inner := *raw
		*raw = func(tool, rawArgs string) string {
			before := a.callRows()
			resp := inner(tool, rawArgs)
			isErr := strings.Contains(resp, `"isError":true`)
			text := ""
			if i := strings.Index(resp, `"text":"`); i >= 0 {
				text = resp[i+len(`"text":"`):]
			}
			a.observe(tool, text, isErr, strings.Contains(resp, `"error":{`), a.callRows()-before)
			return resp
		}
	}

	m := &mxMetrics{}
	mxSeed(t, fx)
	t.Run("cross_tenant", func(t *testing.T) { mxCrossTenant(t, fx, names, readOnly, m) })
	t.Run("spoofed_args", func(t *testing.T) { mxSpoofs(t, fx, names, m) })
	t.Run("shared_user", func(t *testing.T) { mxSharedUser(t, fx, m) })

	// Refusals at the HTTP edge: one row each, in the refused tenant or
	// the unauthenticated chain; a request that passes writes none.
	keyA := mxKeyOf(t, fx, mxTenantA)
	edge := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no credential", nil, http.StatusUnauthorized},
		{"unknown key", bearer("nxk_unknown"), http.StatusUnauthorized},
		{"A names B in X-Tenant-Id", with(bearer(keyA), tenancy.HeaderTenantID, mxTenantB), http.StatusForbidden},
		{"A initializes (control)", bearer(keyA), http.StatusOK},
	}
	for _, tc := range edge {
		before := a.rows()
		r := rawDo(t, http.MethodPost, fx.env.url, tc.hdr, strings.NewReader(rawInitialize))
		if r.status != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, r.status, tc.want)
		}
		w := 0
		if tc.want != http.StatusOK {
			w = 1
		}
		fx.env.app.FlushDenials(context.Background()) // refusals without a tenant are tallied
		d := a.rows() - before
		a.mu.Lock()
		a.calls++
		a.expected += w
		a.got += d
		if d != w {
			a.mismatches = append(a.mismatches, fmt.Sprintf("edge %s: %d rows, want %d", tc.name, d, w))
		}
		a.mu.Unlock()
	}

	end := a.rows()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, mm := range a.mismatches {
		t.Errorf("audit: %s", mm)
	}
	if end-start != a.got {
		t.Errorf("audit rows grew by %d over the run, %d of them during calls; rows written outside a call", end-start, a.got)
	}
	if a.expected != end-start {
		t.Errorf("audit rows = %d, want %d (one per state change and per refusal)", end-start, a.expected)
	}
	if a.expected < 50 {
		t.Errorf("only %d audit rows expected over %d calls; the run proves little", a.expected, a.calls)
	}
	// no credential, canary-free identity: no row holds an API key
	secretHits := 0
	keys := []string{keyA, mxKeyOf(t, fx, mxTenantB)}
	for _, tn := range a.tenants {
		for _, r := range auditOf(t, fx.env.store, tn) {
			row := fmt.Sprintf("%+v", r.Event)
			for _, k := range keys {
				if strings.Contains(row, k) {
					secretHits++
					t.Errorf("audit row of %s holds an API key: %s", tn, row)
				}
			}
		}
		if chk, err := fx.env.store.VerifyAudit(context.Background(), tn); err != nil || !chk.OK {
			t.Errorf("VerifyAudit(%s) = %+v, %v", tn, chk, err)
		}
	}
	missing := max(0, a.expected-(end-start))
	t.Logf("metric audit_calls=%d", a.calls)
	t.Logf("metric audit_rows_expected=%d", a.expected)
	t.Logf("metric audit_rows=%d", end-start)
	t.Logf("metric audit_rows_missing=%d", missing)
	t.Logf("metric audit_rows_unexpected=%d", max(0, (end-start)-a.expected))
	t.Logf("metric audit_secret_hits=%d", secretHits)
}

// mxKeyOf returns a fresh API key of tenant's admin (a1 or b1).
func mxKeyOf(t *testing.T, fx *mxFixture, tenant string) string {
	t.Helper()
	user := "a1"
	if tenant == mxTenantB {
		user = "b1"
	}
	key, _, err := fx.env.store.CreateAPIKey(context.Background(), memory.NewKey{TenantID: tenant, UserID: user})
	if err != nil {
		t.Fatal(err)
	}
	return key
}
