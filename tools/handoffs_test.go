package tools

import (
	"context"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// TestTwoAgentConversation is the scripted conversation of the issue:
// register, message, reply, end_session, begin_session by the other agent.
func TestTwoAgentConversation(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	runSteps(t, ts, []step{
		{"register planner", a, "register_agent", map[string]any{"agentId": "planner", "name": "Planner", "capabilities": []string{"planning"}}, `{"status":"registered"}`, ""},
		{"register coder", a, "register_agent", map[string]any{"agentId": "coder", "name": "Coder", "capabilities": []string{"go"}}, `{"status":"registered"}`, ""},
		{"planner asks", a, "send_ai_message", map[string]any{"from": "planner", "to": "coder", "content": "Can you add tests?", "messageType": "query"},
			`{"status":"sent","recipients":["coder"],"sentCount":1}`, ""},
		{"coder reads", a, "get_ai_messages", map[string]any{"agentId": "coder", "markAsRead": true},
			`{"total":1,"markedRead":1,"messages":[{"from":"planner","content":"Can you add tests?","messageType":"query"}]}`, ""},
		{"coder replies", a, "send_ai_message", map[string]any{"from": "coder", "to": "planner", "content": "Done", "messageType": "response"}, `{"status":"sent"}`, ""},
		{"coder ends session", a, "end_session", map[string]any{"agentId": "coder", "projectId": "nexus", "summary": "tests added",
			"openItems": []string{"benchmarks"}, "learnings": []map[string]any{{"context": "sqlite", "lesson": "one writer"}}},
			`{"status":"session_ended","handoff":{"projectId":"nexus","fromAgent":"coder","summary":"tests added","openItems":["benchmarks"],"learnings":[{"context":"sqlite","lesson":"one writer","confidence":0.8}],"status":"active"}}`, ""},
		{"tenant b sees no handoff for the same project", b, "begin_session", map[string]any{"agentId": "planner", "projectId": "nexus"},
			`{"status":"session_opened","handoff":null,"context":{"messages":[],"unreadCount":0,"learnings":[]}}`, ""},
		{"planner begins", a, "begin_session", map[string]any{"agentId": "planner", "projectId": "nexus"},
			`{"status":"session_opened","handoff":{"summary":"tests added","status":"consumed","consumedBy":"planner"},"context":{"messages":[{"from":"coder","content":"Done"}],"unreadCount":1,"learnings":[]}}`, ""},
		{"second begin gets null", a, "begin_session", map[string]any{"agentId": "coder", "projectId": "nexus"},
			`{"status":"session_opened","handoff":null,"context":{"learnings":[{"lesson":"one writer","source":"handoff","projectId":"nexus"}],"learningsTotal":1}}`, ""},
		{"end_session needs a summary", a, "end_session", map[string]any{"agentId": "coder", "projectId": "nexus"}, "", "invalid arguments"},
	})
}

// TestBeginSessionToolExactlyOnce calls the begin_session handler directly,
// concurrently; exactly one call gets the handoff.
func TestBeginSessionToolExactlyOnce(t *testing.T) {
	ts := newTestServer(t)
	a := asUser("a", "", "")
	ts.call(a, "end_session", map[string]any{"agentId": "x", "projectId": "p", "summary": "s"})
	var tool server.ServerTool
	for _, st := range New(Deps{Store: ts.store}).all() {
		if st.Tool.Name == "begin_session" {
			tool = st
		}
	}
	const n = 12
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var req mcp.CallToolRequest
			req.Params.Name = "begin_session"
			req.Params.Arguments = map[string]any{"agentId": "y", "projectId": "p"}
			res, err := tool.Handler(context.WithoutCancel(a), req)
			if err != nil || res.IsError {
				t.Errorf("begin_session: %v %v", err, errText(res))
				return
			}
			if res.StructuredContent.(beginSessionResult).Handoff != nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent begin_session: %d got the handoff, want exactly 1", n, wins)
	}
}
