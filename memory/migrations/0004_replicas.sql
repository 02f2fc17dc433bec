-- Shared state of nexus-mcp replicas on one database.
--
-- mcp_sessions binds each streamable HTTP session id to the principal that
-- created it (principal is a hash of the verified identity), so that any
-- replica can check a request's Mcp-Session-Id. Times are UTC with a fixed
-- nine-digit fraction, so text order is time order.
CREATE TABLE mcp_sessions (
	tenant_id  TEXT NOT NULL REFERENCES tenants(id),
	id         TEXT NOT NULL,
	principal  TEXT NOT NULL,
	created_at TEXT NOT NULL,
	last_used  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX mcp_sessions_last_used ON mcp_sessions(tenant_id, last_used);

-- replicas is the heartbeat of the serving processes: each upserts its row
-- every second, and the rows seen recently are the live replicas (used to
-- share rate limits). Not tenant data.
CREATE TABLE replicas (
	id      TEXT NOT NULL PRIMARY KEY,
	seen_at TEXT NOT NULL
) STRICT;
