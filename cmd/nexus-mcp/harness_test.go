package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/httpserver"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// The test harness of this package: how tests start a server and connect
// to it. In this process over HTTP: startHTTP (every HTTP test builds on
// it). The real binary (this test binary, which runs main when
// NEXUS_E2E_SERVER=1): serverCommand builds its command line; over HTTP
// startServerProc, over stdio stdioClient (mcp-go), or the command itself
// for raw lines. Clients: mcpGoClient and sdkClient (the official Go SDK);
// callTool (matrix_test.go) calls a tool through either transport.

// serverCommand is the real server (this test binary as main) with args,
// its own HOME and env appended to this process's environment.
func serverCommand(tb testing.TB, env []string, args ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(serverBinary(tb), args...)
	cmd.Env = append(append(os.Environ(), serverEnv(tb)...), env...)
	return cmd
}

// serverBinary is the path of the real server: this test binary.
func serverBinary(tb testing.TB) string {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return exe
}

// serverEnv is what the real server needs in its environment: main runs
// (NEXUS_E2E_SERVER=1) with a HOME of its own.
func serverEnv(tb testing.TB) []string {
	return []string{"NEXUS_E2E_SERVER=1", "HOME=" + tb.TempDir()}
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// httpTestOpts configure startHTTP.
type httpTestOpts struct {
	flags      func(*httpFlags)
	serve      func(*serveFlags) // sets serve flags beyond the HTTP ones
	args       []string          // serve flags, parsed after the defaults
	mcpOptions []server.ServerOption
	devHeaders bool
	setup      func(*httpserver.Config)
	// scope is the agent registry scope of the database and of
	// --agent-scope (default global).
	scope string
	// store is served instead of a new database; its owner closes it.
	store *memory.Store
	// ln is listened on instead of a new 127.0.0.1:0 listener.
	ln net.Listener
	// sqlite keeps the database a SQLite file even when the suite runs on
	// PostgreSQL, for tests that read the database file itself.
	sqlite bool
	// oauthIssuers turns on OAuth mode with these issuers; the resource
	// URL is the server's own /mcp URL.
	oauthIssuers []string
}

// httpEnv is a running HTTP transport on loopback with the full
// middleware chain.
type httpEnv struct {
	base  string // http://127.0.0.1:port
	host  string // 127.0.0.1:port
	url   string // base + "/mcp"
	db    string // "" when the store was given
	store *memory.Store
	app   *httpApp
	logs  *lockedBuffer
	stop  func() error // shuts down gracefully (idempotent)
}

// startHTTP starts the transport the way serveHTTP does: same flags and
// defaults (plus an HS256 JWT key, issuer and audience), same constructor,
// same serve loop. It is the one way the tests start an HTTP server in
// this process.
func startHTTP(tb testing.TB, o httpTestOpts) *httpEnv {
	tb.Helper()
	if o.scope == "" {
		o.scope = memory.AgentScopeGlobal
	}
	store, db := o.store, ""
	if store == nil {
		db = memtest.DSN(tb)
		if o.sqlite {
			db = filepath.Join(tb.TempDir(), "nexus.db")
		}
		var err error
		if store, err = memory.Open(context.Background(), db, memory.Options{AgentScope: o.scope}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { store.Close() })
	}
	ln := o.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
	}
	sf := &serveFlags{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	addServeFlags(fs, sf)
	args := append([]string{"--http=" + ln.Addr().String(), "--jwt-secret=" + testJWTSecret, "--jwt-issuer=test-issuer",
		"--jwt-audience=nexus", "--agent-scope=" + o.scope}, o.args...)
	if err := fs.Parse(args); err != nil {
		tb.Fatal(err)
	}
	if len(o.oauthIssuers) > 0 {
		sf.http.oauth = oauthFlags{issuers: o.oauthIssuers, resourceURL: "http://" + ln.Addr().String() + "/mcp"}
	}
	if o.flags != nil {
		o.flags(&sf.http)
	}
	if o.serve != nil {
		o.serve(sf)
	}
	sf.mcpOptions = o.mcpOptions
	jwtV, err := sf.http.jwtVerifier()
	if err != nil {
		tb.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var adjust []func(*httpserver.Config)
	if o.setup != nil {
		adjust = append(adjust, o.setup)
	}
	app, err := newHTTPApp(store, logger, sf, jwtV, o.devHeaders, adjust...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.serve(ctx, ln) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("serve did not return 30 s after cancel")
		}
	})
	host := ln.Addr().String()
	e := &httpEnv{base: "http://" + host, host: host, url: "http://" + host + "/mcp", db: db, store: store, app: app, logs: logs, stop: stop}
	tb.Cleanup(func() { // runs before the store's Cleanup (last in, first out)
		if err := stop(); err != nil {
			tb.Errorf("stop: %v", err)
		}
		if tb.Failed() {
			l := logs.String()
			tb.Logf("server %s log (last 4 KiB):\n%s", host, l[max(0, len(l)-4096):])
		}
	})
	return e
}

// newKey creates tenant (if needed) and a key in it.
func (e *httpEnv) newKey(tb testing.TB, nk memory.NewKey) string {
	tb.Helper()
	ctx := context.Background()
	if err := e.store.EnsureTenant(ctx, nk.TenantID); err != nil {
		tb.Fatal(err)
	}
	key, _, err := e.store.CreateAPIKey(ctx, nk)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// mcpGoClient returns an initialized mcp-go streamable HTTP client. legacy
// pins the initialize handshake (sessions); otherwise the client negotiates
// the newest, session-less protocol.
func mcpGoClient(tb testing.TB, url string, headers map[string]string, legacy bool) (*client.Client, *transport.StreamableHTTP) {
	tb.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(headers))
	if err != nil {
		tb.Fatal(err)
	}
	var opts []client.ClientOption
	if legacy {
		opts = append(opts, client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	}
	c := client.NewClient(tr, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "http-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		tb.Fatalf("initialize: %v", err)
	}
	return c, tr
}

// sdkClient connects the official Go SDK client with headers added by a
// RoundTripper.
func sdkClient(tb testing.TB, url string, headers map[string]string) *sdk.ClientSession {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: headerRoundTripper{headers: headers, base: http.DefaultTransport}}
	c := sdk.NewClient(&sdk.Implementation{Name: "go-sdk-test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		tb.Fatalf("go-sdk connect: %v", err)
	}
	tb.Cleanup(func() { cs.Close() })
	return cs
}

type headerRoundTripper struct {
	headers map[string]string
	base    http.RoundTripper
}

func (h headerRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.headers {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// serverProc is the test binary running `serve --http 127.0.0.1:0` as a
// subprocess that handles SIGTERM like the real binary.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *lockedBuffer
	exited chan struct{}
	err    error // Wait's result, after exited is closed
}

// startupAddr finds the address in the HTTP start-up line, text or JSON.
var startupAddr = regexp.MustCompile(`msg="nexus-mcp starting".* transport=http addr=(127\.0\.0\.1:\d+)|"msg":"nexus-mcp starting".*"transport":"http","addr":"(127\.0\.0\.1:\d+)"`)

// startServerProc starts the server on db and waits for its start-up line.
func startServerProc(tb testing.TB, db string, extra ...string) *serverProc {
	tb.Helper()
	args := append([]string{"serve", "--http=127.0.0.1:0", "--db", db, "--log-level", "info"}, extra...)
	cmd := serverCommand(tb, nil, args...)
	p := &serverProc{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := startupAddr.FindStringSubmatch(p.stderr.String()); m != nil {
			p.addr = m[1] + m[2] // one of the two is empty
			return p
		}
		select {
		case <-p.exited:
			tb.Fatalf("server exited before start-up: %v\n%s", p.err, p.stderr.String())
		default:
		}
	}
	tb.Fatalf("no start-up line within 60 s:\n%s", p.stderr.String())
	return nil
}

func (p *serverProc) url() string { return "http://" + p.addr + "/mcp" }

// stdioClient starts the test binary as a stdio server on db with extra env
// and returns an initialized mcp-go client.
func stdioClient(t testing.TB, db string, env ...string) *client.Client {
	t.Helper()
	c, err := client.NewStdioMCPClientWithOptions(serverBinary(t), append(serverEnv(t), env...), []string{"serve", "--db", db, "--log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil { // registers the notification handler
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-06-18"
	init.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c
}
