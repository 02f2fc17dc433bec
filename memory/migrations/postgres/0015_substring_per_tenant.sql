-- Substring search visits only the caller's tenant's rows: the pg_trgm
-- indexes were on the text alone, so an ILIKE search walked every
-- tenant's rows holding the query's trigrams before filtering by tenant.
-- Now each index leads with tenant_id (btree_gin), and a bitmap scan
-- intersects the tenant's entries with the trigrams' inside the index.
-- (SQLite's 0015 marks each tenant's rows in its trigram tables instead.)
CREATE EXTENSION IF NOT EXISTS btree_gin;
DROP INDEX entities_name_trgm;
DROP INDEX entities_type_trgm;
DROP INDEX observations_content_trgm;
CREATE INDEX entities_name_trgm ON entities USING gin (tenant_id, name gin_trgm_ops);
CREATE INDEX entities_type_trgm ON entities USING gin (tenant_id, entity_type gin_trgm_ops);
CREATE INDEX observations_content_trgm ON observations USING gin (tenant_id, content gin_trgm_ops);
-- The planner's choice must not follow other tenants' text either: with
-- statistics on these columns, how common a word is across all tenants
-- picks the plan, so what a search costs would tell whether other tenants
-- wrote that word. Without them the planner uses fixed selectivities, and
-- the plans of two searches differ only by table size.
ALTER TABLE entities ALTER COLUMN tenant_id SET STATISTICS 0,
	ALTER COLUMN name SET STATISTICS 0, ALTER COLUMN entity_type SET STATISTICS 0;
ALTER TABLE observations ALTER COLUMN tenant_id SET STATISTICS 0,
	ALTER COLUMN content SET STATISTICS 0;
