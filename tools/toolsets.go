package tools

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/server"
)

// Toolsets are the groups of tools a server can expose (serve
// --toolsets), in the order of all(). "graph" is exactly the reference
// server's nine tools and the graph resource.
var Toolsets = []Toolset{
	{Name: "graph", Tools: []string{"create_entities", "create_relations", "add_observations", "delete_entities",
		"delete_observations", "delete_relations", "read_graph", "search_nodes", "open_nodes"}},
	{Name: "search", Tools: []string{"search_entities"}},
	{Name: "agents", Tools: []string{"send_ai_message", "get_ai_messages", "mark_messages_read", "register_agent",
		"set_agent_identity", "get_agent_status", "record_learning", "set_preferences", "get_individual_memory",
		"end_session", "begin_session", "get_agent_context", "translate_path"}},
	{Name: "delegation", Tools: []string{"prepare_agent_call", "verify_agent_response", "get_delegation_history",
		"revoke_delegation", "call_agent_tool", "create_trust_session", "get_trust_session", "list_trust_sessions",
		"revoke_trust_session", "revoke_trust_sessions_by_human"}},
	{Name: "audit", Tools: []string{"get_audit_log"}},
}

// Toolset is a named group of tools.
type Toolset struct {
	Name  string
	Tools []string
}

// ToolsetNames are the names of Toolsets, in order.
func ToolsetNames() []string {
	out := make([]string, len(Toolsets))
	for i, ts := range Toolsets {
		out[i] = ts.Name
	}
	return out
}

// ParseToolsets splits a comma-separated list of toolset names ("" or
// "all": every toolset) and refuses an unknown name, naming the valid ones.
func ParseToolsets(list string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case name == "":
			continue
		case name == "all":
			return ToolsetNames(), nil
		case !slices.Contains(ToolsetNames(), name):
			return nil, fmt.Errorf("unknown toolset %q (valid: %s, or all)", name, strings.Join(ToolsetNames(), ", "))
		case !slices.Contains(out, name):
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return ToolsetNames(), nil
	}
	return out, nil
}

// exposed returns the tools of the enabled toolsets (read-only ones only,
// in read-only mode), in the order of all().
func (h *Handlers) exposed() []server.ServerTool {
	enabled := map[string]bool{}
	for _, ts := range Toolsets {
		if slices.Contains(h.toolsets, ts.Name) {
			for _, name := range ts.Tools {
				enabled[name] = true
			}
		}
	}
	var out []server.ServerTool
	for _, t := range h.all() {
		if enabled[t.Tool.Name] && (!h.readOnlyMode || h.readOnly[t.Tool.Name]) {
			out = append(out, t)
		}
	}
	return out
}
