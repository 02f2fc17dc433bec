-- PostgreSQL schema, version 12 (see ../0012_imports_changes.sql). changes
-- stays empty here: replicas exchange change events with NOTIFY.
CREATE TABLE memory_file_imports (
	tenant_id   TEXT NOT NULL REFERENCES tenants(id),
	source      TEXT NOT NULL,
	sha256      TEXT NOT NULL,
	imported_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, source)
);

CREATE TABLE changes (
	seq       BIGSERIAL PRIMARY KEY,
	tenant_id TEXT NOT NULL REFERENCES tenants(id),
	kind      TEXT NOT NULL,
	origin    TEXT NOT NULL,
	at        TEXT NOT NULL
);
