package tools

import (
	"context"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// TestAuditRowsPerCall counts audit rows: one per state-changing call, none
// for reads, one per refusal.
func TestAuditRowsPerCall(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	alice := asUser("a", "alice", "")
	tests := []struct {
		name    string
		ctx     context.Context
		tool    string
		args    map[string]any
		wantErr string
		rows    int
		outcome string
	}{
		{"state change", alice, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "n", "entityType": "t", "observations": []any{}}}}, "", 1, memory.OutcomeOK},
		{"read", alice, "read_graph", map[string]any{}, "", 0, ""},
		{"delegation prepared", alice, "prepare_agent_call", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "t"}, "", 1, memory.OutcomeOK},
		{"tenant mismatch", alice, "create_entities", map[string]any{"entities": []any{}, "tenant_id": "b"}, "forbidden: tenant mismatch", 1, memory.OutcomeDenied},
		{"self-call refused", alice, "prepare_agent_call", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-a", "tool_name": "t"}, "cannot call itself", 1, memory.OutcomeDenied},
		{"audit log for a non-admin", alice, "get_audit_log", map[string]any{}, "forbidden", 1, memory.OutcomeDenied},
		{"schema error is not audited", alice, "create_entities", map[string]any{"bogus": 1}, "invalid arguments", 0, ""},
		{"delegated read", withTrust(alice, delegation.TrustContext{TraceID: "eatp-mcp-00000000000000ff", AgentID: "agent-b"}), "read_graph", map[string]any{}, "", 1, memory.OutcomeOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.auditCount("a")
			_, errText := ts.do(tc.ctx, tc.tool, tc.args)
			if !strings.Contains(errText, tc.wantErr) || (tc.wantErr == "" && errText != "") {
				t.Fatalf("%s error = %q, want %q", tc.tool, errText, tc.wantErr)
			}
			if got := ts.auditCount("a") - before; got != tc.rows {
				t.Fatalf("%s added %d audit rows, want %d", tc.tool, got, tc.rows)
			}
			if tc.rows == 0 {
				return
			}
			rows, _, _ := ts.store.AuditLog(asUser("a", "", ""), memory.AuditFilter{Limit: 1})
			e := rows[0].Event
			if e.Tool != tc.tool || e.Outcome != tc.outcome || e.UserID != "alice" || e.APIKeyID != "key_a" || e.ContentHash == "" {
				t.Errorf("audit row = %+v, want tool %s, outcome %s, user alice, key_a, a content hash", e, tc.tool, tc.outcome)
			}
		})
	}
	if n := ts.auditCount("b"); n != 0 {
		t.Errorf("tenant b has %d audit rows after a's calls, want 0", n)
	}
}

func TestGetAuditLog(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	if err := ts.store.SetMember(context.Background(), "a", tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "a", UserID: "root"}, "admin"); err != nil {
		t.Fatal(err)
	}
	ts.must(asUser("a", "alice", ""), "create_entities", map[string]any{"entities": []any{map[string]any{"name": "n", "entityType": "t", "observations": []any{}}}})
	local := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "a", AuthMethod: tenancy.AuthLocal, Scopes: tenancy.AllScopes})
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		allowed bool
	}{
		{"member", asUser("a", "alice", ""), false},
		{"no user", asUser("a", "", ""), false},
		{"admin role from the edge", asUser("a", "carol", "admin"), true},
		{"admin membership", asUser("a", "root", ""), true},
		{"local mode", local, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, errText := ts.do(tc.ctx, "get_audit_log", map[string]any{"limit": 10})
			if !tc.allowed {
				if !strings.HasPrefix(errText, "forbidden") {
					t.Errorf("get_audit_log = %v %q, want forbidden", sc, errText)
				}
				return
			}
			if errText != "" {
				t.Fatal(errText)
			}
			rows := sc["rows"].([]any)
			if len(rows) == 0 || rows[0].(map[string]any)["hash"] == "" {
				t.Errorf("get_audit_log = %v, want rows with hashes", sc)
			}
		})
	}
	t.Run("admin of b sees nothing of a", func(t *testing.T) {
		sc := ts.must(asUser("b", "carol", "admin"), "get_audit_log", map[string]any{})
		for _, r := range sc["rows"].([]any) {
			if r.(map[string]any)["user_id"] == "alice" {
				t.Errorf("b's audit log holds a's row %v", r)
			}
		}
	})
}
