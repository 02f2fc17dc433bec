package memory

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dialectViolations lists, for the Go source src of file name, what
// STYLE.md's dialect rule forbids outside dialect.go: a branch on the
// PostgreSQL backend (x.pg == nil, x.pg != nil), a string literal with a
// $n placeholder, and a literal with json_each( (the JSON array expansion
// the dialect supplies).
func dialectViolations(t *testing.T, name string, src any) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	placeholder := regexp.MustCompile(`\$[0-9]`)
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BinaryExpr:
			if n.Op != token.EQL && n.Op != token.NEQ {
				return true
			}
			for _, side := range []ast.Expr{n.X, n.Y} {
				if sel, ok := side.(*ast.SelectorExpr); ok && sel.Sel.Name == "pg" {
					out = append(out, fset.Position(n.Pos()).String()+": branch on .pg")
				}
			}
		case *ast.BasicLit:
			if n.Kind != token.STRING {
				return true
			}
			if placeholder.MatchString(n.Value) {
				out = append(out, fset.Position(n.Pos()).String()+": $n placeholder in SQL")
			}
			if strings.Contains(n.Value, "json_each(") {
				out = append(out, fset.Position(n.Pos()).String()+": json_each outside the dialect")
			}
		}
		return true
	})
	return out
}

// TestDialectRule: SQLite and PostgreSQL differ through the dialect value
// (dialect.go) only: no other file of the package branches on the
// PostgreSQL backend or writes engine-specific placeholders or JSON array
// expansion into its SQL.
func TestDialectRule(t *testing.T) {
	t.Run("positive control", func(t *testing.T) {
		src := "package memory\n" +
			"func f(s *Store) string {\n" +
			"	if s.pg != nil { return `SELECT pg_notify($1, $2)` }\n" +
			"	return `SELECT value FROM json_each(?)`\n" +
			"}\n"
		if got := dialectViolations(t, "control.go", src); len(got) != 3 {
			t.Errorf("dialectViolations(control) = %q, want 3 violations", got)
		}
	})
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range names {
		if name == "dialect.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		checked++
		for _, v := range dialectViolations(t, name, nil) {
			t.Error(v)
		}
	}
	if checked < 10 {
		t.Errorf("checked %d files, want the package's sources", checked)
	}
}

// TestNumberPlaceholders: PostgreSQL's bind numbers the ? placeholders in
// order and leaves quoted text alone.
func TestNumberPlaceholders(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"none", "SELECT 1", "SELECT 1"},
		{"in order", "SELECT ? WHERE a = ? AND b = ?", "SELECT $1 WHERE a = $2 AND b = $3"},
		{"single quotes", "SELECT '?' , ?", "SELECT '?' , $1"},
		{"double quotes", `SELECT "a?b", ?`, `SELECT "a?b", $1`},
		{"dialect snippet", "SELECT value FROM " + newPostgresDialect().textArray, "SELECT value FROM jsonb_array_elements_text($1::jsonb)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := numberPlaceholders(tc.in); got != tc.want {
				t.Errorf("numberPlaceholders(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got := sqliteDialect.bind(tc.in); got != tc.in {
				t.Errorf("sqliteDialect.bind(%q) = %q, want it unchanged", tc.in, got)
			}
		})
	}
}
