package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
)

// TestHeaderHumanOriginSpoofRefused checks that a human origin sent in
// X-EATP-Human-Origin gets the rule the human_origin argument gets, in
// permissive and enforcing mode: a tenant-naming key (tenant_id, tenantId,
// org_id, orgId, tenant, org, organization, any case or separator, at any
// depth) must name the caller's tenant, and a user other than the caller's
// own needs an admin membership. A header origin that fails is never
// stored in a delegation nor forwarded in its headers: permissive drops it
// (and audits a denial), enforcing answers 403. The same origins as
// arguments are refused, and the controls (own tenant, own user, an
// admin naming another user of its tenant, no tenant key) are stored and
// forwarded on both paths.
func TestHeaderHumanOriginSpoofRefused(t *testing.T) {
	type originCase struct {
		name   string
		caller string // b1 is B's admin, b2 a plain member
		origin map[string]any
		spoof  bool
	}
	A, B := mxTenantA, mxTenantB
	cases := []originCase{
		{"tenant_id of A", "b2", map[string]any{"tenant_id": A, "user_id": "b2"}, true},
		{"tenantId of A", "b2", map[string]any{"tenantId": A}, true},
		{"org_id of A", "b2", map[string]any{"org_id": A}, true},
		{"orgId of A", "b2", map[string]any{"orgId": A}, true},
		{"tenant of A", "b2", map[string]any{"tenant": A}, true},
		{"org of A", "b2", map[string]any{"org": A}, true},
		{"organization of A", "b2", map[string]any{"organization": A}, true},
		{"Organization-ID of A", "b2", map[string]any{"Organization-ID": A}, true},
		{"TENANT_ID of A", "b2", map[string]any{"TENANT_ID": A}, true},
		{"nested org of A", "b2", map[string]any{"context": map[string]any{"org": A}}, true},
		{"tenant_id not a string", "b2", map[string]any{"tenant_id": []any{B}}, true},
		{"user_id of another user, not admin", "b2", map[string]any{"user_id": "b1"}, true},
		{"human_id of A's user, not admin", "b2", map[string]any{"human_id": "a1"}, true},
		{"userId of another user, not admin", "b2", map[string]any{"userId": "b1"}, true},
		{"own user (control)", "b2", map[string]any{"user_id": "b2", "display_name": "Bee"}, false},
		{"own tenant and user (control)", "b2", map[string]any{"tenant_id": B, "org": B, "user_id": "b2"}, false},
		{"no identity keys (control)", "b2", map[string]any{"display_name": "Bee"}, false},
		{"admin names another user of its tenant (control)", "b1", map[string]any{"user_id": "b2", "tenant_id": B}, false},
	}
	canon := func(m map[string]any) string {
		b, _ := delegation.CanonicalJSON(m)
		return string(b)
	}
	encode := func(m map[string]any) string {
		b, _ := json.Marshal(m)
		return base64.StdEncoding.EncodeToString(b)
	}
	decodeHeader := func(v string) map[string]any {
		if v == "" {
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("forwarded human origin %q is not base64", v)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("forwarded human origin %s is not JSON", b)
		}
		return m
	}

	honoured := 0
	for _, mode := range []string{"permissive", "enforcing"} {
		t.Run(mode, func(t *testing.T) {
			e := mxStartHTTP(t, memory.AgentScopeTenant, "--eatp-mode="+mode)
			keys, _, _ := mxProvision(t, e.store)
			for _, id := range []string{"ob-agent", "ob-target"} {
				if _, _, err := e.store.RegisterAgent(actAs(B), memory.AgentRegistration{ID: id, Name: id}); err != nil {
					t.Fatal(err)
				}
			}
			trust := func(user string, extra ...string) map[string]string {
				return with(bearer(keys[user]), append([]string{delegation.HeaderTraceID, "eatp-mcp-" + mxRandHex(8),
					delegation.HeaderAgentID, "ob-agent"}, extra...)...)
			}
			prepareArgs := func(origin map[string]any) map[string]any {
				a := mxArgs("calling_agent", "ob-agent", "target_agent", "ob-target", "tool_name", "read_graph")
				if origin != nil {
					a["human_origin"] = origin
				}
				return a
			}
			denials := func() int {
				n := 0
				for _, r := range auditOf(t, e.store, B) {
					if r.Event.Outcome == memory.OutcomeDenied && strings.Contains(r.Event.Detail, "human origin") {
						n++
					}
				}
				return n
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					// Header path.
					hdr := trust(tc.caller, delegation.HeaderHumanOrigin, encode(tc.origin))
					deniedBefore := denials()
					headerAccepted := false
					if r := rawDo(t, http.MethodPost, e.url, hdr, strings.NewReader(rawInitialize)); r.status != http.StatusOK {
						if mode != "enforcing" || !tc.spoof || r.status != http.StatusForbidden {
							t.Fatalf("initialize with the header origin = %d %q", r.status, r.body)
						}
					} else {
						c, _ := mcpGoClient(t, e.url, hdr, false)
						sc := mxMust(t, c, "prepare_agent_call", prepareArgs(nil))
						stored, _ := sc["human_origin"].(map[string]any)
						headers, _ := sc["headers"].(map[string]any)
						fwd, _ := headers[delegation.HeaderHumanOrigin].(string)
						headerAccepted = canon(stored) == canon(tc.origin)
						if got := canon(decodeHeader(fwd)); got != canon(stored) {
							t.Errorf("forwarded human origin %s differs from the stored %s", got, canon(stored))
						}
						if tc.spoof && mode == "enforcing" {
							t.Errorf("enforcing passed a request whose header origin %s fails the rule", canon(tc.origin))
						}
					}
					if headerAccepted == tc.spoof {
						t.Errorf("header origin %s honoured = %v, want %v", canon(tc.origin), headerAccepted, !tc.spoof)
					}
					if got := denials() - deniedBefore; tc.spoof && got < 1 || !tc.spoof && got != 0 {
						t.Errorf("human origin denial rows grew by %d, want %v", got, map[bool]string{true: ">= 1", false: "0"}[tc.spoof])
					}

					// Argument path: the same rule.
					c, _ := mcpGoClient(t, e.url, trust(tc.caller), false)
					r := mxCall(c, "prepare_agent_call", prepareArgs(tc.origin))
					if argAccepted := r.ok(); argAccepted != headerAccepted {
						t.Errorf("human_origin argument accepted = %v (%.200s), header accepted = %v: the rules differ", argAccepted, r.body(), headerAccepted)
					}
				})
			}
			// Count what was stored or forwarded, from the store: every
			// delegation of B whose human origin is a spoofed one.
			ds, _, err := e.store.DelegationHistory(actAs(B), memory.DelegationFilter{Limit: memory.MaxDelegationLimit})
			if err != nil {
				t.Fatal(err)
			}
			controls := 0
			for _, d := range ds {
				for _, tc := range cases {
					if canon(d.HumanOrigin) != canon(tc.origin) {
						continue
					}
					if tc.spoof {
						honoured++
						t.Errorf("delegation %s stores the spoofed origin %s", d.ID, canon(tc.origin))
					} else {
						controls++
					}
				}
			}
			// Each control is stored twice: once from the header, once from the argument.
			if want := 0; controls == want {
				t.Errorf("no control origin was stored; the check above proves nothing")
			}
			_ = context.Background
		})
	}
	t.Logf("metric header_origin_spoofs_honoured=%d", honoured)
}
