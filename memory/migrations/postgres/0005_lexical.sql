-- PostgreSQL schema, version 5: the per-tenant word index of ranked
-- search (see ../0005_lexical.sql); it replaces the tsvector indexes of 0002.
DROP INDEX entities_words;
DROP INDEX observations_words;

CREATE TABLE search_docs (
	tenant_id TEXT NOT NULL,
	entity_id BIGINT NOT NULL,
	terms     TEXT NOT NULL,
	len_name  BIGINT NOT NULL,
	len_type  BIGINT NOT NULL,
	len_alias BIGINT NOT NULL,
	len_obs   BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, entity_id)
);

CREATE TABLE search_postings (
	tenant_id TEXT NOT NULL,
	term      TEXT NOT NULL,
	entity_id BIGINT NOT NULL,
	tf_name   BIGINT NOT NULL,
	tf_type   BIGINT NOT NULL,
	tf_alias  BIGINT NOT NULL,
	tf_obs    BIGINT NOT NULL,
	len_name  BIGINT NOT NULL,
	len_type  BIGINT NOT NULL,
	len_alias BIGINT NOT NULL,
	len_obs   BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, term, entity_id)
);

CREATE TABLE search_stats (
	tenant_id TEXT NOT NULL PRIMARY KEY,
	docs      BIGINT NOT NULL,
	len_name  BIGINT NOT NULL,
	len_type  BIGINT NOT NULL,
	len_alias BIGINT NOT NULL,
	len_obs   BIGINT NOT NULL
);
