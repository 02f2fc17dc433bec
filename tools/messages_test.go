package tools

import "testing"

func TestMessageTools(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	alice := ctxAgent("a", "alice")
	for _, id := range []string{"alice", "bob", "carol"} {
		caps := []string{"go"}
		if id == "carol" {
			caps = []string{"SQL"}
		}
		ts.call(a, "register_agent", map[string]any{"agentId": id, "name": id, "capabilities": caps})
	}
	runSteps(t, ts, []step{
		{"direct", a, "send_ai_message", map[string]any{"from": "alice", "to": "bob", "content": "hi"},
			`{"status":"sent","recipients":["bob"],"sentCount":1,"selection":{"mode":"direct","to":"bob","matched":1}}`, ""},
		{"aliases agentId and message", a, "send_ai_message", map[string]any{"from": "alice", "agentId": "bob", "message": "hi again", "priority": "urgent", "messageType": "task"},
			`{"status":"sent","recipients":["bob"]}`, ""},
		{"from defaults to the credential's agent", alice, "send_ai_message", map[string]any{"to": "*", "content": "all"},
			`{"status":"sent","recipients":["bob","carol"],"sentCount":2,"selection":{"mode":"broadcast","excludeSelf":true}}`, ""},
		{"broadcast including self", a, "send_ai_message", map[string]any{"from": "alice", "broadcast": true, "excludeSelf": false, "content": "all"},
			`{"recipients":["alice","bob","carol"]}`, ""},
		{"capabilities case-insensitive", a, "send_ai_message", map[string]any{"from": "carol", "capabilities": []string{"GO"}, "content": "go?"},
			`{"recipients":["alice","bob"],"selection":{"mode":"capabilities","capabilities":["GO"]}}`, ""},
		{"no recipients", a, "send_ai_message", map[string]any{"from": "alice", "toCapabilities": []string{"cobol"}, "content": "x"},
			`{"status":"no_recipients","recipients":[],"sentCount":0,"messageIds":[]}`, ""},
		{"from required without credential agent", a, "send_ai_message", map[string]any{"to": "bob", "content": "x"}, "", "from is required"},
		{"content required", a, "send_ai_message", map[string]any{"from": "alice", "to": "bob"}, "", "content is required"},
		{"conflicting aliases", a, "send_ai_message", map[string]any{"from": "alice", "to": "bob", "agentId": "carol", "content": "x"}, "", "differ"},
		{"bad enum", a, "send_ai_message", map[string]any{"from": "alice", "to": "bob", "content": "x", "priority": "meh"}, "", "invalid arguments"},
		{"read newest first", a, "get_ai_messages", map[string]any{"agentId": "bob", "limit": 2},
			`{"agentId":"bob","count":2,"total":5,"unreadCount":5,"limit":2,"nextOffset":2,"messages":[{"content":"go?","read":false},{"content":"all"}]}`, ""},
		{"filter by type", a, "get_ai_messages", map[string]any{"agentId": "bob", "messageType": "task"},
			`{"total":1,"messages":[{"content":"hi again","priority":"urgent","messageType":"task"}]}`, ""},
		{"since in the future", a, "get_ai_messages", map[string]any{"agentId": "bob", "since": "2999-01-01T00:00:00Z"}, `{"total":0,"messages":[]}`, ""},
		{"bad since", a, "get_ai_messages", map[string]any{"agentId": "bob", "since": "yesterday"}, "", "RFC 3339"},
		{"limit is capped", a, "get_ai_messages", map[string]any{"agentId": "bob", "limit": 5000}, `{"limit":100}`, ""},
		{"mark as read while reading", a, "get_ai_messages", map[string]any{"agentId": "bob", "limit": 1, "markAsRead": true},
			`{"markedRead":1,"unreadCount":4,"messages":[{"read":true}]}`, ""},
		{"unread only", a, "get_ai_messages", map[string]any{"agentId": "bob", "unreadOnly": true}, `{"total":4}`, ""},
		{"tenant isolation: same agent id in b", b, "get_ai_messages", map[string]any{"agentId": "bob"}, `{"total":0,"unreadCount":0,"messages":[]}`, ""},
		{"tenant isolation: b marks nothing", b, "mark_messages_read", map[string]any{"agentId": "bob"}, `{"marked":0}`, ""},
		{"mark all read", a, "mark_messages_read", map[string]any{"agentId": "bob"}, `{"agentId":"bob","marked":4}`, ""},
		{"nothing left", a, "get_ai_messages", map[string]any{"agentId": "bob", "unreadOnly": true}, `{"total":0,"unreadCount":0}`, ""},
	})
}

// TestSendToUnregisteredAgent: a direct message to an id the caller's
// tenant did not register is stored (a typo is not refused) but the answer
// says recipientRegistered false; an agent registered by another tenant is
// unregistered for this one.
func TestSendToUnregisteredAgent(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	ts.call(a, "register_agent", map[string]any{"agentId": "bob", "name": "bob", "capabilities": []string{}})
	runSteps(t, ts, []step{
		{"registered recipient", a, "send_ai_message", map[string]any{"from": "alice", "to": "bob", "content": "hi"},
			`{"status":"sent","recipients":["bob"],"recipientRegistered":true}`, ""},
		{"typo: stored, flagged", a, "send_ai_message", map[string]any{"from": "alice", "to": "bbo", "content": "hi"},
			`{"status":"sent","recipients":["bbo"],"sentCount":1,"recipientRegistered":false}`, ""},
		{"the typo's message is in its inbox", a, "get_ai_messages", map[string]any{"agentId": "bbo"}, `{"total":1}`, ""},
		{"another tenant's agent is not registered here", b, "send_ai_message", map[string]any{"from": "eve", "to": "bob", "content": "hi"},
			`{"status":"sent","recipients":["bob"],"recipientRegistered":false}`, ""},
		{"b's message is in b's inbox only", a, "get_ai_messages", map[string]any{"agentId": "bob"}, `{"total":1}`, ""},
	})
}
