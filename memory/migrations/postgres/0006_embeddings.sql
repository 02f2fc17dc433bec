-- Semantic search (issue 14): entity vectors and the queue that feeds them.
--
-- embed_queue holds one row per entity whose text changed since it was last
-- embedded; it is written in the same transaction as the change, and the
-- background indexer deletes a row only after storing a vector for the
-- gen (change count) it read, so an outage or a restart loses nothing. A deleted
-- entity takes its queue row and its vector with it (ON DELETE CASCADE).
CREATE TABLE embed_queue (
	tenant_id TEXT NOT NULL,
	entity_id BIGINT NOT NULL,
	queued_at TEXT NOT NULL,
	gen       BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, entity_id),
	FOREIGN KEY (tenant_id, entity_id) REFERENCES entities(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX embed_queue_age ON embed_queue(tenant_id, queued_at);

-- entity_vectors holds one vector per entity: little-endian float32,
-- normalised to unit length, of dim components, made by model. A search
-- uses only the vectors of the configured model and dimension; the indexer
-- re-queues the others.
CREATE TABLE entity_vectors (
	tenant_id  TEXT NOT NULL,
	entity_id  BIGINT NOT NULL,
	model      TEXT NOT NULL,
	dim        INTEGER NOT NULL,
	vec        BYTEA NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (tenant_id, entity_id),
	FOREIGN KEY (tenant_id, entity_id) REFERENCES entities(tenant_id, id) ON DELETE CASCADE
);
-- Keep vectors in the row (no TOAST table): random floats do not compress,
-- and an out-of-line value costs a second lookup per row of every scan.
-- MAIN still moves a value out of line if the row cannot fit a page.
ALTER TABLE entity_vectors ALTER COLUMN vec SET STORAGE MAIN;
