package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// trustCLI runs the CLI in-process on db with stdin and returns stdout,
// stderr and the exit code.
func trustCLI(t *testing.T, db, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--db", db}, args...), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestTrustCLI(t *testing.T) {
	db := memtest.DSN(t)
	peer := memtest.DSN(t)
	for _, d := range []string{db, peer} {
		if _, errs, code := trustCLI(t, d, "", "tenants", "create", "t1"); code != 0 {
			t.Fatalf("tenants create: %s", errs)
		}
	}
	open := func(path string) *memory.Store {
		t.Helper()
		s, err := memory.Open(context.Background(), path, memory.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	for _, alg := range []string{"hmac-sha256", "ed25519"} {
		t.Run("trust key create and import "+alg, func(t *testing.T) {
			out, errs, code := trustCLI(t, db, "", "trust", "key", "create", "--tenant", "t1", "--alg", alg)
			if code != 0 {
				t.Fatalf("trust key create: exit %d: %s", code, errs)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) < 3 || !strings.HasPrefix(lines[2], alg+":") {
				t.Fatalf("trust key create output = %q, want the key material on line 3", out)
			}
			if _, errs, code := trustCLI(t, peer, lines[2]+"\n", "trust", "key", "import", "--tenant", "t1"); code != 0 {
				t.Fatalf("trust key import: exit %d: %s", code, errs)
			}
			a, b := open(db), open(peer)
			defer a.Close()
			defer b.Close()
			ka, _, _ := a.TenantTrustKey(actAs("t1"))
			kb, ok, err := b.TenantTrustKey(actAs("t1"))
			if err != nil || !ok || ka.Algorithm != kb.Algorithm || string(ka.Secret) != string(kb.Secret) ||
				string(ka.PrivateKey) != string(kb.PrivateKey) {
				t.Errorf("imported key %v differs from the created %v (%v)", kb, ka, err)
			}
		})
	}
	t.Run("trust key create refuses an unknown algorithm and tenant", func(t *testing.T) {
		for _, args := range [][]string{{"--tenant", "t1", "--alg", "rsa"}, {"--tenant", "ghost"}} {
			if _, _, code := trustCLI(t, db, "", append([]string{"trust", "key", "create"}, args...)...); code == 0 {
				t.Errorf("trust key create %v succeeded", args)
			}
		}
	})
	t.Run("agents credential set reads stdin and never prints it", func(t *testing.T) {
		const secret = "nxk_very_secret_credential"
		out, errs, code := trustCLI(t, db, secret+"\n", "agents", "credential", "set", "--tenant", "t1", "--agent", "agent-b")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if strings.Contains(out+errs, secret) {
			t.Errorf("the credential was printed: %q %q", out, errs)
		}
		s := open(db)
		defer s.Close()
		if got, ok, _ := s.AgentCredential(actAs("t1"), "agent-b"); !ok || got != secret {
			t.Errorf("stored credential = %q, %v", got, ok)
		}
		if _, _, code := trustCLI(t, db, "", "agents", "credential", "set", "--tenant", "t1", "--agent", "agent-b"); code == 0 {
			t.Error("an empty credential was accepted")
		}
	})
	t.Run("trust cleanup", func(t *testing.T) {
		out, errs, code := trustCLI(t, db, "", "trust", "cleanup")
		if code != 0 || !strings.Contains(out, "removed 0 expired trust sessions") {
			t.Errorf("trust cleanup = %q %q (exit %d)", out, errs, code)
		}
	})
	t.Run("audit list and verify", func(t *testing.T) {
		out, errs, code := trustCLI(t, db, "", "audit", "list", "--tenant", "t1")
		// The CLI's own changes are audited: two key creations and the credential.
		if code != 0 || strings.Count(out, "cli:") != 3 || strings.Contains(out, "nxk_very_secret") {
			t.Errorf("audit list = %q %q (exit %d), want the 3 CLI changes and no secret", out, errs, code)
		}
		out, errs, code = trustCLI(t, db, "", "audit", "verify")
		if code != 0 || !strings.Contains(out, "tenant t1: ok (3 rows)") {
			t.Errorf("audit verify = %q %q (exit %d)", out, errs, code)
		}
	})
	t.Run("serve refuses bad EATP flags", func(t *testing.T) {
		for _, flag := range []string{"--eatp-mode=bogus", "--eatp-max-depth=0", "--eatp-exempt=health"} {
			_, errs, code := trustCLI(t, db, "", "serve", flag)
			if code != 1 || !strings.Contains(errs, "eatp") {
				t.Errorf("serve %s: exit %d, stderr %q; want exit 1 naming the flag", flag, code, errs)
			}
		}
	})
}

// TestHTTPDenialsAudited sends refused requests to an HTTP server and
// counts one audit record per refusal, in the tenant's chain when a tenant
// was established and in the unauthenticated chain (tallied) otherwise.
func TestHTTPDenialsAudited(t *testing.T) {
	store := newRelayStore(t, "t1")
	if err := store.CreateTenant(context.Background(), "t2", ""); err != nil {
		t.Fatal(err)
	}
	key, _, err := store.CreateAPIKey(context.Background(), memory.NewKey{TenantID: "t1", UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	srv := startRelayServer(t, store, listenLoopback(t), "--eatp-mode=enforcing", "--rate-rps=0.001", "--rate-burst=1")
	initBody := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`
	post := func(headers map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.url, strings.NewReader(initBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// count counts the refusals recorded: refusals without a tenant are
	// tallied (one row per source and reason per interval, flushed here),
	// so a row counts its "count".
	count := func(tenant, action string) int {
		srv.app.FlushDenials(context.Background())
		n := 0
		for _, e := range auditOf(t, store, tenant) {
			if e.Event.Action == action && e.Event.Outcome == memory.OutcomeDenied {
				var d struct {
					Count int `json:"count"`
				}
				_ = json.Unmarshal([]byte(e.Event.Detail), &d)
				n += max(d.Count, 1)
			}
		}
		return n
	}
	bearer := "Bearer " + key
	eatp := map[string]string{"Authorization": bearer, delegation.HeaderTraceID: "eatp-mcp-0000000000000001", delegation.HeaderAgentID: "agent-x"}
	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
		tenant  string
		action  string
	}{
		{"no credential", nil, http.StatusUnauthorized, memory.UnauthenticatedTenant, "auth.denied"},
		{"unknown key", map[string]string{"Authorization": "Bearer nxk_unknown"}, http.StatusUnauthorized, memory.UnauthenticatedTenant, "auth.denied"},
		{"not a member of the tenant asked for", map[string]string{"Authorization": bearer, "X-Tenant-Id": "t2"}, http.StatusForbidden, "t1", "auth.denied"},
		{"no trust context (enforcing)", map[string]string{"Authorization": bearer}, http.StatusUnauthorized, "t1", "trust.denied"},
		{"unregistered agent (enforcing)", eatp, http.StatusForbidden, "t1", "trust.denied"},
		{"rate limited", eatp, http.StatusTooManyRequests, "t1", "rate.limited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == http.StatusTooManyRequests {
				// Register the agent so the trust check passes, and spend the burst.
				if _, _, err := store.RegisterAgent(actAs("t1"), memory.AgentRegistration{ID: "agent-x", Name: "x"}); err != nil {
					t.Fatal(err)
				}
				if got := post(tc.headers); got != http.StatusOK {
					t.Fatalf("control request: status %d, want 200", got)
				}
			}
			before := count(tc.tenant, tc.action)
			if got := post(tc.headers); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if got := count(tc.tenant, tc.action) - before; got != 1 {
				t.Errorf("%s rows in %s grew by %d, want 1", tc.action, tc.tenant, got)
			}
		})
	}
	if n := len(auditOf(t, store, "t2")); n != 0 {
		t.Errorf("tenant t2 holds %d rows of t1's refused requests, want 0", n)
	}
	for _, tn := range []string{"t1", memory.UnauthenticatedTenant} {
		if res, err := store.VerifyAudit(context.Background(), tn); err != nil || !res.OK {
			t.Errorf("VerifyAudit(%s) = %+v, %v", tn, res, err)
		}
	}
}
