// Package memtest chooses the database a test opens: a fresh SQLite file,
// or, when NEXUS_TEST_POSTGRES holds a PostgreSQL URL, a fresh schema of
// that database, dropped when the test ends. Every store test takes its
// database from here, so the same tests run on both backends (.ci/run runs
// the suite once without and once with NEXUS_TEST_POSTGRES).
//
// memtest does not import memory, so memory's own tests can use it.
package memtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvPostgres names the environment variable with the PostgreSQL URL.
const EnvPostgres = "NEXUS_TEST_POSTGRES"

// Postgres reports whether tests run on PostgreSQL.
func Postgres() bool { return os.Getenv(EnvPostgres) != "" }

// DSN returns a new empty database for t: a PostgreSQL URL whose
// search_path is a new schema, or a SQLite file path in t.TempDir().
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		return filepath.Join(t.TempDir(), "nexus.db")
	}
	return Schema(t, base)
}

var extOnce sync.Once

// Schema creates a schema in the PostgreSQL database at base and returns
// base with search_path set to it (then public, where pg_trgm and btree_gin live). The
// schema is dropped with everything in it when t ends.
func Schema(t testing.TB, base string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("memtest: connect %s: %v", EnvPostgres, err)
	}
	defer conn.Close(ctx)
	extOnce.Do(func() {
		// Once per database, before any schema exists: an extension created
		// while search_path names a test schema would land in that schema.
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4242);
			CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
			CREATE EXTENSION IF NOT EXISTS btree_gin SCHEMA public;
			SELECT pg_advisory_unlock(4242)`); err != nil {
			t.Fatalf("memtest: create extensions: %v", err)
		}
	})
	b := make([]byte, 8)
	rand.Read(b)
	schema := "nexus_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("memtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("memtest: drop schema: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("memtest: drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("memtest: %s: %v", EnvPostgres, err)
	}
	q := u.Query()
	q.Set("search_path", schema+",public")
	u.RawQuery = q.Encode()
	return u.String()
}
