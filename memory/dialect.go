package memory

import (
	"database/sql"
	"strconv"
	"sync"
)

// dialect is how one engine differs from the other, chosen once at Open:
// SQL snippets the statements embed, the transaction options, and what the
// engine can and cannot do. The methods of Store run the same code on both
// engines and ask the dialect, never which engine they run on. Statements
// are written with ? placeholders; bind turns them into the engine's.
type dialect struct {
	// name is "sqlite" or "postgres" (Store.Backend).
	name string
	// bind is a statement as the engine takes it.
	bind func(query string) string
	// textArray and jsonArray expand the JSON array bound to their one
	// placeholder into rows of one column, value: the elements as text
	// (textArray), or as JSON whose fields the statement reads with ->>
	// (jsonArray).
	textArray, jsonArray string
	// strict ends each CREATE TABLE the package writes itself.
	strict string
	// writeTx and readTx are the options of write and read transactions.
	writeTx, readTx *sql.TxOptions
	// cacheStmts is whether the Store keeps prepared statements per pool
	// (stmtCache); the pgx driver prepares per connection itself.
	cacheStmts bool
	// lockSQL takes a transaction-scoped lock on the key bound to its
	// placeholder, serializing writers across replicas; empty when the
	// engine's single writer already serializes every write.
	lockSQL string
	// notifySQL sends (channel, payload) to every replica's change listener
	// when the transaction commits; empty when the process is alone on the
	// database and change events stay in it.
	notifySQL string
	// jsonPatch is whether the engine merges JSON objects in SQL
	// (json_patch); without it the merge is done in Go under the tenant's
	// write lock.
	jsonPatch bool
	// oneQueryPerConn is whether a connection runs one query at a time, so
	// a read reads one result set before it opens the next.
	oneQueryPerConn bool
	// trigramILIKE is whether substring search asks trigram indexes with
	// ILIKE (pg_trgm) rather than the trigram FTS tables.
	trigramILIKE bool
	// substringSetup runs in a substring search's transaction before its
	// query: on PostgreSQL it rules out sequential scans, the only plans
	// that read other tenants' rows (every index on the searched tables
	// leads with tenant_id), which the planner picks for small tables.
	substringSetup string
}

// sqliteDialect is SQLite's (modernc.org/sqlite).
var sqliteDialect = &dialect{
	name:       "sqlite",
	bind:       func(query string) string { return query },
	textArray:  "json_each(?)",
	jsonArray:  "json_each(?)",
	strict:     " STRICT",
	cacheStmts: true,
	jsonPatch:  true,
}

// newPostgresDialect is PostgreSQL's (pgx through database/sql).
func newPostgresDialect() *dialect {
	var rebound sync.Map // a statement as written → its $n text; the package has a fixed set of statements
	return &dialect{
		name: "postgres",
		bind: func(query string) string {
			if v, ok := rebound.Load(query); ok {
				return v.(string)
			}
			out := numberPlaceholders(query)
			rebound.Store(query, out)
			return out
		},
		textArray: "jsonb_array_elements_text(?::jsonb)",
		jsonArray: "jsonb_array_elements(?::jsonb)",
		strict:    "",
		// READ COMMITTED whatever the server's default: a statement after
		// the tenant lock must see what the previous lock holder committed.
		writeTx:         &sql.TxOptions{Isolation: sql.LevelReadCommitted},
		readTx:          &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
		lockSQL:         "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
		notifySQL:       "SELECT pg_notify(?, ?)",
		oneQueryPerConn: true,
		trigramILIKE:    true,
		substringSetup:  "SET LOCAL enable_seqscan = off",
	}
}

// numberPlaceholders is query with its ? placeholders (outside quoted
// text) numbered $1, $2, … as PostgreSQL takes them.
func numberPlaceholders(q string) string {
	var b []byte
	b = make([]byte, 0, len(q)+16)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(n), 10)
			continue
		}
		b = append(b, c)
	}
	return string(b)
}
