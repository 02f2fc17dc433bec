package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// tsStdioLimit is the largest message the official TypeScript SDK stdio
// client (Claude Code, Claude Desktop, the Inspector) accepts; it closes
// the connection on a longer one.
const tsStdioLimit = 10 << 20

// TestStdioLargeGraphPagesWithGoSDK drives the real binary over stdio with
// the official Go SDK client, its line limit set to the TypeScript
// client's, on a graph whose search_nodes answer exceeded that limit
// (entities within the budget, their relations not counted): every page of
// search_nodes, read_graph and the graph resource arrives, and walking the
// pages each answer names returns every entity exactly once.
func TestStdioLargeGraphPagesWithGoSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("imports a 40,000-entity graph")
	}
	if raceEnabled() {
		// Under the race detector the import alone outlasts the package's
		// timeout; .ci/run runs this test without -race in its full-size stage.
		t.Skip("a 40,000-entity graph is too slow under -race; run without -race (.ci/run's full-size stage does)")
	}
	const n = 40000
	db := memtest.DSN(t)
	jsonl := filepath.Join(t.TempDir(), "big.jsonl")
	f, err := os.Create(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	name := func(i int) string { return fmt.Sprintf("entity-%05d", i) }
	for i := range n {
		enc.Encode(map[string]any{"type": "entity", "name": name(i), "entityType": "thing",
			"observations": []string{fmt.Sprintf("lorem ipsum dolor sit amet, consectetur adipiscing elit %d", i)}})
	}
	for i := range n {
		enc.Encode(map[string]any{"type": "relation", "from": name(i), "to": name((i + 1) % n), "relationType": "precedes"})
		enc.Encode(map[string]any{"type": "relation", "from": name(i), "to": name(i * 7 % n), "relationType": "relates_to"})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustCLI(t, "--db", db, "tenants", "create", "default")
	mustCLI(t, "--db", db, "import", "--tenant", "default", jsonl)

	cmd := serverCommand(t, []string{"NEXUS_API_KEY="}, "serve", "--db", db, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := sdk.NewClient(&sdk.Implementation{Name: "go-sdk-budget", Version: "1"}, nil)
	lines := &lineMeter{r: stdout}
	cs, err := c.Connect(ctx, &sdk.IOTransport{Reader: lines, Writer: stdin, MaxLineLength: tsStdioLimit}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()

	type page struct {
		Entities []struct {
			Name string `json:"name"`
		} `json:"entities"`
		Relations  []json.RawMessage `json:"relations"`
		NextOffset *int              `json:"nextOffset"`
		NextURI    string            `json:"nextUri"`
	}
	walk := func(t *testing.T, next func(offset int, uri string) (page, error)) {
		seen := make(map[string]int, n)
		offset, uri, pages := 0, "", 0
		for {
			p, err := next(offset, uri)
			if err != nil {
				t.Fatalf("page %d (offset %d): %v", pages, offset, err)
			}
			pages++
			for _, e := range p.Entities {
				seen[e.Name]++
			}
			if p.NextOffset == nil {
				break
			}
			if pages > 100 {
				t.Fatalf("no end after %d pages", pages)
			}
			offset, uri = *p.NextOffset, p.NextURI
		}
		t.Logf("%d pages, largest message so far %d bytes", pages, lines.longest())
		if pages < 2 || len(seen) != n {
			t.Errorf("%d distinct entities in %d pages, want %d in more than one", len(seen), pages, n)
		}
		for k, c := range seen {
			if c != 1 {
				t.Errorf("%s came back %d times", k, c)
			}
		}
	}
	toolPages := func(tool string, args map[string]any) func(int, string) (page, error) {
		return func(offset int, _ string) (page, error) {
			a := map[string]any{}
			if offset > 0 {
				a["offset"] = offset
			}
			for k, v := range args {
				a[k] = v
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: a})
			if err != nil {
				return page{}, err
			}
			if res.IsError {
				return page{}, fmt.Errorf("%s: %v", tool, res.Content)
			}
			text := res.Content[0].(*sdk.TextContent).Text
			var p page
			return p, json.Unmarshal([]byte(text), &p)
		}
	}
	t.Run("search_nodes", func(t *testing.T) { walk(t, toolPages("search_nodes", map[string]any{"query": "lorem"})) })
	t.Run("read_graph", func(t *testing.T) { walk(t, toolPages("read_graph", nil)) })
	t.Run("resource", func(t *testing.T) {
		walk(t, func(_ int, uri string) (page, error) {
			if uri == "" {
				uri = "memory://knowledge-graph"
			}
			res, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: uri})
			if err != nil {
				return page{}, err
			}
			var p page
			return p, json.Unmarshal([]byte(res.Contents[0].Text), &p)
		})
	})
	// The session is still usable after the large answers.
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "open_nodes", Arguments: map[string]any{"names": []string{name(0)}}}); err != nil {
		t.Errorf("open_nodes after the walk: %v", err)
	}
}

// TestServeToolsets: an unknown toolset stops serve at start-up naming the
// valid ones; --toolsets graph over stdio lists the nine reference tools and
// refuses a call to another tool, which the default server answers.
func TestServeToolsets(t *testing.T) {
	db := memtest.DSN(t)
	_, errs, code := runCLI(t, "", "--db", db, "serve", "--toolsets", "graph,agentz")
	if code == 0 || !strings.Contains(errs, `unknown toolset "agentz" (valid: graph, search, agents, delegation, audit, or all)`) {
		t.Errorf("serve --toolsets graph,agentz: exit %d, stderr %q", code, errs)
	}
	for _, tc := range []struct {
		env       string
		wantTools int
		auditOK   bool
	}{
		{"NEXUS_TOOLSETS=graph", 9, false},
		{"NEXUS_TOOLSETS=all", 34, true},
	} {
		c := stdioClient(t, db, tc.env)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tl, err := c.ListTools(ctx, mcp.ListToolsRequest{})
		cancel()
		if err != nil || len(tl.Tools) != tc.wantTools {
			t.Errorf("%s: tools/list = %d tools, %v; want %d", tc.env, len(tl.Tools), err, tc.wantTools)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = "get_audit_log", map[string]any{}
		_, err = c.CallTool(ctx, req)
		cancel()
		if (err == nil) != tc.auditOK {
			t.Errorf("%s: get_audit_log error = %v, want a refusal: %v", tc.env, err, !tc.auditOK)
		}
	}
}

// TestHTTPToolsetsBothEras: over HTTP, in both protocol eras, a
// --toolsets graph --read-only server lists the three read-only graph tools,
// answers one, and refuses a write and a tool of another toolset.
func TestHTTPToolsetsBothEras(t *testing.T) {
	e := startHTTP(t, httpTestOpts{serve: func(sf *serveFlags) { sf.toolsets, sf.readOnly = "graph", true }})
	key := e.newKey(t, memory.NewKey{TenantID: "acme", UserID: "alice"})
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			c, _ := mcpGoClient(t, e.url, bearer(key), legacy)
			names := mcpGoCaller(t, c).list()
			if want := []string{"open_nodes", "read_graph", "search_nodes"}; !slices.Equal(names, want) {
				t.Errorf("tools/list = %v, want %v", names, want)
			}
			if res := callTool(t, c, "read_graph", map[string]any{}); res.IsError {
				t.Errorf("read_graph: %v", res.Content)
			}
			for _, tool := range []string{"create_entities", "get_audit_log"} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var req mcp.CallToolRequest
				req.Params.Name, req.Params.Arguments = tool, map[string]any{}
				_, err := c.CallTool(ctx, req)
				cancel()
				if err == nil || !strings.Contains(err.Error(), "not found") {
					t.Errorf("%s on a read-only graph server: error %v, want tool not found", tool, err)
				}
			}
		})
	}
}

// lineMeter reads the server's stdout and records its longest line.
type lineMeter struct {
	r       io.ReadCloser
	mu      sync.Mutex
	cur, mx int
}

func (m *lineMeter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range p[:n] {
		if c == '\n' {
			m.mx, m.cur = max(m.mx, m.cur), 0
		} else {
			m.cur++
		}
	}
	return n, err
}

func (m *lineMeter) Close() error { return m.r.Close() }

func (m *lineMeter) longest() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mx
}
