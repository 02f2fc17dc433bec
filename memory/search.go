package memory

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Ranked search over the knowledge graph (search_entities).
//
// Word modes rank by BM25F over the tenant's own word index (lexical.go):
// an entity matches when it holds any term of the query. Exact mode is a
// case-insensitive substring match through the trigram tables of 0001.

// Search modes.
const (
	SearchHybrid   = "hybrid"
	SearchSemantic = "semantic"
	SearchExact    = "exact"
	SearchGraph    = "graph"
)

// SearchModes lists the modes in the order tools document them.
var SearchModes = []string{SearchSemantic, SearchExact, SearchGraph, SearchHybrid}

// Field tiers of exact mode: a hit in a name outranks a hit in a type,
// which outranks a hit in an observation.
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
	// Score orders the hits: the BM25F relevance of the entity to the
	// query's terms (see lexical.go), computed from the caller's tenant's
	// statistics only. Exact mode: the tier of the best field.
	Score float64
	// MatchedWords is how many distinct query terms matched (exact: 1).
	MatchedWords int
}

// SearchResult is a page of hits, best first (recent first on equal score).
type SearchResult struct {
	Hits []SearchHit
	// Relations touch the page's entities (graph mode only).
	Relations []Relation
	// Words are the terms searched (word modes): folded, stemmed, without
	// stop words.
	Words []string
	// Total is the number of matching entities before paging.
	Total int
	// Semantic is true when the vector ranking took part.
	Semantic bool
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
		return SearchResult{}, errNotOneOf(FieldSearchMode, SearchModes)
	}
	if strings.TrimSpace(q.Query) == "" {
		return SearchResult{}, errEmpty(FieldQuery)
	}
	if q.Limit <= 0 || q.Offset < 0 {
		return SearchResult{}, invalid(CodeBadPage, "")
	}
	if q.Mode == SearchSemantic && len(q.Vector) == 0 {
		return SearchResult{}, invalid(CodeNoEmbedder, FieldSearchMode)
	}
	var res SearchResult
	// A ranked search first indexes what its tenant has queued (once:
	// writes that commit after that began after this search).
	ranks := q.Mode != SearchExact && q.Mode != SearchSemantic
	search := func(t *txn) error {
		if ranks {
			if pending, err := searchPending(t, tenant); err != nil || pending {
				return cmp.Or(err, errSearchPending)
			}
		}
		res = SearchResult{Hits: []SearchHit{}}
		var ranked []rankedID
		var err error
		if q.Mode == SearchExact {
			ranked, err = s.exactCandidates(t, tenant, q.Query)
		} else if q.Mode != SearchSemantic {
			ranked, res.Words, err = lexicalRank(t, tenant, q.Query, q.Offset, q.Limit)
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
	}
	err = s.read(ctx, search)
	if err == errSearchPending {
		if err = s.indexQueued(ctx, tenant); err == nil {
			ranks = false
			err = s.read(ctx, search)
		}
	}
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
	rows, err := t.query(`SELECT id, updated_at FROM entities WHERE tenant_id = ? AND id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`)`,
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
// metadata, in page order: one query, the entities joined with their
// observations.
func loadHits(t *txn, tenant string, page []rankedID) ([]SearchHit, error) {
	ids := make([]int64, len(page))
	pos := make(map[int64]int, len(page))
	out := make([]SearchHit, len(page))
	for i, r := range page {
		ids[i] = r.id
		pos[r.id] = i
		out[i] = SearchHit{Score: r.score, MatchedWords: r.matched}
	}
	list, _ := json.Marshal(ids)
	rows, err := t.query(`SELECT e.id, e.name, e.entity_type, e.aliases, e.metadata, e.created_at, e.updated_at, o.content
		FROM entities e LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
		WHERE e.tenant_id = ? AND e.id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`)
		ORDER BY e.id, o.id`, tenant, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var h *SearchHit
	for rows.Next() {
		// An entity's columns repeat on each of its observations' rows;
		// they are converted on its first.
		var (
			id                                         int64
			name, typ, aliases, meta, created, updated sql.RawBytes
			content                                    sql.NullString
		)
		if err := rows.Scan(&id, &name, &typ, &aliases, &meta, &created, &updated, &content); err != nil {
			return nil, err
		}
		i, ok := pos[id]
		if !ok {
			return nil, fmt.Errorf("entity %d, which was not asked for", id)
		}
		if h != &out[i] {
			h = &out[i]
			e := Entity{Name: string(name), EntityType: string(typ), Observations: []string{},
				CreatedAt: string(created), UpdatedAt: string(updated)}
			if err := json.Unmarshal(aliases, &e.Aliases); err != nil {
				return nil, err
			}
			if err := json.Unmarshal(meta, &e.Metadata); err != nil {
				return nil, err
			}
			h.Entity = e
		}
		if content.Valid {
			h.Observations = append(h.Observations, content.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Observations == nil {
			out[i].Observations = []string{} // deleted since it was ranked
		}
	}
	return out, nil
}
