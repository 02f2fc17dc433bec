package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/httpserver"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// Hostile input (malformed JSON-RPC, hostile arguments, panics, slow
// clients, over HTTP and stdio): the server answers with
// proper errors, never a 5xx or a panic, stores nothing partial or
// invalid, and answers a normal call after every case. Cases already in
// http_test.go (Origin, Host, sessions, body limit, rate limit, shutdown)
// are not repeated here.

// malformedRPC are malformed JSON-RPC messages, with the
// JSON-RPC error codes acceptable for each (nil: no response expected or
// any non-5xx refusal).
var malformedRPC = []struct {
	name  string
	body  string
	codes []int
}{
	{"truncated", `{"jsonrpc":"2.0","id":1,"method":"tools/ca`, []int{-32700}},
	{"not json", `hello`, []int{-32700}},
	{"empty object", `{}`, []int{-32600, -32700}},
	{"null", `null`, []int{-32600, -32700}},
	{"string", `"ping"`, []int{-32600, -32700}},
	{"missing jsonrpc", `{"id":11,"method":"ping"}`, []int{-32600}},
	{"wrong version", `{"jsonrpc":"1.0","id":12,"method":"ping"}`, []int{-32600}},
	// mcp-go reads an absent method as the unknown method "" (-32601).
	{"missing method", `{"jsonrpc":"2.0","id":13}`, []int{-32600, -32601}},
	{"id object", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, []int{-32600}},
	{"id array", `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, []int{-32600}},
	{"id bool", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, []int{-32600}},
	{"params as array", `{"jsonrpc":"2.0","id":14,"method":"tools/call","params":["read_graph",{}]}`, []int{-32602, -32600}},
	{"unknown method", `{"jsonrpc":"2.0","id":15,"method":"no/such/method"}`, []int{-32601}},
	{"unknown tool", `{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}`, []int{-32602, -32601}},
	{"notification with id", `{"jsonrpc":"2.0","id":17,"method":"notifications/initialized"}`, nil},
}

var allowedRPCCodes = map[int]bool{-32700: true, -32600: true, -32601: true, -32602: true}

// hostileEnv is an HTTP server with a key and a session for raw requests.
type hostileEnv struct {
	*httpEnv
	key  string
	sess map[string]string // auth + session headers
	rpc  *rpcClient
}

func startHostileHTTP(t *testing.T, o httpTestOpts) *hostileEnv {
	t.Helper()
	e := startHTTP(t, o)
	key := e.newKey(t, memory.NewKey{TenantID: "hostile", UserID: "mallory"})
	c := mustRPCClient(t, e.url, bearer(key))
	return &hostileEnv{httpEnv: e, key: key, sess: c.hdr, rpc: c}
}

// healthy checks that the server answers ping and a tool call.
func (h *hostileEnv) healthy(t *testing.T, after string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.rpc.post(ctx, h.sess, []byte(`{"jsonrpc":"2.0","id":"ping-after","method":"ping"}`))
	if err != nil || r.status != http.StatusOK || r.resp == nil || r.resp.Error != nil {
		t.Fatalf("ping after %s: %v %d %.300s", after, err, r.status, r.body)
	}
	r, err = h.rpc.callTool(ctx, "read_graph", map[string]any{"limit": 1})
	if err != nil || !r.acked() {
		t.Fatalf("read_graph after %s: %v %d %.300s", after, err, r.status, r.body)
	}
}

// postBody posts raw bytes with hdr and an optional Content-Type override.
func (h *hostileEnv) postBody(t *testing.T, hdr map[string]string, body io.Reader) rpcReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.rpc.hc.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return rpcReply{status: resp.StatusCode, body: string(b), resp: parseRPCBody(resp.Header.Get("Content-Type"), b)}
}

// panicked reports a panic in the server log.
func panicked(log string) bool {
	return strings.Contains(log, "panic") || strings.Contains(log, "goroutine ")
}

// TestHostileJSONRPCHTTP: malformed JSON-RPC, each sent 20 times,
// gets a JSON-RPC error or a 4xx, never a 5xx; wrong Content-Type,
// unsupported protocol version and batches are 400.
func TestHostileJSONRPCHTTP(t *testing.T) {
	h := startHostileHTTP(t, httpTestOpts{})
	fiveXX, wrongCode, lenient := 0, 0, 0
	for _, tc := range malformedRPC {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 20 {
				r := h.postBody(t, h.sess, strings.NewReader(tc.body))
				if r.status >= 500 {
					fiveXX++
					t.Fatalf("%s = %d %.300s, want no 5xx", tc.name, r.status, r.body)
				}
				switch {
				case r.resp != nil && r.resp.Error != nil:
					if !allowedRPCCodes[r.resp.Error.Code] {
						wrongCode++
						t.Errorf("%s = JSON-RPC error %d %q, want one of %v", tc.name, r.resp.Error.Code, r.resp.Error.Message, tc.codes)
					} else if tc.codes != nil && !containsInt(tc.codes, r.resp.Error.Code) {
						// JSON-RPC 2.0 gives a parse error, an invalid
						// request, an unknown method and invalid params
						// each its code; a client acts on the code.
						wrongCode++
						t.Errorf("%s = JSON-RPC error %d, want one of %v", tc.name, r.resp.Error.Code, tc.codes)
					}
				case r.status >= 400 || tc.codes == nil:
					// refused at the HTTP level, or a notification
				default:
					// mcp-go v1.2.1 accepts some invalid envelopes (see the
					// report); recorded, not failed: the library decides.
					if i == 0 {
						lenient++
						t.Logf("%s accepted by mcp-go: %d %.200s", tc.name, r.status, r.body)
					}
				}
			}
			h.healthy(t, tc.name)
		})
	}

	protocol := []struct {
		name string
		hdr  map[string]string
		body string
	}{
		{"wrong content type", with(h.sess, "Content-Type", "text/plain"), `{"jsonrpc":"2.0","id":21,"method":"ping"}`},
		{"unsupported protocol version", with(h.sess, "Mcp-Protocol-Version", "1999-01-01"), `{"jsonrpc":"2.0","id":22,"method":"ping"}`},
		{"batch", h.sess, `[{"jsonrpc":"2.0","id":23,"method":"ping"},{"jsonrpc":"2.0","id":24,"method":"ping"}]`},
	}
	accepted := 0
	for _, tc := range protocol {
		t.Run(tc.name, func(t *testing.T) {
			r := h.postBody(t, tc.hdr, strings.NewReader(tc.body))
			if r.status >= 500 {
				fiveXX++
			}
			if r.status != http.StatusBadRequest && r.status != http.StatusUnsupportedMediaType {
				accepted++
				t.Errorf("%s = %d %.300s, want 400", tc.name, r.status, r.body)
			}
			h.healthy(t, tc.name)
		})
	}
	if panicked(h.logs.String()) {
		t.Errorf("panic in the server log")
	}
	t.Logf("metric five_xx=%d", fiveXX)
	t.Logf("metric wrong_error_codes=%d", wrongCode)
	t.Logf("metric lenient_envelopes_accepted=%d", lenient)
	t.Logf("metric protocol_violations_accepted=%d", accepted)
	t.Logf("metric panics=%d", map[bool]int{true: 1}[panicked(h.logs.String())])
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// toolBody is a raw tools/call body with raw JSON arguments.
func toolBody(id int, tool, rawArgs string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, rawArgs)
}

// entityJSON is a create_entities argument object with raw JSON values.
func entityJSON(name, observations, extra string) string {
	return fmt.Sprintf(`{"entities":[{"name":%s,"entityType":"t","observations":%s%s}]}`, name, observations, extra)
}

// refusedOrError reports a call that stored nothing by protocol: a
// JSON-RPC error, an isError result or a 4xx.
func refusedOrError(r rpcReply) (bool, string) {
	if r.status >= 400 && r.status < 500 {
		return true, r.body
	}
	if r.resp != nil && r.resp.Error != nil {
		return true, r.resp.Error.Message
	}
	isErr, text, ok := r.toolResult()
	return ok && isErr, text
}

// TestHostileArguments (over HTTP): deep JSON, invalid UTF-8,
// over-long strings, over-long arrays and an over-limit streamed body are
// refused (or, for UTF-8, stored normalized); nothing partial or invalid
// reaches the database; controls at the limits are stored.
func TestHostileArguments(t *testing.T) {
	h := startHostileHTTP(t, httpTestOpts{})
	id := 100
	next := func() int { id++; return id }
	fiveXX := 0
	post := func(t *testing.T, body string) rpcReply {
		t.Helper()
		r := h.postBody(t, h.sess, strings.NewReader(body))
		if r.status >= 500 {
			fiveXX++
			t.Errorf("%d %.300s, want no 5xx", r.status, r.body)
		}
		return r
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	t.Run("deep json", func(t *testing.T) {
		for _, depth := range []int{3, 9000, 10001} {
			name := fmt.Sprintf("deep-%d", depth)
			nest := strings.Repeat("[", depth) + strings.Repeat("]", depth)
			r := post(t, toolBody(next(), "create_entities", entityJSON(q(name), `[]`, `,"metadata":{"x":`+nest+`}`)))
			refused, msg := refusedOrError(r)
			if depth == 3 && (refused || !r.acked()) {
				t.Errorf("depth 3 (control) = %d %.300s, want stored", r.status, r.body)
			}
			if depth > 3 && !refused {
				t.Errorf("depth %d = %d %.300s, want a JSON-RPC error or isError", depth, r.status, r.body)
			}
			t.Logf("depth %d: %d %.120s", depth, r.status, msg)
			h.healthy(t, name)
		}
		st := readState(t, openRO(t, h.db), "hostile")
		if _, ok := st.entities["deep-3"]; !ok {
			t.Error("control deep-3 not stored")
		}
		for _, n := range []string{"deep-9000", "deep-10001"} {
			if _, ok := st.entities[n]; ok {
				t.Errorf("%s stored", n)
			}
		}
	})

	t.Run("invalid utf-8", func(t *testing.T) {
		cases := []struct{ name, raw string }{
			{"utf8-control-é", q("utf8-control-é")},
			{"ff-fe", "\"utf8-ff-\xff\xfe\""},
			{"lone-surrogate", `"utf8-surrogate-\ud800"`},
			{"overlong", "\"utf8-overlong-\xc0\xaf\""},
			{"truncated-sequence", "\"utf8-trunc-\xe2\x82\""},
		}
		for _, c := range cases {
			r := post(t, toolBody(next(), "create_entities", entityJSON(c.raw, `["obs `+strings.Trim(c.raw, `"`)+`"]`, "")))
			refused, msg := refusedOrError(r)
			if c.name == "utf8-control-é" && (refused || !r.acked()) {
				t.Errorf("valid UTF-8 (control) = %d %.300s, want stored", r.status, r.body)
			}
			t.Logf("%s: refused=%v %.120s", c.name, refused, msg)
			h.healthy(t, c.name)
		}
		invalid, checked := invalidUTF8Stored(t, h.db)
		if checked == 0 {
			t.Error("no text checked (the query is broken)")
		}
		if invalid != 0 {
			t.Errorf("%d stored values are invalid UTF-8", invalid)
		}
		st := readState(t, openRO(t, h.db), "hostile")
		if _, ok := st.entities["utf8-control-é"]; !ok {
			t.Error("control utf8-control-é not stored byte-exact")
		}
		t.Logf("metric invalid_utf8_stored=%d", invalid)
		t.Logf("metric utf8_values_checked=%d", checked)
	})

	t.Run("limits", func(t *testing.T) {
		obs100k := "[" + strings.TrimSuffix(strings.Repeat(`"o",`, 100000), ",") + "]"
		cases := []struct {
			name    string
			args    string
			stored  bool
			field   string // the error must name it
			overMax bool   // counts for maxitems_violations_stored
		}{
			{"name at max (control)", entityJSON(q("lim-"+strings.Repeat("n", 508)), `[]`, ""), true, "", false},
			{"name max+1", entityJSON(q("lim-"+strings.Repeat("n", 509)), `[]`, ""), false, "name", false},
			{"observation at max (control)", entityJSON(q("lim-obs-max"), `[`+q(strings.Repeat("o", 65536))+`]`, ""), true, "", false},
			{"observation 900 KB", entityJSON(q("lim-obs-900k"), `[`+q(strings.Repeat("o", 900<<10))+`]`, ""), false, "observations", false},
			{"100000 observations", entityJSON(q("lim-obs-100k"), obs100k, ""), false, "observations", true},
			{"entity type max+1", `{"entities":[{"name":"lim-type","entityType":` + q(strings.Repeat("t", 513)) + `,"observations":[]}]}`, false, "entityType", false},
		}
		overStored, itemsStored := 0, 0
		for _, c := range cases {
			r := post(t, toolBody(next(), "create_entities", c.args))
			refused, msg := refusedOrError(r)
			if c.stored && (refused || !r.acked()) {
				t.Errorf("%s = %d %.300s, want stored", c.name, r.status, r.body)
			}
			if !c.stored {
				if !refused {
					t.Errorf("%s = %d %.300s, want refused", c.name, r.status, r.body)
				} else if !strings.Contains(msg, c.field) {
					t.Errorf("%s: error %.300q does not name %s", c.name, msg, c.field)
				}
			}
			h.healthy(t, c.name)
		}
		st := readState(t, openRO(t, h.db), "hostile")
		for _, c := range cases {
			var name string
			var args struct {
				Entities []struct {
					Name string `json:"name"`
				} `json:"entities"`
			}
			if err := json.Unmarshal([]byte(c.args), &args); err != nil {
				t.Fatal(err)
			}
			name = args.Entities[0].Name
			_, ok := st.entities[name]
			if ok != c.stored {
				t.Errorf("%s: stored = %v, want %v", c.name, ok, c.stored)
				if ok && c.overMax {
					itemsStored++
				} else if ok {
					overStored++
				}
			}
		}
		t.Logf("metric overlimit_stored=%d", overStored)
		t.Logf("metric maxitems_violations_stored=%d", itemsStored)
	})

	t.Run("64 MiB chunked body", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_entities","arguments":{"entities":[{"name":"huge-body","entityType":"t","observations":["`),
			io.LimitReader(repeatReader('x'), 64<<20), strings.NewReader(`"]}]}}}`))
		r := h.postBody(t, h.sess, struct{ io.Reader }{body})
		if r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("64 MiB chunked = %d %.200s, want 413", r.status, r.body)
		}
		h.healthy(t, "64 MiB body")
		if _, ok := readState(t, openRO(t, h.db), "hostile").entities["huge-body"]; ok {
			t.Error("huge-body stored")
		}
		t.Logf("metric oversize_accepted=%d", map[bool]int{true: 1}[r.status < 400])
	})
	if panicked(h.logs.String()) {
		t.Errorf("panic in the server log")
	}
	t.Logf("metric five_xx=%d", fiveXX)
}

// repeatReader is an endless stream of one byte.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// invalidUTF8Stored counts text values of the graph tables that are not
// valid UTF-8, reading their bytes with SQL.
func invalidUTF8Stored(t *testing.T, db string) (invalid, checked int) {
	t.Helper()
	ro := openRO(t, db)
	query := `SELECT CAST(name AS BLOB) FROM entities UNION ALL SELECT CAST(entity_type AS BLOB) FROM entities
		UNION ALL SELECT CAST(content AS BLOB) FROM observations UNION ALL SELECT CAST(metadata AS BLOB) FROM entities`
	if memory.IsPostgresURL(db) {
		query = `SELECT convert_to(name, 'UTF8') FROM entities UNION ALL SELECT convert_to(entity_type, 'UTF8') FROM entities
		UNION ALL SELECT convert_to(content, 'UTF8') FROM observations UNION ALL SELECT convert_to(metadata, 'UTF8') FROM entities`
	}
	rows, err := ro.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		checked++
		if !utf8.Valid(b) {
			invalid++
			t.Errorf("invalid UTF-8 stored: %q", b)
		}
	}
	return invalid, checked
}

// TestHostileToolPanic: a panicking tool answers the fixed internal
// error without the panic text, the panic is logged with its reference,
// and the server goes on.
func TestHostileToolPanic(t *testing.T) {
	const secret = "panic-secret-SQLSTATE-42"
	panicTool := func(s *server.MCPServer) {
		s.AddTool(mcp.NewTool("test_panic", mcp.WithDescription("test only: panics")),
			func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { panic(secret) })
	}
	h := startHostileHTTP(t, httpTestOpts{mcpOptions: []server.ServerOption{panicTool}})
	leaked := 0
	for range 20 {
		r, err := h.rpc.callTool(context.Background(), "test_panic", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.body, secret) || strings.Contains(r.body, "goroutine") {
			leaked++
		}
		if r.status >= 500 || r.resp == nil || r.resp.Error == nil || !strings.HasPrefix(r.resp.Error.Message, "internal error (ref ") {
			t.Fatalf("panicking tool = %d %.300s, want JSON-RPC internal error (ref ...)", r.status, r.body)
		}
		ref := strings.TrimSuffix(strings.TrimPrefix(r.resp.Error.Message, "internal error (ref "), ")")
		if log := h.logs.String(); !strings.Contains(log, ref) || !strings.Contains(log, secret) {
			t.Errorf("panic with ref %s not logged", ref)
		}
	}
	h.healthy(t, "tool panics")
	t.Logf("metric panic_text_leaked=%d", leaked)
}

// TestHostileSlowClients: slowloris connections are closed at
// ReadHeaderTimeout while a normal request succeeds; a slow body is cut at
// ReadTimeout.
func TestHostileSlowClients(t *testing.T) {
	const readTimeout = 2 * time.Second
	h := startHostileHTTP(t, httpTestOpts{setup: func(c *httpserver.Config) { c.ReadTimeout = readTimeout }})
	addr := strings.TrimPrefix(h.base, "http://")

	t.Run("slowloris", func(t *testing.T) {
		const conns = 50
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			closeAt []time.Duration
			open    int
		)
		for i := range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			start := time.Now()
			if _, err := fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\n", addr); err != nil {
				t.Fatal(err)
			}
			closed := make(chan struct{})
			wg.Add(2)
			go func() { // one header line every 500 ms until the server closes
				defer wg.Done()
				for j := 0; j < 40; j++ { // bounded: 20 s
					select {
					case <-closed:
						return
					case <-time.After(500 * time.Millisecond):
					}
					if _, err := fmt.Fprintf(c, "X-Slow-%d-%d: x\r\n", i, j); err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer close(closed)
				_ = c.SetReadDeadline(time.Now().Add(25 * time.Second)) // safety net
				_, err := io.Copy(io.Discard, c)
				mu.Lock()
				defer mu.Unlock()
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					open++
					return
				}
				closeAt = append(closeAt, time.Since(start))
			}()
		}
		// meanwhile a normal request succeeds
		time.Sleep(time.Second)
		h.healthy(t, "slowloris")
		wg.Wait()
		var worst time.Duration
		for _, d := range closeAt {
			worst = max(worst, d)
		}
		if open != 0 || len(closeAt) != conns {
			t.Errorf("%d of %d slowloris connections still open after 25 s", open, conns)
		}
		if worst < httpserver.ReadHeaderTimeout-500*time.Millisecond {
			t.Errorf("slowloris closed after %v, before ReadHeaderTimeout %v (control: headers were still arriving)", worst, httpserver.ReadHeaderTimeout)
		}
		t.Logf("metric slowloris_connections=%d", conns)
		t.Logf("metric slowloris_close_s=%.2f", worst.Seconds())
	})

	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer %s\r\nMcp-Session-Id: %s\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: 1000\r\n\r\n",
			addr, h.key, h.sess[server.HeaderKeySessionID])
		closed := make(chan struct{})
		go func() {
			for j := 0; j < 40; j++ { // 1 byte per 500 ms, bounded
				select {
				case <-closed:
					return
				case <-time.After(500 * time.Millisecond):
				}
				if _, err := c.Write([]byte("{")); err != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(25 * time.Second)) // safety net
		resp, _ := io.ReadAll(c)
		close(closed)
		d := time.Since(start)
		if d >= 20*time.Second {
			t.Errorf("slow body still open after %v (ReadTimeout %v)", d, readTimeout)
		}
		if bytes.HasPrefix(resp, []byte("HTTP/1.1 5")) {
			t.Errorf("slow body answered %q", firstLine(resp))
		}
		t.Logf("slow body answer: %q", firstLine(resp))
		h.healthy(t, "slow body")
		t.Logf("metric slowbody_close_s=%.2f", d.Seconds())
	})
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

// stdioRaw is a stdio server subprocess driven line by line.
type stdioRaw struct {
	in     io.WriteCloser
	lines  chan []byte
	stderr *lockedBuffer
	bad    int // stdout lines that are not JSON-RPC
	total  int
	seen   map[string]*rpcResponse // every response read, by raw id
	db     string
	cmd    *exec.Cmd
}

func startStdioRaw(t *testing.T) *stdioRaw {
	t.Helper()
	db := memtest.DSN(t)
	cmd := serverCommand(t, nil, "serve", "--db", db, "--log-level", "warn")
	s := &stdioRaw{lines: make(chan []byte, 1024), stderr: &lockedBuffer{}, cmd: cmd, seen: map[string]*rpcResponse{}, db: db}
	cmd.Stderr = s.stderr
	var err error
	if s.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.lines)
		r := bufio.NewReaderSize(out, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				s.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	s.send(t, []byte(rawInitialize))
	s.await(t, "1")
	s.send(t, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	return s
}

func (s *stdioRaw) send(t *testing.T, line []byte) {
	t.Helper()
	if _, err := s.in.Write(append(line, '\n')); err != nil {
		t.Fatalf("write to server stdin: %v\nstderr:\n%s", err, tail(s.stderr.String(), 2048))
	}
}

// await reads stdout until the response with id (raw JSON) arrives and
// returns it; every line read is checked to be JSON-RPC.
func (s *stdioRaw) await(t *testing.T, id string) *rpcResponse {
	t.Helper()
	if r, ok := s.seen[id]; ok {
		return r
	}
	timeout := time.After(120 * time.Second) // safety net
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("server closed stdout waiting for id %s; stderr:\n%s", id, tail(s.stderr.String(), 2048))
			}
			s.total++
			var m struct {
				JSONRPC string `json:"jsonrpc"`
				rpcResponse
			}
			if err := json.Unmarshal(line, &m); err != nil || m.JSONRPC != "2.0" {
				s.bad++
				t.Errorf("stdout line is not JSON-RPC: %.200q", line)
				continue
			}
			r := m.rpcResponse
			s.seen[string(m.ID)] = &r
			if string(m.ID) == id {
				return &r
			}
		case <-timeout:
			t.Fatalf("no response with id %s; stderr:\n%s", id, tail(s.stderr.String(), 2048))
		}
	}
}

// healthy pings and calls a tool.
func (s *stdioRaw) healthy(t *testing.T, n *int, after string) {
	t.Helper()
	*n++
	ping := fmt.Sprintf(`"ping-%d"`, *n)
	s.send(t, []byte(`{"jsonrpc":"2.0","id":`+ping+`,"method":"ping"}`))
	if r := s.await(t, ping); r.Error != nil {
		t.Fatalf("ping after %s: %v", after, r.Error)
	}
	*n++
	call := fmt.Sprintf(`"call-%d"`, *n)
	s.send(t, []byte(`{"jsonrpc":"2.0","id":`+call+`,"method":"tools/call","params":{"name":"read_graph","arguments":{"limit":1}}}`))
	if r := s.await(t, call); r.Error != nil {
		t.Fatalf("read_graph after %s: %v", after, r.Error)
	}
}

// TestHostileStdio (over stdio): malformed JSON-RPC,
// 10,000 garbage lines, a 4 MiB line, a line with NUL bytes, deep JSON and
// invalid UTF-8: the server answers errors, stays up, and writes nothing
// but JSON-RPC to stdout.
func TestHostileStdio(t *testing.T) {
	s := startStdioRaw(t)
	n := 0
	wrongCode := 0
	for _, tc := range malformedRPC {
		t.Run(tc.name, func(t *testing.T) {
			s.send(t, []byte(tc.body))
			s.healthy(t, &n, tc.name) // every error line before the ping is checked to be JSON-RPC
		})
	}
	// a request with an id gets the expected error code
	for _, tc := range malformedRPC {
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal([]byte(tc.body), &m) != nil || len(m.ID) == 0 || m.ID[0] != '1' || tc.codes == nil {
			continue
		}
		t.Run("code/"+tc.name, func(t *testing.T) {
			s.send(t, []byte(tc.body))
			r := s.await(t, string(m.ID))
			switch {
			case r.Error == nil:
				t.Logf("%s accepted by mcp-go over stdio", tc.name) // as over HTTP
			case !allowedRPCCodes[r.Error.Code]:
				wrongCode++
				t.Errorf("%s over stdio = %+v, want a JSON-RPC error %v", tc.name, r.Error, tc.codes)
			case !containsInt(tc.codes, r.Error.Code): // tc.codes is not nil here; see the HTTP test for why the code matters
				wrongCode++
				t.Errorf("%s over stdio = JSON-RPC error %d, want one of %v", tc.name, r.Error.Code, tc.codes)
			}
		})
	}
	garbage := []struct {
		name  string
		lines func() [][]byte
	}{
		{"10000 garbage lines", func() [][]byte {
			out := make([][]byte, 10000)
			for i := range out {
				out[i] = []byte(`{}`)
			}
			return out
		}},
		{"4 MiB line", func() [][]byte {
			return [][]byte{[]byte(`{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"search_nodes","arguments":{"query":"` + strings.Repeat("q", 4<<20) + `"}}}`)}
		}},
		{"NUL bytes", func() [][]byte {
			return [][]byte{[]byte("{\"jsonrpc\":\"2.0\",\x00\"id\":\"nul\",\"method\":\"ping\"}"), []byte("\x00\x00\x00")}
		}},
		{"deep json", func() [][]byte {
			return [][]byte{[]byte(toolBody(31, "create_entities", entityJSON(`"stdio-deep"`, `[]`, `,"metadata":{"x":`+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+`}`)))}
		}},
		{"invalid utf-8", func() [][]byte {
			return [][]byte{[]byte(toolBody(32, "create_entities", entityJSON("\"stdio-utf8-\xff\xfe\"", "[\"\xc0\xaf\"]", "")))}
		}},
	}
	for _, g := range garbage {
		t.Run(g.name, func(t *testing.T) {
			for _, l := range g.lines() {
				s.send(t, l)
			}
			s.healthy(t, &n, g.name)
		})
	}
	// the oversized and deep calls were refused; invalid UTF-8 was
	// stored normalized or refused
	// a line too deep to parse is a parse error without an id (-32700,
	// id null); it must not be stored
	if _, ok := readState(t, openRO(t, s.db), "default").entities["stdio-deep"]; ok {
		t.Error("stdio-deep stored")
	}
	for _, id := range []string{`"big"`} {
		r := s.await(t, id)
		var res struct {
			IsError bool `json:"isError"`
		}
		_ = json.Unmarshal(r.Result, &res)
		if r.Error == nil && !res.IsError {
			t.Errorf("id %s accepted: %s", id, r.Result)
		}
	}
	invalid, checked := invalidUTF8Stored(t, s.db)
	if checked == 0 {
		t.Error("nothing stored over stdio (control: the invalid UTF-8 call stores its normalized entity)")
	}
	t.Logf("metric stdio_invalid_utf8_stored=%d", invalid)
	if r := s.await(t, "32"); r.Error == nil && !utf8.Valid(r.Result) {
		t.Errorf("invalid UTF-8 echoed: %q", r.Result)
	}
	if panicked(s.stderr.String()) {
		t.Errorf("panic on stderr:\n%s", tail(s.stderr.String(), 2048))
	}
	t.Logf("metric stdout_lines=%d", s.total)
	t.Logf("metric stdout_non_jsonrpc_lines=%d", s.bad)
	t.Logf("metric stdio_wrong_error_codes=%d", wrongCode)
	t.Logf("metric panics=%d", map[bool]int{true: 1}[panicked(s.stderr.String())])
}
