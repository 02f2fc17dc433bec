package tools

import "testing"

func TestIndividualMemoryTools(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	alice := ctxAgent("a", "alice")
	ts.call(a, "register_agent", map[string]any{"agentId": "alice", "name": "Alice", "capabilities": []string{"go"}})
	runSteps(t, ts, []step{
		{"record with default agent and confidence", alice, "record_learning", map[string]any{"context": "tests", "lesson": "run with -race"},
			`{"status":"recorded","learning":{"agentId":"alice","lesson":"run with -race","confidence":0.8,"source":"record"}}`, ""},
		{"record explicit", a, "record_learning", map[string]any{"agentId": "alice", "context": "sql", "lesson": "use STRICT", "confidence": 0.3},
			`{"learning":{"confidence":0.3}}`, ""},
		{"no agent", a, "record_learning", map[string]any{"context": "c", "lesson": "l"}, "", "agentId is required"},
		{"confidence out of range", a, "record_learning", map[string]any{"agentId": "alice", "context": "c", "lesson": "l", "confidence": 3}, "", "confidence"},
		{"preferences for a new agent", alice, "set_preferences", map[string]any{"preferences": map[string]any{"style": "terse", "editor": map[string]any{"tabs": 4}}},
			`{"status":"updated","agentId":"alice","preferences":{"style":"terse","editor":{"tabs":4}}}`, ""},
		{"partial merge", a, "set_preferences", map[string]any{"agentId": "alice", "preferences": map[string]any{"editor": map[string]any{"wrap": true}, "style": nil}},
			`{"preferences":{"editor":{"tabs":4,"wrap":true}}}`, ""},
		{"individual memory", alice, "get_individual_memory", map[string]any{"limit": 1},
			`{"agentId":"alice","preferences":{"editor":{"tabs":4,"wrap":true}},"learnings":[{"lesson":"use STRICT"}],"learningsTotal":2,"capabilities":["go"]}`, ""},
		{"tenant isolation", b, "get_individual_memory", map[string]any{"agentId": "alice"},
			`{"agentId":"alice","preferences":{},"learnings":[],"learningsTotal":0,"capabilities":[]}`, ""},
	})
}
