package memory

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Ranked search over the knowledge graph (search_entities).
//
// Word modes use the unicode61 FTS5 tables of migration 0002: every word of
// the query is searched on its own, as a quoted phrase, in entity names,
// entity types and observations; an entity matches when any word does.
// Exact mode is a case-insensitive substring match through the trigram
// tables of 0001.

// Search modes.
const (
	SearchHybrid   = "hybrid"
	SearchSemantic = "semantic"
	SearchExact    = "exact"
	SearchGraph    = "graph"
)

// SearchModes lists the modes in the order tools document them.
var SearchModes = []string{SearchSemantic, SearchExact, SearchGraph, SearchHybrid}

const (
	// maxSearchWords bounds the distinct words of one query; later words
	// are ignored.
	maxSearchWords = 16
	// maxWordRunes bounds one word; longer words are cut.
	maxWordRunes = 64
)

// Field tiers: a hit in a name outranks a hit in a type, which outranks a
// hit in an observation. bm25 weights the two entity columns the same way.
const (
	tierName        = 3
	tierType        = 2
	tierObservation = 1
)

// SearchQuery is a search_entities request.
type SearchQuery struct {
	Query  string
	Mode   string // SearchModes; "" is hybrid
	Offset int
	Limit  int
	// Vector is the query's embedding by the embedder named Model, or nil
	// without an embedder. Semantic mode needs it; hybrid mode fuses the
	// word ranking with the vector ranking when it is set (semantic.go).
	Vector []float32
	Model  string
}

// SearchHit is one ranked entity.
type SearchHit struct {
	Entity
	// Score orders the hits: 100 per matched word, plus per word the tier
	// of its best field (name 3, type 2, observation 1), plus a BM25
	// relevance in [0, 1). Exact mode: the tier of the best field.
	Score float64
	// MatchedWords is how many distinct query words matched (exact: 1).
	MatchedWords int
}

// SearchResult is a page of hits, best first (recent first on equal score).
type SearchResult struct {
	Hits []SearchHit
	// Relations touch the page's entities (graph mode only).
	Relations []Relation
	// Words are the words searched (word modes).
	Words []string
	// Total is the number of matching entities before paging.
	Total int
	// Semantic is true when the vector ranking took part.
	Semantic bool
}

// searchWords splits a natural-language query into at most maxSearchWords
// distinct lower-case words of letters, digits and marks. Everything else is
// a separator, as for the unicode61 tokenizer.
func searchWords(q string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(q, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
	}) {
		if utf8.RuneCountInString(w) > maxWordRunes {
			w = string([]rune(w)[:maxWordRunes])
		}
		w = strings.ToLower(w)
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
		if len(out) == maxSearchWords {
			break
		}
	}
	return out
}

// ftsPhrase quotes w as an FTS5 string: whatever w holds, the result is one
// phrase and never FTS5 syntax (quotes inside are doubled).
func ftsPhrase(w string) string {
	return `"` + strings.ReplaceAll(w, `"`, `""`) + `"`
}

// SearchEntities ranks the caller's entities against q (see SearchHit.Score)
// and returns the page q.Offset..q.Offset+q.Limit with the total. Natural
// language never fails: a query with no words finds nothing.
func (s *Store) SearchEntities(ctx context.Context, q SearchQuery) (SearchResult, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return SearchResult{}, err
	}
	if q.Mode == "" {
		q.Mode = SearchHybrid
	}
	if !slices.Contains(SearchModes, q.Mode) {
		return SearchResult{}, invalidf("searchType must be one of %s", strings.Join(SearchModes, ", "))
	}
	if strings.TrimSpace(q.Query) == "" {
		return SearchResult{}, invalidf("query must not be empty")
	}
	if q.Limit <= 0 || q.Offset < 0 {
		return SearchResult{}, invalidf("limit must be positive and offset not negative")
	}
	if q.Mode == SearchSemantic && len(q.Vector) == 0 {
		return SearchResult{}, invalidf("semantic search needs an embedder")
	}
	var res SearchResult
	err = s.read(ctx, func(t *txn) error {
		res = SearchResult{Hits: []SearchHit{}}
		var ranked []rankedID
		var err error
		if q.Mode == SearchExact {
			ranked, err = s.exactCandidates(t, tenant, q.Query)
		} else if q.Mode != SearchSemantic {
			res.Words = searchWords(q.Query)
			ranked, err = wordCandidates(t, tenant, res.Words)
		}
		if err != nil {
			return err
		}
		res.Total = len(ranked)
		if q.Mode == SearchSemantic || (q.Mode == SearchHybrid && len(q.Vector) > 0) {
			if ranked, res.Total, err = semanticCandidates(t, tenant, q, ranked); err != nil {
				return err
			}
			res.Semantic = true
		}
		if q.Offset >= len(ranked) {
			return nil
		}
		page := ranked[q.Offset:min(len(ranked), q.Offset+q.Limit)]
		if res.Hits, err = loadHits(t, tenant, page); err != nil {
			return err
		}
		if q.Mode == SearchGraph {
			ids := make([]int64, len(page))
			for i, r := range page {
				ids[i] = r.id
			}
			rels, err := relationsTouching(t, tenant, ids)
			if err != nil {
				return err
			}
			res.Relations = make([]Relation, len(rels))
			for i, r := range rels {
				res.Relations[i] = r.Relation
			}
		}
		return nil
	})
	if err != nil {
		return SearchResult{}, err
	}
	return res, nil
}

// rankedID is a matching entity with its rank.
type rankedID struct {
	id      int64
	score   float64
	matched int
	updated string
}

// sortRanked orders by score, then most recently updated, then newest id.
func sortRanked(rs []rankedID) {
	slices.SortFunc(rs, func(a, b rankedID) int {
		switch {
		case a.score != b.score:
			if a.score > b.score {
				return -1
			}
			return 1
		case a.updated != b.updated:
			return -strings.Compare(a.updated, b.updated)
		case a.id > b.id:
			return -1
		case a.id < b.id:
			return 1
		}
		return 0
	})
}

// wordHit accumulates one entity's matches over the words.
type wordHit struct {
	tiers []int // per word: the best field tier, 0 when not matched
	rel   float64
}

func wordCandidates(t *txn, tenant string, words []string) ([]rankedID, error) {
	hits := map[int64]*wordHit{}
	add := func(id int64, word, tier int, bm25 float64) {
		h := hits[id]
		if h == nil {
			h = &wordHit{tiers: make([]int, len(words))}
			hits[id] = h
		}
		h.tiers[word] = max(h.tiers[word], tier)
		h.rel += -bm25 // bm25 is negative; more negative is more relevant
	}
	entityQuery := `SELECT e.id, bm25(entities_words_fts, 10.0, 3.0) FROM entities_words_fts
		JOIN entities e ON e.id = entities_words_fts.rowid
		WHERE entities_words_fts MATCH ? AND e.tenant_id = ?`
	observationQuery := `SELECT o.entity_id, bm25(observations_words_fts) FROM observations_words_fts
		JOIN observations o ON o.id = observations_words_fts.rowid
		WHERE observations_words_fts MATCH ? AND o.tenant_id = ?`
	pg := t.s.pg != nil
	if pg {
		// Negated so that, as bm25 on SQLite, more negative is more relevant.
		entityQuery = `SELECT id, -ts_rank(` + pgEntityWords + `, q) FROM entities, ` + pgWordQuery + ` q
			WHERE tenant_id = ? AND ` + pgEntityWords + ` @@ q`
		observationQuery = `SELECT entity_id, -ts_rank(` + pgObservationWords + `, q) FROM observations, ` + pgWordQuery + ` q
			WHERE tenant_id = ? AND ` + pgObservationWords + ` @@ q`
	}
	for i, w := range words {
		for _, c := range []struct {
			query string
			tier  int
		}{
			{entityQuery, tierName},
			{entityQuery, tierType},
			{observationQuery, tierObservation},
		} {
			match, ok := wordMatch(pg, w, c.tier)
			if !ok {
				continue
			}
			rows, err := t.query(c.query, match, tenant)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var (
					id   int64
					bm25 float64
				)
				if err := rows.Scan(&id, &bm25); err != nil {
					rows.Close()
					return nil, err
				}
				add(id, i, c.tier, bm25)
			}
			if err := rows.Close(); err != nil {
				return nil, err
			}
			if err := rows.Err(); err != nil {
				return nil, err
			}
		}
	}
	out := make([]rankedID, 0, len(hits))
	for id, h := range hits {
		r := rankedID{id: id}
		tiers := 0
		for _, tier := range h.tiers {
			if tier > 0 {
				r.matched++
				tiers += tier
			}
		}
		r.score = roundScore(float64(100*r.matched+tiers) + h.rel/(1+h.rel))
		out = append(out, r)
	}
	if err := fillUpdated(t, tenant, out); err != nil {
		return nil, err
	}
	sortRanked(out)
	return out, nil
}

// PostgreSQL's word search (migration postgres/0002): the 'simple'
// configuration (lower case, no stemming, no stop words) over text whose
// diacritics are removed (NFD, then the combining marks U+0300-U+036F
// dropped), as unicode61 remove_diacritics does on SQLite. Names weigh A
// and types B in one vector, as the two columns of entities_words_fts. The
// expressions must stay identical to the index definitions.
const (
	pgEntityWords = `(setweight(to_tsvector('simple', regexp_replace(normalize(name, NFD), '[\u0300-\u036f]', '', 'g')), 'A')
		|| setweight(to_tsvector('simple', regexp_replace(normalize(entity_type, NFD), '[\u0300-\u036f]', '', 'g')), 'B'))`
	pgObservationWords = `to_tsvector('simple', regexp_replace(normalize(content, NFD), '[\u0300-\u036f]', '', 'g'))`
	pgWordQuery        = `to_tsquery('simple', regexp_replace(normalize(?, NFD), '[\u0300-\u036f]', '', 'g'))`
)

// wordMatch is the match argument of wordCandidates' query for word w in
// the field of tier: on SQLite an FTS5 phrase restricted to a column, on
// PostgreSQL a quoted tsquery operand (a phrase if the parser splits w)
// restricted to a weight. ok is false when w can match nothing (on
// PostgreSQL, a word of combining marks only, which folding empties and
// to_tsquery would reject).
func wordMatch(pg bool, w string, tier int) (match string, ok bool) {
	if !pg {
		switch tier {
		case tierName:
			return "name : " + ftsPhrase(w), true
		case tierType:
			return "entity_type : " + ftsPhrase(w), true
		}
		return ftsPhrase(w), true
	}
	w = strings.Map(func(r rune) rune {
		if r >= 0x300 && r <= 0x36f {
			return -1
		}
		return r
	}, w)
	if w == "" {
		return "", false
	}
	// searchWords keeps letters, digits and marks only; quote anyway.
	q := "'" + strings.NewReplacer(`'`, `''`, `\`, `\\`).Replace(w) + "'"
	switch tier {
	case tierName:
		return q + ":A", true
	case tierType:
		return q + ":B", true
	}
	return q, true
}

func roundScore(f float64) float64 { return math.Round(f*1000) / 1000 }

// fillUpdated sets updated for each candidate.
func fillUpdated(t *txn, tenant string, rs []rankedID) error {
	if len(rs) == 0 {
		return nil
	}
	idx := make(map[int64]int, len(rs))
	ids := make([]int64, len(rs))
	for i, r := range rs {
		idx[r.id] = i
		ids[i] = r.id
	}
	list, _ := json.Marshal(ids)
	rows, err := t.query(`SELECT id, updated_at FROM entities WHERE tenant_id = ? AND id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`,
		tenant, string(list))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id      int64
			updated string
		)
		if err := rows.Scan(&id, &updated); err != nil {
			return err
		}
		rs[idx[id]].updated = updated
	}
	return rows.Err()
}

// exactCandidates ranks the entities containing q (case-insensitively) in
// their name (3), type (2) or an observation (1). Candidates come from the
// substring plan of search_nodes (substringCandidates) and are re-checked
// here.
func (s *Store) exactCandidates(t *txn, tenant, q string) ([]rankedID, error) {
	lq := strings.ToLower(q)
	rows, err := s.substringCandidates(t, tenant, q)
	if err != nil || rows == nil {
		return nil, err
	}
	defer rows.Close()
	var out []rankedID
	es := newEntityStream(rows)
	for e := es.next(); e != nil; e = es.next() {
		tier := 0
		switch {
		case strings.Contains(strings.ToLower(e.Name), lq):
			tier = tierName
		case strings.Contains(strings.ToLower(e.EntityType), lq):
			tier = tierType
		default:
			for _, o := range e.Observations {
				if strings.Contains(strings.ToLower(o), lq) {
					tier = tierObservation
					break
				}
			}
		}
		if tier > 0 {
			out = append(out, rankedID{id: e.id, score: float64(tier), matched: 1, updated: e.UpdatedAt})
		}
	}
	if es.err != nil {
		return nil, es.err
	}
	sortRanked(out)
	return out, nil
}

// loadHits loads the page's entities with observations, aliases and
// metadata, in page order.
func loadHits(t *txn, tenant string, page []rankedID) ([]SearchHit, error) {
	ids := make([]int64, len(page))
	pos := make(map[int64]int, len(page))
	out := make([]SearchHit, len(page))
	for i, r := range page {
		ids[i] = r.id
		pos[r.id] = i
		out[i] = SearchHit{Score: r.score, MatchedWords: r.matched}
		out[i].Observations = []string{}
	}
	list, _ := json.Marshal(ids)
	rows, err := t.query(`SELECT id, name, entity_type, aliases, metadata, created_at, updated_at FROM entities
		WHERE tenant_id = ? AND id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`, tenant, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id            int64
			e             Entity
			aliases, meta string
		)
		if err := rows.Scan(&id, &e.Name, &e.EntityType, &aliases, &meta, &e.CreatedAt, &e.UpdatedAt); err != nil {
			return nil, err
		}
		h := &out[pos[id]]
		e.Observations = h.Observations
		if err := json.Unmarshal([]byte(aliases), &e.Aliases); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(meta), &e.Metadata); err != nil {
			return nil, err
		}
		h.Entity = e
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	obs, err := t.query(`SELECT entity_id, content FROM observations
		WHERE tenant_id = ? AND entity_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) ORDER BY entity_id, id`, tenant, string(list))
	if err != nil {
		return nil, err
	}
	defer obs.Close()
	for obs.Next() {
		var (
			id      int64
			content string
		)
		if err := obs.Scan(&id, &content); err != nil {
			return nil, err
		}
		h := &out[pos[id]]
		h.Observations = append(h.Observations, content)
	}
	return out, obs.Err()
}
