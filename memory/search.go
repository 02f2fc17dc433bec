package memory

import (
	"context"
	"database/sql"
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
	var res SearchResult
	err = s.read(ctx, func(t *txn) error {
		res = SearchResult{Hits: []SearchHit{}}
		var ranked []rankedID
		var err error
		if q.Mode == SearchExact {
			ranked, err = s.exactCandidates(t, tenant, q.Query)
		} else {
			res.Words = searchWords(q.Query)
			ranked, err = wordCandidates(t, tenant, res.Words)
		}
		if err != nil {
			return err
		}
		res.Total = len(ranked)
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
			res.Relations, err = relationsTouching(t, tenant, ids)
		}
		return err
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
	const entityQuery = `SELECT e.id, bm25(entities_words_fts, 10.0, 3.0) FROM entities_words_fts
		JOIN entities e ON e.id = entities_words_fts.rowid
		WHERE entities_words_fts MATCH ? AND e.tenant_id = ?`
	const observationQuery = `SELECT o.entity_id, bm25(observations_words_fts) FROM observations_words_fts
		JOIN observations o ON o.id = observations_words_fts.rowid
		WHERE observations_words_fts MATCH ? AND o.tenant_id = ?`
	for i, w := range words {
		phrase := ftsPhrase(w)
		for _, c := range []struct {
			query, match string
			tier         int
		}{
			{entityQuery, "name : " + phrase, tierName},
			{entityQuery, "entity_type : " + phrase, tierType},
			{observationQuery, phrase, tierObservation},
		} {
			rows, err := t.query(c.query, c.match, tenant)
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
	rows, err := t.query(`SELECT id, updated_at FROM entities WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`,
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
// trigram index when q is long enough (the plan of search_nodes) and are
// re-checked here; shorter queries scan the tenant's entities.
func (s *Store) exactCandidates(t *txn, tenant, q string) ([]rankedID, error) {
	lq := strings.ToLower(q)
	entMatch, entOK, err := s.trigramMatch(t, "entities_fts", q)
	if err != nil {
		return nil, err
	}
	obsMatch, obsOK, err := s.trigramMatch(t, "observations_fts", q)
	if err != nil {
		return nil, err
	}
	const cols = `SELECT e.id, e.name, e.entity_type, e.created_at, e.updated_at, o.content`
	var rows *sql.Rows
	switch {
	case entOK && obsOK && entMatch == "" && obsMatch == "":
		return nil, nil // some trigram of q is in no document
	case entOK && obsOK:
		rows, err = t.query(`WITH hits(id) AS (
				SELECT e.id FROM (SELECT rowid FROM entities_fts WHERE entities_fts MATCH ?) f
				CROSS JOIN entities e ON e.id = f.rowid WHERE e.tenant_id = ?
				UNION
				SELECT o.entity_id FROM (SELECT rowid FROM observations_fts WHERE observations_fts MATCH ?) f
				CROSS JOIN observations o ON o.id = f.rowid WHERE o.tenant_id = ?)
			`+cols+` FROM hits h CROSS JOIN entities e ON e.id = h.id AND e.tenant_id = ?
			LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			ORDER BY e.id, o.id`, orNothing(entMatch), tenant, orNothing(obsMatch), tenant, tenant)
	default:
		rows, err = t.query(cols+` FROM entities e LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			WHERE e.tenant_id = ? ORDER BY e.id, o.id`, tenant)
	}
	if err != nil {
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
		WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`, tenant, string(list))
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
		WHERE tenant_id = ? AND entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, id`, tenant, string(list))
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
