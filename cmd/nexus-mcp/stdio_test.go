package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// callTool calls a tool through an mcp-go client, over stdio or HTTP, and
// fails t on a transport error (a tool error is the result's IsError).
func callTool(t testing.TB, c *client.Client, name string, args any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// scOf decodes a result's structured content.
func scOf(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %v", res.Content)
	}
	b, _ := json.Marshal(res.StructuredContent)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func entityNames(t *testing.T, res *mcp.CallToolResult) []string {
	t.Helper()
	var out []string
	for _, e := range scOf(t, res)["entities"].([]any) {
		out = append(out, e.(map[string]any)["name"].(string))
	}
	sort.Strings(out)
	return out
}

func TestStdioEndToEnd(t *testing.T) {
	db := memtest.DSN(t)
	c := stdioClient(t, db)
	ctx := context.Background()

	// tools/list matches the golden snapshots
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range list.Tools {
		want, err := os.ReadFile(filepath.Join("..", "..", "testdata", "toolsnaps", tool.Name+".json"))
		if err != nil {
			t.Errorf("tool %s: no snapshot: %v", tool.Name, err)
			continue
		}
		var w, g map[string]any
		json.Unmarshal(want, &w)
		gb, _ := json.Marshal(tool)
		json.Unmarshal(gb, &g)
		// the client re-encodes a schema without "required" as "required": []
		if in, ok := g["inputSchema"].(map[string]any); ok {
			if r, ok := in["required"].([]any); ok && len(r) == 0 {
				delete(in, "required")
			}
		}
		for _, k := range []string{"name", "description", "inputSchema", "annotations"} {
			if !reflect.DeepEqual(g[k], w[k]) {
				t.Errorf("tool %s: %s over stdio differs from snapshot:\n got %v\nwant %v", tool.Name, k, g[k], w[k])
			}
		}
	}

	// the resource and its update notification
	updates := make(chan string, 16)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationResourceUpdated) {
			updates <- fmt.Sprint(n.Params.AdditionalFields["uri"])
		}
	})
	//lint:ignore SA1019 the session negotiates 2025-06-18, where resources/subscribe is the way to subscribe; Listen needs 2026-07-28
	if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: "memory://knowledge-graph"}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}

	// every graph tool once
	callTool(t, c, "create_entities", map[string]any{"entities": []any{
		map[string]any{"name": "A", "entityType": "t", "observations": []string{"alpha"}},
		map[string]any{"name": "B", "entityType": "t", "observations": []string{}},
	}})
	select {
	case uri := <-updates:
		if uri != "memory://knowledge-graph" {
			t.Errorf("update for %q", uri)
		}
	case <-time.After(10 * time.Second):
		t.Error("no notifications/resources/updated after create_entities")
	}
	callTool(t, c, "create_relations", map[string]any{"relations": []any{map[string]any{"from": "A", "to": "B", "relationType": "r"}}})
	callTool(t, c, "add_observations", map[string]any{"observations": []any{map[string]any{"entityName": "B", "contents": []string{"beta"}}}})
	if got := entityNames(t, callTool(t, c, "search_nodes", map[string]any{"query": "BET"})); !reflect.DeepEqual(got, []string{"B"}) {
		t.Errorf("search_nodes = %v", got)
	}
	if got := entityNames(t, callTool(t, c, "open_nodes", map[string]any{"names": []string{"A"}})); !reflect.DeepEqual(got, []string{"A"}) {
		t.Errorf("open_nodes = %v", got)
	}
	callTool(t, c, "delete_observations", map[string]any{"deletions": []any{map[string]any{"entityName": "A", "observations": []string{"alpha"}}}})
	callTool(t, c, "delete_relations", map[string]any{"relations": []any{map[string]any{"from": "A", "to": "B", "relationType": "r"}}})
	callTool(t, c, "delete_entities", map[string]any{"entityNames": []string{"A"}})
	g := scOf(t, callTool(t, c, "read_graph", map[string]any{}))
	if n := len(g["entities"].([]any)); n != 1 {
		t.Errorf("read_graph has %d entities, want 1", n)
	}
	rr, err := c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "memory://knowledge-graph"}})
	if err != nil {
		t.Fatal(err)
	}
	text := rr.Contents[0].(mcp.TextResourceContents).Text
	if !strings.Contains(text, `"name":"B"`) || strings.Contains(text, `"name":"A"`) {
		t.Errorf("resource = %s, want B only", text)
	}
}

func TestStdioTwoKeysTwoTenants(t *testing.T) {
	db := memtest.DSN(t)
	keys := map[string]string{}
	for _, tenant := range []string{"acme", "globex"} {
		mustCLI(t, "--db", db, "tenants", "create", tenant)
		keys[tenant] = strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", tenant, "--user", "u-"+tenant))
	}
	ca := stdioClient(t, db, "NEXUS_API_KEY="+keys["acme"])
	cb := stdioClient(t, db, "NEXUS_API_KEY="+keys["globex"])
	callTool(t, ca, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "acme-secret", "entityType": "t", "observations": []string{"canary-acme"}}}})
	callTool(t, cb, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "globex-thing", "entityType": "t", "observations": []string{}}}})
	if got := entityNames(t, callTool(t, cb, "read_graph", map[string]any{})); !reflect.DeepEqual(got, []string{"globex-thing"}) {
		t.Errorf("globex read_graph = %v, want only its own", got)
	}
	if got := entityNames(t, callTool(t, cb, "search_nodes", map[string]any{"query": "canary"})); len(got) != 0 {
		t.Errorf("globex search canary = %v, want nothing", got)
	}
	if got := entityNames(t, callTool(t, ca, "search_nodes", map[string]any{"query": "canary"})); !reflect.DeepEqual(got, []string{"acme-secret"}) {
		t.Errorf("acme search canary = %v (control)", got)
	}
	// a tool argument naming the other tenant is refused and writes nothing
	res := callTool(t, cb, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "x", "entityType": "t", "observations": []string{}, "tenant_id": "acme"}}})
	if !res.IsError {
		t.Errorf("create_entities with tenant_id=acme was accepted")
	}
	if got := entityNames(t, callTool(t, ca, "read_graph", map[string]any{})); !reflect.DeepEqual(got, []string{"acme-secret"}) {
		t.Errorf("acme graph after spoof attempt = %v", got)
	}
}

func TestStdioRefusesBadKey(t *testing.T) {
	db := memtest.DSN(t)
	mustCLI(t, "--db", db, "tenants", "create", "acme")
	good := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "acme"))
	revoked := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "acme"))
	expired := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "acme", "--expires", "1ns"))
	list := mustCLI(t, "--db", db, "keys", "list", "--tenant", "acme")
	// keys are listed in creation order: good, revoked, expired
	ids := []string{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n")[1:] {
		ids = append(ids, strings.Fields(line)[0])
	}
	if len(ids) != 3 {
		t.Fatalf("keys list = %q, want 3 keys", list)
	}
	mustCLI(t, "--db", db, "keys", "revoke", ids[1])
	mustCLI(t, "--db", db, "tenants", "create", "off")
	disabled := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "off"))
	mustCLI(t, "--db", db, "tenants", "disable", "off")
	for name, key := range map[string]string{
		"unknown":         "nxk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"revoked":         revoked,
		"expired":         expired,
		"malformed":       "not-a-key",
		"disabled tenant": disabled,
	} {
		t.Run(name, func(t *testing.T) {
			cmd := serverCommand(t, []string{"NEXUS_API_KEY=" + key}, "serve", "--db", db)
			cmd.Stdin = strings.NewReader("")
			var stderr, stdout strings.Builder
			cmd.Stderr, cmd.Stdout = &stderr, &stdout
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("server with %s key: err %v, want exit 1", name, err)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "refusing to start") {
				t.Errorf("stderr = %q, want one clear line", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			if strings.Contains(stderr.String(), key) {
				t.Errorf("stderr echoes the key")
			}
		})
	}
	// control: the good key starts and answers
	c := stdioClient(t, db, "NEXUS_API_KEY="+good)
	if res := callTool(t, c, "read_graph", map[string]any{}); res.IsError {
		t.Errorf("good key: %v", res.Content)
	}
}

func TestStdioConcurrentCallsLoseNothing(t *testing.T) {
	db := memtest.DSN(t)
	c1 := stdioClient(t, db)
	c2 := stdioClient(t, db) // a second process on the same file
	const perWorker = 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	acked := map[string]bool{}
	for w := 0; w < 8; w++ {
		for ci, c := range []*client.Client{c1, c2} {
			wg.Add(1)
			go func(w, ci int, c *client.Client) {
				defer wg.Done()
				for i := 0; i < perWorker; i++ {
					name := fmt.Sprintf("p%d-w%d-%d", ci, w, i)
					req := mcp.CallToolRequest{}
					req.Params.Name = "create_entities"
					req.Params.Arguments = map[string]any{"entities": []any{map[string]any{"name": name, "entityType": "t", "observations": []string{"o"}}}}
					res, err := c.CallTool(context.Background(), req)
					mu.Lock()
					switch {
					case err != nil:
						failures = append(failures, err.Error())
					case res.IsError:
						failures = append(failures, fmt.Sprint(res.Content))
					default:
						acked[name] = true
					}
					mu.Unlock()
				}
			}(w, ci, c)
		}
	}
	wg.Wait()
	for _, f := range failures {
		t.Errorf("call failed: %s", f)
	}
	got := entityNames(t, callTool(t, c1, "read_graph", map[string]any{}))
	present := map[string]bool{}
	for _, n := range got {
		present[n] = true
	}
	lost := 0
	for n := range acked {
		if !present[n] {
			lost++
		}
	}
	t.Logf("metric acked=%d", len(acked))
	t.Logf("metric acked_lost=%d", lost)
	if lost != 0 || len(acked) != 2*8*perWorker {
		t.Errorf("acked %d, lost %d; want %d acked, 0 lost", len(acked), lost, 2*8*perWorker)
	}
}

func TestImportExportRoundTrip(t *testing.T) {
	db := memtest.DSN(t)
	fixture := filepath.Join("..", "..", "testdata", "memory.jsonl")
	mustCLI(t, "--db", db, "tenants", "create", "t1")
	out := mustCLI(t, "--db", db, "import", "--tenant", "t1", fixture)
	if !strings.Contains(out, "4 entities created") || !strings.Contains(out, "3 relations created") {
		t.Errorf("import: %q", out)
	}
	again := mustCLI(t, "--db", db, "import", "--tenant", "t1", fixture)
	if !strings.Contains(again, "0 entities created, 0 observations added, 0 relations created") {
		t.Errorf("second import changed something: %q", again)
	}
	exported := filepath.Join(t.TempDir(), "out.jsonl")
	mustCLI(t, "--db", db, "export", "--tenant", "t1", exported)
	want, _ := os.ReadFile(fixture)
	got, _ := os.ReadFile(exported)
	if a, b := canonicalLines(t, want), canonicalLines(t, got); !reflect.DeepEqual(a, b) {
		t.Errorf("export differs from import:\n got %v\nwant %v", b, a)
	}
	// export of a fresh tenant after importing the export is identical again
	mustCLI(t, "--db", db, "tenants", "create", "t2")
	mustCLI(t, "--db", db, "import", "--tenant", "t2", exported)
	second := filepath.Join(t.TempDir(), "out2.jsonl")
	mustCLI(t, "--db", db, "export", "--tenant", "t2", second)
	if g2, _ := os.ReadFile(second); string(g2) != string(got) {
		t.Errorf("export → import → export is not byte-identical")
	}

	// a malformed line is reported with its number and nothing is imported
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"type":"entity","name":"ok","entityType":"t","observations":[]}`+"\n"+`{"type":"entity","name":`+"\n"), 0o600)
	mustCLI(t, "--db", db, "tenants", "create", "t3")
	_, errs, code := runCLI(t, "", "--db", db, "import", "--tenant", "t3", bad)
	if code == 0 || !strings.Contains(errs, "line 2") || !strings.Contains(errs, "nothing imported") {
		t.Errorf("bad import: exit %d, stderr %q", code, errs)
	}
	empty := filepath.Join(t.TempDir(), "t3.jsonl")
	mustCLI(t, "--db", db, "export", "--tenant", "t3", empty)
	if b, _ := os.ReadFile(empty); len(b) != 0 {
		t.Errorf("t3 has data after a failed import: %s", b)
	}
}

// canonicalLines parses JSONL into sorted canonical JSON lines.
func canonicalLines(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		c, _ := json.Marshal(v)
		out = append(out, string(c))
	}
	sort.Strings(out)
	return out
}

// TestStdioTwoAgentConversation runs the collaboration scenario over stdio:
// two agents of one tenant register, message each other, hand a project
// over, and a second tenant with the same agent and project ids sees none of it.
func TestStdioTwoAgentConversation(t *testing.T) {
	db := memtest.DSN(t)
	keys := map[string]string{}
	for _, tenant := range []string{"t1", "t2"} {
		mustCLI(t, "--db", db, "tenants", "create", tenant)
		keys[tenant] = strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", tenant))
	}
	c := stdioClient(t, db, "NEXUS_API_KEY="+keys["t1"])
	other := stdioClient(t, db, "NEXUS_API_KEY="+keys["t2"])

	scOf(t, callTool(t, c, "register_agent", map[string]any{"agentId": "planner", "name": "Planner", "capabilities": []string{"planning"}}))
	scOf(t, callTool(t, c, "register_agent", map[string]any{"agentId": "coder", "name": "Coder", "capabilities": []string{"go"}}))
	sent := scOf(t, callTool(t, c, "send_ai_message", map[string]any{"from": "planner", "to": "coder", "content": "Can you add tests?", "messageType": "query"}))
	if sent["status"] != "sent" || sent["sentCount"].(float64) != 1 {
		t.Fatalf("send_ai_message = %v", sent)
	}
	inbox := scOf(t, callTool(t, c, "get_ai_messages", map[string]any{"agentId": "coder", "markAsRead": true}))
	msgs := inbox["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["content"] != "Can you add tests?" {
		t.Fatalf("coder inbox = %v", inbox)
	}
	scOf(t, callTool(t, c, "send_ai_message", map[string]any{"from": "coder", "to": "planner", "content": "Done", "messageType": "response"}))
	scOf(t, callTool(t, c, "end_session", map[string]any{"agentId": "coder", "projectId": "nexus", "summary": "tests added",
		"openItems": []string{"benchmarks"}, "learnings": []any{map[string]any{"context": "sqlite", "lesson": "one writer"}}}))

	// the other tenant, same agent and project ids: nothing
	if got := scOf(t, callTool(t, other, "begin_session", map[string]any{"agentId": "planner", "projectId": "nexus"})); got["handoff"] != nil {
		t.Errorf("tenant t2 received t1's handoff: %v", got["handoff"])
	}
	if got := scOf(t, callTool(t, other, "get_ai_messages", map[string]any{"agentId": "planner"})); got["total"].(float64) != 0 {
		t.Errorf("tenant t2 sees t1's messages: %v", got)
	}

	opened := scOf(t, callTool(t, c, "begin_session", map[string]any{"agentId": "planner", "projectId": "nexus"}))
	h, ok := opened["handoff"].(map[string]any)
	if opened["status"] != "session_opened" || !ok || h["summary"] != "tests added" {
		t.Fatalf("begin_session = %v", opened)
	}
	ctxMsgs := opened["context"].(map[string]any)["messages"].([]any)
	if len(ctxMsgs) == 0 || ctxMsgs[0].(map[string]any)["content"] != "Done" {
		t.Errorf("planner context messages = %v, want coder's reply", ctxMsgs)
	}
	// consumed exactly once
	if again := scOf(t, callTool(t, c, "begin_session", map[string]any{"agentId": "coder", "projectId": "nexus"})); again["handoff"] != nil {
		t.Errorf("second begin_session got the handoff again: %v", again["handoff"])
	}
}
