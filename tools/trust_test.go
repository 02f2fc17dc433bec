package tools

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

var sessionIDRE = regexp.MustCompile(`^nxs-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTrustSessionTools(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	if err := ts.store.SetMember(context.Background(), "a", tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "a", UserID: "root"}, "admin"); err != nil {
		t.Fatal(err)
	}
	alice, bobA, root := asUser("a", "alice", ""), asUser("a", "bob", ""), asUser("a", "root", "")

	s1 := ts.must(alice, "create_trust_session", map[string]any{"human_origin": map[string]any{"display_name": "Alice"}, "agent_id": "agent-a"})
	t.Run("create defaults", func(t *testing.T) {
		created, _ := time.Parse(time.RFC3339Nano, s1["created_at"].(string))
		expires, _ := time.Parse(time.RFC3339Nano, s1["expires_at"].(string))
		ho := s1["human_origin"].(map[string]any)
		if !sessionIDRE.MatchString(s1["session_id"].(string)) || expires.Sub(created) != 8*time.Hour ||
			ho["user_id"] != "alice" || ho["display_name"] != "Alice" || s1["active"] != true {
			t.Errorf("create_trust_session = %v, want nxs-<uuid>, 8h, user alice, active", s1)
		}
	})
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		args    map[string]any
		wantErr string
	}{
		{"naming another user needs admin", alice, map[string]any{"human_origin": map[string]any{"user_id": "bob"}}, "forbidden"},
		{"admin may name another user", root, map[string]any{"human_origin": map[string]any{"user_id": "bob"}, "ttl_hours": 1}, ""},
		{"conflicting user keys", alice, map[string]any{"human_origin": map[string]any{"user_id": "alice", "human_id": "bob"}}, "naming one user"},
		{"ttl too long", alice, map[string]any{"human_origin": map[string]any{}, "ttl_hours": 721}, "ttl_hours"},
		{"human origin naming another tenant", alice, map[string]any{"human_origin": map[string]any{"tenantId": "b"}}, "forbidden: tenant mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errText := ts.do(tc.ctx, "create_trust_session", tc.args)
			if tc.wantErr == "" && errText != "" || !strings.Contains(errText, tc.wantErr) {
				t.Errorf("create_trust_session(%v) error = %q, want %q", tc.args, errText, tc.wantErr)
			}
		})
	}

	id := s1["session_id"].(string)
	t.Run("workflow count per tool call", func(t *testing.T) {
		inSession := withTrust(alice, delegation.TrustContext{TrustSessionID: id})
		ts.must(inSession, "read_graph", map[string]any{})
		ts.must(inSession, "create_entities", map[string]any{"entities": []any{}})
		// B naming A's session touches nothing.
		ts.must(withTrust(asUser("b", "eve", ""), delegation.TrustContext{TrustSessionID: id}), "read_graph", map[string]any{})
		got := ts.must(alice, "get_trust_session", map[string]any{"session_id": id})
		if got["workflow_count"] != float64(2) {
			t.Errorf("workflow_count = %v, want 2", got["workflow_count"])
		}
	})
	t.Run("other tenant's session is not found, like a random one", func(t *testing.T) {
		const random = "nxs-00000000-0000-4000-8000-000000000000"
		eve := asUser("b", "eve", "")
		for _, tool := range []string{"get_trust_session", "revoke_trust_session"} {
			_, errA := ts.do(eve, tool, map[string]any{"session_id": id})
			_, errR := ts.do(eve, tool, map[string]any{"session_id": random})
			if errA == "" || errA != strings.ReplaceAll(errR, random, id) {
				t.Errorf("%s: B on A's id = %q, on a random id = %q", tool, errA, errR)
			}
		}
		if l := ts.must(eve, "list_trust_sessions", map[string]any{}); l["total"] != float64(0) {
			t.Errorf("B's list = %v, want empty", l)
		}
	})
	t.Run("revoke needs the owner or an admin", func(t *testing.T) {
		if _, errText := ts.do(bobA, "revoke_trust_session", map[string]any{"session_id": id}); !strings.HasPrefix(errText, "forbidden") {
			t.Errorf("bob revoking alice's session: %q, want forbidden", errText)
		}
		got := ts.must(alice, "revoke_trust_session", map[string]any{"session_id": id, "reason": "done"})
		if got["active"] != false || got["inactive_reason"] != "revoked" || got["revoke_reason"] != "done" {
			t.Errorf("revoke_trust_session = %v, want inactive: revoked", got)
		}
	})
	t.Run("revoke by human", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			ts.must(alice, "create_trust_session", map[string]any{"human_origin": map[string]any{}})
		}
		if _, errText := ts.do(bobA, "revoke_trust_sessions_by_human", map[string]any{"user_id": "alice"}); !strings.HasPrefix(errText, "forbidden") {
			t.Errorf("bob revoking alice's sessions: %q, want forbidden", errText)
		}
		if got := ts.must(alice, "revoke_trust_sessions_by_human", map[string]any{"user_id": "alice"}); got["revoked"] != float64(2) {
			t.Errorf("alice revoking her own = %v, want 2", got)
		}
		if got := ts.must(root, "revoke_trust_sessions_by_human", map[string]any{"user_id": "bob"}); got["revoked"] != float64(1) {
			t.Errorf("admin revoking bob's = %v, want 1", got)
		}
	})
	t.Run("list and expiry", func(t *testing.T) {
		live := ts.must(alice, "create_trust_session", map[string]any{"human_origin": map[string]any{}, "ttl_hours": 1})
		if l := ts.must(alice, "list_trust_sessions", map[string]any{}); l["total"] != float64(1) {
			t.Errorf("active sessions = %v, want 1", l)
		}
		if l := ts.must(alice, "list_trust_sessions", map[string]any{"active_only": false}); l["total"] != float64(5) {
			t.Errorf("all sessions = %v, want 5", l["total"])
		}
		ts.clock.Advance(time.Hour)
		got := ts.must(alice, "get_trust_session", map[string]any{"session_id": live["session_id"]})
		if got["active"] != false || got["inactive_reason"] != "expired" {
			t.Errorf("after its TTL = %v, want inactive: expired", got)
		}
	})
}
