-- search_queue: the entities whose word-index entries (search_docs,
-- search_postings, search_stats) are out of date. A change writes its row
-- in the change's own transaction; the index is brought up to date after
-- the commit, in short transactions of their own: by a background worker
-- shortly after the write, and at the latest by the tenant's next ranked
-- search, which indexes what is queued before it reads. So a write does
-- not pay for the index while it holds the writer, and a search still sees
-- every write that committed before it began. No foreign key: a deleted
-- entity's row stays until its postings are removed.
CREATE TABLE search_queue (
	tenant_id TEXT NOT NULL,
	entity_id BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, entity_id)
);
