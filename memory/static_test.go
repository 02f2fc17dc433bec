package memory

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// A static check that every SQL statement in
// this package that touches a tenant table carries a tenant predicate, and
// that every tenant table keys its rows and references by tenant.

type sqlStmt = memtest.Statement

func collectSQL(t *testing.T, fset *token.FileSet, files []*ast.File) []sqlStmt {
	t.Helper()
	return memtest.SQLStatements(fset, files)
}

var (
	sqlSpace = regexp.MustCompile(`\s+`)
	// orderBy is an ORDER BY clause up to LIMIT, a closing parenthesis or
	// the end: "ORDER BY tenant_id = ? DESC" sorts, it does not filter.
	orderBy = regexp.MustCompile(`\border by [^()]*?(\blimit\b|\)|$)`)
	// tableRef captures the table after FROM, JOIN, INTO and UPDATE.
	tableRef = regexp.MustCompile(`\b(?:from|join|into|update)\s+([a-z_][a-z0-9_]*)`)
	// tenantPred is one tenant predicate: tenant_id = ?, the composite join
	// form x.tenant_id = y.tenant_id, or tenant_id = excluded.tenant_id.
	tenantPred = regexp.MustCompile(`\b(?:[a-z_][a-z0-9_]*\.)?tenant_id\s*=\s*(?:\?|[a-z_][a-z0-9_]*\.tenant_id\b)`)
	// tenantInsert is an INSERT whose column list names tenant_id.
	tenantInsert = regexp.MustCompile(`\binsert\s+(?:or\s+\w+\s+)?into\s+[a-z_][a-z0-9_]*\s*\([^)]*\btenant_id\b`)
)

// sqlViolation reports why stmt lacks a tenant predicate, or "". Every
// reference to a tenant table (FROM, JOIN, INTO, UPDATE) needs one tenant
// predicate of its own; INSERT INTO t (tenant_id, ...) is the predicate of
// its INSERT.
func sqlViolation(stmt string, tenantTables map[string]bool) string {
	s := strings.ToLower(sqlSpace.ReplaceAllString(stmt, " "))
	s = orderBy.ReplaceAllString(s, "$1")
	var refs []string
	for _, m := range tableRef.FindAllStringSubmatch(s, -1) {
		if tenantTables[m[1]] {
			refs = append(refs, m[1])
		}
	}
	if len(refs) == 0 {
		return ""
	}
	preds := len(tenantPred.FindAllString(s, -1)) + len(tenantInsert.FindAllString(s, -1))
	if preds < len(refs) {
		return "tenant tables " + strings.Join(refs, ", ") + ": " + strconv.Itoa(len(refs)) +
			" references, " + strconv.Itoa(preds) + " tenant predicates"
	}
	return ""
}

// sqlAllow lists the statements that legitimately touch a tenant table
// without a tenant predicate: each is found by its file and a fragment of
// its text, with the reason. Keep it small; every entry must still match.
var sqlAllow = []struct {
	file, fragment, reason string
}{
	{"admin.go", "where k.key_hash = ?", "API-key lookup by hash: the key is what establishes the tenant"},
	{"admin.go", "update api_keys set revoked_at", "administrative key revocation by key id (CLI), no tenant in play"},
	{"agents.go", "where agent_id = ? and tenant_id <> ?", "global agent registry: is the id owned (registered or key-bound) by another tenant"},
	{"agents.go", "from agents where agent_id = ? order by tenant_id = ? desc", "global agent registry read by id (AgentScopeGlobal)"},
	{"agents.go", "select 1 from agents where agent_id = ? limit 1", "global agent registry: does the id exist in any tenant"},
	{"semantic.go", "select distinct tenant_id from embed_queue", "embedding indexer: which tenants have queued entities (ids only); it then works tenant by tenant"},
	{"searchqueue.go", "select distinct tenant_id from search_queue", "word-index worker: which tenants have queued entities (ids only); it then works tenant by tenant"},
	{"crossprocess.go", "from changes where seq > ?", "change events of every tenant, polled for the subscribers of each (delivery filters by tenant)"},
	{"crossprocess.go", "delete from changes where at < ?", "pruning old change events of every tenant"},
	{"crossprocess.go", "select coalesce(max(seq), 0) from changes", "where the change events of every tenant end, when polling starts"},
}

func allowed(pos, stmt string) (int, bool) {
	s := strings.ToLower(sqlSpace.ReplaceAllString(stmt, " "))
	file := strings.SplitN(pos, ":", 2)[0]
	for i, a := range sqlAllow {
		if a.file == file && strings.Contains(s, a.fragment) {
			return i, true
		}
	}
	return -1, false
}

// TestStaticTenantPredicates parses every SQL statement of the package and
// checks it against the tenant tables read from the schema of the backend
// under test (sqlite_schema, or PostgreSQL's catalog).
func TestStaticTenantPredicates(t *testing.T) {
	s := newTestStore(t)
	tables := tenantTables(t, s)
	if len(tables) < 10 {
		t.Fatalf("tenant tables = %v, want at least the tables of migrations 0001-0003", tables)
	}

	stmts, err := memtest.PackageSQL(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) < 50 {
		t.Fatalf("found %d SQL statements, want the package's ~100; is the collector broken?", len(stmts))
	}
	used := make([]bool, len(sqlAllow))
	violations, allowedN := 0, 0
	for _, st := range stmts {
		why := sqlViolation(st.Text, tables)
		if why == "" {
			continue
		}
		if i, ok := allowed(st.Pos, st.Text); ok {
			used[i] = true
			allowedN++
			continue
		}
		violations++
		t.Errorf("%s: %s without a tenant predicate:\n%s", st.Pos, why, strings.TrimSpace(st.Text))
	}
	for i, u := range used {
		if !u {
			t.Errorf("allow-list entry %q (%s) matches no statement; remove it", sqlAllow[i].fragment, sqlAllow[i].file)
		}
	}

	// Positive control: the checker flags statements without the predicate
	// and passes the forms that carry it.
	controls := []struct {
		name string
		src  string
		want bool // flagged
	}{
		{"select without predicate", "SELECT name FROM entities WHERE name = ?", true},
		{"join without predicate on the joined table", "SELECT e.name FROM entities e JOIN observations o ON o.entity_id = e.id WHERE e.tenant_id = ?", true},
		{"delete without predicate", "DELETE FROM messages WHERE id = ?", true},
		{"update without predicate", "UPDATE handoffs SET status = 'consumed' WHERE id = ?", true},
		{"insert without tenant column", "INSERT INTO learnings (id, agent_id) VALUES (?, ?)", true},
		{"select with predicate", "SELECT name FROM entities WHERE tenant_id = ? AND name = ?", false},
		{"composite join", "SELECT e.name FROM entities e JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id WHERE e.tenant_id = ?", false},
		{"insert with tenant column", "INSERT INTO learnings (tenant_id, id) VALUES (?, ?) ON CONFLICT (tenant_id, id) DO UPDATE SET id = excluded.id", false},
		{"not a tenant table", "SELECT id FROM tenants WHERE id = ?", false},
		{"tenant_id in ORDER BY only", "SELECT name FROM agents WHERE agent_id = ? ORDER BY tenant_id = ? DESC LIMIT 1", true},
	}
	for _, c := range controls {
		t.Run("control/"+c.name, func(t *testing.T) {
			if got := sqlViolation(c.src, tables) != ""; got != c.want {
				t.Errorf("sqlViolation(%q) flagged = %v, want %v", c.src, got, c.want)
			}
		})
	}
	t.Run("control/collector", func(t *testing.T) {
		src := "package x\nconst where = ` FROM entities WHERE name = ?`\nfunc f() { q(`SELECT count(*)` + where); q(\"SELECT 1 FROM agents WHERE tenant_id = ?\") }\n"
		fs := token.NewFileSet()
		f, err := parser.ParseFile(fs, "x.go", src, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := collectSQL(t, fs, []*ast.File{f})
		if len(got) != 2 || sqlViolation(got[0].Text, tables) == "" || sqlViolation(got[1].Text, tables) != "" {
			t.Errorf("collectSQL on a fixture = %+v, want the folded statement flagged and the second not", got)
		}
	})

	t.Logf("metric sql_statements_checked=%d", len(stmts))
	t.Logf("metric sql_statements_allowlisted=%d", allowedN)
	t.Logf("metric tenant_tables=%d", len(tables))
	t.Logf("metric violations=%d", violations)
}

// tenantTables returns the tables whose columns include tenant_id, and
// checks that tenant_id is NOT NULL and that every foreign key into a
// tenant table carries tenant_id (a row can never point into another
// tenant). It reads sqlite_schema on SQLite and the catalog of the test's
// schema on PostgreSQL.
func tenantTables(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	var cols []tenantColumn
	var fks []foreignKey
	if s.pg != nil {
		cols, fks = postgresSchema(t, s)
	} else {
		cols, fks = sqliteSchema(t, s)
	}
	out := map[string]bool{}
	for _, c := range cols {
		out[c.table] = true
		if !c.notNull {
			t.Errorf("table %s: tenant_id is nullable", c.table)
		}
	}
	// Positive control on the reader: observations references entities by
	// (tenant_id, entity_id) on both backends.
	found := false
	for _, k := range fks {
		found = found || (k.table == "observations" && k.target == "entities" && containsStr(k.cols, "tenant_id") && containsStr(k.cols, "entity_id"))
	}
	if !found {
		t.Errorf("foreign keys read = %+v, want observations (tenant_id, entity_id) -> entities among them", fks)
	}
	bad := 0
	for _, k := range fks {
		if out[k.table] && out[k.target] && !containsStr(k.cols, "tenant_id") {
			bad++
			t.Errorf("table %s: foreign key %v into tenant table %s without tenant_id", k.table, k.cols, k.target)
		}
	}
	t.Logf("metric cross_tenant_fks=%d", bad)
	return out
}

// tenantColumn is the tenant_id column of one table.
type tenantColumn struct {
	table   string
	notNull bool
}

// foreignKey is one foreign key of table into target over cols.
type foreignKey struct {
	table, target string
	cols          []string
}

func sqliteSchema(t *testing.T, s *Store) ([]tenantColumn, []foreignKey) {
	t.Helper()
	all := queryStrings(t, s, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	sort.Strings(all)
	var (
		cols []tenantColumn
		fks  []foreignKey
	)
	for _, tbl := range all {
		var notnull int
		err := s.r.QueryRow(`SELECT "notnull" FROM pragma_table_info(?) WHERE name = 'tenant_id'`, tbl).Scan(&notnull)
		if err != nil {
			continue // no tenant_id: tenants, schema_migrations, FTS tables
		}
		cols = append(cols, tenantColumn{table: tbl, notNull: notnull == 1})
		rows, err := s.r.Query(`SELECT id, "table", "from" FROM pragma_foreign_key_list(?)`, tbl)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[int]*foreignKey{}
		var ids []int
		for rows.Next() {
			var (
				id           int
				target, from string
			)
			if err := rows.Scan(&id, &target, &from); err != nil {
				t.Fatal(err)
			}
			if byID[id] == nil {
				byID[id] = &foreignKey{table: tbl, target: target}
				ids = append(ids, id)
			}
			byID[id].cols = append(byID[id].cols, from)
		}
		rows.Close()
		for _, id := range ids {
			fks = append(fks, *byID[id])
		}
	}
	return cols, fks
}

// postgresSchema reads the tables of the store's schema (the first of its
// search_path, a fresh one per test) from information_schema and its
// foreign keys from pg_constraint.
func postgresSchema(t *testing.T, s *Store) ([]tenantColumn, []foreignKey) {
	t.Helper()
	rows, err := s.r.Query(`SELECT table_name, is_nullable FROM information_schema.columns
		WHERE table_schema = current_schema() AND column_name = 'tenant_id' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	var cols []tenantColumn
	for rows.Next() {
		var tbl, nullable string
		if err := rows.Scan(&tbl, &nullable); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, tenantColumn{table: tbl, notNull: nullable == "NO"})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	rows, err = s.r.Query(`SELECT c.conname, src.relname, dst.relname, a.attname
		FROM pg_constraint c
		JOIN pg_class src ON src.oid = c.conrelid
		JOIN pg_namespace n ON n.oid = src.relnamespace
		JOIN pg_class dst ON dst.oid = c.confrelid
		CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
		WHERE c.contype = 'f' AND n.nspname = current_schema()
		ORDER BY src.relname, c.conname, k.ord`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var fks []foreignKey
	last := ""
	for rows.Next() {
		var name, tbl, target, col string
		if err := rows.Scan(&name, &tbl, &target, &col); err != nil {
			t.Fatal(err)
		}
		if key := tbl + "." + name; key != last {
			fks = append(fks, foreignKey{table: tbl, target: target})
			last = key
		}
		fks[len(fks)-1].cols = append(fks[len(fks)-1].cols, col)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols, fks
}

func queryStrings(t *testing.T, s *Store, query string) []string {
	t.Helper()
	rows, err := s.r.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
