package memory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// newTestStore opens a fresh store in t.TempDir with tenants "a" and "b".
func newTestStore(t testing.TB) *Store {
	t.Helper()
	return openTestStore(t, "", Options{})
}

// openTestStore opens a store at dsn (a fresh one in t.TempDir when "")
// with options o and makes sure tenants "a" and "b" exist; the store is
// closed when the test ends.
func openTestStore(t testing.TB, dsn string, o Options) *Store {
	t.Helper()
	if dsn == "" {
		dsn = memtest.DSN(t)
	}
	s, err := Open(context.Background(), dsn, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	for _, id := range []string{"a", "b"} {
		if err := s.EnsureTenant(context.Background(), id); err != nil {
			t.Fatalf("EnsureTenant(%q): %v", id, err)
		}
	}
	return s
}

// testClock is an injectable clock: tests move it by hand (Advance), or,
// with step set, every reading moves it by step first.
type testClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newReplicas opens n stores on one fresh database, as n replicas of the
// server would, with agent scope scope and tenants "a" and "b".
func newReplicas(t testing.TB, n int, scope string) []*Store {
	t.Helper()
	dsn := memtest.DSN(t)
	out := make([]*Store, n)
	for i := range out {
		s, err := Open(context.Background(), dsn, Options{AgentScope: scope})
		if err != nil {
			t.Fatalf("Open replica %d: %v", i, err)
		}
		t.Cleanup(func() { s.Close() })
		out[i] = s
	}
	for _, id := range []string{"a", "b"} {
		if err := out[0].CreateTenant(context.Background(), id, ""); err != nil {
			t.Fatalf("CreateTenant(%q): %v", id, err)
		}
	}
	return out
}

// as returns a context acting as tenant.
func as(tenant string) context.Context {
	return tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: tenant, AuthMethod: tenancy.AuthAPIKey})
}

// openSQLiteStore opens a store on a new SQLite file, on either backend's
// run, for the properties of the SQLite backend itself.
func openSQLiteStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "nexus.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPragmasOnEveryPooledConnection is about SQLite's pragmas, so it opens
// a SQLite file whichever backend the suite runs on; TestTransactionModes
// covers what stands in for them on PostgreSQL.
func TestPragmasOnEveryPooledConnection(t *testing.T) {
	s := openSQLiteStore(t)
	ctx := context.Background()
	want := map[string]string{"busy_timeout": "5000", "journal_mode": "wal", "foreign_keys": "1", "synchronous": "1"}
	// Hold several reader connections at once so each read-back below comes
	// from a distinct pooled connection, not the same idle one again.
	const n = 4
	for i := 0; i < n; i++ {
		c, err := s.r.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close() // before the store's Close, which waits for its connections
		for p, v := range want {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+p).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != v {
				t.Errorf("reader conn %d: PRAGMA %s = %q, want %q", i, p, got, v)
			}
		}
	}
	got, err := s.Pragmas(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for p, v := range want {
		if got[p] != v {
			t.Errorf("writer: PRAGMA %s = %q, want %q", p, got[p], v)
		}
	}
}

// TestTransactionModes: reads cannot write and writes of a tenant are
// serialized, on each engine its own way — SQLite: query_only readers and
// one writer connection; PostgreSQL: REPEATABLE READ read-only reads and
// a write transaction holding its tenant's advisory lock.
func TestTransactionModes(t *testing.T) {
	s := newTestStore(t)
	ctx := as("a")
	if s.pg == nil {
		if st := s.w.Stats(); st.MaxOpenConnections != 1 {
			t.Errorf("writer MaxOpenConnections = %d, want 1", st.MaxOpenConnections)
		}
		err := s.read(ctx, func(tx *txn) error {
			var qo string
			if err := tx.queryRow("PRAGMA query_only").Scan(&qo); err != nil || qo != "1" {
				t.Errorf("reader query_only = %q (%v), want 1", qo, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	err := s.read(ctx, func(tx *txn) error {
		for setting, want := range map[string]string{"transaction_isolation": "repeatable read", "transaction_read_only": "on"} {
			var got string
			if err := tx.queryRow("SHOW " + setting).Scan(&got); err != nil || got != want {
				t.Errorf("read transaction: SHOW %s = %q (%v), want %q", setting, got, err, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.write(ctx, func(tx *txn) error {
		var n int
		if err := tx.queryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND pid = pg_backend_pid()`).Scan(&n); err != nil || n != 1 {
			t.Errorf("write transaction holds %d advisory locks (%v), want 1 (its tenant's)", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrationsFromEmptyFile: Open migrates an empty database (a SQLite
// file in directories it creates, with private modes; or a new PostgreSQL
// schema) and reopening applies nothing twice.
func TestMigrationsFromEmptyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	dsn := filepath.Join(dir, "dir", "nexus.db")
	if memtest.Postgres() {
		dsn = memtest.DSN(t)
	}
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatalf("Open on a new database: %v", err)
	}
	got, err := s.Migrations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] != "0001_init.sql" {
		t.Fatalf("Migrations() = %v, want 0001_init.sql first", got)
	}
	s.Close()
	if !memtest.Postgres() {
		for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Dir(dsn): 0o700, dsn: 0o600} {
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
				t.Errorf("Stat(%s) = %v, %v; want mode %v", path, fi.Mode().Perm(), err, want)
			}
		}
	}
	// Reopening applies nothing twice.
	s2, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	again, _ := s2.Migrations(context.Background())
	if !slices.Equal(again, got) {
		t.Errorf("after reopen Migrations() = %v, want %v", again, got)
	}
}

// TestTenantTablesHaveTenantNotNull: every table but the ones that hold
// no tenant's data (tenants, schema_migrations, replicas) has a NOT NULL
// tenant_id, read from the engine's own catalog.
func TestTenantTablesHaveTenantNotNull(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	// tables lists the tables with tenant_id's nullability ("" when absent).
	tables := `SELECT m.name, coalesce((SELECT CASE "notnull" WHEN 1 THEN 'NO' ELSE 'YES' END
			FROM pragma_table_info(m.name) WHERE name = 'tenant_id'), '')
		FROM sqlite_schema m WHERE m.type = 'table'
		AND m.name NOT IN ('tenants', 'schema_migrations', 'replicas') AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '%_fts%'`
	if s.pg != nil {
		tables = `SELECT t.table_name, coalesce((SELECT c.is_nullable FROM information_schema.columns c
				WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name AND c.column_name = 'tenant_id'), '')
			FROM information_schema.tables t WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
			AND t.table_name NOT IN ('tenants', 'schema_migrations', 'replicas')`
	}
	rows, err := s.r.QueryContext(ctx, tables)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name, nullable string
		if err := rows.Scan(&name, &nullable); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		switch nullable {
		case "":
			t.Errorf("table %s: no tenant_id column", name)
		case "YES":
			t.Errorf("table %s: tenant_id is nullable", name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api_keys", "members", "entities", "observations", "relations", "agents", "messages", "learnings", "preferences", "handoffs"} {
		if !slices.Contains(names, want) {
			t.Errorf("tables %v: missing %s", names, want)
		}
	}
}

func TestFailsClosedWithoutTenant(t *testing.T) {
	s := newTestStore(t)
	ctxs := map[string]context.Context{
		"no RequestContext": context.Background(),
		"empty tenant":      tenancy.NewContext(context.Background(), tenancy.RequestContext{UserID: "u"}),
	}
	for name, ctx := range ctxs {
		t.Run(name, func(t *testing.T) {
			if _, err := s.CreateEntities(ctx, []Entity{{Name: "x", EntityType: "t"}}); !errors.Is(err, tenancy.ErrNoTenant) {
				t.Errorf("CreateEntities err = %v, want ErrNoTenant", err)
			}
			if _, err := s.ReadGraph(ctx, Page{}); !errors.Is(err, tenancy.ErrNoTenant) {
				t.Errorf("ReadGraph err = %v, want ErrNoTenant", err)
			}
			if _, err := s.SearchNodes(ctx, "x", Page{}); !errors.Is(err, tenancy.ErrNoTenant) {
				t.Errorf("SearchNodes err = %v, want ErrNoTenant", err)
			}
		})
	}
	// positive control: with a tenant the same call works
	if _, err := s.CreateEntities(as("a"), []Entity{{Name: "x", EntityType: "t"}}); err != nil {
		t.Errorf("CreateEntities with tenant: %v", err)
	}
}

func TestClockIsInjectable(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := Open(context.Background(), memtest.DSN(t), Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateTenant(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	got, err := s.CreateEntities(as("a"), []Entity{{Name: "x", EntityType: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "2030-01-02T03:04:05.000000000Z"; got[0].CreatedAt != want {
		t.Errorf("CreatedAt = %q, want %q", got[0].CreatedAt, want)
	}
}

// TestAdmin covers the administrative operations (tenants, kill switch,
// rate limits, API keys, membership), which take the tenant as an argument;
// b's rows never show up in a's lists.
func TestAdmin(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	t.Run("tenants", func(t *testing.T) {
		if err := s.CreateTenant(ctx, "a", ""); !errors.Is(err, ErrConflict) {
			t.Errorf("CreateTenant(a) again = %v, want ErrConflict", err)
		}
		if err := s.EnsureTenant(ctx, "a"); err != nil {
			t.Errorf("EnsureTenant(a) = %v, want nil", err)
		}
		if err := s.CreateTenant(ctx, "bad id", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateTenant(bad id) = %v, want ErrInvalid", err)
		}
		if err := s.SetTenantDisabled(ctx, "a", true); err != nil {
			t.Fatalf("SetTenantDisabled(a, true): %v", err)
		}
		if err := s.SetTenantRateLimit(ctx, "a", 2.5, 7); err != nil {
			t.Fatalf("SetTenantRateLimit(a): %v", err)
		}
		want := tenancy.TenantStatus{Exists: true, Disabled: true, RPS: 2.5, Burst: 7}
		if got, err := s.TenantStatus(ctx, "a"); err != nil || got != want {
			t.Errorf("TenantStatus(a) = %+v, %v; want %+v", got, err, want)
		}
		if got, err := s.TenantStatus(ctx, "b"); err != nil || got != (tenancy.TenantStatus{Exists: true}) {
			t.Errorf("TenantStatus(b) = %+v, %v; want existing, enabled, default rates", got, err)
		}
		if err := s.SetTenantDisabled(ctx, "a", false); err != nil {
			t.Fatalf("SetTenantDisabled(a, false): %v", err)
		}
		if got, err := s.Tenant(ctx, "a"); err != nil || got.Disabled {
			t.Errorf("Tenant(a) after enabling = %+v, %v; want enabled", got, err)
		}
		if got, err := s.TenantStatus(ctx, "nobody"); err != nil || got.Exists {
			t.Errorf("TenantStatus(nobody) = %+v, %v; want not existing", got, err)
		}
		if err := s.SetTenantDisabled(ctx, "nobody", true); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetTenantDisabled(nobody) = %v, want ErrNotFound", err)
		}
		if ts, err := s.Tenants(ctx); err != nil || len(ts) != 2 || ts[0].ID != "a" || ts[1].ID != "b" {
			t.Errorf("Tenants() = %+v, %v; want a, b", ts, err)
		}
	})
	t.Run("api keys", func(t *testing.T) {
		key, k, err := s.CreateAPIKey(ctx, NewKey{TenantID: "a", UserID: "u", Name: "ci", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreateAPIKey(ctx, NewKey{TenantID: "b", UserID: "v"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreateAPIKey(ctx, NewKey{TenantID: "nobody"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("CreateAPIKey(nobody) = %v, want ErrNotFound", err)
		}
		if err := s.SetTenantRateLimit(ctx, "a", 2.5, 7); err != nil {
			t.Fatal(err)
		}
		got, err := s.APIKeyByHash(ctx, tenancy.HashAPIKey(key))
		if err != nil || got.ID != k.ID || got.TenantID != "a" || got.UserID != "u" || got.ExpiresAt.IsZero() ||
			!got.RevokedAt.IsZero() || got.Tenant != (tenancy.TenantStatus{Exists: true, RPS: 2.5, Burst: 7}) {
			t.Errorf("APIKeyByHash = %+v, %v; want key %s of a, expiring, not revoked, tenant a's rate 2.5/7", got, err, k.ID)
		}
		// The tenant's status comes with the key: the kill switch shows.
		if err := s.SetTenantDisabled(ctx, "a", true); err != nil {
			t.Fatal(err)
		}
		if got, err := s.APIKeyByHash(ctx, tenancy.HashAPIKey(key)); err != nil || !got.Tenant.Disabled {
			t.Errorf("APIKeyByHash with a disabled = %+v, %v; want Tenant.Disabled", got, err)
		}
		if err := s.SetTenantDisabled(ctx, "a", false); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTenantRateLimit(ctx, "a", 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.APIKeyByHash(ctx, tenancy.HashAPIKey("unknown")); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Errorf("APIKeyByHash(unknown) = %v, want ErrUnauthenticated", err)
		}
		if ks, err := s.APIKeys(ctx, "a"); err != nil || len(ks) != 1 || ks[0].ID != k.ID || ks[0].ExpiresAt == "" {
			t.Errorf("APIKeys(a) = %+v, %v; want a's key only", ks, err)
		}
		if err := s.RevokeAPIKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := s.APIKeyByHash(ctx, tenancy.HashAPIKey(key)); err != nil || got.RevokedAt.IsZero() {
			t.Errorf("APIKeyByHash after revoke = %+v, %v; want revoked", got, err)
		}
		if err := s.RevokeAPIKey(ctx, "key_nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeAPIKey(unknown) = %v, want ErrNotFound", err)
		}
	})
	t.Run("members", func(t *testing.T) {
		fromC := func(u string) tenancy.Principal {
			return tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "c", UserID: u}
		}
		fromD := func(u string) tenancy.Principal {
			return tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: "d", UserID: u}
		}
		jwtU := tenancy.Principal{Kind: tenancy.PrincipalIssuer, Source: "https://issuer.test", UserID: "u"}
		for _, m := range []struct {
			tenant string
			p      tenancy.Principal
			role   string
		}{{"a", fromC("u"), "member"}, {"a", fromC("u"), "admin"}, {"b", fromC("w"), "member"}} {
			if err := s.SetMember(ctx, m.tenant, m.p, m.role); err != nil {
				t.Fatalf("SetMember(%v): %v", m, err)
			}
		}
		if err := s.SetMember(ctx, "a", fromC("u"), "owner"); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetMember(role owner) = %v, want ErrInvalid", err)
		}
		for _, p := range []tenancy.Principal{{UserID: "u"}, {Kind: tenancy.PrincipalTenant, UserID: "u"}, {Kind: "x", Source: "c", UserID: "u"}} {
			if err := s.SetMember(ctx, "a", p, "member"); !errors.Is(err, ErrInvalid) {
				t.Errorf("SetMember(%+v without origin) = %v, want ErrInvalid", p, err)
			}
		}
		if ms, err := s.Members(ctx, "a"); err != nil || len(ms) != 1 || ms[0].UserID != "u" || ms[0].Source != "c" || ms[0].Role != "admin" {
			t.Errorf("Members(a) = %+v, %v; want c's u as admin only", ms, err)
		}
		// The same user id from elsewhere is someone else.
		for _, p := range []tenancy.Principal{fromD("u"), jwtU, {UserID: "u"}} {
			if role, err := s.Membership(ctx, "a", p); err != nil || role != "" {
				t.Errorf("Membership(a, %v) = %q, %v; want none", p, role, err)
			}
		}
		if role, err := s.Membership(ctx, "a", fromC("u")); err != nil || role != "admin" {
			t.Errorf("Membership(a, c's u) = %q, %v; want admin (control)", role, err)
		}
		if role, err := s.Membership(ctx, "b", fromC("u")); err != nil || role != "" {
			t.Errorf("Membership(b, u) = %q, %v; want none", role, err)
		}
		if err := s.RemoveMember(ctx, "a", fromC("u")); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveMember(ctx, "a", fromC("u")); !errors.Is(err, ErrNotFound) {
			t.Errorf("RemoveMember twice = %v, want ErrNotFound", err)
		}
		if role, err := s.Membership(ctx, "b", fromC("w")); err != nil || role != "member" {
			t.Errorf("Membership(b, w) = %q, %v; want member", role, err)
		}
	})
}
