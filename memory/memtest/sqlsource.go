package memtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Statement is one SQL statement found in Go source: a string
// literal, or a concatenation of literals and constants, that starts with
// a statement keyword. Parts that are not constant are kept as ⟨expr⟩.
type Statement struct {
	Pos  string // file:line
	Text string
}

// sqlStart matches the start of a statement (the package writes SQL
// keywords in upper case; English text rarely starts so).
var sqlStart = regexp.MustCompile(`^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s`)

// SQLStatements returns the SQL statements of the parsed Go files. It is
// shared by memory's static tenant-predicate check and the mutation check.
// Constants (package-level and function-local) are folded into the
// statements that use them.
func SQLStatements(fset *token.FileSet, files []*ast.File) []Statement {
	global := map[string]ast.Expr{}
	for _, f := range files {
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.CONST {
				addConsts(global, gd)
			}
		}
	}
	var out []Statement
	for _, f := range files {
		for _, d := range f.Decls {
			local := map[string]ast.Expr{}
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				ast.Inspect(fd.Body, func(n ast.Node) bool {
					if gd, ok := n.(*ast.GenDecl); ok && gd.Tok == token.CONST {
						addConsts(local, gd)
					}
					return true
				})
			}
			var fold func(e ast.Expr, depth int) string
			fold = func(e ast.Expr, depth int) string {
				if depth > 32 {
					return "⟨deep⟩"
				}
				switch x := e.(type) {
				case *ast.BasicLit:
					if x.Kind == token.STRING {
						if s, err := strconv.Unquote(x.Value); err == nil {
							return s
						}
					}
				case *ast.ParenExpr:
					return fold(x.X, depth+1)
				case *ast.Ident:
					if v, ok := local[x.Name]; ok {
						return fold(v, depth+1)
					}
					if v, ok := global[x.Name]; ok {
						return fold(v, depth+1)
					}
					return "⟨" + x.Name + "⟩"
				case *ast.BinaryExpr:
					if x.Op == token.ADD {
						return fold(x.X, depth+1) + fold(x.Y, depth+1)
					}
				}
				return "⟨expr⟩"
			}
			ast.Inspect(d, func(n ast.Node) bool {
				var e ast.Expr
				switch x := n.(type) {
				case *ast.BasicLit:
					if x.Kind != token.STRING {
						return true
					}
					e = x
				case *ast.BinaryExpr:
					if x.Op != token.ADD {
						return true
					}
					e = x
				default:
					return true
				}
				s := fold(e, 0)
				if !sqlStart.MatchString(s) {
					return true // a fragment: its statement is checked where it is used
				}
				p := fset.Position(e.Pos())
				out = append(out, Statement{Pos: filepath.Base(p.Filename) + ":" + strconv.Itoa(p.Line), Text: s})
				return false // the outermost concatenation is the statement
			})
		}
	}
	return out
}

func addConsts(m map[string]ast.Expr, gd *ast.GenDecl) {
	for _, sp := range gd.Specs {
		vs := sp.(*ast.ValueSpec)
		for i, name := range vs.Names {
			if i < len(vs.Values) {
				m[name.Name] = vs.Values[i]
			}
		}
	}
}

// PackageSQL returns the SQL statements of the non-test Go files in dir.
func PackageSQL(dir string) ([]Statement, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return SQLStatements(fset, files), nil
}
