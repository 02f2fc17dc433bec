-- memory_file_imports records each reference memory.jsonl imported at
-- start-up from MEMORY_FILE_PATH, so that it is imported once per tenant
-- and file, not on every start (a later deletion must not come back).
CREATE TABLE memory_file_imports (
	tenant_id   TEXT NOT NULL REFERENCES tenants(id),
	source      TEXT NOT NULL,
	sha256      TEXT NOT NULL,
	imported_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, source)
) STRICT;

-- changes carries change events between processes sharing one SQLite
-- file (PostgreSQL uses NOTIFY instead): each write appends one row, and a
-- process with resource subscribers polls for rows of other origins. Rows
-- are pruned after a minute.
CREATE TABLE changes (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant_id TEXT NOT NULL REFERENCES tenants(id),
	kind      TEXT NOT NULL,
	origin    TEXT NOT NULL,
	at        TEXT NOT NULL
) STRICT;
