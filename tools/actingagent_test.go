package tools

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// TestActingAgentArgsExist: every acting-agent argument is a top-level
// string property of its tool's input schema.
func TestActingAgentArgsExist(t *testing.T) {
	h := New(Deps{})
	props := map[string]map[string]any{}
	for _, st := range h.all() {
		var s struct {
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(st.Tool.RawInputSchema, &s); err != nil {
			t.Fatal(err)
		}
		props[st.Tool.Name] = s.Properties
	}
	for tool, names := range actingAgentArgs {
		for _, n := range names {
			p, ok := props[tool][n].(map[string]any)
			if !ok || p["type"] != "string" {
				t.Errorf("actingAgentArgs %s.%s: not a string property of the tool (%v)", tool, n, props[tool][n])
			}
		}
	}
}

func TestActAsBoundAgent(t *testing.T) {
	bound := tenancy.RequestContext{TenantID: "t", AgentID: "planner"}
	free := tenancy.RequestContext{TenantID: "t"}
	for _, c := range []struct {
		name    string
		rc      tenancy.RequestContext
		tool    string
		in      any
		want    any
		wantErr bool
	}{
		{"other agent refused", bound, "send_ai_message", map[string]any{"from": "coder"}, nil, true},
		{"non-string refused", bound, "send_ai_message", map[string]any{"from": 7.0}, nil, true},
		{"own agent kept", bound, "send_ai_message", map[string]any{"from": "planner", "to": "x"}, map[string]any{"from": "planner", "to": "x"}, false},
		{"omitted defaults", bound, "send_ai_message", map[string]any{"to": "x"}, map[string]any{"from": "planner", "to": "x"}, false},
		{"empty defaults", bound, "get_ai_messages", map[string]any{"agentId": ""}, map[string]any{"agentId": "planner"}, false},
		{"nil arguments default", bound, "get_ai_messages", nil, map[string]any{"agentId": "planner"}, false},
		{"both set_agent_identity args", bound, "set_agent_identity", map[string]any{"newAgentId": "planner", "currentAgentId": "coder"}, nil, true},
		{"other-agent argument untouched", bound, "send_ai_message", map[string]any{"from": "planner", "to": "coder"}, map[string]any{"from": "planner", "to": "coder"}, false},
		{"tool without acting agent", bound, "get_agent_status", map[string]any{"agentId": "coder"}, map[string]any{"agentId": "coder"}, false},
		{"no bound agent: any agent (control)", free, "send_ai_message", map[string]any{"from": "coder"}, map[string]any{"from": "coder"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := actAsBoundAgent(c.rc, c.tool, c.in)
			if c.wantErr {
				if err != errAgentMismatch {
					t.Fatalf("actAsBoundAgent(%v) = %v, %v; want errAgentMismatch", c.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("actAsBoundAgent(%v) = %v, %v; want %v", c.in, got, err, c.want)
			}
		})
	}
}
