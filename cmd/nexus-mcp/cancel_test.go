package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

// blockingTool is test_block: each call waits until its tenant's gate is
// released or its ctx ends, and reports which came first. The outcome is
// decided after the release by ctx.Err(), so a cancel that happened before
// the release is always seen.
type blockingTool struct {
	mu    sync.Mutex
	gates map[string]*toolGate
}

type toolGate struct {
	started chan struct{}
	release chan struct{}
	outcome chan string
}

// arm prepares the gate of tenant's next call.
func (b *blockingTool) arm(tenant string) *toolGate {
	g := &toolGate{started: make(chan struct{}, 1), release: make(chan struct{}), outcome: make(chan string, 1)}
	b.mu.Lock()
	b.gates[tenant] = g
	b.mu.Unlock()
	return g
}

func (b *blockingTool) option() server.ServerOption {
	return func(s *server.MCPServer) {
		s.AddTool(mcp.NewTool("test_block", mcp.WithDescription("test only: waits for the test")),
			func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				rc, _ := tenancy.FromContext(ctx)
				b.mu.Lock()
				g := b.gates[rc.TenantID]
				b.mu.Unlock()
				if g == nil {
					return mcp.NewToolResultError("no gate armed"), nil
				}
				g.started <- struct{}{}
				select {
				case <-ctx.Done():
				case <-g.release:
				}
				if ctx.Err() != nil {
					g.outcome <- "cancelled"
					return nil, ctx.Err()
				}
				g.outcome <- "completed"
				return mcp.NewToolResultText("done"), nil
			})
	}
}

// wait returns the outcome of the gate's call.
func (g *toolGate) wait(t *testing.T, who string) string {
	t.Helper()
	select {
	case o := <-g.outcome:
		return o
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: test_block did not end within 30 s", who)
		return ""
	}
}

// awaitStart waits until the gate's call runs; resp is the call's
// response, which must not come first.
func (g *toolGate) awaitStart(t *testing.T, who string, resp <-chan string) {
	t.Helper()
	select {
	case <-g.started:
	case r := <-resp:
		t.Fatalf("%s: test_block answered before it ran: %s", who, r)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: test_block did not start within 30 s", who)
	}
}

// cancelEra is one protocol era of the cancellation tests: how a client of
// that era sends requests and notifications/cancelled.
type cancelEra struct {
	name    string
	modern  bool
	session func(t *testing.T, hdr map[string]string) map[string]string // the client's request headers
}

const legacyInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// legacySession initializes a 2025-11-25 session and returns the headers
// of its requests.
func legacySession(t *testing.T, url string, hdr map[string]string) map[string]string {
	t.Helper()
	r := rawDo(t, http.MethodPost, url, hdr, strings.NewReader(legacyInitialize))
	id := r.header.Get(server.HeaderKeySessionID)
	if r.status != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %q, session %q", r.status, r.body, id)
	}
	return with(hdr, server.HeaderKeySessionID, id, "Mcp-Protocol-Version", "2025-11-25")
}

// rpcBody is a JSON-RPC message of method with params (a JSON object
// without braces); modern adds the protocol version to _meta.
func rpcBody(modern bool, id any, method, params string) string {
	if modern {
		if params != "" {
			params += ","
		}
		meta := `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`
		if id != nil { // a request also states who the client is
			meta += `,"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}`
		}
		params += `"_meta":{` + meta + `}`
	}
	idPart := ""
	if id != nil {
		idPart = fmt.Sprintf(`"id":%v,`, id)
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0",%s"method":%q,"params":{%s}}`, idPart, method, params)
}

// modernHeaders are the standard headers of a 2026-07-28 request.
func modernHeaders(hdr map[string]string, method, name string) map[string]string {
	out := with(hdr, "Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", method)
	if name != "" {
		out["Mcp-Name"] = name
	}
	return out
}

// requestHeaders are the headers of a request of era in the session hdr.
func requestHeaders(modern bool, hdr map[string]string, method, name string) map[string]string {
	if modern {
		return modernHeaders(hdr, method, name)
	}
	return hdr
}

// cancel sends notifications/cancelled for requestID the way a client of
// the era does and requires 202.
func sendCancel(t *testing.T, url string, modern bool, hdr map[string]string, requestID int) {
	t.Helper()
	r := rawDo(t, http.MethodPost, url, requestHeaders(modern, hdr, "notifications/cancelled", ""),
		strings.NewReader(rpcBody(modern, nil, "notifications/cancelled", fmt.Sprintf(`"requestId":%d,"reason":"test"`, requestID))))
	if r.status != http.StatusAccepted {
		t.Errorf("notifications/cancelled(%d) = %d %q, want 202", requestID, r.status, r.body)
	}
}

// attackCancels is what B sends while A and B each have request id in
// flight: B's own session id with the modern headers (the mixed form),
// the plain legacy and modern forms, and every id in 0..50.
func attackCancels(t *testing.T, url string, bHdr map[string]string) {
	t.Helper()
	for id := range 51 {
		for _, modern := range []bool{true, false} {
			sendCancel(t, url, modern, bHdr, id)
		}
		// modern, without a session id
		hdr := with(bHdr)
		delete(hdr, server.HeaderKeySessionID)
		sendCancel(t, url, true, hdr, id)
	}
}

// callAsync posts tools/call test_block with id and returns a channel
// with the response body (what the client received).
func callAsync(t *testing.T, url string, modern bool, hdr map[string]string, id int) <-chan string {
	out := make(chan string, 1)
	body := rpcBody(modern, id, "tools/call", `"name":"test_block","arguments":{}`)
	h := requestHeaders(modern, hdr, "tools/call", "test_block")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		out <- fmt.Sprintf("%d %s", resp.StatusCode, b.String())
	}()
	return out
}

// listenStream is an open subscriptions/listen stream read line by line.
type listenStream struct {
	lines  chan string
	closed chan struct{}
	cancel context.CancelFunc
}

// openListen opens a 2026-07-28 subscriptions/listen stream for the graph
// resource with request id and waits for its acknowledgement.
func openListen(t *testing.T, url string, hdr map[string]string, id int) *listenStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	body := rpcBody(true, id, "subscriptions/listen", fmt.Sprintf(`"notifications":{"resourceSubscriptions":[%q]}`, tools.GraphURI))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range modernHeaders(hdr, "subscriptions/listen", "") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("subscriptions/listen: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("subscriptions/listen: %d %s", resp.StatusCode, b)
	}
	s := &listenStream{lines: make(chan string, 256), closed: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.closed)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data:") {
				s.lines <- l
			}
		}
	}()
	if !s.await(t, mcp.MethodNotificationSubscriptionsAcknowledged) {
		t.Fatal("subscriptions/listen: stream ended before its acknowledgement")
	}
	return s
}

// await reads the stream until a data line containing want (true), or
// until the stream ends (false).
func (s *listenStream) await(t *testing.T, want string) bool {
	t.Helper()
	for {
		select {
		case l := <-s.lines:
			if strings.Contains(l, want) {
				return true
			}
		case <-s.closed:
			// lines read before the end are still queued
			for {
				select {
				case l := <-s.lines:
					if strings.Contains(l, want) {
						return true
					}
				default:
					return false
				}
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("listen stream: no %q and no end within 30 s", want)
		}
	}
}

// ended waits for the end of the stream (true), or reports false when an
// update of the graph arrives first.
func (s *listenStream) ended(t *testing.T) bool {
	t.Helper()
	return !s.await(t, string(mcp.MethodNotificationResourceUpdated))
}

// TestHTTPForeignCancelCannotAbortCall: tenants A and B each have a request
// with the same JSON-RPC id in flight — a tools/call in both protocol eras,
// and a 2026-07-28 subscriptions/listen stream. B sends
// notifications/cancelled for every id in 0..50 in every form (its own
// session id with the 2026-07-28 headers, plain legacy, plain modern):
// B's own request is cancelled (positive control), A's is not and ends
// normally. Then A's own cancel cancels A's request (positive control).
func TestHTTPForeignCancelCannotAbortCall(t *testing.T) {
	bt := &blockingTool{gates: map[string]*toolGate{}}
	e := startHTTP(t, httpTestOpts{mcpOptions: []server.ServerOption{bt.option()}})
	keyA := e.newKey(t, memory.NewKey{TenantID: "cancel-a", UserID: "alice"})
	keyB := e.newKey(t, memory.NewKey{TenantID: "cancel-b", UserID: "bob"})
	const id = 7
	crossCancels := 0

	eras := []cancelEra{
		{name: "2025-11-25 session", session: func(t *testing.T, hdr map[string]string) map[string]string {
			return legacySession(t, e.url, hdr)
		}},
		{name: "2026-07-28 stateless", modern: true, session: func(t *testing.T, hdr map[string]string) map[string]string {
			// a modern client that also holds a legacy session id: mcp-go
			// ignores it on modern requests, the attacker sends it anyway
			return legacySession(t, e.url, hdr)
		}},
	}
	for _, era := range eras {
		t.Run("tools/call "+era.name, func(t *testing.T) {
			aHdr := era.session(t, bearer(keyA))
			bHdr := era.session(t, bearer(keyB))

			// A alone has id in flight; B sprays cancels.
			ga := bt.arm("cancel-a")
			respA := callAsync(t, e.url, era.modern, aHdr, id)
			ga.awaitStart(t, "A", respA)
			attackCancels(t, e.url, bHdr)
			close(ga.release)
			if got := ga.wait(t, "A"); got != "completed" {
				crossCancels++
				t.Errorf("A's call after B's cancels: %s, want completed", got)
			}
			if got := <-respA; !strings.Contains(got, `"done"`) {
				t.Errorf("A's response = %q, want the result \"done\"", got)
			}

			// Both have the same id in flight (B's first, then A's); B
			// cancels it: B's own call is cancelled, A's is not.
			gb := bt.arm("cancel-b")
			respB := callAsync(t, e.url, era.modern, bHdr, id)
			gb.awaitStart(t, "B", respB)
			ga = bt.arm("cancel-a")
			respA = callAsync(t, e.url, era.modern, aHdr, id)
			ga.awaitStart(t, "A", respA)
			sendCancel(t, e.url, era.modern, bHdr, id)
			close(gb.release)
			close(ga.release)
			if got := gb.wait(t, "B"); got != "cancelled" {
				t.Errorf("control: B's call after B's own cancel: %s, want cancelled", got)
			}
			if got := ga.wait(t, "A"); got != "completed" {
				crossCancels++
				t.Errorf("A's call, same id as B's, after B's cancel: %s, want completed", got)
			}
			<-respA
			<-respB

			// positive control: A's own cancel cancels A's call
			ga = bt.arm("cancel-a")
			respA = callAsync(t, e.url, era.modern, aHdr, id)
			ga.awaitStart(t, "A", respA)
			sendCancel(t, e.url, era.modern, aHdr, id)
			close(ga.release)
			if got := ga.wait(t, "A"); got != "cancelled" {
				t.Errorf("control: A's call after A's own cancel: %s, want cancelled", got)
			}
			<-respA
		})
	}

	t.Run("subscriptions/listen 2026-07-28", func(t *testing.T) {
		aHdr := legacySession(t, e.url, bearer(keyA))
		bHdr := legacySession(t, e.url, bearer(keyB))
		writeA := func() {
			t.Helper()
			w := rawDo(t, http.MethodPost, e.url, modernHeaders(bearer(keyA), "tools/call", "create_entities"),
				strings.NewReader(rpcBody(true, 99, "tools/call", `"name":"create_entities","arguments":{"entities":[{"name":"`+canary()+`","entityType":"t","observations":[]}]}`)))
			if w.status != http.StatusOK || strings.Contains(w.body, `"isError":true`) {
				t.Fatalf("A's write: %d %s", w.status, w.body)
			}
		}

		// A alone listens with id; B sprays cancels; A's stream is alive:
		// A's write reaches it.
		a := openListen(t, e.url, bearer(keyA), id)
		attackCancels(t, e.url, bHdr)
		writeA()
		if a.ended(t) {
			crossCancels++
			t.Fatal("A's listen stream ended by B's cancels; want it to deliver A's update")
		}

		// B listens with the same id and cancels it: B's stream ends
		// (control), A's still delivers.
		b := openListen(t, e.url, bearer(keyB), id)
		sendCancel(t, e.url, true, bHdr, id)
		if !b.ended(t) {
			t.Error("control: B's listen stream still open after B's own cancel")
		}
		writeA()
		if a.ended(t) {
			crossCancels++
			t.Fatal("A's listen stream, same id as B's, ended by B's cancel")
		}

		// positive control: A's own cancel ends A's stream
		sendCancel(t, e.url, true, aHdr, id)
		if !a.ended(t) {
			t.Error("control: A's listen stream still open after A's own cancel")
		}
	})
	t.Logf("metric cross_tenant_cancels=%d", crossCancels)
}
