package memory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Substring search (search_nodes, and search_entities' exact mode):
// candidates come from trigram indexes, planned and read within the
// caller's tenant only, and every candidate is re-checked exactly.

// SearchNodes returns the entities whose name, type or any observation
// contains query, case-insensitively, in creation order from page.Offset,
// plus every relation with either endpoint among them (a relation between
// two pages comes back with both). The page stops at page.Limit entities
// or where the entities and their relations would exceed page.MaxBytes;
// Total is the number of matches. Queries of three or more characters use
// the trigram index; shorter ones scan the tenant's entities.
func (s *Store) SearchNodes(ctx context.Context, query string, page Page) (Graph, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Graph{}, err
	}
	lq := strings.ToLower(query)
	match := func(e Entity) bool {
		if strings.Contains(strings.ToLower(e.Name), lq) || strings.Contains(strings.ToLower(e.EntityType), lq) {
			return true
		}
		for _, o := range e.Observations {
			if strings.Contains(strings.ToLower(o), lq) {
				return true
			}
		}
		return false
	}
	var g Graph
	err = s.read(ctx, func(t *txn) error {
		g = Graph{Entities: []Entity{}, Relations: []Relation{}}
		rows, err := s.substringCandidates(t, tenant, query)
		if err != nil || rows == nil {
			return err
		}
		defer rows.Close()
		es := newEntityStream(rows)
		var cands []entityRow
		used, full := graphOverhead, false
		for e := es.next(); e != nil; e = es.next() {
			if !match(e.Entity) {
				continue
			}
			g.Total++
			if g.Total <= page.Offset || full {
				continue
			}
			// Entities alone bound the candidates; fitGraph adds the relations.
			cost := entityCost(e.Entity)
			if (page.MaxBytes > 0 && used+cost > page.MaxBytes) || (page.Limit > 0 && len(cands) >= page.Limit) {
				full = true
				continue
			}
			used += cost
			cands = append(cands, *e)
		}
		if es.err != nil {
			return es.err
		}
		return g.fitTouching(t, tenant, cands, page.MaxBytes)
	})
	if err != nil {
		return Graph{}, err
	}
	g.pageEnd(page.Offset)
	return g, nil
}

// substringCandidates returns the rows (id, name, type, created, updated,
// content), ordered by id, of the tenant's entities that may contain query
// in their name, type or an observation, case-insensitively: a superset
// the caller re-checks exactly. rows is nil when nothing can match.
//
// SQLite asks the trigram FTS tables for the rarest trigrams of query
// among the tenant's rows (trigramMatch); queries under three characters
// scan the tenant.
// PostgreSQL asks the pg_trgm indexes with ILIKE (ilikePattern).
func (s *Store) substringCandidates(t *txn, tenant, query string) (*sql.Rows, error) {
	q, args, err := s.substringQuery(t, tenant, query)
	if err != nil || q == "" {
		return nil, err
	}
	if q := s.d.substringSetup; q != "" {
		if _, err := t.exec(q); err != nil {
			return nil, err
		}
	}
	if s.onSubstringQuery != nil {
		s.onSubstringQuery(t, q, args)
	}
	return t.query(q, args...)
}

// substringQuery returns substringCandidates' statement and arguments, or
// "" when nothing can match.
func (s *Store) substringQuery(t *txn, tenant, query string) (string, []any, error) {
	const cols = `SELECT e.id, e.name, e.entity_type, e.created_at, e.updated_at, o.content`
	const scan = cols + ` FROM entities e LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
		WHERE e.tenant_id = ? ORDER BY e.id, o.id`
	if s.d.trigramILIKE {
		if strings.ContainsRune(query, 0) {
			return "", nil, nil // PostgreSQL text cannot hold NUL
		}
		p := ilikePattern(query)
		if p == "%" {
			return scan, []any{tenant}, nil
		}
		return `WITH hits(id) AS (
				SELECT id FROM entities WHERE tenant_id = ? AND (name ILIKE ? OR entity_type ILIKE ?)
				UNION
				SELECT entity_id FROM observations WHERE tenant_id = ? AND content ILIKE ?)
			` + cols + ` FROM hits h JOIN entities e ON e.id = h.id AND e.tenant_id = ?
			LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			ORDER BY e.id, o.id`, []any{tenant, p, p, tenant, p, tenant}, nil
	}
	lo, hi, ok, err := substringRange(t, tenant)
	if err != nil || !ok {
		return "", nil, err // the tenant never had an entity: nothing can match
	}
	entMatch, entOK, err := s.trigramMatch(t, "entities_fts", lo, hi, query)
	if err != nil {
		return "", nil, err
	}
	obsMatch, obsOK, err := s.trigramMatch(t, "observations_fts", lo, hi, query)
	if err != nil {
		return "", nil, err
	}
	switch {
	case entOK && obsOK && entMatch == "" && obsMatch == "":
		return "", nil, nil // some trigram of the query is in none of the tenant's rows
	case entOK && obsOK:
		// CROSS JOIN makes SQLite drive from the index hits instead of
		// scanning the tenant's rows and probing the hit list.
		return `WITH hits(id) AS (
				SELECT e.id FROM (SELECT rowid - ? AS id FROM entities_fts WHERE entities_fts MATCH ? AND rowid BETWEEN ? AND ?) f
				CROSS JOIN entities e ON e.id = f.id WHERE e.tenant_id = ?
				UNION
				SELECT o.entity_id FROM (SELECT rowid - ? AS id FROM observations_fts WHERE observations_fts MATCH ? AND rowid BETWEEN ? AND ?) f
				CROSS JOIN observations o ON o.id = f.id WHERE o.tenant_id = ?)
			` + cols + ` FROM hits h CROSS JOIN entities e ON e.id = h.id AND e.tenant_id = ?
			LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			ORDER BY e.id, o.id`, []any{lo, orNothing(entMatch), lo, hi, tenant, lo, orNothing(obsMatch), lo, hi, tenant, tenant}, nil
	default:
		return scan, []any{tenant}, nil
	}
}

// ilikePattern is an ILIKE pattern for the candidates of a substring
// search for q: every text that contains q under Go's strings.ToLower (the
// exact re-check) must match it. %, _ and \ are escaped (the default LIKE
// escape is \). ASCII characters and characters without case stand for
// themselves: ILIKE folds ASCII in every locale (but I in Turkish ones,
// see below). Any other character
// becomes %, so that the candidates do not depend on how the database's
// locale or collation provider folds it (ICU, for one, lowers İ to i plus
// a combining dot). Two ASCII letters have non-ASCII upper cases in Go,
// U+0130 (İ) for i and U+212A (Kelvin) for k; glibc UTF-8 locales fold them
// too, C/POSIX and Turkish locales do not. They are kept literal anyway:
// i is too common to give up its trigrams, and SQLite's trigram index does
// not fold U+0130 either.
func ilikePattern(q string) string {
	var b strings.Builder
	b.WriteByte('%')
	wild := true          // the pattern ends with an unescaped %
	for _, r := range q { // an invalid byte is U+FFFD, as for strings.ToLower
		switch {
		case r == '%' || r == '_' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
			wild = false
		case ilikeLiteral(r):
			b.WriteRune(r)
			wild = false
		case !wild:
			b.WriteByte('%')
			wild = true
		}
	}
	if !wild {
		b.WriteByte('%')
	}
	return b.String()
}

// ilikeLiteral reports whether r can stand for itself in ilikePattern.
func ilikeLiteral(r rune) bool {
	if r < utf8.RuneSelf {
		return true
	}
	return unicode.SimpleFold(r) == r && unicode.ToLower(r) == r && unicode.ToUpper(r) == r && unicode.ToTitle(r) == r
}

// nothingMatch stands for "no candidates from this table" in a query that
// still asks the other table; a document that does contain it is only a
// false candidate, removed by the exact re-check.
const nothingMatch = "\"\x01\x01\x01\""

func orNothing(m string) string {
	if m == "" {
		return nothingMatch
	}
	return m
}

// maxPlanTrigrams is how many of the query's trigrams are asked of the index.
const maxPlanTrigrams = 3

// substringRange returns the rowid range of tenant's rows in the trigram
// indexes (migration 0015: (n << 40) + id for the tenant's number n), or
// ok=false when the tenant has never had an entity.
func substringRange(t *txn, tenant string) (lo, hi int64, ok bool, err error) {
	var n int64
	switch err := t.queryRow(`SELECT n FROM substring_fts_tenants WHERE tenant_id = ?`, tenant).Scan(&n); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, 0, false, nil
	case err != nil:
		return 0, 0, false, err
	}
	return n << 40, (n+1)<<40 - 1, true, nil
}

// trigramMatch plans a substring query against a trigram FTS table among
// the tenant's rows, rowids lo to hi (substringRange): it returns an FTS
// expression ANDing the rarest few of query's trigrams in those rows, or
// "" when some trigram of query is in none of them (nothing can match),
// and ok=false when the query is too short for the index (under three
// characters, or containing NUL). Every candidate is re-checked exactly by
// the caller, so the choice of trigrams only affects speed; both the counts
// that choose and the rows the expression reaches are the tenant's only
// (TestSubstringSearchWorkIsPerTenant).
//
// Counts come from a bounded cache keyed by the tenant's range. A cached
// count may be stale; that only makes a plan slower. Zero is never cached,
// so "the tenant has no document with this trigram" is always decided on
// fresh data.
func (s *Store) trigramMatch(t *txn, table string, lo, hi int64, query string) (match string, ok bool, err error) {
	runes := []rune(strings.ToLower(query))
	if len(runes) < 3 || strings.ContainsRune(query, 0) {
		return "", false, nil
	}
	type tri struct {
		text string
		df   int
	}
	seen := map[string]bool{}
	var tris []tri
	for i := 0; i+3 <= len(runes); i++ {
		text := string(runes[i : i+3])
		if seen[text] {
			continue
		}
		seen[text] = true
		key := fmt.Sprintf("%s\x00%d\x00%s", table, lo, text)
		df, cached := s.trigramDF.Get(key)
		if !cached {
			if err := t.queryRow(`SELECT count(*) FROM `+table+` WHERE `+table+` MATCH ? AND rowid BETWEEN ? AND ?`, quoteFTS(text), lo, hi).Scan(&df); err != nil {
				return "", false, err
			}
			if df == 0 {
				return "", true, nil
			}
			s.trigramDF.Add(key, df)
		}
		tris = append(tris, tri{text, df})
	}
	sort.Slice(tris, func(i, j int) bool { return tris[i].df < tris[j].df })
	parts := make([]string, 0, maxPlanTrigrams)
	for i := 0; i < len(tris) && i < maxPlanTrigrams; i++ {
		parts = append(parts, quoteFTS(tris[i].text))
	}
	return strings.Join(parts, " AND "), true, nil
}

// quoteFTS makes s one FTS5 string token.
func quoteFTS(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
