-- EATP trust: delegations, trust sessions, tenant trust keys, outbound
-- agent credentials and the append-only, hash-chained audit log.
-- Times that SQL compares (expires_at, audit time) are stored as UTC with a
-- fixed nine-digit fraction ("2006-01-02T15:04:05.000000000Z"), so text
-- order is time order.

CREATE TABLE delegations (
	tenant_id        TEXT NOT NULL REFERENCES tenants(id),
	id               TEXT NOT NULL,
	trace_id         TEXT NOT NULL,
	calling_agent    TEXT NOT NULL,
	target_agent     TEXT NOT NULL,
	tool_name        TEXT NOT NULL,
	mcp_session_id   TEXT NOT NULL DEFAULT '',
	trust_session_id TEXT NOT NULL DEFAULT '',
	chain            TEXT NOT NULL DEFAULT '[]',
	constraints      TEXT NOT NULL DEFAULT '{}',
	human_origin     TEXT NOT NULL DEFAULT '{}',
	parent_id        TEXT,
	status           TEXT NOT NULL CHECK (status IN ('prepared', 'completed', 'failed', 'revoked')),
	created_at       TEXT NOT NULL,
	expires_at       TEXT NOT NULL,
	completed_at     TEXT,
	has_error        INTEGER NOT NULL DEFAULT 0,
	response_keys    TEXT NOT NULL DEFAULT '[]',
	response_hash    TEXT NOT NULL DEFAULT '',
	revoked_at       TEXT,
	revoke_reason    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, parent_id) REFERENCES delegations(tenant_id, id)
) STRICT;
CREATE INDEX delegations_trace ON delegations(tenant_id, trace_id, created_at);
CREATE INDEX delegations_created ON delegations(tenant_id, created_at);
CREATE INDEX delegations_parent ON delegations(tenant_id, parent_id);

CREATE TABLE trust_sessions (
	tenant_id        TEXT NOT NULL REFERENCES tenants(id),
	id               TEXT NOT NULL,
	human_user_id    TEXT NOT NULL DEFAULT '',
	human_origin     TEXT NOT NULL DEFAULT '{}',
	agent_id         TEXT NOT NULL DEFAULT '',
	constraints      TEXT NOT NULL DEFAULT '{}',
	created_by       TEXT NOT NULL DEFAULT '',
	created_at       TEXT NOT NULL,
	expires_at       TEXT NOT NULL,
	last_activity_at TEXT NOT NULL,
	workflow_count   INTEGER NOT NULL DEFAULT 0,
	revoked_at       TEXT,
	revoke_reason    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX trust_sessions_human ON trust_sessions(tenant_id, human_user_id);
CREATE INDEX trust_sessions_expiry ON trust_sessions(tenant_id, expires_at);

-- One signing key per tenant; creating a new one replaces it.
CREATE TABLE trust_keys (
	tenant_id   TEXT NOT NULL PRIMARY KEY REFERENCES tenants(id),
	id          TEXT NOT NULL,
	algorithm   TEXT NOT NULL CHECK (algorithm IN ('hmac-sha256', 'ed25519')),
	secret      BLOB,
	public_key  BLOB,
	private_key BLOB,
	created_at  TEXT NOT NULL
) STRICT;

-- The credential nexus-mcp presents when it calls an agent's endpoint
-- (call_agent_tool). Never returned by any tool or printed by the CLI.
CREATE TABLE agent_credentials (
	tenant_id  TEXT NOT NULL REFERENCES tenants(id),
	agent_id   TEXT NOT NULL,
	credential TEXT NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, agent_id)
) STRICT;

-- The audit log: one chain per tenant (seq 1, 2, ...), each row holding the
-- previous row's hash and its own (delegation.ChainHash). Requests refused
-- before a tenant was established are chained under the reserved tenant id
-- "_unauthenticated", which no real tenant id can equal. No foreign key to
-- tenants, so that chain can exist; rows are never updated or deleted.
-- One b-tree (WITHOUT ROWID, no secondary index) keeps the row every write
-- transaction appends cheap; filters by time or agent scan the tenant's
-- rows, which only the admin reads do.
CREATE TABLE audit_log (
	tenant_id    TEXT NOT NULL,
	seq          INTEGER NOT NULL CHECK (seq > 0),
	time         TEXT NOT NULL,
	user_id      TEXT NOT NULL DEFAULT '',
	api_key_id   TEXT NOT NULL DEFAULT '',
	agent_id     TEXT NOT NULL DEFAULT '',
	trace_id     TEXT NOT NULL DEFAULT '',
	session_id   TEXT NOT NULL DEFAULT '',
	tool         TEXT NOT NULL DEFAULT '',
	action       TEXT NOT NULL DEFAULT '',
	outcome      TEXT NOT NULL DEFAULT '',
	content_hash TEXT NOT NULL DEFAULT '',
	detail       TEXT NOT NULL DEFAULT '',
	prev_hash    TEXT NOT NULL,
	hash         TEXT NOT NULL,
	PRIMARY KEY (tenant_id, seq)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
