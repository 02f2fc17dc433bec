package memory

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// TestSchemasMatch: after migrating, SQLite and PostgreSQL have the same
// tables with the same columns, read from each engine's catalog. Ignored,
// each for its reason: SQLite's FTS5 tables and their shadow tables
// (*_fts*, PostgreSQL searches with pg_trgm indexes instead), SQLite's
// internal sqlite_* tables, and PostgreSQL's explicit rowid identity
// columns (SQLite tables have an implicit rowid). The PostgreSQL half
// runs with NEXUS_TEST_POSTGRES.
func TestSchemasMatch(t *testing.T) {
	ctx := context.Background()
	lite, err := Open(ctx, filepath.Join(t.TempDir(), "nexus.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	sqliteCols := catalogColumns(t, lite, `SELECT m.name || '.' || c.name FROM sqlite_schema m, pragma_table_info(m.name) c
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '%_fts%'`)
	if !slices.Contains(sqliteCols, "entities.tenant_id") || !slices.Contains(sqliteCols, "schema_migrations.version") {
		t.Fatalf("sqlite columns = %v, want entities.tenant_id and schema_migrations.version among them", sqliteCols)
	}
	base := os.Getenv(memtest.EnvPostgres)
	if base == "" {
		t.Skip("PostgreSQL half: set " + memtest.EnvPostgres)
	}
	pg, err := Open(ctx, memtest.Schema(t, base), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	pgCols := catalogColumns(t, pg, `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND column_name <> 'rowid'`)
	if !slices.Equal(sqliteCols, pgCols) {
		t.Errorf("schemas differ:\nonly sqlite:   %v\nonly postgres: %v", minus(sqliteCols, pgCols), minus(pgCols, sqliteCols))
	}
}

func catalogColumns(t *testing.T, s *Store, q string) []string {
	t.Helper()
	rows, err := s.r.Query(q)
	out, err := collect(rows, err, scanOne[string])
	if err != nil {
		t.Fatalf("%s: %v", strings.TrimSpace(q), err)
	}
	slices.Sort(out)
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
