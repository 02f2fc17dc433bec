package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// testServer is an in-process MCP server over a fresh store with tenants a and b.
type testServer struct {
	t     *testing.T
	srv   *server.MCPServer
	store *memory.Store
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	store, err := memory.Open(context.Background(), memtest.DSN(t), memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, id := range []string{"a", "b"} {
		if err := store.CreateTenant(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	h := New(Deps{Store: store})
	srv := server.NewMCPServer("test", "0", h.ServerOptions()...)
	h.Register(srv)
	return &testServer{t: t, srv: srv, store: store}
}

// asUser acts as user ("" for none) with role in tenant over an API key
// of the tenant with every scope: the identity of this package's tests.
func asUser(tenant, user, role string) context.Context {
	return tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: tenant, UserID: user, Role: role,
		APIKeyID: "key_" + tenant, AuthMethod: tenancy.AuthAPIKey, Scopes: tenancy.AllScopes})
}

// call sends tools/call through the whole mcp-go request path and returns
// the result, or fails the test on a JSON-RPC error.
func (ts *testServer) call(ctx context.Context, name string, args any) *mcp.CallToolResult {
	ts.t.Helper()
	res, rpcErr := ts.rawCall(ctx, name, args)
	if rpcErr != "" {
		ts.t.Fatalf("%s: JSON-RPC error %s", name, rpcErr)
	}
	return res
}

func (ts *testServer) rawCall(ctx context.Context, name string, args any) (*mcp.CallToolResult, string) {
	ts.t.Helper()
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": name, "arguments": args}})
	msg := ts.srv.HandleMessage(ctx, req)
	b, _ := json.Marshal(msg)
	var out struct {
		Result *mcp.CallToolResult `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		ts.t.Fatalf("%s: decode %s: %v", name, b, err)
	}
	if out.Error != nil {
		return nil, out.Error.Message
	}
	return out.Result, ""
}

// structured returns the result's structured content as generic JSON, and
// checks that the text content is the same JSON.
func structured(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	b, _ := json.Marshal(res.StructuredContent)
	var sc map[string]any
	json.Unmarshal(b, &sc)
	if len(res.Content) != 1 {
		t.Fatalf("content has %d parts, want 1", len(res.Content))
	}
	text := res.Content[0].(mcp.TextContent).Text
	var tc map[string]any
	if err := json.Unmarshal([]byte(text), &tc); err != nil {
		t.Fatalf("text content is not JSON: %q", text)
	}
	if !reflect.DeepEqual(sc, tc) {
		t.Errorf("text content %s differs from structured content %s", text, b)
	}
	if strings.Contains(text, "\n") {
		t.Errorf("text content is not compact: %q", text)
	}
	return sc
}

func errText(res *mcp.CallToolResult) string {
	if res == nil || !res.IsError || len(res.Content) == 0 {
		return ""
	}
	return res.Content[0].(mcp.TextContent).Text
}

func jsonEq(t *testing.T, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	var g any
	json.Unmarshal(gb, &g)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got %s\nwant %s", gb, want)
	}
}

func TestReferenceSemantics(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	steps := []struct {
		name    string
		ctx     context.Context
		tool    string
		args    string
		want    string // structured content, or "" when wantErr
		wantErr string
	}{
		{"create returns only new", a, "create_entities",
			`{"entities":[{"name":"Alice","entityType":"person","observations":["likes tea"]},{"name":"Bob","entityType":"person","observations":[]}]}`,
			`{"entities":[{"name":"Alice","entityType":"person","observations":["likes tea"]},{"name":"Bob","entityType":"person","observations":[]}]}`, ""},
		{"existing name skipped, not merged", a, "create_entities",
			`{"entities":[{"name":"Alice","entityType":"robot","observations":["x"]}]}`, `{"entities":[]}`, ""},
		{"relation created", a, "create_relations",
			`{"relations":[{"from":"Alice","to":"Bob","relationType":"knows"}]}`,
			`{"relations":[{"from":"Alice","to":"Bob","relationType":"knows"}]}`, ""},
		{"duplicate relation skipped", a, "create_relations",
			`{"relations":[{"from":"Alice","to":"Bob","relationType":"knows"}]}`, `{"relations":[]}`, ""},
		{"relation to missing entity", a, "create_relations",
			`{"relations":[{"from":"Alice","to":"Zed","relationType":"knows"}]}`, "", "Entity with name Zed not found"},
		{"observations added, present skipped", a, "add_observations",
			`{"observations":[{"entityName":"Alice","contents":["likes tea","plays chess"]}]}`,
			`{"results":[{"entityName":"Alice","addedObservations":["plays chess"]}]}`, ""},
		{"observations to missing entity", a, "add_observations",
			`{"observations":[{"entityName":"Bob","contents":["b1"]},{"entityName":"Nope","contents":["x"]}]}`, "", "Entity with name Nope not found"},
		{"search is case-insensitive substring", a, "search_nodes", `{"query":"CHESS"}`,
			`{"entities":[{"name":"Alice","entityType":"person","observations":["likes tea","plays chess"]}],"relations":[{"from":"Alice","to":"Bob","relationType":"knows"}]}`, ""},
		{"open returns relations touching either end", a, "open_nodes", `{"names":["Bob"]}`,
			`{"entities":[{"name":"Bob","entityType":"person","observations":[]}],"relations":[{"from":"Alice","to":"Bob","relationType":"knows"}]}`, ""},
		{"other tenant sees nothing", b, "read_graph", `{}`, `{"entities":[],"relations":[]}`, ""},
		{"other tenant cannot add to A's entity", b, "add_observations",
			`{"observations":[{"entityName":"Alice","contents":["b"]}]}`, "", "Entity with name Alice not found"},
		{"other tenant's delete is a no-op", b, "delete_entities", `{"entityNames":["Alice"]}`,
			`{"success":true,"message":"Entities deleted successfully"}`, ""},
		{"delete observation", a, "delete_observations", `{"deletions":[{"entityName":"Alice","observations":["likes tea","absent"]}]}`,
			`{"success":true,"message":"Observations deleted successfully"}`, ""},
		{"delete relation (absent ones ignored)", a, "delete_relations",
			`{"relations":[{"from":"Alice","to":"Bob","relationType":"knows"},{"from":"X","to":"Y","relationType":"z"}]}`,
			`{"success":true,"message":"Relations deleted successfully"}`, ""},
		{"graph after", a, "read_graph", `{}`,
			`{"entities":[{"name":"Alice","entityType":"person","observations":["plays chess"]},{"name":"Bob","entityType":"person","observations":[]}],"relations":[]}`, ""},
		{"delete entity cascades", a, "delete_entities", `{"entityNames":["Bob","ghost"]}`,
			`{"success":true,"message":"Entities deleted successfully"}`, ""},
		{"paged read", a, "read_graph", `{"limit":1}`,
			`{"entities":[{"name":"Alice","entityType":"person","observations":["plays chess"]}],"relations":[],"total":1}`, ""},
		{"identity argument refused", a, "read_graph", `{"tenant_id":"b"}`, "", "forbidden: tenant mismatch"},
		{"nested identity argument refused", a, "create_entities",
			`{"entities":[{"name":"N","entityType":"t","observations":[],"tenantId":"b"}]}`, "", "forbidden: tenant mismatch"},
		{"unknown argument refused", a, "read_graph", `{"bogus":1}`, "", "invalid arguments"},
		{"missing required", a, "create_entities", `{"entities":[{"name":"N"}]}`, "", "invalid arguments"},
		{"NUL in a string refused", a, "create_entities",
			`{"entities":[{"name":"N\u0000","entityType":"t","observations":[]}]}`, "", "invalid arguments: text must not contain the NUL"},
		{"NUL in an observation refused", a, "add_observations",
			`{"observations":[{"entityName":"Alice","contents":["x\u0000y"]}]}`, "", "invalid arguments: text must not contain the NUL"},
		{"over-long name refused", a, "create_entities",
			`{"entities":[{"name":"` + strings.Repeat("n", 513) + `","entityType":"t","observations":[]}]}`, "", "invalid arguments"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var args any
			if err := json.Unmarshal([]byte(st.args), &args); err != nil {
				t.Fatal(err)
			}
			res := ts.call(st.ctx, st.tool, args)
			if st.wantErr != "" {
				if got := errText(res); !strings.HasPrefix(got, st.wantErr) {
					t.Fatalf("%s(%s) error = %q, want prefix %q", st.tool, st.args, got, st.wantErr)
				}
				return
			}
			if res.IsError {
				t.Fatalf("%s(%s) isError: %s", st.tool, st.args, errText(res))
			}
			jsonEq(t, structured(t, res), st.want)
		})
	}
	// refused calls wrote nothing
	g, _ := ts.store.ReadGraph(a, memory.Page{})
	if len(g.Entities) != 1 || g.Entities[0].Name != "Alice" {
		t.Errorf("A's graph after the run = %+v, want only Alice", g.Entities)
	}
}

func TestPanicIsSanitized(t *testing.T) {
	ts := newTestServer(t)
	h := New(Deps{})
	ts.srv.AddTool(mcp.NewTool("boom", mcp.WithDescription("panics")), h.recoverMiddleware(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		panic("secret panic text")
	}))
	_, rpcErr := ts.rawCall(asUser("a", "", ""), "boom", map[string]any{})
	if !strings.HasPrefix(rpcErr, "internal error (ref ") || strings.Contains(rpcErr, "secret") {
		t.Errorf("panic answered %q, want a sanitized internal error", rpcErr)
	}
	// control: the server still answers
	if res := ts.call(asUser("a", "", ""), "read_graph", map[string]any{}); res.IsError {
		t.Errorf("read_graph after panic: %s", errText(res))
	}
}

func TestNoTenantIsInternalError(t *testing.T) {
	ts := newTestServer(t)
	_, rpcErr := ts.rawCall(context.Background(), "read_graph", map[string]any{})
	if !strings.HasPrefix(rpcErr, "internal error (ref ") {
		t.Errorf("call without tenant = %q, want internal error", rpcErr)
	}
	if _, rpcErr := ts.rawCall(asUser("a", "", ""), "read_graph", map[string]any{}); rpcErr != "" {
		t.Errorf("control with tenant: %s", rpcErr)
	}
}

func TestReadGraphBudget(t *testing.T) {
	ts := newTestServer(t)
	a := asUser("a", "", "")
	var ents []map[string]any
	for i := 0; i < 200; i++ {
		ents = append(ents, map[string]any{"name": fmt.Sprintf("e%03d", i), "entityType": "t", "observations": []string{strings.Repeat("o", 1000)}})
	}
	for i := 0; i < len(ents); i += 50 { // within MaxWriteBytes per call
		if res := ts.call(a, "create_entities", map[string]any{"entities": ents[i : i+50]}); res.IsError {
			t.Fatalf("create_entities: %s", errText(res))
		}
	}
	h := New(Deps{Store: ts.store, GraphBudget: 50_000})
	small := server.NewMCPServer("t", "0", h.ServerOptions()...)
	h.Register(small)
	ts2 := &testServer{t: t, srv: small, store: ts.store}
	res := ts2.call(a, "read_graph", map[string]any{})
	sc := structured(t, res)
	b, _ := json.Marshal(res)
	if len(b) > 50_000 {
		t.Errorf("read_graph answer is %d bytes, budget 50000", len(b))
	}
	if sc["truncated"] != true || sc["total"].(float64) != 200 || sc["nextOffset"].(float64) != float64(len(sc["entities"].([]any))) {
		t.Errorf("truncated answer = truncated %v total %v nextOffset %v entities %d", sc["truncated"], sc["total"], sc["nextOffset"], len(sc["entities"].([]any)))
	}
	// control: the default budget answers everything in one message
	full := structured(t, ts.call(a, "read_graph", map[string]any{}))
	if len(full["entities"].([]any)) != 200 || full["truncated"] != nil {
		t.Errorf("default budget: %d entities, truncated %v", len(full["entities"].([]any)), full["truncated"])
	}
}
