package tools

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/server"
)

// serverWith is an in-process server over a fresh store exposing deps'
// toolsets.
func serverWith(t *testing.T, deps Deps) *server.MCPServer {
	t.Helper()
	ts := newTestServer(t)
	deps.Store = ts.store
	h := New(deps)
	srv := server.NewMCPServer("test", "0", h.ServerOptions()...)
	h.Register(srv)
	return srv
}

// listTools returns the tools of srv's tools/list, as sent.
func listTools(t *testing.T, srv *server.MCPServer) []map[string]any {
	t.Helper()
	_, res := wireCall(t, srv, asUser("a", "", ""), "tools/list", map[string]any{})
	var out []map[string]any
	for _, x := range res["tools"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

func toolNames(tools []map[string]any) []string {
	var out []string
	for _, x := range tools {
		out = append(out, x["name"].(string))
	}
	return out
}

// TestToolsetsPartitionTheTools: every tool is in exactly one toolset.
func TestToolsetsPartitionTheTools(t *testing.T) {
	in := map[string]string{}
	for _, ts := range Toolsets {
		for _, name := range ts.Tools {
			if prev, ok := in[name]; ok {
				t.Errorf("%s is in toolsets %s and %s", name, prev, ts.Name)
			}
			in[name] = ts.Name
		}
	}
	for _, st := range New(Deps{}).all() {
		if _, ok := in[st.Tool.Name]; !ok {
			t.Errorf("tool %s is in no toolset", st.Tool.Name)
		}
		delete(in, st.Tool.Name)
	}
	for name := range in {
		t.Errorf("toolset lists %s, which is no tool", name)
	}
}

func TestParseToolsets(t *testing.T) {
	all := ToolsetNames()
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", all, ""},
		{"all", all, ""},
		{"graph", []string{"graph"}, ""},
		{" Graph , audit,graph", []string{"graph", "audit"}, ""},
		{"graph,memroy", nil, `unknown toolset "memroy" (valid: graph, search, agents, delegation, audit, or all)`},
	} {
		got, err := ParseToolsets(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseToolsets(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseToolsets(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestGraphToolsetIsTheReference compares tools/list of --toolsets graph
// with the reference server's (@modelcontextprotocol/server-memory
// 2026.8.31, stored in testdata/reference): the same tools (mcp-go sorts
// them by name), with equal titles, descriptions, annotations and schemas, except
// for the listed nexus-mcp additions (each checked to be only an addition:
// an optional argument, a bound, a refusal of unknown arguments, an
// optional result field).
func TestGraphToolsetIsTheReference(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "reference", "server-memory-tools.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct{ Tools []map[string]any }
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	got := listTools(t, serverWith(t, Deps{Toolsets: []string{"graph"}}))
	// mcp-go lists tools sorted by name; the reference in declaration order.
	byName := func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) }
	slices.SortFunc(got, byName)
	slices.SortFunc(ref.Tools, byName)
	if g, w := toolNames(got), toolNames(ref.Tools); !reflect.DeepEqual(g, w) {
		t.Fatalf("--toolsets graph lists %v, the reference %v", g, w)
	}
	// The additions, and what the reference sends that mcp-go does not.
	addedArgs := map[string][]string{"read_graph": {"limit", "offset"}, "search_nodes": {"offset"}, "open_nodes": {"offset"},
		"create_entities": {"entities[].aliases", "entities[].metadata"}, "create_relations": {"relations[].properties"}}
	pagedResult := []string{"total", "nextOffset", "truncated"}
	for i, r := range ref.Tools {
		g := got[i]
		name := r["name"].(string)
		for _, k := range []string{"title", "annotations"} {
			if !reflect.DeepEqual(g[k], r[k]) {
				t.Errorf("%s %s = %v, reference %v", name, k, g[k], r[k])
			}
		}
		if gd, rd := g["description"].(string), r["description"].(string); gd != rd && !(name == "read_graph" && strings.HasPrefix(gd, rd+". ")) {
			t.Errorf("%s description = %q, reference %q", name, gd, rd)
		}
		in := strip(r["inputSchema"].(map[string]any))
		gin := g["inputSchema"].(map[string]any)
		if d := schemaDiff(gin, in, true, addedArgs[name]); d != "" {
			t.Errorf("%s input schema: %s", name, d)
		}
		extra := addedArgs[name] // create_* echo their extras
		if slices.Contains([]string{"read_graph", "search_nodes", "open_nodes"}, name) {
			extra = pagedResult
		}
		if d := schemaDiff(g["outputSchema"].(map[string]any), strip(r["outputSchema"].(map[string]any)), false, extra); d != "" {
			t.Errorf("%s output schema: %s", name, d)
		}
	}
}

// strip removes the $schema key (mcp-go does not send one).
func strip(s map[string]any) map[string]any {
	delete(s, "$schema")
	return s
}

// schemaDiff describes how got differs from ref beyond the allowed
// additions: optional properties named in extra ("a" or "list[].a"), and, in
// input schemas, maxLength/maxItems bounds and additionalProperties false.
func schemaDiff(got, ref map[string]any, input bool, extra []string) string {
	got = clone(got)
	if input {
		dropBounds(got)
	}
	for _, path := range extra {
		s := got
		parts := strings.Split(path, "[].")
		for _, p := range parts[:len(parts)-1] {
			s, _ = s["properties"].(map[string]any)[p].(map[string]any)["items"].(map[string]any)
		}
		if props, ok := s["properties"].(map[string]any); ok {
			delete(props, parts[len(parts)-1])
		}
	}
	if input {
		// The reference's input schemas accept unknown arguments; nexus-mcp
		// refuses them with a clear error.
		ref = clone(ref)
		if got["additionalProperties"] == false && ref["additionalProperties"] == nil {
			delete(got, "additionalProperties")
		}
		if g, ok := got["properties"].(map[string]any); ok && len(g) == 0 {
			if _, ok := ref["properties"]; ok {
				got["properties"] = map[string]any{}
			}
		}
	}
	if !reflect.DeepEqual(got, ref) {
		gb, _ := json.Marshal(got)
		rb, _ := json.Marshal(ref)
		return fmt.Sprintf("\n got %s\n ref %s", gb, rb)
	}
	return ""
}

// dropBounds removes maxLength, maxItems and nested additionalProperties
// false from an input schema, recursively.
func dropBounds(s map[string]any) {
	delete(s, "maxLength")
	delete(s, "maxItems")
	if items, ok := s["items"].(map[string]any); ok {
		if items["additionalProperties"] == false {
			delete(items, "additionalProperties")
		}
		dropBounds(items)
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for _, v := range props {
			if m, ok := v.(map[string]any); ok {
				dropBounds(m)
			}
		}
	}
}

func clone(s map[string]any) map[string]any {
	b, _ := json.Marshal(s)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

// TestToolsetsExposeOnlyTheirTools: a server exposes the tools and
// resources of its toolsets only; a tool not exposed cannot be called
// (mcp-go does not know it), one exposed can.
func TestToolsetsExposeOnlyTheirTools(t *testing.T) {
	a := asUser("a", "", "")
	call := func(srv *server.MCPServer, tool string, args map[string]any) string {
		req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
			"params": map[string]any{"name": tool, "arguments": args}})
		b, _ := json.Marshal(srv.HandleMessage(a, req))
		return string(b)
	}
	read := func(srv *server.MCPServer, uri string) string {
		req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": map[string]any{"uri": uri}})
		b, _ := json.Marshal(srv.HandleMessage(a, req))
		return string(b)
	}
	const notFound = `tool 'get_audit_log' not found`
	graph := serverWith(t, Deps{Toolsets: []string{"graph"}})
	if got := toolNames(listTools(t, graph)); len(got) != 9 {
		t.Errorf("graph lists %v, want the nine reference tools", got)
	}
	if out := call(graph, "get_audit_log", map[string]any{}); !strings.Contains(out, notFound) {
		t.Errorf("get_audit_log on a graph-only server = %s, want %q", out, notFound)
	}
	if out := call(graph, "read_graph", map[string]any{}); !strings.Contains(out, `"entities":[]`) {
		t.Errorf("read_graph on a graph-only server = %s", out)
	}
	if out := read(graph, GraphURI); !strings.Contains(out, `"contents"`) {
		t.Errorf("graph resource on a graph-only server = %s", out)
	}

	agents := serverWith(t, Deps{Toolsets: []string{"agents", "audit"}})
	if out := call(agents, "create_entities", map[string]any{"entities": []any{}}); !strings.Contains(out, `tool 'create_entities' not found`) {
		t.Errorf("create_entities on an agents server = %s", out)
	}
	if out := call(agents, "get_audit_log", map[string]any{}); strings.Contains(out, notFound) || !strings.Contains(out, `"result"`) {
		t.Errorf("get_audit_log on an audit server = %s", out)
	}
	if out := read(agents, GraphURI); strings.Contains(out, `"contents"`) || !strings.Contains(out, `"error"`) {
		t.Errorf("graph resource without the graph toolset = %s, want an error", out)
	}
	_, res := wireCall(t, agents, a, "resources/list", map[string]any{})
	if rs := res["resources"].([]any); len(rs) != 0 {
		t.Errorf("resources/list without the graph toolset = %v, want none", rs)
	}

	ro := serverWith(t, Deps{ReadOnly: true})
	names := toolNames(listTools(t, ro))
	h := New(Deps{})
	for _, st := range h.all() {
		if want := h.readOnly[st.Tool.Name]; slices.Contains(names, st.Tool.Name) != want {
			t.Errorf("--read-only lists %s: %v, want %v", st.Tool.Name, !want, want)
		}
	}
	if out := call(ro, "create_entities", map[string]any{"entities": []any{}}); !strings.Contains(out, `tool 'create_entities' not found`) {
		t.Errorf("create_entities on a read-only server = %s", out)
	}
	if out := call(ro, "search_nodes", map[string]any{"query": "x"}); !strings.Contains(out, `"entities":[]`) {
		t.Errorf("search_nodes on a read-only server = %s", out)
	}
}

// TestToolDefinitionBytes prints the size of tools/list for each toolset
// (and all, and graph read-only) as metric lines.
func TestToolDefinitionBytes(t *testing.T) {
	sets := map[string]Deps{"all": {}, "graph_read_only": {Toolsets: []string{"graph"}, ReadOnly: true}}
	for _, name := range ToolsetNames() {
		sets[name] = Deps{Toolsets: []string{name}}
	}
	for name, deps := range sets {
		b, _ := json.Marshal(listTools(t, serverWith(t, deps)))
		if len(b) < 100 {
			t.Errorf("%s: %d bytes of tool definitions", name, len(b))
		}
		fmt.Printf("metric tool_definition_bytes_%s=%d\n", name, len(b))
	}
}
