package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/server"
)

// wireCall sends one JSON-RPC request and returns the encoded response,
// as a transport would write it, and its result.
func wireCall(t *testing.T, srv *server.MCPServer, ctx context.Context, method string, params any) ([]byte, map[string]any) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	b, err := json.Marshal(srv.HandleMessage(ctx, req))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Result map[string]any `json:"result"`
		Error  *struct{ Message string }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if out.Error != nil {
		t.Fatalf("%s %v: JSON-RPC error %s", method, params, out.Error.Message)
	}
	return b, out.Result
}

// TestEveryAnswerFitsTheBudget fills a tenant with more than one answer
// can carry under a small budget, then calls every tool: each answer
// (structured content and text copy together, in its JSON-RPC envelope)
// stays within the budget, and every truncated answer continues with the
// offset it names until every item came back exactly once. The graph
// resource pages through the nextUri it names. A tool without a case fails.
func TestEveryAnswerFitsTheBudget(t *testing.T) {
	const budget = 24 << 10
	ts := newTrustServer(t, Deps{GraphBudget: budget})
	admin := asUser("a", "alice", "admin")
	// The data goes in through handlers with the default budget.
	filler := New(Deps{Store: ts.store, Now: ts.clock.Now})
	fsrv := server.NewMCPServer("fill", "0", filler.ServerOptions()...)
	filler.Register(fsrv)
	fill := func(tool string, args map[string]any) map[string]any {
		t.Helper()
		_, res := wireCall(t, fsrv, admin, "tools/call", map[string]any{"name": tool, "arguments": args})
		if res["isError"] == true {
			t.Fatalf("fill %s: %v", tool, res["content"])
		}
		sc, _ := res["structuredContent"].(map[string]any)
		return sc
	}
	lorem := strings.Repeat("lorem ipsum ", 40)
	const nEnt = 150
	var ents []map[string]any
	var names []string
	for i := range nEnt {
		n := fmt.Sprintf("e%03d", i)
		names = append(names, n)
		ents = append(ents, map[string]any{"name": n, "entityType": "thing", "observations": []string{lorem + n}})
	}
	fill("create_entities", map[string]any{"entities": ents})
	var rels []map[string]any
	for i := 1; i < nEnt; i++ {
		rels = append(rels, map[string]any{"from": names[i], "to": names[i-1], "relationType": "follows"})
		if i%3 == 0 {
			rels = append(rels, map[string]any{"from": "e000", "to": names[i], "relationType": "hub_of"})
		}
	}
	fill("create_relations", map[string]any{"relations": rels})
	for i := range 60 {
		fill("send_ai_message", map[string]any{"from": "agent-a", "to": "agent-b", "content": fmt.Sprintf("m%d %s", i, lorem)})
		fill("prepare_agent_call", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": fmt.Sprintf("t%d", i)})
		fill("create_trust_session", map[string]any{"human_origin": map[string]any{"user_id": "alice", "note": lorem}})
		fill("record_learning", map[string]any{"agentId": "agent-a", "context": lorem, "lesson": fmt.Sprintf("l%d %s", i, lorem)})
	}
	caps := []string{strings.Repeat("c", 200), strings.Repeat("d", 200)}
	for i := range 80 {
		fill("register_agent", map[string]any{"agentId": fmt.Sprintf("bulk-%02d", i), "name": "bulk", "capabilities": caps})
	}
	fill("end_session", map[string]any{"agentId": "agent-a", "projectId": "p", "summary": lorem})
	auditTotal := fill("get_audit_log", map[string]any{"limit": 1})["total"].(float64)

	// The pageable tools: walked to the end.
	paged := []struct {
		tool, items, key string
		args             map[string]any
		want             int
	}{
		{"read_graph", "entities", "name", map[string]any{}, nEnt},
		{"search_nodes", "entities", "name", map[string]any{"query": "lorem"}, nEnt},
		{"open_nodes", "entities", "name", map[string]any{"names": names}, nEnt},
		{"search_entities", "entities", "name", map[string]any{"query": "lorem", "limit": 200}, nEnt},
		{"get_ai_messages", "messages", "messageId", map[string]any{"agentId": "agent-b", "limit": 100}, 60},
		{"get_agent_status", "agents", "agentId", map[string]any{"limit": 200}, 83},
		{"get_audit_log", "rows", "seq", map[string]any{"limit": 500}, int(auditTotal)},
		{"get_delegation_history", "delegations", "delegation_id", map[string]any{"limit": 500}, 60},
		{"list_trust_sessions", "sessions", "session_id", map[string]any{"limit": 500}, 60},
	}
	covered := map[string]bool{}
	for _, tc := range paged {
		covered[tc.tool] = true
		t.Run(tc.tool, func(t *testing.T) {
			seen := map[string]int{}
			pages := 0
			args := tc.args
			for {
				b, res := wireCall(t, ts.srv, admin, "tools/call", map[string]any{"name": tc.tool, "arguments": args})
				if len(b) > budget {
					t.Fatalf("%s page %d: %d bytes, budget %d", tc.tool, pages, len(b), budget)
				}
				if res["isError"] == true {
					t.Fatalf("%s page %d: %v", tc.tool, pages, res["content"])
				}
				pages++
				sc := res["structuredContent"].(map[string]any)
				for _, it := range sc[tc.items].([]any) {
					seen[fmt.Sprint(it.(map[string]any)[tc.key])]++
				}
				next, ok := sc["nextOffset"].(float64)
				if !ok {
					break
				}
				if pages > 200 {
					t.Fatalf("%s: no end after %d pages", tc.tool, pages)
				}
				args = map[string]any{}
				for k, v := range tc.args {
					args[k] = v
				}
				args["offset"] = int(next)
			}
			if pages < 2 {
				t.Errorf("%s came back in %d page; the data should exceed the %d-byte budget", tc.tool, pages, budget)
			}
			if len(seen) != tc.want {
				t.Errorf("%s: %d distinct items over %d pages, want %d", tc.tool, len(seen), pages, tc.want)
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("%s: %s came back %d times", tc.tool, k, n)
				}
			}
		})
	}

	t.Run("graph resource", func(t *testing.T) {
		seen := map[string]int{}
		uri, pages := GraphURI, 0
		for uri != "" && pages < 200 {
			b, res := wireCall(t, ts.srv, admin, "resources/read", map[string]any{"uri": uri})
			if len(b) > budget {
				t.Fatalf("%s: %d bytes, budget %d", uri, len(b), budget)
			}
			pages++
			var page struct {
				Entities []entityWire `json:"entities"`
				NextURI  string       `json:"nextUri"`
			}
			text := res["contents"].([]any)[0].(map[string]any)["text"].(string)
			if err := json.Unmarshal([]byte(text), &page); err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Entities {
				seen[e.Name]++
			}
			uri = page.NextURI
		}
		if pages < 2 || len(seen) != nEnt {
			t.Errorf("graph resource: %d entities in %d pages, want %d in several", len(seen), pages, nEnt)
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("graph resource: %s came back %d times", k, n)
			}
		}
	})

	// Every other tool: one call with data larger than the budget where its
	// answer can grow (an echo, a context), else an ordinary call; either an
	// answer or an error result, always within the budget.
	bigEnts := []map[string]any{}
	for i := range 40 {
		bigEnts = append(bigEnts, map[string]any{"name": fmt.Sprintf("big%d", i), "entityType": "t", "observations": []string{lorem}})
	}
	bigRels := []map[string]any{}
	for i := 1; i < 150; i++ {
		bigRels = append(bigRels, map[string]any{"from": names[i], "to": names[i-1], "relationType": "precedes " + names[i] + strings.Repeat("y", 100)})
	}
	others := []struct {
		tool    string
		args    map[string]any
		tooBig  bool // the answer would exceed the budget: an error result naming the limit
		written bool // ... of a write that happened
	}{
		{"create_entities", map[string]any{"entities": bigEnts}, true, true},
		{"create_relations", map[string]any{"relations": bigRels}, true, true},
		{"add_observations", map[string]any{"observations": []map[string]any{{"entityName": "e001", "contents": []string{strings.Repeat(lorem, 40)}}}}, true, true},
		{"create_trust_session", map[string]any{"human_origin": map[string]any{"user_id": "alice"}}, false, false},
		{"delete_observations", map[string]any{"deletions": []map[string]any{{"entityName": "e001", "observations": []string{"nope"}}}}, false, false},
		{"delete_relations", map[string]any{"relations": []map[string]any{{"from": "e002", "to": "e001", "relationType": "follows"}}}, false, false},
		{"delete_entities", map[string]any{"entityNames": []string{"big0"}}, false, false},
		{"send_ai_message", map[string]any{"from": "agent-a", "to": "agent-c", "content": "hi"}, false, false},
		{"mark_messages_read", map[string]any{"agentId": "agent-b"}, false, false},
		{"register_agent", map[string]any{"agentId": "one-more", "name": "x", "capabilities": []string{}}, false, false},
		{"set_agent_identity", map[string]any{"newAgentId": "one-more-2", "currentAgentId": "one-more"}, false, false},
		{"record_learning", map[string]any{"agentId": "agent-a", "context": "c", "lesson": "l"}, false, false},
		{"set_preferences", map[string]any{"agentId": "agent-a", "preferences": map[string]any{"k": "v"}}, false, false},
		{"get_individual_memory", map[string]any{"agentId": "agent-a", "limit": 50}, true, false},
		{"end_session", map[string]any{"agentId": "agent-a", "projectId": "q", "summary": "s"}, false, false},
		{"begin_session", map[string]any{"agentId": "agent-b", "projectId": "p"}, false, false},
		{"get_agent_context", map[string]any{"agentId": "agent-a", "depth": "cold", "maxTokens": 100000}, true, false},
		{"translate_path", map[string]any{"path": "C:\\x", "fromPlatform": "windows", "toPlatform": "linux"}, false, false},
		{"prepare_agent_call", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-c", "tool_name": "t"}, false, false},
		{"verify_agent_response", map[string]any{"delegation_id": "nope", "response": map[string]any{}}, false, false},
		{"revoke_delegation", map[string]any{"delegation_id": "nope"}, false, false},
		{"call_agent_tool", map[string]any{"target_agent": "agent-b", "tool_name": "t", "arguments": map[string]any{}}, false, false},
		{"get_trust_session", map[string]any{"session_id": "nxs-00000000-0000-0000-0000-000000000000"}, false, false},
		{"revoke_trust_session", map[string]any{"session_id": "nxs-00000000-0000-0000-0000-000000000000"}, false, false},
		{"revoke_trust_sessions_by_human", map[string]any{"user_id": "nobody"}, false, false},
	}
	for _, tc := range others {
		covered[tc.tool] = true
		t.Run(tc.tool, func(t *testing.T) {
			b, res := wireCall(t, ts.srv, admin, "tools/call", map[string]any{"name": tc.tool, "arguments": tc.args})
			if len(b) > budget {
				t.Fatalf("%s: %d bytes, budget %d", tc.tool, len(b), budget)
			}
			text := res["content"].([]any)[0].(map[string]any)["text"].(string)
			limit := fmt.Sprintf("exceeds the %d-byte answer limit", budget)
			if got := strings.Contains(text, limit); got != tc.tooBig {
				t.Errorf("%s answered %.200q; want the answer-limit error: %v", tc.tool, text, tc.tooBig)
			}
			if tc.tooBig && strings.Contains(text, "succeeded") != tc.written {
				t.Errorf("%s: %q should say whether the call succeeded (%v)", tc.tool, text, tc.written)
			}
		})
	}
	for _, st := range New(Deps{}).all() {
		if !covered[st.Tool.Name] {
			t.Errorf("tool %s has no case in this test", st.Tool.Name)
		}
	}
}
