-- Ranked word search (search_entities) reads a per-tenant inverted index
-- that the graph writes maintain in the same transaction (lexical.go):
-- tokenisation and stemming happen in Go, and every statistic that enters
-- a BM25 score (document count, document frequency, field lengths) is the
-- caller's tenant's alone. It replaces the word FTS tables of 0002, whose
-- bm25() counted every tenant's rows.
DROP TRIGGER entities_words_fts_ai;
DROP TRIGGER entities_words_fts_ad;
DROP TRIGGER entities_words_fts_au;
DROP TRIGGER observations_words_fts_ai;
DROP TRIGGER observations_words_fts_ad;
DROP TRIGGER observations_words_fts_au;
DROP TABLE entities_words_fts;
DROP TABLE observations_words_fts;

-- search_docs: one row per indexed entity: its distinct terms (a JSON
-- array, to remove its postings) and its field lengths in terms.
CREATE TABLE search_docs (
	tenant_id TEXT NOT NULL,
	entity_id INTEGER NOT NULL,
	terms     TEXT NOT NULL,
	len_name  INTEGER NOT NULL,
	len_type  INTEGER NOT NULL,
	len_alias INTEGER NOT NULL,
	len_obs   INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, entity_id)
) STRICT, WITHOUT ROWID;

-- search_postings: per tenant and term, the entities holding it, with the
-- term's frequency in each field and the entity's field lengths.
CREATE TABLE search_postings (
	tenant_id TEXT NOT NULL,
	term      TEXT NOT NULL,
	entity_id INTEGER NOT NULL,
	tf_name   INTEGER NOT NULL,
	tf_type   INTEGER NOT NULL,
	tf_alias  INTEGER NOT NULL,
	tf_obs    INTEGER NOT NULL,
	len_name  INTEGER NOT NULL,
	len_type  INTEGER NOT NULL,
	len_alias INTEGER NOT NULL,
	len_obs   INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, term, entity_id)
) STRICT, WITHOUT ROWID;

-- search_stats: per tenant, the number of indexed entities and the sums of
-- their field lengths.
CREATE TABLE search_stats (
	tenant_id TEXT NOT NULL PRIMARY KEY,
	docs      INTEGER NOT NULL,
	len_name  INTEGER NOT NULL,
	len_type  INTEGER NOT NULL,
	len_alias INTEGER NOT NULL,
	len_obs   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
