package tools

import (
	"context"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// TestToolScopesTable: every tool has exactly one scope, the table names
// no tool that does not exist, and a nexus:read tool never changes state
// (its read-only hint is true).
func TestToolScopesTable(t *testing.T) {
	h := New(Deps{})
	seen := map[string]bool{}
	for _, st := range h.all() {
		name := st.Tool.Name
		seen[name] = true
		s, ok := RequiredScope(name)
		if !ok {
			t.Errorf("tool %s has no scope", name)
			continue
		}
		ro := st.Tool.Annotations.ReadOnlyHint != nil && *st.Tool.Annotations.ReadOnlyHint
		if s == tenancy.ScopeRead && !ro {
			t.Errorf("tool %s needs nexus:read but is not read-only", name)
		}
	}
	for name := range toolScopes {
		if !seen[name] {
			t.Errorf("toolScopes names %s, which is not a tool", name)
		}
	}
}

// TestToolScopeEnforced: whatever the transport, a call whose credential
// lacks the tool's scope is an isError result naming the scope, with a
// denial row in the caller's audit log, and changes nothing; the same
// call with the scope (control) succeeds.
func TestToolScopeEnforced(t *testing.T) {
	ts := newTestServer(t)
	readOnly := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "a", AuthMethod: tenancy.AuthAPIKey,
		Scopes: tenancy.ScopeSet(tenancy.ScopeRead)})
	none := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "a", AuthMethod: tenancy.AuthJWT})
	args := map[string]any{"entities": []any{map[string]any{"name": "E", "entityType": "t", "observations": []any{}}}}

	res := ts.call(readOnly, "create_entities", args)
	if !res.IsError || !strings.Contains(errText(res), "nexus:write") {
		t.Errorf("create_entities with nexus:read = %q (isError %v), want an error naming nexus:write", errText(res), res.IsError)
	}
	if res := ts.call(none, "read_graph", map[string]any{}); !res.IsError || !strings.Contains(errText(res), "nexus:read") {
		t.Errorf("read_graph without scopes = %q, want an error naming nexus:read", errText(res))
	}
	if res := ts.call(readOnly, "get_audit_log", map[string]any{}); !res.IsError || !strings.Contains(errText(res), "nexus:admin") {
		t.Errorf("get_audit_log with nexus:read = %q, want an error naming nexus:admin", errText(res))
	}
	res = ts.call(readOnly, "read_graph", map[string]any{})
	if text := res.Content[0].(mcp.TextContent).Text; res.IsError || !strings.Contains(text, `"entities":[]`) {
		t.Errorf("read_graph with nexus:read = %q, want an empty graph: the refused write changed nothing (control)", text)
	}
	if res := ts.call(asUser("a", "", ""), "create_entities", args); res.IsError {
		t.Errorf("create_entities with every scope = %q (control)", errText(res))
	}

	recs, _, err := ts.store.AuditLog(asUser("a", "", ""), memory.AuditFilter{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	denials := map[string]bool{}
	for _, r := range recs {
		if r.Event.Action == actionToolDenied && strings.Contains(r.Event.Detail, "insufficient scope") {
			denials[r.Event.Tool] = true
		}
	}
	for _, tool := range []string{"create_entities", "read_graph", "get_audit_log"} {
		if !denials[tool] {
			t.Errorf("no audited scope denial of %s (rows %d)", tool, len(recs))
		}
	}
	if denials["read_graph"] && len(denials) != 3 {
		t.Errorf("denials = %v, want exactly the three refused calls", denials)
	}
}
