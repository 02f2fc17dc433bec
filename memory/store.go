// Package memory owns persistence: opening SQLite with its pragmas, the
// embedded migrations, transactions, and every tenant-scoped read and write
// (graph, messages, learnings, preferences, handoffs, agents, delegation
// records, audit), on SQLite or PostgreSQL, plus the tenant-keyed caches in
// front of them.
//
// Every exported method that touches tenant data reads the tenant from ctx
// (tenancy.TenantFromContext) and fails closed when there is none. SQL and
// driver types never leave this package. memory imports tenancy and
// delegation, never tools or mcp-go.
package memory

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/nexus-mcp/nexus-mcp/tenancy"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// Options configure Open.
type Options struct {
	// Now is the clock; time.Now when nil. Read once per transaction.
	Now func() time.Time
	// MaxConns bounds the connections: the SQLite reader pool (default
	// max(4, GOMAXPROCS); the writer is always one connection), or the one
	// PostgreSQL pool (default 16, or the URL's pool_max_conns).
	MaxConns int
	// Synchronous is the synchronous pragma (default NORMAL).
	Synchronous string
	// Logger receives the store's own operational messages (PostgreSQL
	// listener reconnects); slog.Default() when nil.
	Logger *slog.Logger
	// AgentScope is the agent registry's namespace: AgentScopeGlobal (the
	// default, "global": one id space across tenants, owned by the tenant
	// that registered it) or AgentScopeTenant ("tenant": private per tenant).
	AgentScope string
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// Store is nexus-mcp's storage: SQLite (the embedded default) or
// PostgreSQL (Open with a postgres:// URL). Both run the same methods and
// the same SQL except where the engines differ (search indexes, JSON array
// expansion, locking); the differences live in this package only.
type Store struct {
	path string  // the SQLite file, or the PostgreSQL URL without its password
	w    *sql.DB // SQLite: single writer connection, IMMEDIATE transactions; PostgreSQL: the pool
	r    *sql.DB // SQLite: reader pool; PostgreSQL: the same pool as w
	now  func() time.Time
	// d is the engine's dialect (dialect.go), chosen at Open.
	d *dialect
	// pg is the PostgreSQL pool and change listener; nil on SQLite.
	pg *pgBackend
	// closeEngine releases what Open acquired for the engine.
	closeEngine func() error
	// feed delivers change events (notify.go).
	feed changeFeed
	// sqliteChanges carries change events between processes on one
	// SQLite file (crossprocess.go); nil on PostgreSQL.
	sqliteChanges *sqliteChanges
	// collab is the agent scope and the (tenant, agent) caches of the
	// collaboration tables; see agents.go.
	collab *collab
	// gate admits write transactions fairly across tenants (writegate.go).
	gate *writeGate

	wStmts, rStmts stmtCache
	// trigramDF caches trigram document frequencies for SQLite's search
	// planning (nil on PostgreSQL, which plans with pg_trgm).
	trigramDF *lru.Cache[string, int]
	// onSubstringQuery, when set (by tests), sees the statement and
	// arguments of each substring search's candidate query, in its
	// transaction.
	onSubstringQuery func(t *txn, q string, args []any)
	// onIndexBatch, when set (by tests), is called in the indexing
	// transaction after each full batch of queued entities it indexed,
	// before it looks for waiting writes (indexQueued).
	onIndexBatch func(t *txn)
	// postings keeps recent posting lists of ranked search (lexcache.go).
	postings *postingsCache

	// wake, when not nil, is closed to wake a waiting embedding indexer
	// (semantic.go) after a write queued entities.
	// searchIdx is the word index's background worker (searchqueue.go).
	searchIdx *searchIndexer
	// ckpt checkpoints SQLite's WAL in the background (checkpoint.go).
	ckpt *checkpointer
	// ftsMerge merges SQLite's trigram index segments in the background
	// (ftsmerge.go).
	ftsMerge *ftsMerger
	wakeMu   sync.Mutex
	wake     chan struct{}
}

// stmtCache keeps one prepared statement per query text for a pool, so hot
// statements are parsed once per connection instead of once per call.
// A statement cannot be prepared on the pool while a transaction holds the
// writer's only connection, so a query seen for the first time inside a
// transaction is prepared on that transaction alone and queued; warm
// prepares the queue on the pool before the next transaction begins.
type stmtCache struct {
	db      *sql.DB
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
}

func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[query]
	if st == nil {
		if c.pending == nil {
			c.pending = map[string]bool{}
		}
		c.pending[query] = true
	}
	return st
}

// warm prepares the queued queries. It must not be called while holding a
// connection of the pool, and it never holds the cache lock while preparing,
// because a transaction holding the writer's connection may need the lock.
func (c *stmtCache) warm(ctx context.Context) {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	queries := make([]string, 0, len(c.pending))
	for q := range c.pending {
		queries = append(queries, q)
	}
	c.mu.Unlock()
	for _, q := range queries {
		st, err := c.db.PrepareContext(ctx, q)
		c.mu.Lock()
		delete(c.pending, q)
		if err == nil && c.m[q] == nil {
			if c.m == nil {
				c.m = map[string]*sql.Stmt{}
			}
			c.m[q], st = st, nil
		}
		c.mu.Unlock()
		if st != nil {
			st.Close() // failed, or another caller prepared it first; the query's own call reports errors
		}
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// txn is a transaction whose statements come from the pool's cache.
type txn struct {
	ctx   context.Context
	tx    *sql.Tx
	s     *Store
	cache *stmtCache // nil on PostgreSQL, whose driver caches statements per connection
	now   string     // the transaction's time, UTC RFC 3339
	// audit is the audit row write() appends before commit when ctx
	// carries an AuditIntent (see audit.go); methods may refine it.
	audit *auditNote
	// locked are the advisory lock keys this transaction holds (PostgreSQL).
	locked map[string]bool
	// embedTenant and embedIDs are the entities whose text changed, queued
	// for embedding before commit; queued is set once they are (semantic.go).
	embedTenant string
	embedIDs    map[int64]bool
	queued      bool
	// searchTenant and searchIDs are the entities whose word-index entries
	// are out of date, queued before commit; searchQueued is set once they
	// are (searchqueue.go).
	searchTenant string
	searchIDs    map[int64]bool
	searchQueued bool
}

// Every statement of the package passes through exec, query or queryRow,
// which hand it to the engine in its dialect (Store.sqlFor).

func (t *txn) stmt(query string) (*sql.Stmt, error) {
	if st := t.cache.lookup(query); st != nil {
		return t.tx.StmtContext(t.ctx, st), nil
	}
	return t.tx.PrepareContext(t.ctx, query)
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	query = t.s.sqlFor(query)
	if t.cache == nil {
		return t.tx.ExecContext(t.ctx, query, args...)
	}
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(t.ctx, args...)
}

func (t *txn) query(query string, args ...any) (*sql.Rows, error) {
	query = t.s.sqlFor(query)
	if t.cache == nil {
		return t.tx.QueryContext(t.ctx, query, args...)
	}
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(t.ctx, args...)
}

// queryRow is QueryRow through the cache; a prepare error surfaces from Scan.
func (t *txn) queryRow(query string, args ...any) *sql.Row {
	query = t.s.sqlFor(query)
	if t.cache == nil {
		return t.tx.QueryRowContext(t.ctx, query, args...)
	}
	if st := t.cache.lookup(query); st != nil {
		return t.tx.StmtContext(t.ctx, st).QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// lock serializes this write transaction with every other one that takes
// the same key, on any replica, until it ends: a PostgreSQL transaction
// advisory lock. On SQLite the single writer already serializes every
// write, so it does nothing.
func (t *txn) lock(key string) error {
	if t.s.d.lockSQL == "" || t.locked[key] {
		return nil
	}
	if _, err := t.tx.ExecContext(t.ctx, t.s.sqlFor(t.s.d.lockSQL), key); err != nil {
		return err
	}
	if t.locked == nil {
		t.locked = map[string]bool{}
	}
	t.locked[key] = true // held until the transaction ends; taking it again costs a round trip
	return nil
}

// mutateSQL, when set, rewrites every statement before it runs. Only the
// mutation test build (mutation.go, build tag "mutation") sets it, to
// remove one tenant predicate at a time and prove the tests notice.
var mutateSQL func(string) string

// sqlFor is query as the engine runs it: with the test mutation applied,
// then bound by the dialect.
func (s *Store) sqlFor(query string) string {
	if mutateSQL != nil {
		query = mutateSQL(query)
	}
	return s.d.bind(query)
}

// DefaultPath returns $XDG_DATA_HOME/nexus-mcp/nexus.db, falling back to
// ~/.local/share/nexus-mcp/nexus.db.
func DefaultPath() (string, error) {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find home directory: %w", err)
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "nexus-mcp", "nexus.db"), nil
}

func dsn(path string, txlock, sync string) string {
	q := url.Values{}
	// busy_timeout first, so that setting journal_mode on a busy file waits.
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "temp_store(MEMORY)")
	if txlock != "" {
		q.Add("_txlock", txlock)
	}
	return "file:" + path + "?" + q.Encode()
}

// IsPostgresURL reports whether db names a PostgreSQL database
// (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// Open opens the database db and applies pending migrations. db is a
// PostgreSQL URL (see IsPostgresURL) or a SQLite file path; the file is
// created if needed, with directory mode 0700 and file mode 0600.
func Open(ctx context.Context, db string, opts Options) (*Store, error) {
	if IsPostgresURL(db) {
		s, err := openPostgres(ctx, db, opts)
		if err != nil {
			return nil, fmt.Errorf("database %s: %w", redactURL(db), err)
		}
		return s, nil
	}
	s, err := openSQLite(ctx, db, opts)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", db, err)
	}
	return s, nil
}

func openSQLite(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = max(4, runtime.GOMAXPROCS(0))
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "NORMAL"
	}
	collab, err := newCollab(opts.AgentScope)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	}
	f.Close()

	w, err := sql.Open("sqlite", dsn(path, "immediate", opts.Synchronous)+
		"&_pragma=wal_autocheckpoint("+strconv.Itoa(autoCheckpointPages)+")"+walSizeLimit)
	if err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	r, err := sql.Open("sqlite", dsn(path, "", opts.Synchronous)+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open readers: %w", err)
	}
	r.SetMaxOpenConns(opts.MaxConns)
	r.SetMaxIdleConns(opts.MaxConns)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)

	s := &Store{path: path, w: w, r: r, now: opts.Now, collab: collab, gate: newWriteGate(1), d: sqliteDialect,
		sqliteChanges: newSQLiteChanges(opts.logger()), postings: newPostingsCache()}
	s.wStmts.db, s.rStmts.db = w, r
	s.closeEngine = s.closeSQLite
	s.trigramDF, _ = lru.New[string, int](1 << 16) // New fails only for a size <= 0
	if err := s.checkWAL(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.migrate(ctx, s.w, "migrations"); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.indexUnindexed(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startCheckpointer(path, opts.Synchronous, opts.logger()); err != nil {
		s.Close()
		return nil, err
	}
	s.startSearchIndexer(opts.logger())
	s.startFTSMerger(opts.logger())
	s.startChangeWriter()
	return s, nil
}

// Close closes both pools. A clean SQLite close checkpoints and removes
// the WAL.
func (s *Store) Close() error {
	s.stopSearchIndexer()
	s.stopFTSMerger()
	s.stopChangeWriter()
	return s.closeEngine()
}

// closeSQLite checkpoints and closes both pools.
func (s *Store) closeSQLite() error {
	ckptErr := s.stopCheckpointer()
	s.wStmts.close()
	s.rStmts.close()
	return errors.Join(ckptErr, s.r.Close(), s.w.Close())
}

// Location names the database for people: the SQLite file, or the
// PostgreSQL URL with its password removed.
func (s *Store) Location() string { return s.path }

// Backend is "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.name }

func (s *Store) checkWAL(ctx context.Context) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	return nil
}

// migrate applies the embedded migrations of the dialect (migrations/ for
// SQLite, migrations/postgres/ for PostgreSQL) in order, each in its own
// transaction, recording them in schema_migrations.
func (s *Store) migrate(ctx context.Context, db execer, dir string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`+s.d.strict); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrationFS, dir+"/*.sql")
	if err != nil || len(names) == 0 {
		return fmt.Errorf("no migrations in %s: %v", dir, err)
	}
	sort.Strings(names)
	for _, name := range names {
		base := filepath.Base(name)
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad version prefix", base)
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		if err := s.applyMigration(ctx, db, version, base, string(body)); err != nil {
			return err
		}
	}
	return nil
}

// execer is what migrations run on: the SQLite writer, or the one
// PostgreSQL connection that holds the migration lock.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func (s *Store) applyMigration(ctx context.Context, db execer, version int, name, body string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, s.sqlFor("SELECT count(*) FROM schema_migrations WHERE version = ?"), version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return fmt.Errorf("apply migration %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, s.sqlFor("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
		version, name, s.stamp()); err != nil {
		return err
	}
	return tx.Commit()
}

// Ping reports whether the database is reachable and migrated.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	return s.r.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n)
}

// write runs fn in one IMMEDIATE transaction on the writer connection, with
// the time read once.
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	return s.writeTurn(ctx, false, fn)
}

// writeTurn is write; a background write (the word indexer's) waiting for
// its turn does not make the writer contended for others (writeGate).
func (s *Store) writeTurn(ctx context.Context, background bool, fn func(t *txn) error) error {
	tenant, _ := tenancy.TenantFromContext(ctx)
	if err := s.gate.acquire(ctx, tenant, background); err != nil {
		return fmt.Errorf("wait for the writer: %w", err)
	}
	defer s.gate.release(tenant)
	s.wStmts.warm(ctx)
	tx, err := s.w.BeginTx(ctx, s.d.writeTx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	t := &txn{ctx: ctx, tx: tx, s: s, now: s.stamp(), audit: noteFromContext(ctx)}
	if s.d.cacheStmts {
		t.cache = &s.wStmts
	}
	// Writes of one tenant are serialized across replicas, as the single
	// writer serializes them on SQLite; writes without a tenant (admin)
	// share one key.
	if err := t.lock(tenantLockKey(tenant)); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := fn(t); err != nil {
		return err
	}
	if err := flushEmbedQueue(t); err != nil {
		return err
	}
	if err := flushSearchQueue(t); err != nil {
		return err
	}
	if t.audit != nil { // the change and its audit row commit together
		if err := appendAudit(t, *t.audit); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if t.queued {
		s.wakeIndexer()
	}
	if t.searchQueued { // the graph's text changed: so did the trigram indexes
		s.kickSearchIndexer()
		s.kickFTSMerger()
	}
	s.kickCheckpointer()
	return nil
}

// read runs fn in one transaction on the reader pool, so a multi-statement
// read sees one snapshot.
func (s *Store) read(ctx context.Context, fn func(t *txn) error) error {
	s.rStmts.warm(ctx)
	var cache *stmtCache
	if s.d.cacheStmts {
		cache = &s.rStmts
	}
	tx, err := s.r.BeginTx(ctx, s.d.readTx)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(&txn{ctx: ctx, tx: tx, s: s, cache: cache, now: s.stamp()})
}

// tenantLockKey is the advisory lock key of tenant's writes ("" for writes
// that no tenant owns).
func tenantLockKey(tenant string) string { return "tenant:" + tenant }

func (s *Store) stamp() string { return Stamp(s.now()) }

// timeLayout is how every time is stored: RFC 3339 in UTC with a fixed
// nine-digit fraction, so that text order is time order in SQL
// comparisons (time.RFC3339Nano trims trailing zeros and would not sort).
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Stamp formats tm as stored times are, for comparisons such as since.
func Stamp(tm time.Time) string { return tm.UTC().Format(timeLayout) }

// stampOrEmpty is Stamp(tm), or "" for the zero time (a filter's "any").
func stampOrEmpty(tm time.Time) string {
	if tm.IsZero() {
		return ""
	}
	return Stamp(tm)
}

// scanner is what a scan function reads one row from: *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// collect reads every row of a query with scan and closes the rows; a query
// error is passed through.
func collect[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanOne reads a row of one column.
func scanOne[T any](r scanner) (T, error) {
	var v T
	err := r.Scan(&v)
	return v, err
}

// clampPage applies a list's default page size and cap to limit and floors
// offset at zero.
func clampPage(limit, offset, def, maxLimit int) (int, int) {
	if limit <= 0 {
		limit = def
	}
	return min(limit, maxLimit), max(offset, 0)
}

func tenantOf(ctx context.Context) (string, error) {
	t, err := tenancy.TenantFromContext(ctx)
	if err != nil {
		return "", fmt.Errorf("memory: %w", err)
	}
	return t, nil
}
