package tools

import (
	"fmt"
	"strings"
	"testing"
)

func TestGetAgentContext(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	ts.call(a, "set_preferences", map[string]any{"agentId": "alice", "preferences": map[string]any{"style": "terse"}})
	for i := 0; i < 30; i++ {
		ts.call(a, "record_learning", map[string]any{"agentId": "alice", "context": "c", "lesson": fmt.Sprint("lesson ", i, strings.Repeat(" padding", 20))})
	}
	ts.call(a, "send_ai_message", map[string]any{"from": "bob", "to": "alice", "content": "low one", "priority": "low"})
	ts.call(a, "send_ai_message", map[string]any{"from": "bob", "to": "alice", "content": "urgent one", "priority": "urgent"})
	ts.call(a, "end_session", map[string]any{"agentId": "bob", "projectId": "p", "summary": "handed over"})
	runSteps(t, ts, []step{
		{"hot, roomy budget", a, "get_agent_context", map[string]any{"agentId": "alice", "projectId": "p", "depth": "hot", "maxTokens": 100000},
			`{"depth":"hot","truncated":false,"handoff":{"summary":"handed over","status":"active"},"preferences":{"style":"terse"},
			  "unreadMessages":[{"content":"urgent one"},{"content":"low one"}],"unreadTotal":2,"learningsTotal":30,
			  "omitted":{"handoff":false,"preferences":false,"messages":0,"learnings":0}}`, ""},
		{"small budget keeps the priorities", a, "get_agent_context", map[string]any{"agentId": "alice", "projectId": "p", "maxTokens": 400},
			`{"depth":"warm","maxTokens":400,"truncated":true,"handoff":{"summary":"handed over"},"preferences":{"style":"terse"}}`, ""},
		{"handoff is not consumed", a, "begin_session", map[string]any{"agentId": "alice", "projectId": "p"}, `{"handoff":{"summary":"handed over"}}`, ""},
		{"budget bounds", a, "get_agent_context", map[string]any{"agentId": "alice", "maxTokens": 10}, "", "maxTokens"},
		{"depth enum", a, "get_agent_context", map[string]any{"agentId": "alice", "depth": "lukewarm"}, "", "invalid arguments"},
		{"tenant isolation", b, "get_agent_context", map[string]any{"agentId": "alice", "projectId": "p"},
			`{"unreadMessages":[],"learnings":[],"unreadTotal":0,"learningsTotal":0,"handoff":null,"preferences":null}`, ""},
	})
	res := structured(t, ts.call(a, "get_agent_context", map[string]any{"agentId": "alice", "maxTokens": 400}))
	if est := res["estimatedTokens"].(float64); est > 400 {
		t.Errorf("estimatedTokens = %v, want at most maxTokens 400", est)
	}
}

func TestTranslatePath(t *testing.T) {
	tests := []struct {
		path, from, to, distro string
		want, wantErr          string
	}{
		{`C:\Users\me\src`, "windows", "wsl", "", "/mnt/c/Users/me/src", ""},
		{`d:/data`, "windows", "linux", "", "/mnt/d/data", ""},
		{`C:\`, "windows", "wsl", "", "/mnt/c", ""},
		{`\\wsl$\Ubuntu\home\me`, "windows", "wsl", "", "/home/me", ""},
		{`\\wsl.localhost\Debian\etc`, "windows", "linux", "", "/etc", ""},
		{`\\server\share\x`, "windows", "wsl", "", "", "network path"},
		{`src\main.go`, "windows", "wsl", "", "src/main.go", ""},
		{"/mnt/c/Users/me", "wsl", "windows", "", `C:\Users\me`, ""},
		{"/home/me/x", "wsl", "windows", "Ubuntu", `\\wsl.localhost\Ubuntu\home\me\x`, ""},
		{"/home/me/x", "wsl", "windows", "", "", "give distro"},
		{"/home/me", "linux", "wsl", "", "/home/me", ""},
		{"a/b", "linux", "windows", "", `a\b`, ""},
		{"x", "mac", "linux", "", "", "must be windows, wsl or linux"},
	}
	for _, tc := range tests {
		t.Run(tc.path+" "+tc.from+"->"+tc.to, func(t *testing.T) {
			got, err := translate(tc.path, tc.from, tc.to, tc.distro)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("translate(%q, %s, %s) = %q, %v; want error containing %q", tc.path, tc.from, tc.to, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("translate(%q, %s, %s) = %q, %v; want %q", tc.path, tc.from, tc.to, got, err, tc.want)
			}
		})
	}
	ts := newTestServer(t)
	runSteps(t, ts, []step{
		{"through the server", asUser("a", "", ""), "translate_path", map[string]any{"path": `C:\x`, "fromPlatform": "windows", "toPlatform": "wsl"},
			`{"path":"C:\\x","translated":"/mnt/c/x","fromPlatform":"windows","toPlatform":"wsl"}`, ""},
		{"platform enum", asUser("a", "", ""), "translate_path", map[string]any{"path": "x", "fromPlatform": "mac", "toPlatform": "wsl"}, "", "invalid arguments"},
	})
}
