package tools

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// memoryDir is the source of the memory package, which returns kinds and
// fields: the words a model reads, with the tool and argument names in
// them, are written here in tools (errors.go).
var memoryDir = filepath.Join("..", "memory")

// TestMemoryNamesNoToolOrArgument fails when a string literal in the
// memory package's non-test source names a tool or an argument of the
// live tool list (h.all(), what tools/list serves).
//
// It scans source, not the Error text of errors collected at run time,
// because a list of errors to provoke covers only the errors someone
// remembered to list, while a new message written in memory is a new
// literal, scanned without anyone touching this test. Two kinds of names
// cannot be told from memory's own vocabulary and are left out: argument
// names that are plain lower-case words ("agent", "content", "query" are
// also the store's nouns), and snake_case argument names inside SQL (they
// are column names there: "agent_id", "trace_id"). Struct tags are
// encodings, not words, and are skipped too.
func TestMemoryNamesNoToolOrArgument(t *testing.T) {
	names := toolAndArgumentNames(t)
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(memoryDir, "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no memory source in %s: %v", memoryDir, err)
	}
	var found []string
	scanned := 0
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		scanned++
		found = append(found, literalsNaming(f, fset, names)...)
	}
	if scanned < 10 {
		t.Fatalf("scanned %d memory files, want the whole package", scanned)
	}
	for _, hit := range found {
		t.Errorf("memory names a tool or argument (write the words in tools/errors.go): %s", hit)
	}
}

// TestLiteralsNamingControls shows the scan finding what it must and
// passing over what it must: a positive control for each name kind and a
// negative one for each exemption.
func TestLiteralsNamingControls(t *testing.T) {
	names := map[string]bool{"register_agent": true, "autoRegister": true, "agent_id": true}
	src := `package memory
type row struct{ A string ` + "`json:\"autoRegister\"`" + ` }
var (
	a = notFoundf("agent %q is not registered; register it with register_agent", id)
	b = invalidf("set autoRegister")
	c = errors.New("agent_id must not be empty")
	d = "SELECT agent_id FROM agents WHERE tenant_id = ?"
	e = "agent_id, name, capabilities"
	f = invalidf("agent must not be empty")
	g = "register agent"
)`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := literalsNaming(f, fset, names)
	want := []string{"register_agent", "autoRegister", "agent_id must"}
	if len(got) != len(want) {
		t.Fatalf("literalsNaming = %q, want %d hits naming %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("literalsNaming hit %d = %q, want it to contain %q", i, got[i], w)
		}
	}
}

var (
	wordRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	// sqlRE tells SQL from a message: a statement has a keyword; a
	// column list is comma-separated single columns or function calls.
	sqlRE = regexp.MustCompile(`\b(SELECT|INSERT|UPDATE|DELETE|WHERE|FROM|CREATE|ALTER|VALUES|RETURNING|JOIN|ORDER BY|GROUP BY)\b|` +
		`^\s*(\w+(\.\w+)?(\([^()]*\))?|\*)(\s*,\s*(\w+(\.\w+)?(\([^()]*\))?|\*))*\s*,?\s*$`)
)

// literalsNaming returns "file:line: literal" for each string literal of f
// (struct tags aside) that names one of names; a snake_case name counts
// only outside SQL.
func literalsNaming(f *ast.File, fset *token.FileSet, names map[string]bool) []string {
	tags := map[*ast.BasicLit]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if fd, ok := n.(*ast.Field); ok && fd.Tag != nil {
			tags[fd.Tag] = true
		}
		return true
	})
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || tags[lit] {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		isSQL := sqlRE.MatchString(s)
		for _, w := range wordRE.FindAllString(s, -1) {
			if !names[w] {
				continue
			}
			if isSQL && w == strings.ToLower(w) {
				continue // a snake_case column name
			}
			out = append(out, fset.Position(lit.Pos()).String()+": "+lit.Value)
			break
		}
		return true
	})
	return out
}

// toolAndArgumentNames returns every tool name of the live tool list and
// every argument property name, at any depth, that is an identifier
// rather than a plain word: it has an upper-case letter or an underscore.
func toolAndArgumentNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	var walk func(s map[string]any)
	walk = func(s map[string]any) {
		for k, v := range s {
			switch k {
			case "properties":
				props, _ := v.(map[string]any)
				for name, sub := range props {
					if name != strings.ToLower(name) || strings.Contains(name, "_") {
						names[name] = true
					}
					if m, ok := sub.(map[string]any); ok {
						walk(m)
					}
				}
			default:
				switch x := v.(type) {
				case map[string]any:
					walk(x)
				case []any:
					for _, e := range x {
						if m, ok := e.(map[string]any); ok {
							walk(m)
						}
					}
				}
			}
		}
	}
	tools := New(Deps{}).all()
	for _, st := range tools {
		names[st.Tool.Name] = true
		b, err := json.Marshal(st.Tool)
		if err != nil {
			t.Fatal(err)
		}
		var def map[string]any
		if err := json.Unmarshal(b, &def); err != nil {
			t.Fatal(err)
		}
		schema, _ := def["inputSchema"].(map[string]any)
		walk(schema)
	}
	// The list must hold what the rule is about, or the scan proves nothing.
	for _, must := range []string{"register_agent", "autoRegister", "toCapabilities", "messageType", "agent_id"} {
		if !names[must] {
			all := make([]string, 0, len(names))
			for n := range names {
				all = append(all, n)
			}
			sort.Strings(all)
			t.Fatalf("names from the tool list lack %q: %v", must, all)
		}
	}
	return names
}

// TestMemoryErrorWords calls tools whose refusal comes from memory and
// checks the whole message: it names the argument to fix or the tool to
// call, in the words clients got when memory wrote them.
func TestMemoryErrorWords(t *testing.T) {
	ts := newTestServer(t)
	a, b := ctxAgent("a", ""), ctxAgent("b", "")
	reg := func(id string) map[string]any {
		return map[string]any{"agentId": id, "name": id, "capabilities": []string{"go"}}
	}
	steps := []struct {
		name string
		ctx  context.Context
		tool string
		args map[string]any
		want string // the error text; "" for a call that must succeed
	}{
		{"register alice", a, "register_agent", reg("alice"), ""},
		{"register bob", a, "register_agent", reg("bob"), ""},
		{"identity of an unregistered agent", a, "set_agent_identity", map[string]any{"newAgentId": "zed", "autoRegister": false},
			`agent "zed" is not registered; register it with register_agent or set autoRegister`},
		{"identity with autoRegister (control)", a, "set_agent_identity", map[string]any{"newAgentId": "zed", "autoRegister": true}, ""},
		{"rename onto a registered id", a, "set_agent_identity", map[string]any{"currentAgentId": "alice", "newAgentId": "bob"},
			`agent id "bob" is already registered; cannot rename "alice" to it`},
		{"blank new name", a, "set_agent_identity", map[string]any{"newAgentId": "alice", "newName": " "}, "newName must not be empty"},
		{"status of an unknown agent", a, "get_agent_status", map[string]any{"agentId": "nobody"}, `agent "nobody" is not registered`},
		{"status of a known agent (control)", a, "get_agent_status", map[string]any{"agentId": "alice"}, ""},
		{"another tenant's id", b, "register_agent", reg("alice"),
			`agent id "alice" is registered by another tenant or bound to its API key; only that tenant can use it — choose another agent id`},
		{"blank name", a, "register_agent", map[string]any{"agentId": "x", "name": " ", "capabilities": []string{}}, "name must not be empty"},
		{"blank context", a, "record_learning", map[string]any{"agentId": "alice", "context": " ", "lesson": "l"}, "context must not be empty"},
		{"confidence out of range", a, "record_learning", map[string]any{"agentId": "alice", "context": "c", "lesson": "l", "confidence": 2},
			"confidence must be between 0 and 1"},
		{"learning (control)", a, "record_learning", map[string]any{"agentId": "alice", "context": "c", "lesson": "l", "confidence": 1}, ""},
		{"blank content", a, "send_ai_message", map[string]any{"from": "alice", "to": "bob", "content": " "}, "content must not be empty"},
		{"blank summary", a, "end_session", map[string]any{"agentId": "alice", "projectId": "p", "summary": ""}, "summary must not be empty"},
		{"missing entity", a, "add_observations", map[string]any{"observations": []any{map[string]any{"entityName": "Nope", "contents": []string{"x"}}}},
			"Entity with name Nope not found"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			res := ts.call(st.ctx, st.tool, st.args)
			got := errText(res)
			if st.want == "" {
				if res.IsError {
					t.Fatalf("%s(%v) = error %q, want success", st.tool, st.args, got)
				}
				return
			}
			if !res.IsError || got != st.want {
				t.Errorf("%s(%v) = %q (isError %v), want error %q", st.tool, st.args, got, res.IsError, st.want)
			}
		})
	}
}

// TestMemoryMessage covers the memory failures the input schemas keep
// from reaching the store through a tool call, so the end-to-end test
// above cannot provoke them.
func TestMemoryMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *memory.Error
		want string
	}{
		{"id syntax", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeBadID, Field: memory.FieldProject, Detail: "must not be empty"},
			"projectId must not be empty"},
		{"sender id syntax", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeBadID, Field: memory.FieldSender, Detail: "must not be empty"},
			"from must not be empty"},
		{"too many open items", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeTooMany, Field: memory.FieldOpenItems, Limit: 3},
			"at most 3 openItems"},
		{"too many capabilities", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeTooMany, Field: memory.FieldCapabilities, Limit: 2},
			"at most 2 capabilities per agent"},
		{"learning too long", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeTooLong, Field: memory.FieldLearningText, Limit: 9},
			"context and lesson are limited to 9 bytes"},
		{"content too long", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeTooLong, Field: memory.FieldContent, Limit: 9},
			"content is limited to 9 bytes"},
		{"message type", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeNotOneOf, Field: memory.FieldMessageType, Allowed: []string{"info", "task"}},
			"messageType must be one of info, task"},
		{"search type", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeNotOneOf, Field: memory.FieldSearchMode, Allowed: []string{"exact"}},
			"searchType must be one of exact"},
		{"selection too broad", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeTooBroad, Field: memory.FieldCapabilities, Limit: 5},
			"the selection matches more than 5 agents; narrow it with toCapabilities"},
		{"page", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeBadPage}, "limit must be positive and offset not negative"},
		{"no embedder", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeNoEmbedder, Field: memory.FieldSearchMode}, msgNoEmbedder},
		{"preferences", &memory.Error{Kind: memory.ErrInvalid, Code: memory.CodeBadValue, Field: memory.FieldPreferences, Detail: "must be a JSON object"},
			"preferences must be a JSON object"},
		{"unregistered new agent id", &memory.Error{Kind: memory.ErrNotFound, Code: memory.CodeNotRegistered, Field: memory.FieldNewAgent, ID: "z"},
			`agent "z" is not registered; register it with register_agent or set autoRegister`},
		{"unregistered agent, no identity hint", &memory.Error{Kind: memory.ErrNotFound, Code: memory.CodeNotRegistered, Field: memory.FieldAgent, ID: "z"},
			`agent "z" is not registered`},
		{"delegation not found", &memory.Error{Kind: memory.ErrNotFound, Code: memory.CodeNotFound, Field: memory.FieldDelegation, ID: "d1"},
			`delegation "d1" not found`},
		{"trust session not found", &memory.Error{Kind: memory.ErrNotFound, Code: memory.CodeNotFound, Field: memory.FieldTrustSession, ID: "s1"},
			`trust session "s1" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memoryMessage(tt.err); got != tt.want {
				t.Errorf("memoryMessage(%+v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
