-- PostgreSQL schema, version 3: EATP trust (see ../0003_trust.sql).
-- The audit chain of one tenant is appended under that tenant's advisory
-- lock, so writers on several replicas still produce seq 1, 2, … with each
-- row naming its predecessor's hash.

CREATE TABLE delegations (
	rowid            BIGINT GENERATED ALWAYS AS IDENTITY,
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
	has_error        BIGINT NOT NULL DEFAULT 0,
	response_keys    TEXT NOT NULL DEFAULT '[]',
	response_hash    TEXT NOT NULL DEFAULT '',
	revoked_at       TEXT,
	revoke_reason    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, parent_id) REFERENCES delegations(tenant_id, id)
);
CREATE INDEX delegations_trace ON delegations(tenant_id, trace_id, created_at);
CREATE INDEX delegations_created ON delegations(tenant_id, created_at);
CREATE INDEX delegations_parent ON delegations(tenant_id, parent_id);

CREATE TABLE trust_sessions (
	rowid            BIGINT GENERATED ALWAYS AS IDENTITY,
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
	workflow_count   BIGINT NOT NULL DEFAULT 0,
	revoked_at       TEXT,
	revoke_reason    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX trust_sessions_human ON trust_sessions(tenant_id, human_user_id);
CREATE INDEX trust_sessions_expiry ON trust_sessions(tenant_id, expires_at);

CREATE TABLE trust_keys (
	tenant_id   TEXT NOT NULL PRIMARY KEY REFERENCES tenants(id),
	id          TEXT NOT NULL,
	algorithm   TEXT NOT NULL CHECK (algorithm IN ('hmac-sha256', 'ed25519')),
	secret      BYTEA,
	public_key  BYTEA,
	private_key BYTEA,
	created_at  TEXT NOT NULL
);

CREATE TABLE agent_credentials (
	tenant_id  TEXT NOT NULL REFERENCES tenants(id),
	agent_id   TEXT NOT NULL,
	credential TEXT NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE audit_log (
	tenant_id    TEXT NOT NULL,
	seq          BIGINT NOT NULL CHECK (seq > 0),
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
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
