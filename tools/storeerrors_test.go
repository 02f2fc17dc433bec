package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// storageLeak matches words of driver, SQL and storage errors that must
// never reach a client.
var storageLeak = regexp.MustCompile(`(?i)\bsql\b|sqlite|pgx|postgres|database|closed|driver|no such|constraint|syntax|\(\d+\)|select |insert |update |delete from`)

var internalRef = regexp.MustCompile(`^internal error \(ref [0-9a-f]{12}\)$`)

// TestStorageErrorsNeverReachClients calls every tool, with its minimal
// arguments, against a store whose database has been closed, so that every
// storage call fails with the driver's own words. Each answer must be the
// sanitized internal error (its cause in the log under the same ref) or an
// argument error that names no storage detail. The control: the same calls
// against the store while it is open answer without internal errors, and
// the leak detector matches a real driver message.
func TestStorageErrorsNeverReachClients(t *testing.T) {
	ctx := context.Background()
	store, err := memory.Open(ctx, memtest.DSN(t), memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTenant(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h := New(Deps{Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	srv := server.NewMCPServer("test", "0", h.ServerOptions()...)
	h.Register(srv)
	ts := &testServer{t: t, srv: srv, store: store}
	// local mode: the caller is its tenant's admin, so calls get past the
	// permission checks to storage
	caller := tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: "a", AuthMethod: tenancy.AuthLocal, Scopes: tenancy.AllScopes})

	type call struct {
		name string
		args any
	}
	var calls []call
	for _, st := range h.all() {
		var s jsonschema.Schema
		if err := json.Unmarshal(st.Tool.RawInputSchema, &s); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, call{st.Tool.Name, minimalArguments(&s)})
	}

	// control: the open store answers every call without an internal error
	for _, c := range calls {
		if _, rpcErr := ts.rawCall(caller, c.name, c.args); rpcErr != "" {
			t.Errorf("control: %s on the open store: JSON-RPC error %q", c.name, rpcErr)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AgentContext(caller, "x", "", 1); err == nil || !storageLeak.MatchString(err.Error()) {
		t.Fatalf("control: the closed store's own error %v is not one the leak detector matches", err)
	}

	internal := 0
	for _, c := range calls {
		res, rpcErr := ts.rawCall(caller, c.name, c.args)
		switch {
		case rpcErr != "":
			if !internalRef.MatchString(rpcErr) {
				t.Errorf("%s: JSON-RPC error %q, want the sanitized internal error", c.name, rpcErr)
				continue
			}
			internal++
			ref := strings.TrimSuffix(strings.TrimPrefix(rpcErr, "internal error (ref "), ")")
			if line := logLine(logs.String(), ref); !storageLeak.MatchString(line) {
				t.Errorf("%s: the log has no cause under ref %s: %q", c.name, ref, line)
			}
		case res.IsError:
			text := res.Content[0].(mcp.TextContent).Text
			if storageLeak.MatchString(text) {
				t.Errorf("%s: error result %q carries storage text", c.name, text)
			}
		default:
			// Some tools answer without storage (translate_path, prepare
			// steps that fail earlier); they must still say nothing of it.
			b, _ := json.Marshal(res)
			if storageLeak.MatchString(string(b)) {
				t.Errorf("%s: result %s carries storage text", c.name, b)
			}
		}
	}
	if internal == 0 {
		t.Fatal("no call reached the closed store: the test exercised nothing")
	}
	t.Logf("%d of %d tools answered the sanitized internal error", internal, len(calls))
}

// logLine returns the log line that carries ref.
func logLine(logs, ref string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "ref="+ref) {
			return l
		}
	}
	return ""
}
