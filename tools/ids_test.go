package tools

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/nexus-mcp/nexus-mcp/delegation"
)

// idArguments lists every tool argument that carries an id, each of which
// must follow delegation.CheckID. A string argument whose name looks like
// an id and is not listed here (nor in notIDArguments) fails the test, so
// a new id argument joins the table.
var idArguments = map[string][]string{
	"begin_session":                  {"agentId", "projectId"},
	"call_agent_tool":                {"calling_agent", "target_agent", "tool_name"},
	"create_trust_session":           {"agent_id"},
	"end_session":                    {"agentId", "projectId"},
	"get_agent_context":              {"agentId", "projectId"},
	"get_agent_status":               {"agentId"},
	"get_ai_messages":                {"agentId"},
	"get_audit_log":                  {"agent"},
	"get_delegation_history":         {"calling_agent", "target_agent", "tool_name", "trace_id"},
	"get_individual_memory":          {"agentId"},
	"get_trust_session":              {"session_id"},
	"mark_messages_read":             {"agentId"},
	"prepare_agent_call":             {"calling_agent", "target_agent", "tool_name", "mcp_session_id", "trace_id"},
	"record_learning":                {"agentId"},
	"register_agent":                 {"agentId"},
	"revoke_delegation":              {"delegation_id"},
	"revoke_trust_session":           {"session_id"},
	"revoke_trust_sessions_by_human": {"user_id"},
	"send_ai_message":                {"agentId", "from", "to"},
	"set_agent_identity":             {"currentAgentId", "newAgentId"},
	"set_preferences":                {"agentId"},
	"verify_agent_response":          {"delegation_id"},
}

// looksLikeID matches argument names that name an agent, a session, a
// trace or some other id.
var looksLikeID = regexp.MustCompile(`(?i)(^|_)id$|[a-z]Id$|agent|^from$|^to$|^tool_name$`)

// TestIDArgumentsAgreeWithCheckID calls every id argument of every tool
// with ids CheckID accepts and ids it refuses (zero-width and bidi
// characters, CR/LF, over-long by bytes but not by characters, padded,
// blank): a tool refuses an id, naming the argument and CheckID's reason,
// exactly when CheckID does. The accepted ids are the positive control.
func TestIDArgumentsAgreeWithCheckID(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	ctx := asUser("a", "alice", "admin")
	samples := []string{
		"planner", "plan ner", "plan.ner-1:x/y", strings.Repeat("é", 128), strings.Repeat("x", 256), // accepted
		"plan\u200bner", strings.Repeat("é", 200), strings.Repeat("x", 257), "a\r\nX-Evil: 1", "\u202eevil",
		" planner", "planner\t", "   ",
	}
	// Not in samples: NUL, which handle refuses in every text argument
	// before any tool code runs, and invalid UTF-8, which JSON cannot carry.
	reasons := []string{delegation.IDBlank, delegation.IDTooLong, delegation.IDNotUTF8, delegation.IDBadRune, delegation.IDPadSpace}

	seen := map[string]bool{}
	accepted, refused := 0, 0
	for _, st := range ts.srv.ListTools() {
		name := st.Tool.Name
		var s jsonschema.Schema
		if err := json.Unmarshal(st.Tool.RawInputSchema, &s); err != nil {
			t.Fatalf("%s: schema: %v", name, err)
		}
		for _, arg := range idArguments[name] {
			seen[name+"."+arg] = true
			if p := s.Properties[arg]; p == nil || p.Type != "string" {
				t.Errorf("idArguments names %s.%s, which is not a string argument of the tool", name, arg)
			}
		}
		for arg, p := range s.Properties {
			if p.Type == "string" && looksLikeID.MatchString(arg) && !seen[name+"."+arg] {
				t.Errorf("%s.%s looks like an id argument but is not in idArguments", name, arg)
			}
		}
		for _, arg := range idArguments[name] {
			for _, v := range samples {
				args := minimalArguments(&s).(map[string]any)
				args[arg] = v
				if name == "send_ai_message" {
					args["content"] = "hi"
					if arg != "from" {
						args["from"] = "agent-a"
					}
					if arg != "to" && arg != "agentId" { // agentId is an alias of to
						args["to"] = "agent-b"
					}
				}
				_, errText := ts.do(ctx, name, args)
				want := delegation.IDReason(v)
				got := ""
				for _, r := range reasons {
					if strings.Contains(errText, arg+" "+r) {
						got = r
					}
				}
				// The schema's maxLength (256 characters) refuses the
				// longest ids before the tool runs.
				if strings.Contains(errText, "/properties/"+arg+": maxLength") {
					got = delegation.IDTooLong
				}
				if got != want {
					t.Errorf("%s(%s=%.40q): id refusal %q (result %.120q), want %q", name, arg, v, got, errText, want)
				}
				if want == "" {
					accepted++
				} else {
					refused++
				}
			}
		}
	}
	for name := range idArguments {
		if _, ok := ts.srv.ListTools()[name]; !ok {
			t.Errorf("idArguments names %s, which is not a registered tool", name)
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("accepted %d, refused %d id samples; want both", accepted, refused)
	}
	t.Logf("metric id_arguments_checked=%d", len(seen))
}
