package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// startRelayServer serves store on ln with the serve flags args.
func startRelayServer(t *testing.T, store *memory.Store, ln net.Listener, args ...string) *httpEnv {
	t.Helper()
	return startHTTP(t, httpTestOpts{store: store, ln: ln, args: args})
}

// newRelayStore opens a database with tenant.
func newRelayStore(t *testing.T, tenant string) *memory.Store {
	t.Helper()
	store, err := memory.Open(context.Background(), memtest.DSN(t), memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateTenant(context.Background(), tenant, ""); err != nil {
		t.Fatal(err)
	}
	return store
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// relayClient is an mcp-go streamable HTTP client with fixed headers.
func relayClient(t *testing.T, url string, headers map[string]string) (*client.Client, error) {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(headers), transport.WithHTTPTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "relay-test", Version: "0"}
	if _, err := c.Initialize(ctx, req); err != nil {
		return nil, err
	}
	return c, nil
}

func relayCall(t *testing.T, c *client.Client, tool string, args map[string]any) (map[string]any, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = tool, args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	text := res.Content[0].(mcp.TextContent).Text
	if res.IsError {
		return nil, text
	}
	var sc map[string]any
	if err := json.Unmarshal([]byte(text), &sc); err != nil {
		t.Fatalf("%s: result is not JSON: %s", tool, text)
	}
	return sc, ""
}

func actAs(tenant string) context.Context {
	return tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: tenant, AuthMethod: tenancy.AuthLocal, Scopes: tenancy.AllScopes})
}

func auditOf(t *testing.T, s *memory.Store, tenant string) []delegation.ChainedEvent {
	t.Helper()
	rows, _, err := s.AuditLog(actAs(tenant), memory.AuditFilter{Limit: memory.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]delegation.ChainedEvent, len(rows))
	for i, r := range rows {
		out[i] = r.ChainedEvent
	}
	return out
}

// TestRelayEndToEnd runs two nexus-mcp HTTP servers with different
// databases on loopback. The second (tenant t2) is in enforcing mode with
// an HMAC trust key; the first (tenant t1) holds the same key, the agent
// registry with agent-b's endpoint on the second server, and a credential
// for it. call_agent_tool on the first reaches the second, which verifies
// the EATP headers and signature, runs the tool and audits it; the first
// audits the delegation. A host outside --a2a-allow-hosts is refused before
// any connection.
func TestRelayEndToEnd(t *testing.T) {
	bg := context.Background()

	// Server 2: the target agent's nexus-mcp.
	store2 := newRelayStore(t, "t2")
	for _, id := range []string{"agent-a", "agent-b"} { // both must be known for chain verification
		if _, _, err := store2.RegisterAgent(actAs("t2"), memory.AgentRegistration{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := store2.CreateTrustKey(bg, "t2", delegation.AlgHMACSHA256)
	if err != nil {
		t.Fatal(err)
	}
	relayKey, _, err := store2.CreateAPIKey(bg, memory.NewKey{TenantID: "t2", UserID: "relay-from-t1"})
	if err != nil {
		t.Fatal(err)
	}
	// The relay forwards alice's human origin: naming a user other than
	// its own needs an admin membership in t2 (as the argument would).
	if err := store2.SetMember(bg, "t2", tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "t2", UserID: "relay-from-t1"}, "admin"); err != nil {
		t.Fatal(err)
	}
	ln2 := listenLoopback(t)
	srv2 := startRelayServer(t, store2, ln2, "--eatp-mode=enforcing")

	// A listener outside the allow-list that counts connections.
	forbidden := listenLoopback(t)
	var forbiddenConns atomic.Int64
	go func() {
		for {
			c, err := forbidden.Accept()
			if err != nil {
				return
			}
			forbiddenConns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { forbidden.Close() })

	// Server 1: the caller's nexus-mcp.
	store1 := newRelayStore(t, "t1")
	for _, reg := range []memory.AgentRegistration{
		{ID: "agent-a", Name: "caller"},
		{ID: "agent-b", Name: "target", Endpoint: srv2.url},
		{ID: "agent-c", Name: "elsewhere", Endpoint: "http://" + forbidden.Addr().String() + "/mcp"},
	} {
		if _, _, err := store1.RegisterAgent(actAs("t1"), reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := store1.ImportTrustKey(bg, "t1", key); err != nil {
		t.Fatal(err)
	}
	if err := store1.SetAgentCredential(bg, "t1", "agent-b", relayKey); err != nil {
		t.Fatal(err)
	}
	userKey, _, err := store1.CreateAPIKey(bg, memory.NewKey{TenantID: "t1", UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	srv1 := startRelayServer(t, store1, listenLoopback(t), "--a2a-allow-hosts="+srv2.host)

	c1, err := relayClient(t, srv1.url, map[string]string{"Authorization": "Bearer " + userKey})
	if err != nil {
		t.Fatalf("connect to server 1: %v", err)
	}
	canary := "relay-canary-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")

	var traceID string
	t.Run("call_agent_tool reaches the enforcing server", func(t *testing.T) {
		sc, errText := relayCall(t, c1, "call_agent_tool", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-b",
			"tool_name": "create_entities", "constraints": map[string]any{"max_cost": 5},
			"arguments": map[string]any{"entities": []any{map[string]any{"name": canary, "entityType": "relay", "observations": []any{}}}}})
		if errText != "" {
			t.Fatalf("call_agent_tool: %s", errText)
		}
		traceID, _ = sc["eatp_trace_id"].(string)
		b, _ := json.Marshal(sc["result"])
		if sc["valid"] != true || !strings.Contains(string(b), canary) {
			t.Fatalf("call_agent_tool = %v, want valid with the target's create_entities result", sc)
		}
		if strings.Contains(string(b), relayKey) {
			t.Error("the outbound credential appears in the result")
		}
		g, err := store2.OpenNodes(actAs("t2"), []string{canary}, memory.Page{})
		if err != nil || len(g.Entities) != 1 {
			t.Errorf("server 2 graph holds %d entities named %s (%v), want 1", len(g.Entities), canary, err)
		}
	})
	t.Run("target audited the delegated call", func(t *testing.T) {
		var found bool
		for _, e := range auditOf(t, store2, "t2") {
			if e.Event.Tool == "create_entities" && e.Event.TraceID == traceID && e.Event.AgentID == "agent-b" &&
				e.Event.Outcome == memory.OutcomeOK && e.Event.UserID == "relay-from-t1" && strings.Contains(e.Event.Detail, "agent-a") {
				found = true
			}
		}
		for _, e := range auditOf(t, store2, "t2") {
			if e.Event.Outcome == memory.OutcomeDenied {
				t.Errorf("server 2 refused a request of the relay: %+v", e.Event)
			}
		}
		if !found {
			t.Errorf("server 2 audit has no create_entities row for trace %s by agent-b under agent-a: %+v", traceID, auditOf(t, store2, "t2"))
		}
	})
	t.Run("caller audited the delegation", func(t *testing.T) {
		var actions []string
		for _, e := range auditOf(t, store1, "t1") {
			if e.Event.TraceID == traceID {
				actions = append(actions, e.Event.Action+"/"+e.Event.Outcome)
			}
		}
		if strings.Join(actions, ",") != "delegation.verify/ok,delegation.prepare/ok" {
			t.Errorf("server 1 audit rows for trace %s = %v, want verify/ok, prepare/ok", traceID, actions)
		}
		d, err := store1.DelegationRecordByTrace(actAs("t1"), traceID)
		if err != nil || d.Status != delegation.StatusCompleted {
			t.Errorf("server 1 delegation = %+v, %v; want completed", d, err)
		}
	})
	t.Run("the target refuses bad and missing signatures", func(t *testing.T) {
		before := len(auditOf(t, store2, "t2"))
		h := delegation.ToHeaders(delegation.TrustContext{TraceID: "eatp-mcp-00000000000000ab", AgentID: "agent-b",
			Chain: []string{"agent-a"}, Depth: 1, HasDepth: true})
		good, err := delegation.Sign(key, http.MethodPost, "/mcp", h)
		if err != nil {
			t.Fatal(err)
		}
		headers := func(sig string) map[string]string {
			m := map[string]string{"Authorization": "Bearer " + relayKey}
			for k := range h {
				m[k] = h.Get(k)
			}
			if sig != "" {
				m[delegation.HeaderSignature] = sig
			}
			return m
		}
		tampered := []byte(good)
		tampered[0] ^= 1
		if tampered[0] == '-' || tampered[0] == '_' || tampered[0] > 'z' {
			tampered[0] = 'A'
		}
		for _, tc := range []struct {
			name string
			sig  string
			ok   bool
		}{
			{"valid signature (control)", good, true},
			{"missing signature", "", false},
			{"tampered signature", string(tampered), false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := relayClient(t, srv2.url, headers(tc.sig))
				if (err == nil) != tc.ok {
					t.Errorf("initialize with %s: err = %v, want ok %v", tc.name, err, tc.ok)
				}
			})
		}
		var denied int
		for _, e := range auditOf(t, store2, "t2")[:len(auditOf(t, store2, "t2"))-before] {
			if e.Event.Action == "trust.denied" && e.Event.Outcome == memory.OutcomeDenied && strings.Contains(e.Event.Detail, "403") {
				denied++
			}
		}
		if denied < 2 {
			t.Errorf("server 2 wrote %d trust denial rows, want at least 2 (one per refused request; the client's protocol probe adds one each)", denied)
		}
	})
	t.Run("disallowed host is refused before any connection", func(t *testing.T) {
		_, errText := relayCall(t, c1, "call_agent_tool", map[string]any{"calling_agent": "agent-a", "target_agent": "agent-c",
			"tool_name": "read_graph", "arguments": map[string]any{}})
		if !strings.Contains(errText, "not allowed") {
			t.Errorf("call_agent_tool to a disallowed host: %q, want refused", errText)
		}
		if n := forbiddenConns.Load(); n != 0 {
			t.Errorf("the disallowed host received %d connections, want 0", n)
		}
		rows := auditOf(t, store1, "t1")
		if rows[0].Event.Tool != "call_agent_tool" || rows[0].Event.Outcome != memory.OutcomeDenied {
			t.Errorf("server 1 newest audit row = %+v, want the call_agent_tool denial", rows[0].Event)
		}
	})
	t.Run("both audit chains verify", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			store  *memory.Store
			tenant string
		}{{"server 1", store1, "t1"}, {"server 2", store2, "t2"}} {
			res, err := tc.store.VerifyAudit(bg, tc.tenant)
			if err != nil || !res.OK || res.Rows == 0 {
				t.Errorf("%s VerifyAudit = %+v, %v; want rows, OK", tc.name, res, err)
			}
		}
	})
	t.Logf("metric relay_server2_audit_rows=%d", len(auditOf(t, store2, "t2")))
	t.Logf("metric relay_forbidden_connections=%d", forbiddenConns.Load())
}
