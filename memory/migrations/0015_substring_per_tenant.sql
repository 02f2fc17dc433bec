-- Substring search plans and visits only the caller's tenant's rows. The
-- trigram indexes were shared by all tenants: a search counted a
-- trigram's documents over every tenant to choose the rarest trigrams and
-- walked every tenant's hits before filtering by tenant, so what one
-- tenant's search cost told it about another tenant's text.
--
-- Now every indexed row also carries its tenant's mark: one trigram that
-- no text can contain, because it starts with U+FDD0 (a Unicode
-- noncharacter), which is removed from the text that is indexed. A search
-- ANDs its tenant's mark with the query's trigrams, so both its document
-- counts and its hits are its tenant's only. Removing U+FDD0 from indexed
-- text keeps the index a superset (every substring of a text that does not
-- hold U+FDD0 is a substring of the indexed text); a query holding U+FDD0
-- scans the tenant instead. The tables become contentless: the mark is in
-- no content table.
--
-- substring_fts_tenants numbers the tenants; a number, and so a mark,
-- never changes or moves to another tenant (rows are never deleted).
-- mark(n) = char(0xFDD0, 0x4E00 + (n >> 14) % 16384, 0x4E00 + n % 16384),
-- distinct for 2^28 tenants; substringMark in graph.go is the same function.
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
	tenant, name, entity_type, content='', tokenize='trigram', detail='none'
);
CREATE VIRTUAL TABLE observations_fts USING fts5(
	tenant, content, content='', tokenize='trigram', detail='none'
);

INSERT INTO entities_fts(rowid, tenant, name, entity_type)
	SELECT e.id, char(64976, 19968 + (m.n >> 14) % 16384, 19968 + m.n % 16384),
		replace(e.name, char(64976), ''), replace(e.entity_type, char(64976), '')
	FROM entities e JOIN substring_fts_tenants m ON m.tenant_id = e.tenant_id;
INSERT INTO observations_fts(rowid, tenant, content)
	SELECT o.id, char(64976, 19968 + (m.n >> 14) % 16384, 19968 + m.n % 16384),
		replace(o.content, char(64976), '')
	FROM observations o JOIN substring_fts_tenants m ON m.tenant_id = o.tenant_id;

CREATE TRIGGER entities_fts_ai AFTER INSERT ON entities BEGIN
	INSERT OR IGNORE INTO substring_fts_tenants(tenant_id) VALUES (new.tenant_id);
	INSERT INTO entities_fts(rowid, tenant, name, entity_type)
		SELECT new.id, char(64976, 19968 + (n >> 14) % 16384, 19968 + n % 16384),
			replace(new.name, char(64976), ''), replace(new.entity_type, char(64976), '')
		FROM substring_fts_tenants WHERE tenant_id = new.tenant_id;
END;
CREATE TRIGGER entities_fts_ad AFTER DELETE ON entities BEGIN
	INSERT INTO entities_fts(entities_fts, rowid, tenant, name, entity_type)
		SELECT 'delete', old.id, char(64976, 19968 + (n >> 14) % 16384, 19968 + n % 16384),
			replace(old.name, char(64976), ''), replace(old.entity_type, char(64976), '')
		FROM substring_fts_tenants WHERE tenant_id = old.tenant_id;
END;
CREATE TRIGGER entities_fts_au AFTER UPDATE OF name, entity_type ON entities BEGIN
	INSERT INTO entities_fts(entities_fts, rowid, tenant, name, entity_type)
		SELECT 'delete', old.id, char(64976, 19968 + (n >> 14) % 16384, 19968 + n % 16384),
			replace(old.name, char(64976), ''), replace(old.entity_type, char(64976), '')
		FROM substring_fts_tenants WHERE tenant_id = old.tenant_id;
	INSERT INTO entities_fts(rowid, tenant, name, entity_type)
		SELECT new.id, char(64976, 19968 + (n >> 14) % 16384, 19968 + n % 16384),
			replace(new.name, char(64976), ''), replace(new.entity_type, char(64976), '')
		FROM substring_fts_tenants WHERE tenant_id = new.tenant_id;
END;
CREATE TRIGGER observations_fts_ai AFTER INSERT ON observations BEGIN
	INSERT INTO observations_fts(rowid, tenant, content)
		SELECT new.id, char(64976, 19968 + (n >> 14) % 16384, 19968 + n % 16384),
			replace(new.content, char(64976), '')
		FROM substring_fts_tenants WHERE tenant_id = new.tenant_id;
END;
CREATE TRIGGER observations_fts_ad AFTER DELETE ON observations BEGIN
	INSERT INTO observations_fts(observations_fts, rowid, tenant, content)
		SELECT 'delete', old.id, char(64976, 19968 + (n >> 14) % 16384, 19968 + n % 16384),
			replace(old.content, char(64976), '')
		FROM substring_fts_tenants WHERE tenant_id = old.tenant_id;
END;
