package tools

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// testClock is the injectable clock of this package's tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// trustServer is an in-process MCP server over a fresh store with tenants
// a and b, agents agent-a, agent-b and agent-c registered by a, agent-x
// by b, and a shared clock.
type trustServer struct {
	t     *testing.T
	srv   *server.MCPServer
	store *memory.Store
	clock *testClock
}

func newTrustServer(t *testing.T, deps Deps) *trustServer {
	t.Helper()
	clock := &testClock{t: time.Date(2032, 3, 4, 5, 6, 7, 0, time.UTC)}
	store, err := memory.Open(context.Background(), memtest.DSN(t), memory.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, id := range []string{"a", "b"} {
		if err := store.CreateTenant(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, reg := range []struct{ tenant, agent string }{{"a", "agent-a"}, {"a", "agent-b"}, {"a", "agent-c"}, {"b", "agent-x"}} {
		if _, _, err := store.RegisterAgent(asUser(reg.tenant, "", ""), memory.AgentRegistration{ID: reg.agent, Name: reg.agent}); err != nil {
			t.Fatal(err)
		}
	}
	deps.Store, deps.Now = store, clock.Now
	h := New(deps)
	srv := server.NewMCPServer("test", "0", h.ServerOptions()...)
	h.Register(srv)
	return &trustServer{t: t, srv: srv, store: store, clock: clock}
}

// withTrust adds an EATP trust context to ctx, as the middleware does.
func withTrust(ctx context.Context, tc delegation.TrustContext) context.Context {
	return delegation.NewContext(ctx, tc)
}

// do calls a tool through mcp-go's request path; it returns the structured
// content (nil on isError), the error text ("" unless isError) and the raw
// result text.
func (ts *trustServer) do(ctx context.Context, tool string, args any) (map[string]any, string) {
	ts.t.Helper()
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": args}})
	b, _ := json.Marshal(ts.srv.HandleMessage(ctx, req))
	var out struct {
		Result *mcp.CallToolResult `json:"result"`
		Error  *struct{ Message string }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		ts.t.Fatalf("%s: decode %s: %v", tool, b, err)
	}
	if out.Error != nil {
		ts.t.Fatalf("%s: JSON-RPC error %s", tool, out.Error.Message)
	}
	text := out.Result.Content[0].(mcp.TextContent).Text
	if out.Result.IsError {
		return nil, text
	}
	var sc map[string]any
	if err := json.Unmarshal([]byte(text), &sc); err != nil {
		ts.t.Fatalf("%s: result is not JSON: %s", tool, text)
	}
	return sc, ""
}

// must calls a tool that must succeed.
func (ts *trustServer) must(ctx context.Context, tool string, args any) map[string]any {
	ts.t.Helper()
	sc, errText := ts.do(ctx, tool, args)
	if errText != "" {
		ts.t.Fatalf("%s(%v): %s", tool, args, errText)
	}
	return sc
}

func (ts *trustServer) auditCount(tenant string) int {
	ts.t.Helper()
	_, total, err := ts.store.AuditLog(asUser(tenant, "", ""), memory.AuditFilter{})
	if err != nil {
		ts.t.Fatal(err)
	}
	return total
}

var traceIDPattern = regexp.MustCompile(`^eatp-mcp-[0-9a-f]{16}$`)

func TestPrepareAgentCall(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	alice := asUser("a", "alice", "")
	if err := ts.store.SetMember(context.Background(), "a", tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "a", UserID: "root"}, "admin"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ctx     context.Context
		args    map[string]any
		wantErr string
	}{
		{name: "valid", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "read_graph"}},
		{name: "blank calling agent", ctx: alice, args: map[string]any{"calling_agent": " ", "target_agent": "agent-b", "tool_name": "t"}, wantErr: "calling_agent must not be blank"},
		{name: "blank tool", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": ""}, wantErr: "tool_name must not be blank"},
		{name: "self-call", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-a", "tool_name": "t"}, wantErr: "an agent cannot call itself"},
		{name: "unregistered calling agent", ctx: alice, args: map[string]any{"calling_agent": "ghost", "target_agent": "agent-b", "tool_name": "t"}, wantErr: "not an agent registered by your tenant"},
		{name: "other tenant's agent as caller", ctx: alice, args: map[string]any{"calling_agent": "agent-x", "target_agent": "agent-b", "tool_name": "t"}, wantErr: "not an agent registered by your tenant"},
		{name: "control characters", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b\r\nX-Evil: 1", "tool_name": "t"}, wantErr: "contains control or invisible characters"},
		{name: "ttl too long", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "t", "ttl_seconds": 86401}, wantErr: "ttl_seconds"},
		{name: "human origin naming another user", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "t",
			"human_origin": map[string]any{"user_id": "bob"}}, wantErr: "forbidden"},
		{name: "admin may name another user", ctx: asUser("a", "root", ""), args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "t",
			"human_origin": map[string]any{"user_id": "bob"}}},
		{name: "human origin naming another tenant", ctx: alice, args: map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "t",
			"human_origin": map[string]any{"tenant_id": "b"}}, wantErr: "forbidden: tenant mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, errText := ts.do(tc.ctx, "prepare_agent_call", tc.args)
			if tc.wantErr != "" {
				if !strings.Contains(errText, tc.wantErr) {
					t.Fatalf("prepare_agent_call(%v) error = %q, want %q", tc.args, errText, tc.wantErr)
				}
				return
			}
			if errText != "" {
				t.Fatalf("prepare_agent_call(%v): %s", tc.args, errText)
			}
			headers, _ := sc["headers"].(map[string]any)
			if !traceIDPattern.MatchString(sc["eatp_trace_id"].(string)) || sc["delegation_id"] == "" ||
				headers[delegation.HeaderTraceID] != sc["eatp_trace_id"] || headers[delegation.HeaderAgentID] != "agent-b" ||
				headers[delegation.HeaderDelegationChain] != `["agent-a"]` || headers[delegation.HeaderDelegationDepth] != "1" {
				t.Errorf("prepare_agent_call = %v, want trace id, delegation id and forwardable headers", sc)
			}
			if caps, _ := sc["delegated_capabilities"].([]any); len(caps) != 1 || caps[0] != tc.args["tool_name"] {
				t.Errorf("delegated_capabilities = %v, want [%v]", sc["delegated_capabilities"], tc.args["tool_name"])
			}
			// The headers round-trip through Extract.
			h := http.Header{}
			for k, v := range headers {
				h.Set(k, v.(string))
			}
			got, warnings := delegation.Extract(h, nil)
			if len(warnings) > 0 || got.AgentID != "agent-b" || len(got.Chain) != 1 {
				t.Errorf("Extract(headers) = %+v, %v", got, warnings)
			}
		})
	}
	t.Run("default human origin is the caller", func(t *testing.T) {
		sc := ts.must(alice, "prepare_agent_call", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "t"})
		if ho, _ := sc["human_origin"].(map[string]any); ho["user_id"] != "alice" {
			t.Errorf("human_origin = %v, want user_id alice", sc["human_origin"])
		}
	})
}

// TestTighteningUnderInheritedDelegation prepares a delegation a -> b, then
// acts as agent-b under its trace and prepares b -> c: constraints may only
// narrow, and the chain and expiry are inherited.
func TestTighteningUnderInheritedDelegation(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	alice := asUser("a", "alice", "")
	parent := ts.must(alice, "prepare_agent_call", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b",
		"tool_name": "prepare_agent_call", "ttl_seconds": 600,
		"constraints": map[string]any{"max_cost": 10, "regions": []any{"eu", "us"}, "scope": "department:finance",
			"can_delete": false, "expires_at": "2032-03-04T06:00:00Z"}})
	asB := withTrust(alice, delegation.TrustContext{TraceID: parent["eatp_trace_id"].(string), AgentID: "agent-b",
		Chain: []string{"agent-a"}, Depth: 1, HasDepth: true})
	tests := []struct {
		name        string
		constraints map[string]any
		wantKey     string // the key a refusal names; "" to accept
	}{
		{"inherit everything", nil, ""},
		{"narrower number", map[string]any{"max_cost": 5}, ""},
		{"subset array", map[string]any{"regions": []any{"eu"}}, ""},
		{"narrower scope", map[string]any{"scope": "department:finance:payroll"}, ""},
		{"earlier expiry", map[string]any{"expires_at": "2032-03-04T05:30:00Z"}, ""},
		{"new restriction", map[string]any{"max_rows": 100}, ""},
		{"number grows", map[string]any{"max_cost": 11}, "max_cost"},
		{"array superset", map[string]any{"regions": []any{"eu", "ap"}}, "regions"},
		{"other scope", map[string]any{"scope": "department:hr"}, "scope"},
		{"false becomes true", map[string]any{"can_delete": true}, "can_delete"},
		{"dropped key", map[string]any{"scope": nil}, "scope"},
		{"later expiry", map[string]any{"expires_at": "2032-03-05T00:00:00Z"}, "expires_at"},
		{"type change", map[string]any{"max_cost": "10"}, "max_cost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := map[string]any{"calling_agent": "agent-b", "target_agent": "agent-c", "tool_name": "read_graph", "ttl_seconds": 3600}
			if tc.constraints != nil {
				args["constraints"] = tc.constraints
			}
			sc, errText := ts.do(asB, "prepare_agent_call", args)
			if tc.wantKey != "" {
				if !strings.Contains(errText, `"`+tc.wantKey+`"`) || !strings.Contains(errText, "widens") {
					t.Fatalf("widening %v: error %q, want a refusal naming %q", tc.constraints, errText, tc.wantKey)
				}
				return
			}
			if errText != "" {
				t.Fatalf("narrowing %v refused: %s", tc.constraints, errText)
			}
			got := sc["constraints"].(map[string]any)
			for k := range map[string]bool{"max_cost": true, "regions": true, "scope": true, "can_delete": true} {
				if _, ok := got[k]; !ok {
					t.Errorf("constraints %v lost inherited key %q", got, k)
				}
			}
			headers := sc["headers"].(map[string]any)
			if headers[delegation.HeaderDelegationChain] != `["agent-a","agent-b"]` || headers[delegation.HeaderDelegationDepth] != "2" {
				t.Errorf("chain headers = %v / %v, want [agent-a agent-b] at depth 2",
					headers[delegation.HeaderDelegationChain], headers[delegation.HeaderDelegationDepth])
			}
			if sc["expires_at"] != parent["expires_at"] {
				t.Errorf("child expires_at %v, want the parent's %v (it cannot outlive it)", sc["expires_at"], parent["expires_at"])
			}
			d, err := ts.store.Delegation(alice, sc["delegation_id"].(string))
			if err != nil || d.ParentID != parent["delegation_id"] {
				t.Errorf("child parent_id = %q (%v), want %v", d.ParentID, err, parent["delegation_id"])
			}
		})
	}
	refusals := []struct {
		name, calling, target, want string
	}{
		{"acting as another agent than the trust context's", "agent-a", "agent-c", "trust context"},
		{"loop back to an agent in the chain", "agent-b", "agent-a", "invalid delegation chain"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, errText := ts.do(asB, "prepare_agent_call", map[string]any{"calling_agent": tc.calling, "target_agent": tc.target, "tool_name": "t"})
			if !strings.Contains(errText, tc.want) {
				t.Errorf("error = %q, want %q", errText, tc.want)
			}
		})
	}
	t.Run("revoked parent refuses", func(t *testing.T) {
		ts.must(alice, "revoke_delegation", map[string]any{"delegation_id": parent["delegation_id"]})
		_, errText := ts.do(asB, "prepare_agent_call", map[string]any{"calling_agent": "agent-b", "target_agent": "agent-c", "tool_name": "t"})
		if !strings.Contains(errText, "revoked") {
			t.Errorf("error = %q, want revoked", errText)
		}
	})
}

func TestVerifyHistoryRevoke(t *testing.T) {
	ts := newTrustServer(t, Deps{})
	alice := asUser("a", "alice", "")
	prep := func(caller, target string) map[string]any {
		return ts.must(alice, "prepare_agent_call", map[string]any{"calling_agent": caller, "target_agent": target, "tool_name": "read_graph"})
	}
	okResponse := map[string]any{"content": []any{map[string]any{"type": "text", "text": "{}"}}, "isError": false}

	d1 := prep("agent-a", "agent-b")
	t.Run("verify a good response", func(t *testing.T) {
		sc := ts.must(alice, "verify_agent_response", map[string]any{"delegation_id": d1["delegation_id"], "response": okResponse})
		if sc["valid"] != true || sc["status"] != delegation.StatusCompleted {
			t.Errorf("verify = %v, want valid and completed", sc)
		}
	})
	t.Run("verify twice", func(t *testing.T) {
		sc := ts.must(alice, "verify_agent_response", map[string]any{"delegation_id": d1["delegation_id"], "response": okResponse})
		if sc["valid"] != false || len(sc["reasons"].([]any)) == 0 {
			t.Errorf("second verify = %v, want invalid with a reason", sc)
		}
	})
	d2 := prep("agent-a", "agent-c")
	t.Run("verify an error response", func(t *testing.T) {
		sc := ts.must(alice, "verify_agent_response", map[string]any{"delegation_id": d2["delegation_id"],
			"response": map[string]any{"error": map[string]any{"code": -32603, "message": "boom"}}})
		if sc["valid"] != false || sc["status"] != delegation.StatusFailed {
			t.Errorf("verify = %v, want invalid and failed", sc)
		}
	})
	d3 := prep("agent-b", "agent-c")
	t.Run("verify an expired delegation", func(t *testing.T) {
		ts.clock.Advance(2 * time.Hour)
		sc := ts.must(alice, "verify_agent_response", map[string]any{"delegation_id": d3["delegation_id"], "response": okResponse})
		if sc["valid"] != false || !strings.Contains(strings.Join(toStrings(sc["reasons"]), " "), "expired") {
			t.Errorf("verify = %v, want invalid: expired", sc)
		}
	})
	t.Run("history", func(t *testing.T) {
		sc := ts.must(alice, "get_delegation_history", map[string]any{})
		rows := sc["delegations"].([]any)
		if sc["total"] != float64(3) || len(rows) != 3 {
			t.Fatalf("history = %v, want 3 rows", sc)
		}
		var statuses []string
		for _, r := range rows {
			statuses = append(statuses, r.(map[string]any)["status"].(string))
		}
		if got, want := strings.Join(statuses, ","), "expired,failed,completed"; got != want {
			t.Errorf("statuses newest first = %s, want %s", got, want)
		}
		if f := ts.must(alice, "get_delegation_history", map[string]any{"target_agent": "agent-c", "limit": 1}); f["total"] != float64(2) || len(f["delegations"].([]any)) != 1 {
			t.Errorf("filtered page = %v, want 1 row of 2", f)
		}
		if _, errText := ts.do(alice, "get_delegation_history", map[string]any{"since": "yesterday"}); !strings.Contains(errText, "RFC 3339") {
			t.Errorf("bad since: %q", errText)
		}
	})
	t.Run("revoke cascades", func(t *testing.T) {
		root := prep("agent-a", "agent-b")
		asB := withTrust(alice, delegation.TrustContext{TraceID: root["eatp_trace_id"].(string), AgentID: "agent-b", Chain: []string{"agent-a"}})
		child := ts.must(asB, "prepare_agent_call", map[string]any{"calling_agent": "agent-b", "target_agent": "agent-c", "tool_name": "t"})
		sc := ts.must(alice, "revoke_delegation", map[string]any{"delegation_id": root["delegation_id"], "reason": "test"})
		if sc["revoked"] != float64(2) {
			t.Errorf("revoke_delegation = %v, want 2 revoked", sc)
		}
		v := ts.must(alice, "verify_agent_response", map[string]any{"delegation_id": child["delegation_id"], "response": okResponse})
		if v["valid"] != false || !strings.Contains(strings.Join(toStrings(v["reasons"]), " "), "revoked") {
			t.Errorf("verify of the revoked child = %v, want invalid: revoked", v)
		}
	})
	t.Run("other tenant's id is not found, like a random one", func(t *testing.T) {
		bob := asUser("b", "bob", "")
		const random = "dlg_0123456789abcdef0123456789abcdef"
		for _, tool := range []string{"revoke_delegation", "verify_agent_response"} {
			args := func(id any) map[string]any {
				a := map[string]any{"delegation_id": id}
				if tool == "verify_agent_response" {
					a["response"] = okResponse
				}
				return a
			}
			scB, errB := ts.do(bob, tool, args(d2["delegation_id"]))
			scR, errR := ts.do(bob, tool, args(random))
			if errB != strings.ReplaceAll(errR, random, d2["delegation_id"].(string)) {
				t.Errorf("%s: B on A's id = %q, on a random id = %q", tool, errB, errR)
			}
			if scB != nil {
				scB["delegation_id"], scR["delegation_id"] = "", ""
				b1, _ := json.Marshal(scB)
				b2, _ := json.Marshal(scR)
				if string(b1) != string(b2) || scB["valid"] != false {
					t.Errorf("%s: B on A's id = %s, on a random id = %s", tool, b1, b2)
				}
			}
		}
		if h := ts.must(bob, "get_delegation_history", map[string]any{}); h["total"] != float64(0) {
			t.Errorf("B's history = %v, want empty", h)
		}
		if d, _ := ts.store.Delegation(alice, d2["delegation_id"].(string)); d.Status != delegation.StatusFailed {
			t.Errorf("A's delegation after B's attempts: %q, want failed (unchanged)", d.Status)
		}
	})
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

// fakeAgent is an MCP server on loopback standing in for a target agent:
// one tool "echo", with the EATP headers and signature of every request
// checked against key.
type fakeAgent struct {
	srv      *httptest.Server
	conns    atomic.Int64
	mu       sync.Mutex
	requests []http.Header
	badSigs  int
}

func newFakeAgent(t *testing.T, key *delegation.TrustKey) *fakeAgent {
	t.Helper()
	fa := &fakeAgent{}
	s := server.NewMCPServer("target", "0")
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("echo: " + req.GetString("text", "")), nil
	})
	mcpHandler := server.NewStreamableHTTPServer(s)
	fa.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fa.mu.Lock()
		fa.requests = append(fa.requests, r.Header.Clone())
		if key != nil {
			tc, _ := delegation.Extract(r.Header, nil)
			if delegation.VerifySignature(*key, r.Method, r.URL.Path, r.Header, tc.Signature) != nil {
				fa.badSigs++
			}
		}
		fa.mu.Unlock()
		mcpHandler.ServeHTTP(w, r)
	}))
	fa.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			fa.conns.Add(1)
		}
	}
	fa.srv.Start()
	t.Cleanup(fa.srv.Close)
	return fa
}

func TestCallAgentTool(t *testing.T) {
	key, err := delegation.NewTrustKey(delegation.AlgHMACSHA256)
	if err != nil {
		t.Fatal(err)
	}
	fa := newFakeAgent(t, &key)
	host := strings.TrimPrefix(fa.srv.URL, "http://")
	alice := asUser("a", "alice", "")
	setup := func(ts *trustServer) {
		t.Helper()
		if _, _, err := ts.store.RegisterAgent(alice, memory.AgentRegistration{ID: "agent-b", Name: "b", Endpoint: fa.srv.URL + "/mcp"}); err != nil {
			t.Fatal(err)
		}
		if err := ts.store.ImportTrustKey(context.Background(), "a", key); err != nil {
			t.Fatal(err)
		}
		if err := ts.store.SetAgentCredential(context.Background(), "a", "agent-b", "secret-credential-value"); err != nil {
			t.Fatal(err)
		}
	}
	args := map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b", "tool_name": "echo",
		"arguments": map[string]any{"text": "hi"}, "constraints": map[string]any{"max_cost": 3}}

	t.Run("disallowed host is refused before any connection", func(t *testing.T) {
		for _, hosts := range [][]string{nil, {"example.com"}, {"127.0.0.2"}} {
			ts := newTrustServer(t, Deps{A2AAllowHosts: hosts})
			setup(ts)
			before := fa.conns.Load()
			_, errText := ts.do(alice, "call_agent_tool", args)
			if !strings.Contains(errText, "not allowed") {
				t.Errorf("allow %v: error %q, want not allowed", hosts, errText)
			}
			if got := fa.conns.Load() - before; got != 0 {
				t.Errorf("allow %v: %d connections reached the target, want 0", hosts, got)
			}
			if h, _, _ := ts.store.DelegationHistory(alice, memory.DelegationFilter{}); len(h) != 0 {
				t.Errorf("allow %v: a delegation was recorded for a refused call", hosts)
			}
			rows, _, _ := ts.store.AuditLog(alice, memory.AuditFilter{Limit: 1})
			if len(rows) != 1 || rows[0].Event.Outcome != memory.OutcomeDenied {
				t.Errorf("allow %v: audit = %+v, want one denial row", hosts, rows)
			}
		}
	})
	t.Run("allowed host: signed call, verified and recorded", func(t *testing.T) {
		ts := newTrustServer(t, Deps{A2AAllowHosts: []string{host}})
		setup(ts)
		fa.mu.Lock()
		fa.requests, fa.badSigs = nil, 0
		fa.mu.Unlock()
		sc := ts.must(alice, "call_agent_tool", args)
		if sc["valid"] != true {
			t.Fatalf("call_agent_tool = %v, want valid", sc)
		}
		b, _ := json.Marshal(sc["result"])
		if !strings.Contains(string(b), "echo: hi") {
			t.Errorf("result = %s, want the target's echo", b)
		}
		if strings.Contains(string(mustJSON(t, sc)), "secret-credential-value") {
			t.Error("the outbound credential appears in the result")
		}
		fa.mu.Lock()
		reqs, bad := fa.requests, fa.badSigs
		fa.mu.Unlock()
		if len(reqs) == 0 || bad != 0 {
			t.Fatalf("target saw %d requests, %d with a bad signature; want >0 and 0", len(reqs), bad)
		}
		for _, h := range reqs {
			tc, _ := delegation.Extract(h, nil)
			if tc.TraceID != sc["eatp_trace_id"] || tc.AgentID != "agent-b" || len(tc.Chain) != 1 || tc.Chain[0] != "agent-a" ||
				h.Get("Authorization") != "Bearer secret-credential-value" {
				t.Errorf("target request headers: trust %+v, authorization present %v", tc, h.Get("Authorization") != "")
			}
		}
		d, err := ts.store.Delegation(alice, sc["delegation_id"].(string))
		if err != nil || d.Status != delegation.StatusCompleted || d.ResponseHash == "" {
			t.Errorf("delegation after the call = %+v, %v; want completed with a response hash", d, err)
		}
		rows, _, _ := ts.store.AuditLog(alice, memory.AuditFilter{})
		var actions []string
		for _, r := range rows {
			actions = append(actions, r.Event.Action)
		}
		if strings.Join(actions, ",") != "delegation.verify,delegation.prepare" {
			t.Errorf("audit actions (newest first) = %v, want verify, prepare", actions)
		}
	})
	t.Run("unreachable target is recorded as failed", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		ts := newTrustServer(t, Deps{A2AAllowHosts: []string{addr}, A2ATimeout: 5 * time.Second})
		if _, _, err := ts.store.RegisterAgent(alice, memory.AgentRegistration{ID: "agent-b", Name: "b", Endpoint: "http://" + addr + "/mcp"}); err != nil {
			t.Fatal(err)
		}
		_, errText := ts.do(alice, "call_agent_tool", args)
		if !strings.Contains(errText, "could not be reached") {
			t.Fatalf("error = %q, want could not be reached", errText)
		}
		h, _, _ := ts.store.DelegationHistory(alice, memory.DelegationFilter{})
		if len(h) != 1 || h[0].Status != delegation.StatusFailed {
			t.Errorf("delegations = %+v, want one failed", h)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
