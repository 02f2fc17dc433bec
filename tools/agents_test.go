package tools

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// newScopedTestServer is newTestServer with an agent registry scope.
func newScopedTestServer(t *testing.T, scope string) *testServer {
	t.Helper()
	store, err := memory.Open(context.Background(), memtest.DSN(t), memory.Options{AgentScope: scope})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, id := range []string{"a", "b"} {
		if err := store.CreateTenant(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	h := New(Deps{Store: store, AgentScope: store.AgentScope()})
	srv := server.NewMCPServer("test", "0", h.ServerOptions()...)
	h.Register(srv)
	return &testServer{t: t, srv: srv, store: store}
}

// ctxAgent is asUser(tenant, "", "") with a credential naming agent.
func ctxAgent(tenant, agent string) context.Context {
	rc, _ := tenancy.FromContext(asUser(tenant, "", ""))
	rc.AgentID = agent
	return tenancy.NewContext(context.Background(), rc)
}

// step is one tool call and what must come back: want is a JSON subset of
// the structured result, or wantErr a substring of an isError result.
type step struct {
	name    string
	ctx     context.Context
	tool    string
	args    map[string]any
	want    string
	wantErr string
}

func runSteps(t *testing.T, ts *testServer, steps []step) {
	t.Helper()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			res := ts.call(st.ctx, st.tool, st.args)
			if st.wantErr != "" {
				if got := errText(res); !strings.Contains(got, st.wantErr) {
					t.Errorf("%s(%v) error = %q, want it to contain %q", st.tool, st.args, got, st.wantErr)
				}
				return
			}
			if res.IsError {
				t.Fatalf("%s(%v) = error %q", st.tool, st.args, errText(res))
			}
			jsonSubset(t, structured(t, res), st.want)
		})
	}
}

// jsonSubset checks that every key of want is in got with an equal value
// (objects compared recursively, arrays element-wise and of equal length).
func jsonSubset(t *testing.T, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	if path, ok := subset(got, w, "$"); !ok {
		t.Errorf("at %s: got %s\nwant subset %s", path, toJSON(got), want)
	}
}

func subset(got, want any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				if wv == nil {
					continue
				}
				return path + "." + k, false
			}
			if p, ok := subset(gv, wv, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := subset(g[i], w[i], path); !ok {
				return p, false
			}
		}
		return "", true
	default:
		return path, toJSON(got) == toJSON(want)
	}
}

func TestAgentRegistryTools(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	runSteps(t, ts, []step{
		{"register", a, "register_agent", map[string]any{"agentId": "alice", "name": "Alice", "capabilities": []string{"go"}, "endpoint": "https://alice", "metadata": map[string]any{"team": "x"}},
			`{"status":"registered","agent":{"agentId":"alice","name":"Alice","capabilities":["go"],"status":"active","owned":true,"endpoint":"https://alice","metadata":{"team":"x"}}}`, ""},
		{"re-register", a, "register_agent", map[string]any{"agentId": "alice", "name": "Alice", "capabilities": []string{"go", "sql"}, "endpoint": "https://alice"},
			`{"status":"updated","agent":{"capabilities":["go","sql"]}}`, ""},
		{"other tenant cannot take the id", b, "register_agent", map[string]any{"agentId": "alice", "name": "Mallory", "capabilities": []string{}},
			"", "registered by another tenant"},
		{"other tenant sees public fields", b, "get_agent_status", map[string]any{"agentId": "alice"},
			`{"agent":{"agentId":"alice","name":"Alice","capabilities":["go","sql"],"owned":false,"endpoint":null,"metadata":null}}`, ""},
		{"owner sees endpoint", a, "get_agent_status", map[string]any{"agentId": "alice"},
			`{"agent":{"owned":true,"endpoint":"https://alice"}}`, ""},
		{"list is own agents", b, "get_agent_status", map[string]any{}, `{"agents":[],"total":0,"offset":0,"limit":50}`, ""},
		{"list as owner", a, "get_agent_status", map[string]any{"limit": 1000}, `{"agents":[{"agentId":"alice"}],"total":1,"limit":200}`, ""},
		{"unknown agent", a, "get_agent_status", map[string]any{"agentId": "nobody"}, "", "not registered"},
		{"agent-bound credential cannot take another identity", ctxAgent("a", "cred-agent"), "set_agent_identity", map[string]any{"newAgentId": "bob"},
			"", "forbidden: agent mismatch"},
		{"set identity registers", a, "set_agent_identity", map[string]any{"newAgentId": "bob"},
			`{"status":"registered","agentId":"bob","agent":{"name":"bob"}}`, ""},
		{"set identity renames", a, "set_agent_identity", map[string]any{"newAgentId": "robert", "currentAgentId": "bob", "newName": "Robert"},
			`{"status":"renamed","agentId":"robert","previousAgentId":"bob","agent":{"name":"Robert"}}`, ""},
		{"set identity without auto register", a, "set_agent_identity", map[string]any{"newAgentId": "zed", "autoRegister": false}, "", "not registered"},
		{"tenant argument refused", a, "register_agent", map[string]any{"agentId": "x", "name": "x", "capabilities": []string{}, "tenantId": "b"}, "", "forbidden"},
		{"user argument refused", a, "register_agent", map[string]any{"agentId": "x", "name": "x", "capabilities": []string{}, "userId": "u"}, "", "invalid arguments"},
		{"missing name", a, "register_agent", map[string]any{"agentId": "x", "capabilities": []string{}}, "", "invalid arguments"},
	})
}

func TestAgentRegistryToolsTenantScope(t *testing.T) {
	ts := newScopedTestServer(t, memory.AgentScopeTenant)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	runSteps(t, ts, []step{
		{"register", a, "register_agent", map[string]any{"agentId": "alice", "name": "Alice", "capabilities": []string{}}, `{"status":"registered"}`, ""},
		{"hidden from b", b, "get_agent_status", map[string]any{"agentId": "alice"}, "", "not registered"},
		{"b may use the same id", b, "register_agent", map[string]any{"agentId": "alice", "name": "B's", "capabilities": []string{}}, `{"status":"registered","agent":{"name":"B's"}}`, ""},
		{"a's is unchanged", a, "get_agent_status", map[string]any{"agentId": "alice"}, `{"agent":{"name":"Alice"}}`, ""},
	})
	for _, st := range ts.srv.ListTools() {
		if st.Tool.Name == "register_agent" && !strings.Contains(st.Tool.Description, "private to your tenant") {
			t.Errorf("register_agent description in tenant scope = %q", st.Tool.Description)
		}
	}
}

// collabTools are the tools of the agent collaboration issue.
var collabTools = []string{"search_entities", "send_ai_message", "get_ai_messages", "mark_messages_read",
	"register_agent", "set_agent_identity", "get_agent_status", "record_learning", "set_preferences",
	"get_individual_memory", "end_session", "begin_session", "get_agent_context", "translate_path"}

// TestIdentityArgumentsNeverDeclared: no collaboration tool declares an
// argument naming a tenant or user.
func TestIdentityArgumentsNeverDeclared(t *testing.T) {
	h := New(Deps{})
	found := 0
	for _, st := range h.all() {
		if !slices.Contains(collabTools, st.Tool.Name) {
			continue
		}
		found++
		var schema map[string]any
		if err := json.Unmarshal(st.Tool.RawInputSchema, &schema); err != nil {
			t.Fatal(err)
		}
		props, _ := schema["properties"].(map[string]any)
		for k := range props {
			switch strings.ToLower(strings.ReplaceAll(k, "_", "")) {
			case "tenant", "tenantid", "user", "userid":
				t.Errorf("%s declares identity argument %q", st.Tool.Name, k)
			}
		}
	}
	if found != len(collabTools) {
		t.Errorf("found %d of the %d collaboration tools in all()", found, len(collabTools))
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
