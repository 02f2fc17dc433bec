package memory

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"testing"
)

// BenchmarkRecallVariants scores ranking variants on the LoCoMo
// conversations in $NEXUS_LOCOMO_DIR without a store: every turn is
// analyzed as the index would (docOf, one entity per turn), the postings
// and statistics are built in memory per conversation, and each question
// of categories 1-4 is ranked by scoreVariant. It is a tuning aid for the
// ranking of lexical.go; cmd/nexus-mcp's BenchmarkRecall measures the
// server itself. Each variant prints one line: R@1, R@5 and R@10 overall,
// then for categories 1 to 4. NEXUS_RECALL_GRID=1 adds a grid of k1, b
// and δ. The base variant must score every question as scorePostings
// does (checkBase), so the figures are the server's.
//
//	NEXUS_LOCOMO_DIR=/path/to/locomo-dev go test -run '^$' -bench RecallVariants -benchtime 1x ./memory
func BenchmarkRecallVariants(b *testing.B) {
	dir := os.Getenv("NEXUS_LOCOMO_DIR")
	if dir == "" {
		b.Skip("set NEXUS_LOCOMO_DIR to a directory of LoCoMo conversation files")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		b.Skipf("no *.json in %s", dir)
	}
	sort.Strings(files)
	var convs []variantConv
	for _, f := range files {
		c, err := loadVariantConv(f)
		if err != nil {
			b.Fatal(err)
		}
		convs = append(convs, c)
	}
	for _, c := range convs {
		if err := c.checkBase(); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range recallVariants() {
		b.Run(v.name, func(b *testing.B) {
			var tally [5]variantRecall
			for b.Loop() {
				tally = [5]variantRecall{}
				for _, c := range convs {
					for _, q := range c.qa {
						tally[0].add(q.evidence, c.rank(q.text, v))
						tally[q.cat].add(q.evidence, c.rank(q.text, v))
					}
				}
			}
			line := v.name
			for _, r := range tally {
				line += fmt.Sprintf(" | %.3f %.3f %.3f", r.at(1), r.at(5), r.at(10))
			}
			fmt.Println(line)
			b.ReportMetric(tally[0].at(5), "R@5")
			b.ReportMetric(tally[0].at(10), "R@10")
		})
	}
}

// rankVariant is one ranking: BM25F parameters and extras.
type rankVariant struct {
	name     string
	k1, b    float64
	delta    float64
	idfPow   float64 // idf raised to this power (1: plain)
	fbDocs   int     // RM3: feedback documents (0: none)
	fbTerms  int
	fbLambda float64 // weight of the original query
	prox     float64 // weight of adjacent query-term pairs in an observation
	// common, commonW: a term in more than a common share of the
	// documents counts commonW times.
	common, commonW float64
	// mu > 0 ranks by query likelihood with Dirichlet smoothing instead
	// (the entities holding at least one query term).
	mu float64
	// nbr: each entity also gets nbr times the scores of the entities
	// written just before and after it (write-order locality).
	nbr float64
}

func baseVariant() rankVariant {
	return rankVariant{name: "base", k1: bm25K1, b: fieldB[fieldObs], delta: bm25Delta, idfPow: 1}
}

func recallVariants() []rankVariant {
	var vs []rankVariant
	vs = append(vs, baseVariant())
	if os.Getenv("NEXUS_RECALL_GRID") != "" {
		for _, k1 := range []float64{0.6, 0.9, 1.2, 1.6} {
			for _, b := range []float64{0.3, 0.5, 0.75} {
				for _, d := range []float64{0, 0.5, 1} {
					v := baseVariant()
					v.k1, v.b, v.delta = k1, b, d
					v.name = fmt.Sprintf("k1=%.1f,b=%.2f,δ=%.1f", k1, b, d)
					vs = append(vs, v)
				}
			}
		}
	}
	for _, d := range []float64{1.5, 2, 3} {
		for _, b := range []float64{0.3, 0.5} {
			v := baseVariant()
			v.delta, v.b = d, b
			v.name = fmt.Sprintf("δ=%.1f,b=%.1f", d, b)
			vs = append(vs, v)
		}
	}
	for _, c := range []float64{0.05, 0.1, 0.2, 0.3} {
		for _, w := range []float64{0, 0.5, 1.5, 2} {
			v := baseVariant()
			v.common, v.commonW = c, w
			v.name = fmt.Sprintf("common>%.2f×%.1f", c, w)
			vs = append(vs, v)
		}
	}
	for _, mu := range []float64{10, 50, 200, 1000} {
		v := baseVariant()
		v.mu = mu
		v.name = fmt.Sprintf("ql-dirichlet,mu=%.0f", mu)
		vs = append(vs, v)
	}
	for _, p := range []float64{0.5, 1.5, 2} {
		v := baseVariant()
		v.idfPow = p
		v.name = fmt.Sprintf("idf^%.1f", p)
		vs = append(vs, v)
	}
	for _, w := range []float64{0.1, 0.25, 0.5, 1} {
		v := baseVariant()
		v.prox = w
		v.name = fmt.Sprintf("prox=%.2f", w)
		vs = append(vs, v)
	}
	for _, w := range []float64{0.1, 0.3, 0.5, 0.7} {
		v := baseVariant()
		v.nbr = w
		v.name = fmt.Sprintf("nbr=%.1f", w)
		vs = append(vs, v)
	}
	for _, fb := range [][3]float64{{3, 10, 0.7}, {5, 10, 0.8}, {5, 20, 0.8}, {10, 10, 0.9}} {
		v := baseVariant()
		v.fbDocs, v.fbTerms, v.fbLambda = int(fb[0]), int(fb[1]), fb[2]
		v.name = fmt.Sprintf("rm3=%d,%d,%.1f", v.fbDocs, v.fbTerms, v.fbLambda)
		vs = append(vs, v)
	}
	return vs
}

type variantRecall struct {
	n   int
	sum [11]float64
}

func (r *variantRecall) add(evidence []string, ranked []string) {
	r.n++
	found := 0
	for k := 1; k <= 10; k++ {
		if k <= len(ranked) && slices.Contains(evidence, ranked[k-1]) {
			found++
		}
		r.sum[k] += float64(found) / float64(len(evidence))
	}
}

func (r variantRecall) at(k int) float64 { return r.sum[k] / float64(max(1, r.n)) }

type variantQA struct {
	text     string
	evidence []string
	cat      int
}

// variantConv is one conversation's in-memory index.
type variantConv struct {
	names    []string
	docs     []entityDoc
	seq      [][]string // observation terms in order, per doc
	postings map[string][]int
	avg      [numFields]float64
	qa       []variantQA
}

var variantSession = regexp.MustCompile(`^session_(\d+)$`)

func loadVariantConv(path string) (variantConv, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return variantConv{}, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return variantConv{}, err
	}
	var sessions []int
	for k := range doc {
		if m := variantSession.FindStringSubmatch(k); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			sessions = append(sessions, n)
		}
	}
	sort.Ints(sessions)
	c := variantConv{postings: map[string][]int{}}
	for _, n := range sessions {
		var turns []struct {
			Speaker string `json:"speaker"`
			DiaID   string `json:"dia_id"`
			Text    string `json:"text"`
		}
		if err := json.Unmarshal(doc[fmt.Sprintf("session_%d", n)], &turns); err != nil {
			return variantConv{}, err
		}
		for _, t := range turns {
			obs := t.Speaker + ": " + t.Text
			d := docOf("recall", int64(len(c.docs)), t.DiaID, "dialog_turn", nil, []string{obs})
			for term := range d.tf {
				c.postings[term] = append(c.postings[term], len(c.docs))
			}
			for f := range numFields {
				c.avg[f] += float64(d.len[f])
			}
			c.names = append(c.names, t.DiaID)
			c.docs = append(c.docs, d)
			c.seq = append(c.seq, analyze(obs, true, stem))
		}
	}
	for f := range numFields {
		c.avg[f] = max(c.avg[f]/float64(len(c.docs)), 1)
	}
	var qa []struct {
		Question string
		Evidence []string
		Category int
	}
	if err := json.Unmarshal(doc["qa"], &qa); err != nil {
		return variantConv{}, err
	}
	for _, q := range qa {
		if q.Category >= 1 && q.Category <= 4 && len(q.Evidence) > 0 {
			c.qa = append(c.qa, variantQA{q.Question, q.Evidence, q.Category})
		}
	}
	return c, nil
}

// score is the BM25F score of doc i for terms with weights.
func (c *variantConv) score(v rankVariant, terms []string, weights []float64) map[int]float64 {
	if v.mu > 0 {
		return c.scoreQL(v, terms, weights)
	}
	n := float64(len(c.docs))
	out := map[int]float64{}
	for j, term := range terms {
		ps := c.postings[term]
		if len(ps) == 0 {
			continue
		}
		df := float64(len(ps))
		idf := math.Pow(math.Log(1+(n-df+0.5)/(df+0.5)), v.idfPow)
		if v.common > 0 && df/n > v.common {
			idf *= v.commonW
		}
		for _, i := range ps {
			d := c.docs[i]
			cnt := d.tf[term]
			var tf float64
			for f := range numFields {
				b := fieldB[f]
				if f == fieldObs {
					b = v.b
				}
				if cnt[f] > 0 {
					tf += fieldWeight[f] * float64(cnt[f]) / (1 - b + b*float64(d.len[f])/c.avg[f])
				}
			}
			out[i] += weights[j] * idf * (tf/(v.k1+tf) + v.delta)
		}
	}
	return out
}

func (c *variantConv) rank(q string, v rankVariant) []string {
	terms := queryTerms(q)
	weights := make([]float64, len(terms))
	for i := range weights {
		weights[i] = 1
	}
	scores := c.score(v, terms, weights)
	if v.prox > 0 && len(terms) > 1 {
		c.proximity(v, terms, scores)
	}
	if v.fbDocs > 0 {
		top := c.top(scores, v.fbDocs)
		// RM3: p(w|R) ∝ Σ_d p(w|d) * score(d), over the top documents.
		rel := map[string]float64{}
		var z float64
		for _, i := range top {
			z += scores[i]
		}
		for _, i := range top {
			d := c.docs[i]
			var l float64
			for _, cnt := range d.tf {
				l += float64(cnt[fieldObs])
			}
			for term, cnt := range d.tf {
				if cnt[fieldObs] > 0 {
					rel[term] += float64(cnt[fieldObs]) / l * scores[i] / z
				}
			}
		}
		var cand []string
		for term := range rel {
			cand = append(cand, term)
		}
		sort.Slice(cand, func(a, b int) bool {
			if rel[cand[a]] != rel[cand[b]] {
				return rel[cand[a]] > rel[cand[b]]
			}
			return cand[a] < cand[b]
		})
		cand = cand[:min(len(cand), v.fbTerms)]
		var rz float64
		for _, t := range cand {
			rz += rel[t]
		}
		w := map[string]float64{}
		for _, t := range terms {
			w[t] += v.fbLambda / float64(len(terms))
		}
		for _, t := range cand {
			w[t] += (1 - v.fbLambda) * rel[t] / rz
		}
		var et []string
		var ew []float64
		for t, x := range w {
			et = append(et, t)
			ew = append(ew, x)
		}
		scores = c.score(v, et, ew)
	}
	if v.nbr > 0 {
		sm := map[int]float64{}
		for i, x := range scores {
			sm[i] += x
			for _, j := range []int{i - 1, i + 1} {
				if j < 0 || j >= len(c.docs) {
					continue
				}
				sm[j] += v.nbr * x
			}
		}
		scores = sm
	}
	top := c.top(scores, 10)
	out := make([]string, len(top))
	for i, d := range top {
		out[i] = c.names[d]
	}
	return out
}

// scoreQL is query likelihood with Dirichlet smoothing (Zhai and
// Lafferty, 2001) over all fields as one text.
func (c *variantConv) scoreQL(v rankVariant, terms []string, weights []float64) map[int]float64 {
	var total float64
	for _, d := range c.docs {
		for f := range numFields {
			total += float64(d.len[f])
		}
	}
	out := map[int]float64{}
	for _, term := range terms {
		for _, i := range c.postings[term] {
			out[i] = 0
		}
	}
	for j, term := range terms {
		var ctf float64
		for _, i := range c.postings[term] {
			for f := range numFields {
				ctf += float64(c.docs[i].tf[term][f])
			}
		}
		if ctf == 0 {
			continue
		}
		pc := ctf / total
		for i := range out {
			d := c.docs[i]
			var tf, l float64
			if cnt := d.tf[term]; cnt != nil {
				for f := range numFields {
					tf += float64(cnt[f])
				}
			}
			for f := range numFields {
				l += float64(d.len[f])
			}
			out[i] += weights[j] * math.Log((tf+v.mu*pc)/(l+v.mu)/pc)
		}
	}
	for i := range out {
		out[i] += 100 // positive, for RM3's weights
	}
	return out
}

// proximity adds, for each pair of query terms adjacent in a document's
// observation terms (either order), prox times the smaller idf of the two.
func (c *variantConv) proximity(v rankVariant, terms []string, scores map[int]float64) {
	n := float64(len(c.docs))
	idf := map[string]float64{}
	for _, t := range terms {
		df := float64(len(c.postings[t]))
		idf[t] = math.Log(1 + (n-df+0.5)/(df+0.5))
	}
	for i := range scores {
		seq := c.seq[i]
		for k := 1; k < len(seq); k++ {
			a, b := seq[k-1], seq[k]
			if a != b && idf[a] > 0 && idf[b] > 0 {
				scores[i] += v.prox * min(idf[a], idf[b])
			}
		}
	}
}

// top returns the best k docs by score, ties newest first.
func (c *variantConv) top(scores map[int]float64, k int) []int {
	ids := make([]int, 0, len(scores))
	for i := range scores {
		ids = append(ids, i)
	}
	sort.Slice(ids, func(a, b int) bool {
		sa, sb := roundScore(scores[ids[a]]), roundScore(scores[ids[b]])
		if sa != sb {
			return sa > sb
		}
		return ids[a] > ids[b]
	})
	return ids[:min(k, len(ids))]
}

// checkBase fails when the base variant's scores differ from those of
// scorePostings, the ranking's own scoring, for any question: the copy in
// score must stay the production formula at the production parameters.
func (c *variantConv) checkBase() error {
	st := lexStats{docs: float64(len(c.docs)), avg: c.avg}
	for _, q := range c.qa {
		terms := queryTerms(q.text)
		weights := make([]float64, len(terms))
		df := make([]int, len(terms))
		var ps []lexPosting
		for i, term := range terms {
			weights[i] = 1
			df[i] = len(c.postings[term])
			for _, d := range c.postings[term] {
				p := lexPosting{term: i, id: int64(d)}
				for f := range numFields {
					p.tf[f], p.len[f] = float64(c.docs[d].tf[term][f]), float64(c.docs[d].len[f])
				}
				ps = append(ps, p)
			}
		}
		want := scorePostings(st, ps, df, weights)
		got := c.score(baseVariant(), terms, weights)
		if len(got) != len(want) {
			return fmt.Errorf("%q: %d entities scored, scorePostings scores %d", q.text, len(got), len(want))
		}
		for d, s := range got {
			if math.Abs(s-want[int64(d)]) > 1e-9 {
				return fmt.Errorf("%q: entity %s scores %v, scorePostings %v", q.text, c.names[d], s, want[int64(d)])
			}
		}
	}
	return nil
}
