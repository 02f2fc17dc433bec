package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// modulePath is this module's import path; layer names below are relative
// to it.
const modulePath = "github.com/nexus-mcp/nexus-mcp"

// layer is one row of STYLE.md §1: which packages of this module a package
// may import, and which third-party import paths (prefixes) it may use.
// The standard library is always allowed, except where std lists what is
// forbidden.
type layer struct {
	module     []string // module-internal packages (relative paths)
	thirdParty []string // import path prefixes outside the module
	forbidStd  []string // standard-library packages this layer must not use
}

// mcpGo is the MCP library; only the MCP surface and the server may import it.
const mcpGo = "github.com/mark3labs/mcp-go/"

// layers is the import table of STYLE.md §1. A package of the module with
// no row here fails the test, so a new package must be placed in the table.
// A key ending in "/" matches every package below it.
var layers = map[string]layer{
	"cmd/nexus-mcp": {module: []string{"*"}, thirdParty: []string{"*"}},
	"cmd/nexus-mcp/internal/": {
		module:     []string{"tools", "tenancy", "delegation", "cmd/nexus-mcp/internal/"},
		thirdParty: []string{mcpGo, "golang.org/x/", "github.com/prometheus/", "github.com/hashicorp/golang-lru/"},
		forbidStd:  []string{"database/sql"},
	},
	"tools": {
		module:     []string{"memory", "delegation", "tenancy"},
		thirdParty: []string{mcpGo, "github.com/google/jsonschema-go/", "golang.org/x/"},
		forbidStd:  []string{"database/sql"},
	},
	"memory": {
		module: []string{"delegation", "tenancy"},
		thirdParty: []string{"modernc.org/sqlite", "github.com/jackc/pgx/", "github.com/hashicorp/golang-lru/",
			"golang.org/x/", "github.com/kljensen/snowball"},
	},
	// memtest is the storage test fixture (SQLite temp dirs, PostgreSQL
	// schemas) that the test files of every package share.
	"memory/memtest": {module: []string{"memory"}, thirdParty: []string{"github.com/jackc/pgx/"}},
	"delegation": {
		module:    []string{"tenancy"},
		forbidStd: []string{"database/sql"},
	},
	"tenancy": {
		thirdParty: []string{"github.com/golang-jwt/jwt/", "golang.org/x/time/"},
		forbidStd:  []string{"database/sql"},
	},
}

// importEdge is one import of a non-test file: from imports to.
type importEdge struct{ from, to string }

// goListEdges lists the imports of every package's non-test files.
func goListEdges(t *testing.T) []importEdge {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, modulePath+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	var edges []importEdge
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		edges = append(edges, importEdge{from: f[0]})
		for _, to := range f[1:] {
			edges = append(edges, importEdge{from: f[0], to: to})
		}
	}
	return edges
}

// layerOf returns the table row for a module package (relative path).
func layerOf(rel string) (layer, bool) {
	if l, ok := layers[rel]; ok {
		return l, true
	}
	for k, l := range layers {
		if strings.HasSuffix(k, "/") && strings.HasPrefix(rel, k) {
			return l, true
		}
	}
	return layer{}, false
}

// matches reports whether path is allowed by one of the patterns (exact,
// "*", or a prefix ending in "/").
func matches(path string, patterns []string) bool {
	for _, p := range patterns {
		if p == "*" || p == path || (strings.HasSuffix(p, "/") && strings.HasPrefix(path, p)) ||
			strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// isStd reports whether an import path is in the standard library (no dot
// in its first element).
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// layeringViolations checks edges against the table and returns one line per
// edge that the table does not allow, and per package it does not list.
func layeringViolations(edges []importEdge) []string {
	var bad []string
	seen := map[string]bool{}
	for _, e := range edges {
		rel, ok := strings.CutPrefix(e.from, modulePath+"/")
		if !ok {
			continue
		}
		l, ok := layerOf(rel)
		if !ok {
			if !seen[rel] {
				bad = append(bad, fmt.Sprintf("package %s has no row in the layering table", rel))
				seen[rel] = true
			}
			continue
		}
		if e.to == "" {
			continue
		}
		switch to, internal := strings.CutPrefix(e.to, modulePath+"/"); {
		case internal:
			if !matches(to, l.module) {
				bad = append(bad, fmt.Sprintf("%s imports %s", rel, to))
			}
		case isStd(e.to):
			if matches(e.to, l.forbidStd) {
				bad = append(bad, fmt.Sprintf("%s imports %s", rel, e.to))
			}
		default:
			if !matches(e.to, l.thirdParty) {
				bad = append(bad, fmt.Sprintf("%s imports %s", rel, e.to))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestLayering fails on any import edge of a non-test file that STYLE.md §1
// does not allow: nothing imports tools or cmd, mcp-go stays out of memory,
// delegation and tenancy, database/sql stays in memory.
func TestLayering(t *testing.T) {
	edges := goListEdges(t)
	if len(edges) == 0 {
		t.Fatal("go list returned no packages")
	}
	for _, v := range layeringViolations(edges) {
		t.Error(v)
	}
}

// TestLayeringCatchesBadEdges shows the checker is not blind: edges that
// break the table are reported, and the real edges that look like them are
// not.
func TestLayeringCatchesBadEdges(t *testing.T) {
	m := func(rel string) string { return modulePath + "/" + rel }
	cases := []struct {
		name string
		edge importEdge
		bad  bool
	}{
		{"memory imports tools", importEdge{m("memory"), m("tools")}, true},
		{"tenancy imports memory", importEdge{m("tenancy"), m("memory")}, true},
		{"delegation imports mcp-go", importEdge{m("delegation"), mcpGo + "mcp"}, true},
		{"tools imports database/sql", importEdge{m("tools"), "database/sql"}, true},
		{"server package imports memory", importEdge{m("cmd/nexus-mcp/internal/httpserver"), m("memory")}, true},
		{"unknown package", importEdge{m("util"), "fmt"}, true},
		{"control: tools imports memory", importEdge{m("tools"), m("memory")}, false},
		{"control: memory imports database/sql", importEdge{m("memory"), "database/sql"}, false},
		{"control: tenancy imports golang-jwt", importEdge{m("tenancy"), "github.com/golang-jwt/jwt/v5"}, false},
		{"control: cmd imports tools", importEdge{m("cmd/nexus-mcp"), m("tools")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := layeringViolations([]importEdge{c.edge})
			if (len(got) > 0) != c.bad {
				t.Errorf("layeringViolations(%s -> %s) = %q, want violation: %v", c.edge.from, c.edge.to, got, c.bad)
			}
		})
	}
}
