-- Tenants, credentials and the knowledge graph.
-- Every tenant-owned table has tenant_id TEXT NOT NULL, its uniqueness is per
-- tenant, and child rows reference their parent by (tenant_id, id) so a row
-- can never point into another tenant.

CREATE TABLE tenants (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL DEFAULT '',
	disabled   INTEGER NOT NULL DEFAULT 0,
	rate_rps   REAL NOT NULL DEFAULT 0,
	rate_burst INTEGER NOT NULL DEFAULT 0,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
) STRICT;

-- api_keys is looked up by hash before any tenant is known: the hash lookup
-- is what establishes the tenant.
CREATE TABLE api_keys (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	user_id    TEXT NOT NULL DEFAULT '',
	agent_id   TEXT NOT NULL DEFAULT '',
	env        TEXT NOT NULL DEFAULT '',
	name       TEXT NOT NULL DEFAULT '',
	key_hash   BLOB NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	expires_at TEXT,
	revoked_at TEXT
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE members (
	tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	user_id    TEXT NOT NULL,
	role       TEXT NOT NULL CHECK (role IN ('member', 'admin')),
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, user_id)
) STRICT;

CREATE TABLE entities (
	id          INTEGER PRIMARY KEY,
	tenant_id   TEXT NOT NULL REFERENCES tenants(id),
	name        TEXT NOT NULL,
	entity_type TEXT NOT NULL,
	aliases     TEXT NOT NULL DEFAULT '[]',
	metadata    TEXT NOT NULL DEFAULT '{}',
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	UNIQUE (tenant_id, name),
	UNIQUE (tenant_id, id)
) STRICT;

CREATE TABLE observations (
	id         INTEGER PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	entity_id  INTEGER NOT NULL,
	content    TEXT NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE (tenant_id, entity_id, content),
	FOREIGN KEY (tenant_id, entity_id) REFERENCES entities(tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE relations (
	id            INTEGER PRIMARY KEY,
	tenant_id     TEXT NOT NULL,
	from_id       INTEGER NOT NULL,
	to_id         INTEGER NOT NULL,
	relation_type TEXT NOT NULL,
	properties    TEXT NOT NULL DEFAULT '{}',
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL,
	UNIQUE (tenant_id, from_id, to_id, relation_type),
	FOREIGN KEY (tenant_id, from_id) REFERENCES entities(tenant_id, id) ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, to_id) REFERENCES entities(tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX relations_to ON relations(tenant_id, to_id);

-- Substring search with an index: trigram FTS5 over external content.
-- The trigram tokenizer folds case. detail=none stores document ids only
-- (half the write cost of detail=full); a query asks for the rarest few
-- trigrams of the search string and every candidate is re-checked exactly.
CREATE VIRTUAL TABLE entities_fts USING fts5(
	name, entity_type, content='entities', content_rowid='id', tokenize='trigram', detail='none'
);
CREATE TRIGGER entities_fts_ai AFTER INSERT ON entities BEGIN
	INSERT INTO entities_fts(rowid, name, entity_type) VALUES (new.id, new.name, new.entity_type);
END;
CREATE TRIGGER entities_fts_ad AFTER DELETE ON entities BEGIN
	INSERT INTO entities_fts(entities_fts, rowid, name, entity_type) VALUES ('delete', old.id, old.name, old.entity_type);
END;
CREATE TRIGGER entities_fts_au AFTER UPDATE OF name, entity_type ON entities BEGIN
	INSERT INTO entities_fts(entities_fts, rowid, name, entity_type) VALUES ('delete', old.id, old.name, old.entity_type);
	INSERT INTO entities_fts(rowid, name, entity_type) VALUES (new.id, new.name, new.entity_type);
END;

CREATE VIRTUAL TABLE observations_fts USING fts5(
	content, content='observations', content_rowid='id', tokenize='trigram', detail='none'
);
CREATE TRIGGER observations_fts_ai AFTER INSERT ON observations BEGIN
	INSERT INTO observations_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER observations_fts_ad AFTER DELETE ON observations BEGIN
	INSERT INTO observations_fts(observations_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
