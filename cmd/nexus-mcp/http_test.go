package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/httpserver"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

// testJWTSecret is the HS256 secret of the test servers (32 bytes).
const testJWTSecret = "0123456789abcdef0123456789abcdef"

// testJWT signs an HS256 token for tenant and sub with the test secret.
func testJWT(tb testing.TB, tenant, sub string) string {
	tb.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "test-issuer", "aud": "nexus", "sub": sub, "tenant_id": tenant,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}).SignedString([]byte(testJWTSecret))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// resultText joins the text content of a result.
func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// graphNames returns the sorted entity names of a graph result's text.
func graphNames(tb testing.TB, text string) []string {
	tb.Helper()
	var g struct {
		Entities []struct {
			Name string `json:"name"`
		} `json:"entities"`
		Truncated bool `json:"truncated"`
	}
	if err := json.Unmarshal([]byte(text), &g); err != nil {
		tb.Fatalf("graph result %q: %v", text, err)
	}
	if g.Truncated {
		tb.Fatalf("graph result truncated")
	}
	out := []string{}
	for _, e := range g.Entities {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

func entityArgs(names ...string) map[string]any {
	var es []any
	for _, n := range names {
		es = append(es, map[string]any{"name": n, "entityType": "test", "observations": []any{"about " + n}})
	}
	return map[string]any{"entities": es}
}

// canary returns a unique string.
func canary() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "cnr-" + hex.EncodeToString(b)
}

// rawResponse is an HTTP response read to the end.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawDo sends one HTTP request with the given headers (Host sets req.Host).
func rawDo(tb testing.TB, method, url string, hdr map[string]string, body io.Reader) rawResponse {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b []byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b = []byte("(event stream)") // a GET stream never ends; its status is what counts
	} else if b, err = io.ReadAll(resp.Body); err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

const rawInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// rawSession initializes a session with raw HTTP and returns its id.
func rawSession(tb testing.TB, url string, hdr map[string]string) string {
	tb.Helper()
	r := rawDo(tb, http.MethodPost, url, hdr, strings.NewReader(rawInitialize))
	id := r.header.Get(server.HeaderKeySessionID)
	if r.status != http.StatusOK || id == "" {
		tb.Fatalf("initialize: %d %q, session %q", r.status, r.body, id)
	}
	return id
}

// with returns hdr plus the extra header pairs.
func with(hdr map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(hdr)+len(kv)/2)
	for k, v := range hdr {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// rcRecorder records the RequestContext every tool handler sees.
type rcRecorder struct {
	mu  sync.Mutex
	got []tenancy.RequestContext
}

func (r *rcRecorder) option() server.ServerOption {
	return server.WithToolHandlerMiddleware(func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			rc, ok := tenancy.FromContext(ctx)
			if ok {
				r.mu.Lock()
				r.got = append(r.got, rc)
				r.mu.Unlock()
			}
			return next(ctx, req)
		}
	})
}

func (r *rcRecorder) last(tb testing.TB) tenancy.RequestContext {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		tb.Fatal("no tool call recorded a RequestContext")
	}
	return r.got[len(r.got)-1]
}

// slowTool adds test_slow, which waits d or until its ctx ends and reports
// which happened on outcome.
func slowTool(d time.Duration, started chan<- struct{}, outcome chan<- string) server.ServerOption {
	return func(s *server.MCPServer) {
		s.AddTool(mcp.NewTool("test_slow", mcp.WithDescription("test only: waits")),
			func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				started <- struct{}{}
				select {
				case <-ctx.Done():
					outcome <- "cancelled"
					return nil, ctx.Err()
				case <-time.After(d):
					outcome <- "completed"
					return mcp.NewToolResultText("done"), nil
				}
			})
	}
}

// toolCaller abstracts the two client libraries for TestHTTPClients.
type toolCaller struct {
	list func() []string
	call func(name string, args map[string]any) (text string, isError bool)
}

func mcpGoCaller(tb testing.TB, c *client.Client) toolCaller {
	return toolCaller{
		list: func() []string {
			res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
			if err != nil {
				tb.Fatalf("tools/list: %v", err)
			}
			var names []string
			for _, t := range res.Tools {
				names = append(names, t.Name)
			}
			return names
		},
		call: func(name string, args map[string]any) (string, bool) {
			res := callTool(tb, c, name, args)
			return resultText(res), res.IsError
		},
	}
}

func sdkCaller(tb testing.TB, cs *sdk.ClientSession) toolCaller {
	return toolCaller{
		list: func() []string {
			res, err := cs.ListTools(context.Background(), nil)
			if err != nil {
				tb.Fatalf("tools/list: %v", err)
			}
			var names []string
			for _, t := range res.Tools {
				names = append(names, t.Name)
			}
			return names
		},
		call: func(name string, args map[string]any) (string, bool) {
			res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
			if err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			var b strings.Builder
			for _, c := range res.Content {
				if tc, ok := c.(*sdk.TextContent); ok {
					b.WriteString(tc.Text)
				}
			}
			return b.String(), res.IsError
		},
	}
}

// TestHTTPClients drives the server with both client libraries, both
// protocol eras mcp-go serves, an API key and an HS256 JWT: initialize,
// tools/list, and a call per tool group.
func TestHTTPClients(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	key := e.newKey(t, memory.NewKey{TenantID: "acme", UserID: "alice"})
	creds := []struct {
		name    string
		headers map[string]string
		tenant  string
	}{
		{"api_key_header", map[string]string{tenancy.HeaderAPIKey: key}, "acme"},
		{"api_key_bearer", bearer(key), "acme"},
		{"jwt", bearer(testJWT(t, "jwt-co", "bob")), "jwt-co"},
	}
	clients := []struct {
		name string
		dial func(t *testing.T, hdr map[string]string) toolCaller
	}{
		{"mcp-go/2026-07-28", func(t *testing.T, hdr map[string]string) toolCaller {
			c, _ := mcpGoClient(t, e.url, hdr, false)
			return mcpGoCaller(t, c)
		}},
		{"mcp-go/" + mcp.LATEST_LEGACY_PROTOCOL_VERSION, func(t *testing.T, hdr map[string]string) toolCaller {
			c, tr := mcpGoClient(t, e.url, hdr, true)
			if tr.GetSessionId() == "" {
				t.Error("legacy handshake without a session id")
			}
			return mcpGoCaller(t, c)
		}},
		{"go-sdk", func(t *testing.T, hdr map[string]string) toolCaller {
			return sdkCaller(t, sdkClient(t, e.url, hdr))
		}},
	}
	calls := 0
	for _, cl := range clients {
		for _, cr := range creds {
			t.Run(cl.name+"/"+cr.name, func(t *testing.T) {
				c := cl.dial(t, cr.headers)
				names := c.list()
				for _, want := range []string{"create_entities", "add_observations", "read_graph", "search_nodes", "open_nodes"} {
					if !slices.Contains(names, want) {
						t.Errorf("tools/list = %v, missing %s", names, want)
					}
				}
				ent := canary()
				// knowledge graph group: write, add, search, open, read
				steps := []struct {
					tool string
					args map[string]any
					want string
				}{
					{"create_entities", entityArgs(ent), ent},
					{"add_observations", map[string]any{"observations": []any{map[string]any{"entityName": ent, "contents": []any{"second " + ent}}}}, "second " + ent},
					{"search_nodes", map[string]any{"query": ent}, ent},
					{"open_nodes", map[string]any{"names": []any{ent}}, "second " + ent},
					{"read_graph", map[string]any{}, ent},
				}
				for _, s := range steps {
					text, isErr := c.call(s.tool, s.args)
					calls++
					if isErr || !strings.Contains(text, s.want) {
						t.Errorf("%s(%v) = %q (isError %v), want it to contain %q", s.tool, s.args, text, isErr, s.want)
					}
				}
				// one call per other tool group present (the list grows with
				// the issues); a protocol error fails in c.call, an isError
				// is acceptable where the caller's credential lacks an agent
				// or a role, and must not happen for the plain reads.
				agent := "ag-" + ent
				probes := []struct {
					tool        string
					args        map[string]any
					mustSucceed bool
				}{
					{"register_agent", map[string]any{"agentId": agent, "name": "probe", "capabilities": []any{"probe"}}, false},
					{"get_agent_status", map[string]any{}, true},
					{"send_ai_message", map[string]any{"from": agent, "to": agent, "content": "probe " + ent}, false},
					{"get_ai_messages", map[string]any{"agentId": agent}, false},
					{"record_learning", map[string]any{"agentId": agent, "context": "probe", "lesson": "probe " + ent}, false},
					{"begin_session", map[string]any{"agentId": agent, "projectId": "probe"}, false},
					{"get_delegation_history", map[string]any{}, true},
					{"list_trust_sessions", map[string]any{}, true},
				}
				for _, p := range probes {
					if !slices.Contains(names, p.tool) {
						continue
					}
					text, isErr := c.call(p.tool, p.args)
					calls++
					if isErr && (p.mustSucceed || strings.HasPrefix(text, "internal error") || strings.Contains(text, "tenant")) {
						t.Errorf("%s(%v) = %q (isError)", p.tool, p.args, text)
					} else if isErr {
						t.Logf("%s: isError %q", p.tool, text)
					}
				}
				if _, err := e.store.Tenant(context.Background(), cr.tenant); err != nil {
					t.Errorf("tenant %q: %v", cr.tenant, err)
				}
			})
		}
	}
	t.Logf("metric http_client_calls=%d", calls)
}

// TestHTTPTenantIsolation: B sees nothing of A, cannot select A with
// X-Tenant-Id unless a member, and cannot name A in tool arguments.
func TestHTTPTenantIsolation(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	keyA := e.newKey(t, memory.NewKey{TenantID: "tenant-a", UserID: "alice"})
	keyB := e.newKey(t, memory.NewKey{TenantID: "tenant-b", UserID: "bob"})
	hdrA, hdrB := bearer(keyA), bearer(keyB)
	cA, _ := mcpGoClient(t, e.url, hdrA, false)
	cB, _ := mcpGoClient(t, e.url, hdrB, false)

	secret := canary()
	if res := callTool(t, cA, "create_entities", entityArgs(secret)); res.IsError {
		t.Fatalf("A create: %s", resultText(res))
	}
	leaks := 0
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"read_graph", map[string]any{}},
		{"search_nodes", map[string]any{"query": secret}},
		{"open_nodes", map[string]any{"names": []any{secret}}},
	} {
		text := resultText(callTool(t, cB, call.tool, call.args))
		if strings.Contains(text, secret) {
			leaks++
			t.Errorf("B %s = %q, contains A's %s", call.tool, text, secret)
		}
	}

	// X-Tenant-Id: A with B's key: 403; once B's user is a member of A: 200.
	switchTo := with(hdrB, tenancy.HeaderTenantID, "tenant-a")
	if r := rawDo(t, http.MethodPost, e.url, switchTo, strings.NewReader(rawInitialize)); r.status != http.StatusForbidden {
		t.Errorf("B with X-Tenant-Id A = %d %q, want 403", r.status, r.body)
	}
	if err := e.store.SetMember(context.Background(), "tenant-a", tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "tenant-b", UserID: "bob"}, "member"); err != nil {
		t.Fatal(err)
	}
	if r := rawDo(t, http.MethodPost, e.url, switchTo, strings.NewReader(rawInitialize)); r.status != http.StatusOK {
		t.Errorf("member B with X-Tenant-Id A = %d %q, want 200 (control)", r.status, r.body)
	}
	if err := e.store.RemoveMember(context.Background(), "tenant-a", tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "tenant-b", UserID: "bob"}); err != nil {
		t.Fatal(err)
	}

	// A tool argument naming A: refused, nothing written anywhere.
	spoof := entityArgs("spoofed-" + secret)
	spoof["tenant_id"] = "tenant-a"
	res := callTool(t, cB, "create_entities", spoof)
	if !res.IsError || resultText(res) != "forbidden: tenant mismatch" {
		t.Errorf("B create_entities with tenant_id A = %q (isError %v), want isError \"forbidden: tenant mismatch\"", resultText(res), res.IsError)
	}
	gotA := graphNames(t, resultText(callTool(t, cA, "read_graph", map[string]any{})))
	gotB := graphNames(t, resultText(callTool(t, cB, "read_graph", map[string]any{})))
	if !reflect.DeepEqual(gotA, []string{secret}) || len(gotB) != 0 {
		t.Errorf("after the spoof: A has %v, B has %v; want [%s] and []", gotA, gotB, secret)
	}
	t.Logf("metric cross_tenant_leaks=%d", leaks)
}

// TestHTTPKeysNotStoredInPlaintext creates 100 keys, uses one, and scans
// the database, its WAL and the server log for every key.
func TestHTTPKeysNotStoredInPlaintext(t *testing.T) {
	e := startHTTP(t, httpTestOpts{sqlite: true})
	var keys []string
	for i := range 100 {
		keys = append(keys, e.newKey(t, memory.NewKey{TenantID: "keys", UserID: fmt.Sprintf("u%d", i)}))
	}
	c, _ := mcpGoClient(t, e.url, bearer(keys[7]), false)
	callTool(t, c, "create_entities", entityArgs("keys-entity"))

	var blobs [][]byte
	for _, p := range []string{e.db, e.db + "-wal", e.db + "-shm"} {
		if b, err := os.ReadFile(p); err == nil {
			blobs = append(blobs, b)
		}
	}
	blobs = append(blobs, []byte(e.logs.String()))
	hits := 0
	for _, k := range keys {
		secretPart := strings.TrimPrefix(k, tenancy.APIKeyPrefix)
		for _, b := range blobs {
			if bytes.Contains(b, []byte(k)) || bytes.Contains(b, []byte(secretPart)) {
				hits++
			}
		}
	}
	if hits != 0 {
		t.Errorf("found %d plaintext keys in the database files and logs", hits)
	}
	t.Logf("metric plaintext_hits=%d", hits)
	t.Logf("metric keys_scanned=%d", len(keys))
}

// TestHTTPSessionBinding: a session id works only for the principal that
// created it. (Expiry when idle is httpserver's TestSessionIdleExpiry,
// on a clock the test moves.)
func TestHTTPSessionBinding(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	keyA := e.newKey(t, memory.NewKey{TenantID: "sess-a", UserID: "alice"})
	keyA2 := e.newKey(t, memory.NewKey{TenantID: "sess-a", UserID: "carol"})
	keyB := e.newKey(t, memory.NewKey{TenantID: "sess-b", UserID: "bob"})
	cA, tr := mcpGoClient(t, e.url, bearer(keyA), true)
	sid := tr.GetSessionId()
	if sid == "" {
		t.Fatal("no session id")
	}
	const list = `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`
	proto := []string{server.HeaderKeySessionID, sid, "Mcp-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION}
	accepted := 0
	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		body   string
		want   int
	}{
		{"owner (control)", http.MethodPost, with(bearer(keyA), proto...), list, http.StatusOK},
		{"other tenant", http.MethodPost, with(bearer(keyB), proto...), list, http.StatusNotFound},
		{"other key of the same tenant", http.MethodPost, with(bearer(keyA2), proto...), list, http.StatusNotFound},
		{"other JWT principal", http.MethodPost, with(bearer(testJWT(t, "sess-a", "alice")), proto...), list, http.StatusNotFound},
		{"no credential", http.MethodPost, with(nil, proto...), list, http.StatusUnauthorized},
		{"GET stream of another tenant", http.MethodGet, with(bearer(keyB), proto...), "", http.StatusNotFound},
		{"DELETE by another tenant", http.MethodDelete, with(bearer(keyB), proto...), "", http.StatusNotFound},
		{"random well-formed id", http.MethodPost, with(bearer(keyA), server.HeaderKeySessionID, "mcp-session-6f1c1b5e-7d42-4b8e-9a4f-2d2f7f0c9a11"), list, http.StatusNotFound},
		{"owner after the attempts (control)", http.MethodPost, with(bearer(keyA), proto...), list, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := rawDo(t, tc.method, e.url, tc.hdr, body)
			if r.status != tc.want {
				t.Errorf("%s with A's session = %d %q, want %d", tc.method, r.status, r.body, tc.want)
			}
			if tc.want != http.StatusOK && r.status == http.StatusOK {
				accepted++
			}
		})
	}
	// A's session still works through its own client.
	callTool(t, cA, "read_graph", map[string]any{})
	t.Logf("metric session_crossuse_accepted=%d", accepted)
}

// TestHTTPCancelWithoutSession: a session-less notifications/cancelled
// (protocol 2026-07-28) from tenant B must not cancel tenant A's call
// with the same JSON-RPC id. The control sends the same notification to
// mcp-go directly, without the guard, and does cancel.
func TestHTTPCancelWithoutSession(t *testing.T) {
	started := make(chan struct{}, 4)
	outcome := make(chan string, 4)
	var mcpServer *server.MCPServer // the control reaches it without the guard
	e := startHTTP(t, httpTestOpts{
		mcpOptions: []server.ServerOption{slowTool(1500*time.Millisecond, started, outcome)},
		setup: func(c *httpserver.Config) {
			build := c.NewMCP
			c.NewMCP = func(extra ...server.ServerOption) *server.MCPServer {
				mcpServer = build(extra...)
				return mcpServer
			}
		},
	})
	keyA := e.newKey(t, memory.NewKey{TenantID: "cancel-a", UserID: "alice"})
	keyB := e.newKey(t, memory.NewKey{TenantID: "cancel-b", UserID: "bob"})
	cA, _ := mcpGoClient(t, e.url, bearer(keyA), false)

	cancelBody := func(id int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%d,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, id)
	}
	modern := with(bearer(keyB), "Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "notifications/cancelled")

	run := func(attack func()) string {
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var req mcp.CallToolRequest
			req.Params.Name = "test_slow"
			_, _ = cA.CallTool(ctx, req)
		}()
		<-started
		attack()
		got := <-outcome
		<-done
		return got
	}

	got := run(func() {
		for id := range 64 {
			if r := rawDo(t, http.MethodPost, e.url, modern, strings.NewReader(cancelBody(id))); r.status != http.StatusAccepted {
				t.Errorf("B's cancel = %d %q, want 202", r.status, r.body)
			}
		}
	})
	if got != "completed" {
		t.Errorf("A's call after B's session-less cancels: %s, want completed", got)
	}

	// Control: the same notifications straight into mcp-go cancel A's call.
	unguarded := server.NewStreamableHTTPServer(mcpServer)
	ctrl := run(func() {
		for id := range 64 {
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(cancelBody(id)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
			req.Header.Set("Mcp-Method", "notifications/cancelled")
			req = req.WithContext(tenancy.NewContext(req.Context(), tenancy.RequestContext{TenantID: "cancel-b", AuthMethod: tenancy.AuthAPIKey, Scopes: tenancy.AllScopes}))
			unguarded.ServeHTTP(httptest.NewRecorder(), req)
		}
	})
	if ctrl != "cancelled" {
		t.Errorf("control: A's call after unguarded cancels: %s, want cancelled (the attack this guards against)", ctrl)
	}
	t.Logf("metric foreign_cancels_honoured=%d", map[bool]int{true: 1}[got != "completed"])
}

// TestHTTPBodyLimit: past --max-body is 413, with and without
// Content-Length, and nothing is stored; below it works.
func TestHTTPBodyLimit(t *testing.T) {
	const limit = 64 << 10
	e := startHTTP(t, httpTestOpts{flags: func(f *httpFlags) { f.maxBody = limit }})
	key := e.newKey(t, memory.NewKey{TenantID: "body", UserID: "bo"})
	sid := rawSession(t, e.url, bearer(key))
	hdr := with(bearer(key), server.HeaderKeySessionID, sid, "Mcp-Protocol-Version", "2025-06-18")
	call := func(name string, pad int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_entities","arguments":{"entities":[{"name":%q,"entityType":"t","observations":[%q]}]}}}`,
			name, strings.Repeat("x", pad))
	}
	oversize := 0
	// streamed without Content-Length (chunked)
	chunked := struct{ io.Reader }{strings.NewReader(call("big-chunked", limit))}
	if r := rawDo(t, http.MethodPost, e.url, hdr, chunked); r.status != http.StatusRequestEntityTooLarge {
		oversize++
		t.Errorf("chunked body over the limit = %d %q, want 413", r.status, r.body)
	}
	// with Content-Length
	if r := rawDo(t, http.MethodPost, e.url, hdr, strings.NewReader(call("big-sized", limit))); r.status != http.StatusRequestEntityTooLarge {
		oversize++
		t.Errorf("body over the limit = %d %q, want 413", r.status, r.body)
	}
	// control
	if r := rawDo(t, http.MethodPost, e.url, hdr, strings.NewReader(call("small", 1024))); r.status != http.StatusOK || strings.Contains(r.body, `"isError":true`) {
		t.Errorf("small body = %d %q, want 200", r.status, r.body)
	}
	c, _ := mcpGoClient(t, e.url, bearer(key), false)
	if got := graphNames(t, resultText(callTool(t, c, "read_graph", map[string]any{}))); !reflect.DeepEqual(got, []string{"small"}) {
		t.Errorf("stored entities = %v, want [small]", got)
	}
	t.Logf("metric oversize_accepted=%d", oversize)
}

// TestHTTPRateLimit: one tenant exhausting its burst gets 429 with
// Retry-After; another tenant is unaffected.
func TestHTTPRateLimit(t *testing.T) {
	const burst = 5
	e := startHTTP(t, httpTestOpts{flags: func(f *httpFlags) { f.rateRPS, f.rateBurst = 0.5, burst }})
	keyA := e.newKey(t, memory.NewKey{TenantID: "rate-a", UserID: "alice"})
	keyB := e.newKey(t, memory.NewKey{TenantID: "rate-b", UserID: "bob"})
	aAccepted, aLimited := 0, 0
	for range burst + 10 {
		r := rawDo(t, http.MethodPost, e.url, bearer(keyA), strings.NewReader(rawInitialize))
		switch r.status {
		case http.StatusOK:
			aAccepted++
		case http.StatusTooManyRequests:
			aLimited++
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 Retry-After = %q, want whole seconds >= 1", r.header.Get("Retry-After"))
			}
		default:
			t.Errorf("A: %d %q", r.status, r.body)
		}
	}
	bRejected := 0
	for range burst {
		if r := rawDo(t, http.MethodPost, e.url, bearer(keyB), strings.NewReader(rawInitialize)); r.status != http.StatusOK {
			bRejected++
		}
	}
	if aAccepted != burst || aLimited != 10 || bRejected != 0 {
		t.Errorf("A accepted %d, limited %d; B rejected %d; want %d, 10, 0", aAccepted, aLimited, bRejected, burst)
	}
	if m := rawDo(t, http.MethodGet, e.base+"/metrics", nil, nil).body; !strings.Contains(m, "nexus_mcp_rate_limited_total 10") {
		t.Errorf("/metrics lacks nexus_mcp_rate_limited_total 10")
	}
	t.Logf("metric a_accepted=%d", aAccepted)
	t.Logf("metric b_rejected=%d", bRejected)
}

// TestHTTPKillSwitch: disabling a tenant takes effect on the next request,
// and enabling it again too, without a restart; also for a JWT tenant
// created lazily on its first request.
func TestHTTPKillSwitch(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	ctx := context.Background()
	key := e.newKey(t, memory.NewKey{TenantID: "kill", UserID: "kim"})
	if _, err := e.store.Tenant(ctx, "jwt-kill"); err == nil {
		t.Fatal("tenant jwt-kill exists before its first request")
	}
	tok := testJWT(t, "jwt-kill", "jo")
	for _, tc := range []struct {
		name, tenant string
		hdr          map[string]string
	}{
		{"api key", "kill", bearer(key)},
		{"jwt", "jwt-kill", bearer(tok)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := []struct {
				disable bool
				want    int
			}{{false, http.StatusOK}, {true, http.StatusForbidden}, {false, http.StatusOK}}
			for i, s := range steps {
				if i > 0 {
					if err := e.store.SetTenantDisabled(ctx, tc.tenant, s.disable); err != nil {
						t.Fatal(err)
					}
				}
				if r := rawDo(t, http.MethodPost, e.url, tc.hdr, strings.NewReader(rawInitialize)); r.status != s.want {
					t.Errorf("step %d (disabled=%v): %d %q, want %d", i, s.disable, r.status, r.body, s.want)
				}
			}
		})
	}
	if _, err := e.store.Tenant(ctx, "jwt-kill"); err != nil {
		t.Errorf("JWT tenant not created lazily: %v", err)
	}
}

// TestHTTPOriginAndHost: a foreign Origin is 403 on every method; a foreign
// Host on a loopback bind is 403; allow-listed values and no Origin pass.
func TestHTTPOriginAndHost(t *testing.T) {
	e := startHTTP(t, httpTestOpts{flags: func(f *httpFlags) { f.allowedOrigins = []string{"https://ok.example"} }})
	key := e.newKey(t, memory.NewKey{TenantID: "origin", UserID: "oz"})
	sid := rawSession(t, e.url, bearer(key))
	sess := with(bearer(key), server.HeaderKeySessionID, sid)
	port := strings.TrimPrefix(e.base, "http://127.0.0.1:")
	accepted := 0
	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		body   string
		want   int
	}{
		{"POST evil origin", http.MethodPost, with(bearer(key), "Origin", "https://evil.example"), rawInitialize, http.StatusForbidden},
		{"GET evil origin", http.MethodGet, with(sess, "Origin", "https://evil.example"), "", http.StatusForbidden},
		{"DELETE evil origin", http.MethodDelete, with(sess, "Origin", "https://evil.example"), "", http.StatusForbidden},
		{"POST null origin", http.MethodPost, with(bearer(key), "Origin", "null"), rawInitialize, http.StatusForbidden},
		{"POST evil host", http.MethodPost, with(bearer(key), "Host", "evil.example.com:"+port), rawInitialize, http.StatusForbidden},
		{"GET /healthz evil host", http.MethodGet, with(nil, "Host", "evil.example.com"), "", http.StatusForbidden},
		{"POST evil host with its own origin", http.MethodPost, with(bearer(key), "Host", "evil.example.com:"+port, "Origin", "http://evil.example.com:"+port), rawInitialize, http.StatusForbidden},
		{"POST loopback origin of another port", http.MethodPost, with(bearer(key), "Host", "127.0.0.1:"+port, "Origin", "http://127.0.0.1:1"), rawInitialize, http.StatusForbidden},
		{"POST loopback origin of another host name", http.MethodPost, with(bearer(key), "Host", "127.0.0.1:"+port, "Origin", "http://localhost:"+port), rawInitialize, http.StatusForbidden},
		{"POST loopback origin with a path", http.MethodPost, with(bearer(key), "Host", "127.0.0.1:"+port, "Origin", "http://127.0.0.1:"+port+"/x"), rawInitialize, http.StatusForbidden},
		{"POST same-origin loopback (control)", http.MethodPost, with(bearer(key), "Host", "127.0.0.1:"+port, "Origin", "http://127.0.0.1:"+port), rawInitialize, http.StatusOK},
		{"POST same-origin localhost (control)", http.MethodPost, with(bearer(key), "Host", "localhost:"+port, "Origin", "http://LOCALHOST:"+port), rawInitialize, http.StatusOK},
		{"POST allowed origin (control)", http.MethodPost, with(bearer(key), "Origin", "https://ok.example"), rawInitialize, http.StatusOK},
		{"POST no origin (control)", http.MethodPost, bearer(key), rawInitialize, http.StatusOK},
		{"POST localhost host (control)", http.MethodPost, with(bearer(key), "Host", "localhost:"+port), rawInitialize, http.StatusOK},
		{"GET allowed origin (control)", http.MethodGet, with(sess, "Origin", "https://ok.example"), "", http.StatusOK},
		{"DELETE allowed origin (control)", http.MethodDelete, with(sess, "Origin", "https://ok.example"), "", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := rawDo(t, tc.method, e.url, tc.hdr, body)
			if r.status != tc.want {
				t.Errorf("%s = %d %q, want %d", tc.name, r.status, r.body, tc.want)
			}
			if tc.want == http.StatusForbidden && r.status != http.StatusForbidden {
				accepted++
			}
		})
	}
	t.Logf("metric evil_origin_accepted=%d", accepted)
}

// TestHTTPConcurrentWrites: 16 clients x 200 create_entities over HTTP
// with auth on lose nothing and never surface "database is locked".
// How fast: BenchmarkHTTPWrites16.
func TestHTTPConcurrentWrites(t *testing.T) {
	const clients = 16
	perClient := 200
	if raceEnabled() {
		perClient = 50 // modernc SQLite runs ~20x slower under -race; keep the package under 2 min
	}
	t.Logf("metric writes=%d", clients*perClient)
	e := startHTTP(t, httpTestOpts{})
	key := e.newKey(t, memory.NewKey{TenantID: "load", UserID: "lo"})
	var busy, failed atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		cl, _ := mcpGoClient(t, e.url, bearer(key), false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				var req mcp.CallToolRequest
				req.Params.Name = "create_entities"
				req.Params.Arguments = entityArgs(fmt.Sprintf("c%02d-%04d", c, i))
				res, err := cl.CallTool(context.Background(), req)
				switch {
				case err != nil:
					failed.Add(1)
					if isBusy(err.Error()) {
						busy.Add(1)
					}
				case res.IsError:
					failed.Add(1)
					if isBusy(resultText(res)) {
						busy.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if isBusy(e.logs.String()) {
		busy.Add(1)
	}
	c, _ := mcpGoClient(t, e.url, bearer(key), false)
	names := graphNames(t, resultText(callTool(t, c, "read_graph", map[string]any{})))
	lost := clients*perClient - len(slices.Compact(names))
	if failed.Load() != 0 || busy.Load() != 0 || lost != 0 {
		t.Errorf("failed %d, busy %d, lost %d of %d writes", failed.Load(), busy.Load(), lost, clients*perClient)
	}
	t.Logf("metric acked=%d", int64(clients*perClient)-failed.Load())
	t.Logf("metric rows=%d", len(names))
	t.Logf("metric lost=%d", lost)
	t.Logf("metric busy_errors=%d", busy.Load())
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func isBusy(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "database is locked") || strings.Contains(s, "sqlite_busy")
}

// TestStdioHTTPSameRequestContext: for the same key, tool handlers see the
// identical RequestContext over stdio and over HTTP.
func TestStdioHTTPSameRequestContext(t *testing.T) {
	rec := &rcRecorder{}
	e := startHTTP(t, httpTestOpts{mcpOptions: []server.ServerOption{rec.option()}})
	cases := []struct {
		name string
		key  memory.NewKey
	}{
		{"tenant only", memory.NewKey{TenantID: "same-1"}},
		{"user", memory.NewKey{TenantID: "same-2", UserID: "alice"}},
		{"user agent env", memory.NewKey{TenantID: "same-3", UserID: "bob", AgentID: "ag1", Env: "prod"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := e.newKey(t, tc.key)

			c, _ := mcpGoClient(t, e.url, bearer(key), false)
			callTool(t, c, "read_graph", map[string]any{})
			overHTTP := rec.last(t)

			t.Setenv("NEXUS_API_KEY", key)
			overStdio := stdioRequestContext(t, e.db, rec)

			if !reflect.DeepEqual(overHTTP, overStdio) {
				t.Errorf("RequestContext over HTTP = %+v, over stdio = %+v", overHTTP, overStdio)
			}
			if overHTTP.TenantID != tc.key.TenantID || overHTTP.UserID != tc.key.UserID || overHTTP.AuthMethod != tenancy.AuthAPIKey {
				t.Errorf("RequestContext = %+v, want the key's tenant %q and user %q", overHTTP, tc.key.TenantID, tc.key.UserID)
			}
		})
	}
}

// stdioRequestContext runs serveStdio in-process on db (NEXUS_API_KEY from
// the environment), calls read_graph and returns the recorded context.
func stdioRequestContext(t *testing.T, db string, rec *rcRecorder) tenancy.RequestContext {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	g := &globalFlags{db: db, logLevel: "warn"}
	sf := &serveFlags{mcpOptions: []server.ServerOption{rec.option()}}
	fs := pflag.NewFlagSet("stdio", pflag.ContinueOnError)
	addServeFlags(fs, sf)
	done := make(chan error, 1)
	go func() {
		done <- serveStdio(ctx, g, sf, inR, outW, io.Discard)
		outW.Close()
	}()
	c := client.NewClient(transport.NewIO(outR, inW, nil))
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var init mcp.InitializeRequest
	init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "stdio-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("stdio initialize: %v", err)
	}
	callTool(t, c, "read_graph", map[string]any{})
	rc := rec.last(t)
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveStdio: %v", err)
	}
	return rc
}

// TestHTTPGracefulShutdown: a call in flight when shutdown starts
// completes; afterwards the port is closed.
func TestHTTPGracefulShutdown(t *testing.T) {
	started := make(chan struct{}, 1)
	outcome := make(chan string, 1)
	e := startHTTP(t, httpTestOpts{
		mcpOptions: []server.ServerOption{slowTool(time.Second, started, outcome)},
		setup:      func(c *httpserver.Config) { c.ReadTimeout = 300 * time.Millisecond }, // the call outlives ReadTimeout too
	})
	key := e.newKey(t, memory.NewKey{TenantID: "drain", UserID: "di"})
	for _, legacy := range []bool{true, false} {
		c, _ := mcpGoClient(t, e.url, bearer(key), legacy)
		if legacy {
			// a call longer than ReadTimeout on a live server
			callTool(t, c, "test_slow", map[string]any{})
			<-started
			if got := <-outcome; got != "completed" {
				t.Fatalf("slow call with ReadTimeout 300 ms: %s", got)
			}
			continue
		}
		res := make(chan error, 1)
		go func() {
			var req mcp.CallToolRequest
			req.Params.Name = "test_slow"
			r, err := c.CallTool(context.Background(), req)
			if err == nil && r.IsError {
				err = fmt.Errorf("isError: %s", resultText(r))
			}
			res <- err
		}()
		<-started
		if err := e.stop(); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if err := <-res; err != nil {
			t.Errorf("call in flight during shutdown: %v", err)
		}
		if got := <-outcome; got != "completed" {
			t.Errorf("in-flight call: %s, want completed", got)
		}
	}
	if _, err := http.Get(e.base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

// TestHTTPOpsEndpoints: /healthz, /readyz and /metrics need no credential;
// /metrics has the tool, auth and rate series and names tenants only with
// --metrics-tenant-labels.
func TestHTTPOpsEndpoints(t *testing.T) {
	for _, labels := range []bool{false, true} {
		t.Run(fmt.Sprintf("tenant_labels=%v", labels), func(t *testing.T) {
			e := startHTTP(t, httpTestOpts{flags: func(f *httpFlags) { f.metricsTenantLabels = labels }})
			key := e.newKey(t, memory.NewKey{TenantID: "ops-tenant", UserID: "op"})
			for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
				if r := rawDo(t, http.MethodGet, e.base+p, nil, nil); r.status != http.StatusOK {
					t.Errorf("GET %s = %d %q, want 200", p, r.status, r.body)
				}
			}
			if r := rawDo(t, http.MethodPost, e.url, nil, strings.NewReader(rawInitialize)); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("no credential = %d %q, WWW-Authenticate %q; want 401 Bearer", r.status, r.body, r.header.Get("WWW-Authenticate"))
			}
			c, _ := mcpGoClient(t, e.url, bearer(key), false)
			callTool(t, c, "create_entities", entityArgs("ops"))
			callTool(t, c, "create_entities", map[string]any{"entities": []any{map[string]any{"name": ""}}}) // invalid: tool_error
			m := rawDo(t, http.MethodGet, e.base+"/metrics", nil, nil).body
			for _, re := range []string{
				`nexus_mcp_tool_calls_total\{outcome="ok",(tenant="ops-tenant",)?tool="create_entities"\} 1`,
				`nexus_mcp_tool_calls_total\{outcome="tool_error",(tenant="ops-tenant",)?tool="create_entities"\} 1`,
				`nexus_mcp_tool_call_duration_seconds_count\{(tenant="ops-tenant",)?tool="create_entities"\} 2`,
				`nexus_mcp_auth_failures_total\{code="401",reason="missing_credentials"(,tenant="")?\} 1`,
				`nexus_mcp_http_requests_total\{code="401",method="POST",path="/mcp"\} 1`,
				`nexus_mcp_sessions \d`,
			} {
				if !regexp.MustCompile(re).MatchString(m) {
					t.Errorf("/metrics does not match %s", re)
				}
			}
			if has := strings.Contains(m, "ops-tenant"); has != labels {
				t.Errorf("/metrics names the tenant: %v, want %v", has, labels)
			}
		})
	}
}

// TestServeHTTPCommand runs `nexus-mcp serve --http 127.0.0.1:0` as the
// CLI does: start-up line with the bound address, ops endpoints, 401
// without a credential, clean exit on cancel (WAL removed); and refuses to
// start on weak configuration.
func TestServeHTTPCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nexus.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--http", "127.0.0.1:0", "--db", db}, strings.NewReader(""), io.Discard, &stderr)
	}()
	addrRE := regexp.MustCompile(`msg="nexus-mcp starting".* transport=http addr=(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("no start-up line with the address; stderr:\n%s", stderr.String())
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := rawDo(t, http.MethodGet, "http://"+addr+p, nil, nil); r.status != http.StatusOK {
			t.Errorf("GET %s = %d", p, r.status)
		}
	}
	if r := rawDo(t, http.MethodPost, "http://"+addr+"/mcp", nil, strings.NewReader(rawInitialize)); r.status != http.StatusUnauthorized {
		t.Errorf("POST /mcp without credential = %d, want 401", r.status)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve --http did not exit after cancel")
	}
	if _, err := os.Stat(db + "-wal"); err == nil {
		t.Error("WAL file left after a clean shutdown")
	}

	refuse := []struct {
		name string
		args []string
		want string
	}{
		{"short legacy key", []string{"--legacy-api-key", "too-short"}, "legacy-api-key"},
		{"short jwt secret", []string{"--jwt-secret", "short"}, "HMAC secret"},
		{"secret and secret file", []string{"--jwt-secret", testJWTSecret, "--jwt-secret-file", db}, "not both"},
		{"issuer without key", []string{"--jwt-issuer", "x"}, "without a JWT key"},
	}
	for _, tc := range refuse {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			var errb bytes.Buffer
			args := append([]string{"serve", "--http=127.0.0.1:0", "--db", memtest.DSN(t)}, tc.args...)
			code := run(context.Background(), args, strings.NewReader(""), io.Discard, &errb)
			if code == 0 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, errb.String(), tc.want)
			}
		})
	}
	t.Logf("metric weak_secret_started=0")
}

// TestHTTPFlagDefaults: --http alone binds loopback; no --http is stdio;
// NEXUS_HTTP sets it too.
func TestHTTPFlagDefaults(t *testing.T) {
	parse := func(args ...string) serveFlags {
		sf := serveFlags{}
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		addServeFlags(fs, &sf)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return sf
	}
	nonLoopback := 0
	if sf := parse("--http"); sf.http.addr != "127.0.0.1:8080" {
		nonLoopback++
		t.Errorf("--http = %q, want 127.0.0.1:8080", sf.http.addr)
	}
	if sf := parse(); sf.http.addr != "" {
		t.Errorf("no --http = %q, want stdio", sf.http.addr)
	}
	sf := parse()
	if sf.http.maxBody != 4<<20 || sf.http.jwtLeeway != 30*time.Second || sf.http.jwtTenantClaim != "tenant_id" {
		t.Errorf("defaults: max-body %d, jwt-leeway %v, jwt-tenant-claim %q", sf.http.maxBody, sf.http.jwtLeeway, sf.http.jwtTenantClaim)
	}
	t.Setenv("NEXUS_HTTP", "127.0.0.1:9")
	t.Setenv("NEXUS_MAX_BODY", "1024")
	root := newRootCmd(strings.NewReader(""), io.Discard, io.Discard)
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(serve); err != nil {
		t.Fatal(err)
	}
	if v, _ := serve.Flags().GetString("http"); v != "127.0.0.1:9" {
		t.Errorf("NEXUS_HTTP: --http = %q", v)
	}
	if v, _ := serve.Flags().GetInt64("max-body"); v != 1024 {
		t.Errorf("NEXUS_MAX_BODY: --max-body = %d", v)
	}
	t.Logf("metric non_loopback_default=%d", nonLoopback)
}

// BenchmarkHTTPWrites16: 16 concurrent HTTP clients writing
// (create_entities) with API-key auth on. Reports calls/s and latency
// percentiles, and fails on any lost or failed write.
func BenchmarkHTTPWrites16(b *testing.B) { benchWrites(b, 16, 0) }

// BenchmarkHTTPWritesDenialFlood: 4 writers as above while 16 clients
// present bad API keys as fast as the server refuses them (401 until the
// source's failure budget is spent, then 429 before authentication; the
// refusals are tallied in the audit log). Reports the writers' calls/s and latency and the refusals/s:
// what an unauthenticated flood costs the tenants.
func BenchmarkHTTPWritesDenialFlood(b *testing.B) {
	b.Run("quiet", func(b *testing.B) { benchWrites(b, 4, 0) })
	b.Run("flood16", func(b *testing.B) { benchWrites(b, 4, 16) })
}

// benchWrites runs b.N create_entities calls over clients HTTP clients
// while flooders goroutines send requests with an unknown API key.
func benchWrites(b *testing.B, clients, flooders int) {
	e := startHTTP(b, httpTestOpts{})
	key := e.newKey(b, memory.NewKey{TenantID: "bench", UserID: "be"})
	cls := make([]*client.Client, clients)
	for i := range cls {
		cls[i], _ = mcpGoClient(b, e.url, bearer(key), false)
	}
	var next, failed, refused, floodErrs atomic.Int64
	stopFlood := make(chan struct{})
	var floodWG sync.WaitGroup
	badKey := tenancy.APIKeyPrefix + strings.Repeat("A", 43) // shaped like a key: looked up, then refused
	for range flooders {
		floodWG.Add(1)
		go func() {
			defer floodWG.Done()
			hc := &http.Client{Timeout: 30 * time.Second}
			for {
				select {
				case <-stopFlood:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
				req.Header.Set("Authorization", "Bearer "+badKey)
				resp, err := hc.Do(req)
				if err != nil {
					floodErrs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests {
					refused.Add(1)
				} else {
					floodErrs.Add(1)
				}
			}
		}()
	}
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				var req mcp.CallToolRequest
				req.Params.Name = "create_entities"
				req.Params.Arguments = entityArgs(fmt.Sprintf("b%02d-%07d", c, i))
				t0 := time.Now()
				res, err := cls[c].CallTool(context.Background(), req)
				lat[c] = append(lat[c], time.Since(t0))
				if err != nil || res.IsError {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stopFlood)
	floodWG.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	ctx := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "bench", Scopes: tenancy.AllScopes})
	g, err := e.store.ReadGraph(ctx, memory.Page{})
	if err != nil {
		b.Fatal(err)
	}
	rows := len(g.Entities)
	if failed.Load() != 0 || rows != b.N || floodErrs.Load() != 0 {
		b.Errorf("failed %d, rows %d, flood answers other than 401 or 429 %d; want 0, %d, 0", failed.Load(), rows, floodErrs.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(b.N-rows), "lost")
	if flooders > 0 {
		b.ReportMetric(float64(refused.Load())/elapsed.Seconds(), "refused/s")
	}
}

// BenchmarkAuthAPIKey is the per-request cost of API-key authentication
// (hash, key lookup, tenant status), without MCP.
func BenchmarkAuthAPIKey(b *testing.B) {
	e := startHTTP(b, httpTestOpts{})
	key := e.newKey(b, memory.NewKey{TenantID: "auth", UserID: "au"})
	benchAuth(b, e, map[string]string{"Authorization": "Bearer " + key})
}

// BenchmarkAuthJWT is the per-request cost of HS256 JWT authentication
// (verify, tenant status), without MCP.
func BenchmarkAuthJWT(b *testing.B) {
	e := startHTTP(b, httpTestOpts{})
	if err := e.store.EnsureTenant(context.Background(), "auth-jwt"); err != nil {
		b.Fatal(err)
	}
	benchAuth(b, e, bearer(testJWT(b, "auth-jwt", "au")))
}

func benchAuth(b *testing.B, e *httpEnv, hdr map[string]string) {
	h := e.app.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// graphSubscriber is a client subscribed to the graph resource, counting
// the notifications/resources/updated it receives.
type graphSubscriber struct {
	c       *client.Client
	updates chan string
}

// subscribeGraph opens a client with hdr and subscribes it to the graph
// resource: legacy sessions with resources/subscribe and the session's GET
// stream; the modern protocol with a subscriptions/listen stream, returned
// once the server acknowledged it.
func subscribeGraph(t *testing.T, url string, hdr map[string]string, legacy bool) *graphSubscriber {
	t.Helper()
	opts := []transport.StreamableHTTPCOption{transport.WithHTTPHeaders(hdr)}
	var copts []client.ClientOption
	if legacy {
		//lint:ignore SA1019 the legacy half of the test needs the session's standalone GET stream, which 2026-07-28 removed
		opts = append(opts, transport.WithContinuousListening())
		copts = append(copts, client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	}
	tr, err := transport.NewStreamableHTTP(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, copts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &graphSubscriber{c: c, updates: make(chan string, 64)}
	acked := make(chan struct{}, 1)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case string(mcp.MethodNotificationResourceUpdated):
			s.updates <- fmt.Sprint(n.Params.AdditionalFields["uri"])
		case mcp.MethodNotificationSubscriptionsAcknowledged:
			acked <- struct{}{}
		}
	})
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "subscriber", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if legacy {
		//lint:ignore SA1019 the session negotiates 2025-06-18, where resources/subscribe is the way to subscribe
		if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: tools.GraphURI}}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		return s
	}
	stop, err := c.ListenAsync(context.Background(), mcp.SubscriptionFilter{ResourceSubscriptions: []string{tools.GraphURI}},
		func(err error) { t.Errorf("subscriptions/listen: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	select {
	case <-acked:
	case <-ctx.Done():
		t.Fatal("subscriptions/listen not acknowledged within 30 s")
	}
	return s
}

// next waits for the subscriber's next update and checks its URI.
func (s *graphSubscriber) next(t *testing.T, who string) {
	t.Helper()
	select {
	case uri := <-s.updates:
		if uri != tools.GraphURI {
			t.Errorf("%s: update for %q, want %q", who, uri, tools.GraphURI)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no notifications/resources/updated within 30 s of its tenant's write", who)
	}
}

// TestHTTPResourceUpdatesStayInTenant: sessions of tenants A and B
// subscribe to the graph resource, over the legacy protocol (sessions,
// resources/subscribe) and the modern one (subscriptions/listen). A write
// of A reaches A's subscriber (the positive control), then B's write
// reaches B's: at that moment B must hold no other update. Updates reach
// a subscriber in the order the writes committed, so an update of A leaked
// to B would have arrived first. The same the other way round.
func TestHTTPResourceUpdatesStayInTenant(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	keyA := e.newKey(t, memory.NewKey{TenantID: "sub-a", UserID: "alice"})
	keyB := e.newKey(t, memory.NewKey{TenantID: "sub-b", UserID: "bob"})
	leaked := 0
	for _, legacy := range []bool{true, false} {
		t.Run(map[bool]string{true: "legacy subscribe", false: "subscriptions/listen"}[legacy], func(t *testing.T) {
			a := subscribeGraph(t, e.url, bearer(keyA), legacy)
			b := subscribeGraph(t, e.url, bearer(keyB), legacy)
			extra := func(s *graphSubscriber, who string) {
				if n := len(s.updates); n != 0 {
					leaked += n
					t.Errorf("%s holds %d more updates than its tenant's writes", who, n)
				}
			}
			write := func(s *graphSubscriber) {
				t.Helper()
				if res := callTool(t, s.c, "create_entities", entityArgs(canary())); res.IsError {
					t.Fatalf("create_entities: %s", resultText(res))
				}
			}
			write(a)
			a.next(t, "A")
			write(b)
			b.next(t, "B")
			extra(b, "B")
			write(a)
			a.next(t, "A")
			extra(a, "A")
		})
	}
	t.Logf("metric resource_updates_leaked=%d", leaked)
}
