-- version names the state of a tenant's word index: every change to the
-- tenant's postings sets a new random one in its transaction, so a ranked
-- search can reuse posting lists it read at the version its own snapshot
-- shows (lexcache.go). 0 is every index built before versions existed.
ALTER TABLE search_stats ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
