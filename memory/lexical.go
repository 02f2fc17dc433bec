package memory

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/kljensen/snowball/english"
	"golang.org/x/text/unicode/norm"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Lexical ranking: BM25F over a per-tenant inverted index (migration 0005).
//
// The index is maintained by the graph writes, in their transaction
// (indexEntities); a query reads only the caller's tenant's postings and
// statistics, so neither its scores nor its work depend on other tenants.
// The index is computed in Go rather than by SQLite FTS5 or PostgreSQL
// text search because both engines keep their statistics per table, not
// per tenant, and because one implementation ranks the same on both.

// Fields of an entity, in the order of the arrays below.
const (
	fieldName = iota
	fieldType
	fieldAlias
	fieldObs
	numFields
)

// BM25F parameters: per-field weights and length normalisation. Chosen
// on the recall benchmark (README, "Recall") among textbook values.
var (
	fieldWeight = [numFields]float64{3, 1, 2.5, 1}
	fieldB      = [numFields]float64{0.5, 0.3, 0.5, 0.5}
)

// bm25K1 is the term-frequency saturation; bm25Delta is BM25+'s lower
// bound of a present term's frequency factor (Lv and Zhai, 2011), so that
// a long entity holding a term is never scored as if it did not.
const (
	bm25K1    = 0.9
	bm25Delta = 1.0
)

const (
	// maxQueryTerms bounds the distinct terms of one query; later terms
	// are ignored.
	maxQueryTerms = 32
	// maxWordRunes bounds one word; longer words are cut.
	maxWordRunes = 64
)

// isWordRune reports whether r belongs to a word (unicode61: letters,
// digits and marks; everything else separates words).
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// fold lower-cases w and removes its diacritics (NFD, then the combining
// marks dropped), as unicode61's remove_diacritics does.
func fold(w string) string {
	w = strings.ToLower(w)
	for _, r := range w {
		if r >= utf8.RuneSelf {
			return strings.Map(func(r rune) rune {
				if unicode.Is(unicode.Mn, r) {
					return -1
				}
				return r
			}, norm.NFD.String(w))
		}
	}
	return w
}

// cut bounds w to maxWordRunes runes.
func cut(w string) string {
	if len(w) > maxWordRunes && utf8.RuneCountInString(w) > maxWordRunes {
		return string([]rune(w)[:maxWordRunes])
	}
	return w
}

// stem is w's index term: English words (ASCII letters only) are reduced
// by the Snowball English stemmer; other words stay as they are.
func stem(w string) string {
	for i := 0; i < len(w); i++ {
		if c := w[i]; c < 'a' || c > 'z' {
			return w
		}
	}
	return english.Stem(w, true)
}

// tenantStemmer returns stem with a cache of the tenant's own words, for
// indexing: words repeat, and stemming was a quarter of the CPU time of a
// create_entities call, spent holding the writer. The cache is keyed by
// tenant, so whether a word is cached (a faster call) depends only on the
// caller's own writes.
func tenantStemmer(tenant string) func(string) string {
	return func(w string) string {
		k := stemKey{tenant, w}
		if s, ok := stems.Get(k); ok {
			return s
		}
		s := stem(w)
		k.word = strings.Clone(w)
		stems.Add(k, s)
		return s
	}
}

type stemKey struct{ tenant, word string }

// stems is tenantStemmer's cache, bounded across tenants.
var stems = func() *lru.Cache[stemKey, string] {
	c, err := lru.New[stemKey, string](stemCacheSize)
	if err != nil {
		panic(err) // only for a size ≤ 0
	}
	return c
}()

const stemCacheSize = 1 << 15

// analyze returns the terms of text, in order, with repeats: every word
// (folded, then stemmed), leaving out English stop words when dropStop;
// plus, for each whitespace-separated token that joins words with
// punctuation (an e-mail address, an id like D3:12, a code identifier like
// snake_case or pkg.Func), that whole token folded, so that it matches
// exactly as well as by its parts.
func analyze(text string, dropStop bool, stem func(string) string) []string {
	return analyzeStop(text, dropStop, english.IsStopWord, stem)
}

// questionWords are words of how a question is asked rather than of what
// it asks about ("what kind of", "would she likely", "how many"); a query
// leaves them out like stop words. Documents keep them: leaving a word out
// of a query changes no index.
var questionWords = map[string]bool{
	"kind": true, "type": true, "sort": true, "would": true, "could": true, "might": true,
	"may": true, "likely": true, "many": true, "much": true, "ever": true, "describe": true,
}

// isQueryStop reports whether a folded word of a query is left out.
func isQueryStop(w string) bool { return english.IsStopWord(w) || questionWords[w] }

// analyzeStop is analyze with the stop list isStop.
func analyzeStop(text string, dropStop bool, isStop func(string) bool, stem func(string) string) []string {
	var out []string
	for _, tok := range strings.Fields(text) {
		tok = strings.TrimFunc(tok, func(r rune) bool { return !isWordRune(r) })
		if tok == "" {
			continue
		}
		words := strings.FieldsFunc(tok, func(r rune) bool { return !isWordRune(r) })
		if len(words) > 1 {
			out = append(out, cut(fold(tok)))
		}
		for _, w := range words {
			w = cut(fold(w))
			if w == "" || dropStop && isStop(w) {
				continue
			}
			out = append(out, stem(w))
		}
	}
	return out
}

// queryTerms are the distinct terms of a query, at most maxQueryTerms:
// without stop words, unless the query has nothing else (then the stop
// words still match names, types and aliases, which keep them).
func queryTerms(q string) []string {
	terms := analyzeStop(q, true, isQueryStop, stem)
	if len(terms) == 0 {
		terms = analyze(q, false, stem)
	}
	var out []string
	for _, t := range terms {
		if !slices.Contains(out, t) {
			out = append(out, t)
			if len(out) == maxQueryTerms {
				break
			}
		}
	}
	return out
}

// entityDoc is the index form of one entity.
type entityDoc struct {
	id  int64
	tf  map[string]*[numFields]int
	len [numFields]int
}

// docOf analyzes an entity's fields. Names, types and aliases keep stop
// words (they are short and may be nothing else); observations drop them.
func docOf(tenant string, id int64, name, entityType string, aliases, observations []string) entityDoc {
	d := entityDoc{id: id, tf: map[string]*[numFields]int{}}
	stem := tenantStemmer(tenant)
	add := func(f int, text string, dropStop bool) {
		for _, t := range analyze(text, dropStop, stem) {
			c := d.tf[t]
			if c == nil {
				c = new([numFields]int)
				d.tf[t] = c
			}
			c[f]++
			d.len[f]++
		}
	}
	add(fieldName, name, false)
	add(fieldType, entityType, false)
	for _, a := range aliases {
		add(fieldAlias, a, false)
	}
	for _, o := range observations {
		add(fieldObs, o, true)
	}
	return d
}

// indexNewDocs adds docs (entities not indexed yet) to the tenant's word
// index.
func indexNewDocs(t *txn, tenant string, docs []entityDoc) error {
	if len(docs) == 0 {
		return nil
	}
	type docRow struct {
		ID    int64  `json:"i"`
		Terms string `json:"t"`
		N     int    `json:"n"`
		T     int    `json:"y"`
		A     int    `json:"a"`
		O     int    `json:"o"`
	}
	type postRow struct {
		Term           string
		ID             int64
		FN, FT, FA, FO int
		N, T, A, O     int
	}
	var (
		drows []docRow
		prows []postRow
		sum   [numFields]int
	)
	for _, d := range docs {
		terms := make([]string, 0, len(d.tf))
		for term, c := range d.tf {
			terms = append(terms, term)
			prows = append(prows, postRow{term, d.id, c[fieldName], c[fieldType], c[fieldAlias], c[fieldObs],
				d.len[fieldName], d.len[fieldType], d.len[fieldAlias], d.len[fieldObs]})
		}
		tj, _ := json.Marshal(terms)
		drows = append(drows, docRow{d.id, string(tj), d.len[fieldName], d.len[fieldType], d.len[fieldAlias], d.len[fieldObs]})
		for f := range sum {
			sum[f] += d.len[f]
		}
	}
	dj, _ := json.Marshal(drows)
	if _, err := t.exec(`INSERT INTO search_docs (tenant_id, entity_id, terms, len_name, len_type, len_alias, len_obs)
		SELECT ?, CAST(value->>'i' AS BIGINT), value->>'t', CAST(value->>'n' AS BIGINT), CAST(value->>'y' AS BIGINT),
			CAST(value->>'a' AS BIGINT), CAST(value->>'o' AS BIGINT) FROM `+t.s.d.jsonArray+``, tenant, string(dj)); err != nil {
		return err
	}
	for len(prows) > 0 {
		chunk := prows[:min(len(prows), postingsPerInsert)]
		prows = prows[len(chunk):]
		args := make([]any, 0, 11*len(chunk))
		for _, p := range chunk {
			args = append(args, tenant, p.Term, p.ID, p.FN, p.FT, p.FA, p.FO, p.N, p.T, p.A, p.O)
		}
		if _, err := t.exec(insertPostings(len(chunk)), args...); err != nil {
			return err
		}
	}
	return addSearchStats(t, tenant, len(docs), sum)
}

// postingsPerInsert is how many postings one INSERT writes: plain
// parameters, because extracting many fields per row from a JSON argument
// cost more than the insert itself.
const postingsPerInsert = 64

// insertPostings is the INSERT of n postings (11 parameters each).
func insertPostings(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO search_postings (tenant_id, term, entity_id, tf_name, tf_type, tf_alias, tf_obs,
		len_name, len_type, len_alias, len_obs) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

// addSearchStats adds docs and field lengths (negative to remove) to the
// tenant's totals, and gives its index a new version (lexcache.go): every
// change to the tenant's postings calls it.
func addSearchStats(t *txn, tenant string, docs int, lens [numFields]int) error {
	_, err := t.exec(`INSERT INTO search_stats (tenant_id, docs, len_name, len_type, len_alias, len_obs, version) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET docs = search_stats.docs + excluded.docs,
			len_name = search_stats.len_name + excluded.len_name, len_type = search_stats.len_type + excluded.len_type,
			len_alias = search_stats.len_alias + excluded.len_alias, len_obs = search_stats.len_obs + excluded.len_obs,
			version = excluded.version`,
		tenant, docs, lens[fieldName], lens[fieldType], lens[fieldAlias], lens[fieldObs], newIndexVersion())
	return err
}

// reindexEntities brings the index of the tenant's entities ids up to
// date with their current content: their old postings are removed, and
// those that still exist are analyzed again.
func reindexEntities(t *txn, tenant string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	list, _ := json.Marshal(ids)
	rows, err := t.query(`SELECT entity_id, terms, len_name, len_type, len_alias, len_obs FROM search_docs
		WHERE tenant_id = ? AND entity_id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`)`, tenant, string(list))
	if err != nil {
		return err
	}
	var (
		old   [][2]any
		n     int
		lens  [numFields]int
		terms string
	)
	for rows.Next() {
		var (
			id int64
			l  [numFields]int
		)
		if err := rows.Scan(&id, &terms, &l[0], &l[1], &l[2], &l[3]); err != nil {
			rows.Close()
			return err
		}
		var ts []string
		if err := json.Unmarshal([]byte(terms), &ts); err != nil {
			rows.Close()
			return err
		}
		for _, term := range ts {
			old = append(old, [2]any{term, id})
		}
		n++
		for f := range lens {
			lens[f] -= l[f]
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n > 0 {
		if len(old) > 0 {
			oj, _ := json.Marshal(old)
			if _, err := t.exec(`DELETE FROM search_postings WHERE tenant_id = ?
				AND (term, entity_id) IN (SELECT value->>0, CAST(value->>1 AS BIGINT) FROM `+t.s.d.jsonArray+`)`, tenant, string(oj)); err != nil {
				return err
			}
		}
		if _, err := t.exec(`DELETE FROM search_docs WHERE tenant_id = ? AND entity_id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`)`,
			tenant, string(list)); err != nil {
			return err
		}
		if err := addSearchStats(t, tenant, -n, lens); err != nil {
			return err
		}
	}
	docs, err := loadDocs(t, tenant, string(list))
	if err != nil {
		return err
	}
	return indexNewDocs(t, tenant, docs)
}

// loadDocs analyzes the tenant's entities whose ids are in the JSON array
// list.
func loadDocs(t *txn, tenant, list string) ([]entityDoc, error) {
	type ent struct {
		name, typ string
		aliases   []string
		obs       []string
	}
	byID := map[int64]*ent{}
	var order []int64
	rows, err := t.query(`SELECT id, name, entity_type, aliases FROM entities
		WHERE tenant_id = ? AND id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`) ORDER BY id`, tenant, list)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var (
			id      int64
			e       ent
			aliases string
		)
		if err := rows.Scan(&id, &e.name, &e.typ, &aliases); err != nil {
			rows.Close()
			return nil, err
		}
		if err := json.Unmarshal([]byte(aliases), &e.aliases); err != nil {
			rows.Close()
			return nil, err
		}
		byID[id] = &e
		order = append(order, id)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(order) == 0 {
		return nil, nil
	}
	obs, err := t.query(`SELECT entity_id, content FROM observations
		WHERE tenant_id = ? AND entity_id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`) ORDER BY entity_id, id`, tenant, list)
	if err != nil {
		return nil, err
	}
	for obs.Next() {
		var (
			id      int64
			content string
		)
		if err := obs.Scan(&id, &content); err != nil {
			obs.Close()
			return nil, err
		}
		if e := byID[id]; e != nil {
			e.obs = append(e.obs, content)
		}
	}
	if err := obs.Close(); err != nil {
		return nil, err
	}
	if err := obs.Err(); err != nil {
		return nil, err
	}
	docs := make([]entityDoc, 0, len(order))
	for _, id := range order {
		e := byID[id]
		docs = append(docs, docOf(tenant, id, e.name, e.typ, e.aliases, e.obs))
	}
	return docs, nil
}

// lexStats are the tenant's statistics that enter a score.
type lexStats struct {
	docs float64
	avg  [numFields]float64
}

// lexPosting is one term's occurrence in one entity.
type lexPosting struct {
	term int
	id   int64
	tf   [numFields]float64
	len  [numFields]float64
}

// lexicalRank ranks the tenant's entities against query by BM25F and
// returns every entity that holds at least
// one query term, best first (ties: most recently updated, then newest),
// with its score and the number of distinct query terms it holds; terms
// are the query's terms. Only the order of the page [offset, offset+limit)
// is guaranteed among equal scores (recency is read for those only). This
// is the lexical list a rank fusion combines with other rankings.
func lexicalRank(t *txn, tenant, query string, offset, limit int) (ranked []rankedID, terms []string, err error) {
	terms = queryTerms(query)
	if len(terms) == 0 {
		return nil, terms, nil
	}
	var (
		st      lexStats
		sum     [numFields]float64
		version int64
	)
	err = t.queryRow(`SELECT docs, len_name, len_type, len_alias, len_obs, version FROM search_stats WHERE tenant_id = ?`, tenant).
		Scan(&st.docs, &sum[0], &sum[1], &sum[2], &sum[3], &version)
	if err == sql.ErrNoRows || err == nil && st.docs <= 0 {
		return nil, terms, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for f := range st.avg {
		st.avg[f] = max(sum[f]/st.docs, 1)
	}
	ps, df, err := loadPostings(t, tenant, version, terms, 0)
	if err != nil {
		return nil, nil, err
	}
	weights := make([]float64, len(terms))
	for i := range weights {
		weights[i] = 1
	}
	scores := scorePostings(st, ps, df, weights)
	matched := map[int64]int{}
	for _, p := range ps {
		matched[p.id]++
	}
	ranked = make([]rankedID, 0, len(matched))
	for id, n := range matched {
		ranked = append(ranked, rankedID{id: id, score: roundScore(scores[id]), matched: n})
	}
	sortRanked(ranked)
	if err := orderTiesByRecency(t, tenant, ranked, offset, limit); err != nil {
		return nil, nil, err
	}
	return ranked, terms, nil
}

// loadPostings reads the tenant's postings of terms, numbering them from
// base, and the document frequency of each. The postings come by term (in
// byte order), then by entity: the order scorePostings adds them in. The
// lists of terms kept at the tenant's index version (lexcache.go) are not
// read again.
func loadPostings(t *txn, tenant string, version int64, terms []string, base int) ([]lexPosting, []int, error) {
	lists := make(map[string][]cachedPosting, len(terms))
	var missing []string
	for _, term := range terms {
		if ps, ok := t.s.postings.get(tenant, term, version); ok {
			lists[term] = ps
		} else {
			missing = append(missing, term)
		}
	}
	if len(missing) > 0 {
		read, err := readPostings(t, tenant, missing)
		if err != nil {
			return nil, nil, err
		}
		for _, term := range missing {
			lists[term] = read[term]
			t.s.postings.add(tenant, term, version, read[term])
		}
	}
	order := make([]int, len(terms))
	n := 0
	for i := range order {
		order[i] = i
		n += len(lists[terms[i]])
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(terms[a], terms[b]) })
	df := make([]int, len(terms))
	ps := make([]lexPosting, 0, n)
	for _, i := range order {
		list := lists[terms[i]]
		df[i] = len(list)
		for _, c := range list {
			p := lexPosting{term: base + i, id: c.id}
			for f := range numFields {
				p.tf[f], p.len[f] = float64(c.counts[f]), float64(c.counts[numFields+f])
			}
			ps = append(ps, p)
		}
	}
	return ps, df, nil
}

// readPostings reads the tenant's posting lists of terms from the index,
// each by entity.
func readPostings(t *txn, tenant string, terms []string) (map[string][]cachedPosting, error) {
	list, _ := json.Marshal(terms)
	rows, err := t.query(`SELECT term, entity_id, tf_name, tf_type, tf_alias, tf_obs, len_name, len_type, len_alias, len_obs
		FROM search_postings WHERE tenant_id = ? AND term IN (SELECT value FROM `+t.s.d.textArray+`)`, tenant, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]cachedPosting, len(terms))
	for rows.Next() {
		var (
			term string
			p    cachedPosting
			c    = &p.counts
		)
		if err := rows.Scan(&term, &p.id, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7]); err != nil {
			return nil, err
		}
		out[term] = append(out[term], p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b cachedPosting) int { return cmp.Compare(a.id, b.id) })
	}
	return out, nil
}

// scorePostings sums, per entity, the BM25F score of each term times its
// weight: idf(t) * (tf'/(k1 + tf') + delta), tf' the field-weighted,
// length-normalised term frequency.
func scorePostings(st lexStats, ps []lexPosting, df []int, weights []float64) map[int64]float64 {
	idf := make([]float64, len(df))
	for i, d := range df {
		idf[i] = math.Log(1 + (st.docs-float64(d)+0.5)/(float64(d)+0.5))
	}
	out := map[int64]float64{}
	for _, p := range ps {
		var tf float64
		for f := range numFields {
			if p.tf[f] > 0 {
				tf += fieldWeight[f] * p.tf[f] / (1 - fieldB[f] + fieldB[f]*p.len[f]/st.avg[f])
			}
		}
		out[p.id] += weights[p.term] * idf[p.term] * (tf/(bm25K1+tf) + bm25Delta)
	}
	return out
}

// orderTiesByRecency orders runs of equal scores that overlap the page
// [offset, offset+limit) of rs (sorted by score) most recently updated
// first, reading updated_at for those entities only.
func orderTiesByRecency(t *txn, tenant string, rs []rankedID, offset, limit int) error {
	lo, hi := offset, min(len(rs), offset+limit)
	if lo >= hi {
		return nil
	}
	for lo > 0 && rs[lo-1].score == rs[lo].score {
		lo--
	}
	for hi < len(rs) && rs[hi].score == rs[hi-1].score {
		hi++
	}
	var tied []int
	for i := lo; i < hi; i++ {
		if (i > lo && rs[i-1].score == rs[i].score) || (i+1 < hi && rs[i+1].score == rs[i].score) {
			tied = append(tied, i)
		}
	}
	if len(tied) == 0 {
		return nil
	}
	sub := make([]rankedID, len(tied))
	for k, i := range tied {
		sub[k] = rs[i]
	}
	if err := fillUpdated(t, tenant, sub); err != nil {
		return err
	}
	for k, i := range tied {
		rs[i].updated = sub[k].updated
	}
	sortRanked(rs[lo:hi])
	return nil
}

// indexBatch is how many entities one transaction of indexUnindexed
// indexes.
const indexBatch = 500

// indexUnindexed indexes the entities that have no search_docs row yet
// (written before migration 0005), tenant by tenant, in batches; Open
// calls it after migrating. Each batch is one write of its tenant, so
// replicas opening together serialize on the tenant and index each entity
// once. It first indexes what an earlier process left in search_queue, so
// that only entities older than the index are left without search_docs.
func (s *Store) indexUnindexed(ctx context.Context) error {
	if err := s.indexAllQueued(ctx); err != nil {
		return err
	}
	var tenants []string
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT id FROM tenants ORDER BY id`)
		all, err := collect(rows, err, scanOne[string])
		if err != nil {
			return err
		}
		for _, tenant := range all {
			var n int
			if err := t.queryRow(`SELECT count(*) FROM (SELECT 1 FROM entities e WHERE e.tenant_id = ?
				AND NOT EXISTS (SELECT 1 FROM search_docs d WHERE d.tenant_id = ? AND d.entity_id = e.id) LIMIT 1) x`,
				tenant, tenant).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				tenants = append(tenants, tenant)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index search: %w", err)
	}
	for _, tenant := range tenants {
		tctx := tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: tenant})
		for n := indexBatch; n == indexBatch; {
			err := s.write(tctx, func(t *txn) error {
				rows, err := t.query(`SELECT e.id FROM entities e WHERE e.tenant_id = ?
					AND NOT EXISTS (SELECT 1 FROM search_docs d WHERE d.tenant_id = ? AND d.entity_id = e.id)
					ORDER BY e.id LIMIT `+strconv.Itoa(indexBatch), tenant, tenant)
				if err != nil {
					return err
				}
				var ids []int64
				for rows.Next() {
					var id int64
					if err := rows.Scan(&id); err != nil {
						rows.Close()
						return err
					}
					ids = append(ids, id)
				}
				if err := rows.Close(); err != nil {
					return err
				}
				if err := rows.Err(); err != nil {
					return err
				}
				n = len(ids)
				return reindexEntities(t, tenant, ids)
			})
			if err != nil {
				return fmt.Errorf("index search of tenant %q: %w", tenant, err)
			}
		}
	}
	return nil
}
