package tools

import (
	"errors"
	"maps"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// errAgentMismatch is returned when an agent-bound credential names another
// agent as the one acting.
var errAgentMismatch = errors.New("forbidden: agent mismatch")

// actingAgentArgs lists, per tool, the arguments that name the agent acting
// now ("me"): the sender, the caller, the agent whose inbox, memory,
// handoff session, context, registration or trust session it is. Arguments naming
// another agent (a recipient, a target, a lookup or a filter) are not here.
// A new agent-naming argument belongs here or in the matrix's list of
// other-agent arguments (cmd/nexus-mcp matrix_cases_test.go); a test fails
// until it is in one of them.
var actingAgentArgs = map[string][]string{
	"send_ai_message":       {"from"},
	"get_ai_messages":       {"agentId"},
	"mark_messages_read":    {"agentId"},
	"register_agent":        {"agentId"},
	"set_agent_identity":    {"newAgentId", "currentAgentId"},
	"record_learning":       {"agentId"},
	"set_preferences":       {"agentId"},
	"get_individual_memory": {"agentId"},
	"end_session":           {"agentId"},
	"begin_session":         {"agentId"},
	"get_agent_context":     {"agentId"},
	"prepare_agent_call":    {"calling_agent"},
	"call_agent_tool":       {"calling_agent"},
	"create_trust_session":  {"agent_id"},
}

// actAsBoundAgent makes a credential bound to an agent act as that agent:
// each acting-agent argument of tool must be the bound agent (else
// errAgentMismatch) or be omitted, empty or null, in which case it is set
// to the bound agent. It returns the arguments to use (a copy when
// changed). Credentials without an agent pass unchanged: within a tenant,
// agents are shared resources.
func actAsBoundAgent(rc tenancy.RequestContext, tool string, raw any) (any, error) {
	names := actingAgentArgs[tool]
	if rc.AgentID == "" || len(names) == 0 {
		return raw, nil
	}
	in, _ := raw.(map[string]any)
	if raw != nil && in == nil {
		return raw, nil // not an object: the schema check refuses it
	}
	out := maps.Clone(in)
	if out == nil {
		out = map[string]any{}
	}
	for _, name := range names {
		switch v := out[name].(type) {
		case nil:
			out[name] = rc.AgentID
		case string:
			if v == "" {
				out[name] = rc.AgentID
			} else if v != rc.AgentID {
				return raw, errAgentMismatch
			}
		default:
			return raw, errAgentMismatch
		}
	}
	return out, nil
}
