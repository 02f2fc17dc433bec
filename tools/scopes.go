package tools

import (
	"context"
	"fmt"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// toolScopes is the one table of which OAuth scope each tool needs
// (README "Scopes"). nexus:read holds only tools whose read-only hint is
// true; nexus:delegate every EATP delegation and trust-session tool;
// nexus:admin the audit log; nexus:write everything else that changes
// state. A test checks every tool has exactly one entry.
var toolScopes = map[string]tenancy.Scope{
	// knowledge graph
	"create_entities":     tenancy.ScopeWrite,
	"create_relations":    tenancy.ScopeWrite,
	"add_observations":    tenancy.ScopeWrite,
	"delete_entities":     tenancy.ScopeWrite,
	"delete_observations": tenancy.ScopeWrite,
	"delete_relations":    tenancy.ScopeWrite,
	"read_graph":          tenancy.ScopeRead,
	"search_nodes":        tenancy.ScopeRead,
	"open_nodes":          tenancy.ScopeRead,
	"search_entities":     tenancy.ScopeRead,
	// messages (get_ai_messages marks what it returns as delivered)
	"send_ai_message":    tenancy.ScopeWrite,
	"get_ai_messages":    tenancy.ScopeWrite,
	"mark_messages_read": tenancy.ScopeWrite,
	// agent registry
	"register_agent":     tenancy.ScopeWrite,
	"set_agent_identity": tenancy.ScopeWrite,
	"get_agent_status":   tenancy.ScopeRead,
	// individual memory
	"record_learning":       tenancy.ScopeWrite,
	"set_preferences":       tenancy.ScopeWrite,
	"get_individual_memory": tenancy.ScopeRead,
	// session handoffs and context
	"end_session":       tenancy.ScopeWrite,
	"begin_session":     tenancy.ScopeWrite,
	"get_agent_context": tenancy.ScopeRead,
	"translate_path":    tenancy.ScopeRead,
	// EATP delegations and trust sessions
	"prepare_agent_call":             tenancy.ScopeDelegate,
	"verify_agent_response":          tenancy.ScopeDelegate,
	"get_delegation_history":         tenancy.ScopeDelegate,
	"revoke_delegation":              tenancy.ScopeDelegate,
	"call_agent_tool":                tenancy.ScopeDelegate,
	"create_trust_session":           tenancy.ScopeDelegate,
	"get_trust_session":              tenancy.ScopeDelegate,
	"list_trust_sessions":            tenancy.ScopeDelegate,
	"revoke_trust_session":           tenancy.ScopeDelegate,
	"revoke_trust_sessions_by_human": tenancy.ScopeDelegate,
	// audit
	"get_audit_log": tenancy.ScopeAdmin,
}

// ResourceScope is the scope reading or subscribing to the knowledge-graph
// resource needs.
const ResourceScope = tenancy.ScopeRead

// RequiredScope is the scope tool needs; ok is false for a name that is
// not a tool (the call then fails as an unknown tool).
func RequiredScope(tool string) (tenancy.Scope, bool) {
	s, ok := toolScopes[tool]
	return s, ok
}

// ScopeError is the refusal of a call whose credential lacks Need. The
// HTTP edge answers it with 403 insufficient_scope before the call
// reaches a tool; handle refuses it again with an isError result, so that
// every transport enforces it.
type ScopeError struct{ Need tenancy.Scope }

func (e *ScopeError) Error() string {
	return fmt.Sprintf("insufficient scope: this call needs the %s scope, which your credential lacks; ask for a token (or an API key) with %s", e.Need, e.Need)
}

// checkScope refuses a call of tool when the caller's credential lacks its
// scope. A tool missing from toolScopes is an internal error (fail closed).
func checkScope(ctx context.Context, tool string) error {
	rc, _ := tenancy.FromContext(ctx)
	need, ok := toolScopes[tool]
	if !ok {
		return fmt.Errorf("tool %s has no scope in toolScopes", tool)
	}
	if !rc.Scopes.Has(need) {
		return &ScopeError{Need: need}
	}
	return nil
}
