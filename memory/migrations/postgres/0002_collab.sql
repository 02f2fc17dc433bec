-- PostgreSQL schema, version 2: agent collaboration (see ../0002_collab.sql).
-- rowid is an identity column standing in for SQLite's implicit rowid, the
-- tie-break of "newest first" lists. Word search uses tsvector expression
-- indexes with the 'simple' configuration (no stemming, like unicode61).

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
);
CREATE INDEX agents_agent_id ON agents(agent_id);

CREATE TABLE messages (
	rowid        BIGINT GENERATED ALWAYS AS IDENTITY,
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
);
CREATE INDEX messages_inbox ON messages(tenant_id, to_agent, created_at);
CREATE INDEX messages_unread ON messages(tenant_id, to_agent, created_at) WHERE read_at IS NULL;

CREATE TABLE learnings (
	rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
	tenant_id  TEXT NOT NULL REFERENCES tenants(id),
	id         TEXT NOT NULL,
	agent_id   TEXT NOT NULL,
	context    TEXT NOT NULL,
	lesson     TEXT NOT NULL,
	confidence DOUBLE PRECISION NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
	source     TEXT NOT NULL CHECK (source IN ('record', 'handoff')),
	project_id TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX learnings_agent ON learnings(tenant_id, agent_id, created_at);

CREATE TABLE preferences (
	tenant_id   TEXT NOT NULL REFERENCES tenants(id),
	agent_id    TEXT NOT NULL,
	preferences TEXT NOT NULL DEFAULT '{}',
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE handoffs (
	rowid       BIGINT GENERATED ALWAYS AS IDENTITY,
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
);
CREATE UNIQUE INDEX handoffs_active ON handoffs(tenant_id, project_id) WHERE status = 'active';
CREATE INDEX handoffs_project ON handoffs(tenant_id, project_id, created_at);

-- Word search for search_entities: name (weight A) and type (weight B) of
-- an entity, and the words of its observations, with diacritics removed
-- (NFD, then the combining marks U+0300-U+036F dropped) as unicode61
-- remove_diacritics does on SQLite. search.go repeats these expressions
-- (pgEntityWords, pgObservationWords); keep them identical.
CREATE INDEX entities_words ON entities USING gin (
	(setweight(to_tsvector('simple', regexp_replace(normalize(name, NFD), '[\u0300-\u036f]', '', 'g')), 'A')
	|| setweight(to_tsvector('simple', regexp_replace(normalize(entity_type, NFD), '[\u0300-\u036f]', '', 'g')), 'B')));
CREATE INDEX observations_words ON observations USING gin (
	(to_tsvector('simple', regexp_replace(normalize(content, NFD), '[\u0300-\u036f]', '', 'g'))));
