-- Agent collaboration: the agent registry, messages, learnings, preferences,
-- session handoffs, and word search over the knowledge graph.
-- Every table has tenant_id TEXT NOT NULL and a (tenant_id, ...) primary key.
-- Timestamps are UTC RFC 3339 with a fixed nine-digit fraction, so that text
-- order is time order.

-- agents is the registry. tenant_id is the owner. In the default global
-- scope an agent id is unique across tenants; that is enforced by the
-- writer inside its IMMEDIATE transaction (a deployment may switch scopes,
-- so it cannot be a UNIQUE index). agents_agent_id serves lookups by id.
CREATE TABLE agents (
	tenant_id    TEXT NOT NULL REFERENCES tenants(id),
	agent_id     TEXT NOT NULL,
	name         TEXT NOT NULL,
	capabilities TEXT NOT NULL DEFAULT '[]',
	endpoint     TEXT NOT NULL DEFAULT '',
	metadata     TEXT NOT NULL DEFAULT '{}',
	status       TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
	last_seen    TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	updated_at   TEXT NOT NULL,
	PRIMARY KEY (tenant_id, agent_id)
) STRICT;
CREATE INDEX agents_agent_id ON agents(agent_id);

-- messages has one row per recipient; an inbox is (tenant_id, to_agent).
CREATE TABLE messages (
	tenant_id    TEXT NOT NULL REFERENCES tenants(id),
	id           TEXT NOT NULL,
	from_agent   TEXT NOT NULL,
	to_agent     TEXT NOT NULL,
	content      TEXT NOT NULL,
	message_type TEXT NOT NULL CHECK (message_type IN ('info', 'task', 'query', 'response', 'collaboration')),
	priority     TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
	created_at   TEXT NOT NULL,
	read_at      TEXT,
	PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX messages_inbox ON messages(tenant_id, to_agent, created_at);
CREATE INDEX messages_unread ON messages(tenant_id, to_agent, created_at) WHERE read_at IS NULL;

CREATE TABLE learnings (
	tenant_id  TEXT NOT NULL REFERENCES tenants(id),
	id         TEXT NOT NULL,
	agent_id   TEXT NOT NULL,
	context    TEXT NOT NULL,
	lesson     TEXT NOT NULL,
	confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
	source     TEXT NOT NULL CHECK (source IN ('record', 'handoff')),
	project_id TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX learnings_agent ON learnings(tenant_id, agent_id, created_at);

-- preferences is one row per (tenant, agent), merged in place.
CREATE TABLE preferences (
	tenant_id   TEXT NOT NULL REFERENCES tenants(id),
	agent_id    TEXT NOT NULL,
	preferences TEXT NOT NULL DEFAULT '{}',
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, agent_id)
) STRICT;

-- handoffs: at most one active handoff per (tenant, project); begin_session
-- consumes it with one conditional UPDATE. user_id is for audit only.
CREATE TABLE handoffs (
	tenant_id   TEXT NOT NULL REFERENCES tenants(id),
	id          TEXT NOT NULL,
	project_id  TEXT NOT NULL,
	from_agent  TEXT NOT NULL,
	user_id     TEXT NOT NULL DEFAULT '',
	summary     TEXT NOT NULL,
	open_items  TEXT NOT NULL DEFAULT '[]',
	learnings   TEXT NOT NULL DEFAULT '[]',
	status      TEXT NOT NULL CHECK (status IN ('active', 'consumed', 'superseded')),
	created_at  TEXT NOT NULL,
	consumed_at TEXT,
	consumed_by TEXT,
	PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX handoffs_active ON handoffs(tenant_id, project_id) WHERE status = 'active';
CREATE INDEX handoffs_project ON handoffs(tenant_id, project_id, created_at);

-- Word search for search_entities: unicode61 FTS5 over external content,
-- separate from the trigram tables of 0001 (which serve substring search).
CREATE VIRTUAL TABLE entities_words_fts USING fts5(
	name, entity_type, content='entities', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER entities_words_fts_ai AFTER INSERT ON entities BEGIN
	INSERT INTO entities_words_fts(rowid, name, entity_type) VALUES (new.id, new.name, new.entity_type);
END;
CREATE TRIGGER entities_words_fts_ad AFTER DELETE ON entities BEGIN
	INSERT INTO entities_words_fts(entities_words_fts, rowid, name, entity_type) VALUES ('delete', old.id, old.name, old.entity_type);
END;
CREATE TRIGGER entities_words_fts_au AFTER UPDATE OF name, entity_type ON entities BEGIN
	INSERT INTO entities_words_fts(entities_words_fts, rowid, name, entity_type) VALUES ('delete', old.id, old.name, old.entity_type);
	INSERT INTO entities_words_fts(rowid, name, entity_type) VALUES (new.id, new.name, new.entity_type);
END;

CREATE VIRTUAL TABLE observations_words_fts USING fts5(
	content, content='observations', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER observations_words_fts_ai AFTER INSERT ON observations BEGIN
	INSERT INTO observations_words_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER observations_words_fts_ad AFTER DELETE ON observations BEGIN
	INSERT INTO observations_words_fts(observations_words_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER observations_words_fts_au AFTER UPDATE OF content ON observations BEGIN
	INSERT INTO observations_words_fts(observations_words_fts, rowid, content) VALUES ('delete', old.id, old.content);
	INSERT INTO observations_words_fts(rowid, content) VALUES (new.id, new.content);
END;

-- Index what existed before this migration.
INSERT INTO entities_words_fts(entities_words_fts) VALUES ('rebuild');
INSERT INTO observations_words_fts(observations_words_fts) VALUES ('rebuild');
