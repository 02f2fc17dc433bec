-- PostgreSQL schema, version 4: shared state of replicas (see
-- ../0004_replicas.sql).
CREATE TABLE mcp_sessions (
	tenant_id  TEXT NOT NULL REFERENCES tenants(id),
	id         TEXT NOT NULL,
	principal  TEXT NOT NULL,
	created_at TEXT NOT NULL,
	last_used  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX mcp_sessions_last_used ON mcp_sessions(tenant_id, last_used);

CREATE TABLE replicas (
	id      TEXT NOT NULL PRIMARY KEY,
	seen_at TEXT NOT NULL
);
