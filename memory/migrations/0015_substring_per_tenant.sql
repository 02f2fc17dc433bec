-- Substring search plans and visits only the caller's tenant's rows. The
-- trigram indexes were shared by all tenants: a search counted a
-- trigram's documents over every tenant to choose the rarest trigrams and
-- walked every tenant's hits before filtering by tenant, so what one
-- tenant's search cost told it about another tenant's text.
--
-- Now each tenant's rows sit in a rowid range of their own: an indexed
-- row's rowid is (n << 40) + id, where id is the entity's or observation's
-- id (below 2^40) and n numbers the tenant (substring_fts_tenants; a number
-- never changes or moves to another tenant, rows are never deleted; up to
-- 2^22 tenants). A search asks MATCH with the tenant's range (rowid BETWEEN
-- n << 40 AND (n + 1) << 40 - 1), which FTS5 seeks to, so both the counts
-- that choose its trigrams and the hits it reads are its tenant's only
-- (substringRange in graph.go). The tables become contentless: their
-- rowids are no longer the content tables' ids.
CREATE TABLE substring_fts_tenants (
	n         INTEGER PRIMARY KEY,
	tenant_id TEXT NOT NULL UNIQUE
) STRICT;
INSERT INTO substring_fts_tenants(tenant_id) SELECT DISTINCT tenant_id FROM entities ORDER BY tenant_id;

DROP TRIGGER entities_fts_ai;
DROP TRIGGER entities_fts_ad;
DROP TRIGGER entities_fts_au;
DROP TRIGGER observations_fts_ai;
DROP TRIGGER observations_fts_ad;
DROP TABLE entities_fts;
DROP TABLE observations_fts;

CREATE VIRTUAL TABLE entities_fts USING fts5(
	name, entity_type, content='', tokenize='trigram', detail='none'
);
CREATE VIRTUAL TABLE observations_fts USING fts5(
	content, content='', tokenize='trigram', detail='none'
);

INSERT INTO entities_fts(rowid, name, entity_type)
	SELECT (m.n << 40) + e.id, e.name, e.entity_type
	FROM entities e JOIN substring_fts_tenants m ON m.tenant_id = e.tenant_id;
INSERT INTO observations_fts(rowid, content)
	SELECT (m.n << 40) + o.id, o.content
	FROM observations o JOIN substring_fts_tenants m ON m.tenant_id = o.tenant_id;

CREATE TRIGGER entities_fts_ai AFTER INSERT ON entities BEGIN
	INSERT OR IGNORE INTO substring_fts_tenants(tenant_id) VALUES (new.tenant_id);
	INSERT INTO entities_fts(rowid, name, entity_type)
		SELECT (n << 40) + new.id, new.name, new.entity_type FROM substring_fts_tenants WHERE tenant_id = new.tenant_id;
END;
CREATE TRIGGER entities_fts_ad AFTER DELETE ON entities BEGIN
	INSERT INTO entities_fts(entities_fts, rowid, name, entity_type)
		SELECT 'delete', (n << 40) + old.id, old.name, old.entity_type FROM substring_fts_tenants WHERE tenant_id = old.tenant_id;
END;
CREATE TRIGGER entities_fts_au AFTER UPDATE OF name, entity_type ON entities BEGIN
	INSERT INTO entities_fts(entities_fts, rowid, name, entity_type)
		SELECT 'delete', (n << 40) + old.id, old.name, old.entity_type FROM substring_fts_tenants WHERE tenant_id = old.tenant_id;
	INSERT INTO entities_fts(rowid, name, entity_type)
		SELECT (n << 40) + new.id, new.name, new.entity_type FROM substring_fts_tenants WHERE tenant_id = new.tenant_id;
END;
CREATE TRIGGER observations_fts_ai AFTER INSERT ON observations BEGIN
	INSERT INTO observations_fts(rowid, content)
		SELECT (n << 40) + new.id, new.content FROM substring_fts_tenants WHERE tenant_id = new.tenant_id;
END;
CREATE TRIGGER observations_fts_ad AFTER DELETE ON observations BEGIN
	INSERT INTO observations_fts(observations_fts, rowid, content)
		SELECT 'delete', (n << 40) + old.id, old.content FROM substring_fts_tenants WHERE tenant_id = old.tenant_id;
END;

-- Segments are merged by a background worker in short writer turns
-- (ftsmerge.go), not by the write that completes a level of segments.
INSERT INTO entities_fts(entities_fts, rank) VALUES('automerge', 0);
INSERT INTO observations_fts(observations_fts, rank) VALUES('automerge', 0);
