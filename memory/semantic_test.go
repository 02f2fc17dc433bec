package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// bagEmbedder is a deterministic fake embedder: a hashed bag of words, so
// texts that share words are similar. It can fail, refuse one text, or run
// a hook during a call.
type bagEmbedder struct {
	model string
	dim   int

	mu      sync.Mutex
	fail    error  // every call fails with it
	refuse  string // a text containing it is refused permanently
	during  func() // runs inside Embed, once
	calls   int    // calls made
	lastLen int    // texts in the last call
}

type refusedErr struct{}

func (refusedErr) Error() string   { return "refused" }
func (refusedErr) Permanent() bool { return true }

func newBag(model string, dim int) *bagEmbedder {
	return &bagEmbedder{model: model, dim: dim}
}

func (b *bagEmbedder) Model() string { return b.model }

func (b *bagEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	b.mu.Lock()
	b.calls++
	b.lastLen = len(texts)
	fail, refuse, during := b.fail, b.refuse, b.during
	b.during = nil
	b.mu.Unlock()
	if during != nil {
		during()
	}
	if fail != nil {
		return nil, fail
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if refuse != "" && strings.Contains(t, refuse) {
			return nil, refusedErr{}
		}
		out[i] = bagVector(t, b.dim)
	}
	return out, nil
}

func bagVector(text string, dim int) []float32 {
	v := make([]float32, dim)
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		h := fnv.New32a()
		h.Write([]byte(w))
		v[h.Sum32()%uint32(dim)]++
	}
	return v
}

// indexAll drains the queue through emb and fails the test on an error.
func indexAll(t *testing.T, s *Store, emb Embedder) {
	t.Helper()
	for range 100 {
		n, err := s.IndexPending(context.Background(), emb, IndexerOptions{Batch: 4})
		if err != nil {
			t.Fatalf("IndexPending: %v", err)
		}
		left, err := s.EmbedQueueLen(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			return
		}
		if n == 0 {
			t.Fatalf("IndexPending made no progress with %d queued", left)
		}
	}
	t.Fatal("queue never drained")
}

func semanticSearch(t *testing.T, s *Store, tenant, mode, query string, emb Embedder) SearchResult {
	t.Helper()
	v, err := emb.Embed(context.Background(), []string{query})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.SearchEntities(as(tenant), SearchQuery{Query: query, Mode: mode, Limit: 10, Vector: v[0], Model: emb.Model()})
	if err != nil {
		t.Fatalf("SearchEntities(%q, %s): %v", query, mode, err)
	}
	return res
}

func vecHitNames(res SearchResult) []string {
	out := []string{}
	for _, h := range res.Hits {
		out = append(out, h.Name)
	}
	return out
}

func queueLen(t *testing.T, s *Store, tenant string) int {
	t.Helper()
	n, err := s.EmbedQueueLen(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEmbedQueueWrittenWithTheChange: every change of an entity's text
// queues it in the same transaction; a failed write queues nothing; a
// deleted entity leaves no queue row and no vector.
func TestEmbedQueueWrittenWithTheChange(t *testing.T) {
	s := newTestStore(t)
	ctx := as("a")
	if _, err := s.CreateEntities(ctx, []Entity{{Name: "x", EntityType: "t", Observations: []string{"one"}}, {Name: "y", EntityType: "t"}}); err != nil {
		t.Fatal(err)
	}
	if got := queueLen(t, s, "a"); got != 2 {
		t.Fatalf("queued after create = %d, want 2", got)
	}
	if got := queueLen(t, s, "b"); got != 0 {
		t.Fatalf("tenant b queued = %d, want 0", got)
	}
	emb := newBag("m", 16)
	indexAll(t, s, emb)

	// A failed write (unknown entity: nothing is written) queues nothing.
	if _, err := s.AddObservations(ctx, []ObservationAdd{{EntityName: "x", Contents: []string{"two"}}, {EntityName: "nope", Contents: []string{"z"}}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AddObservations(unknown) = %v, want ErrNotFound", err)
	}
	if got := queueLen(t, s, "a"); got != 0 {
		t.Fatalf("queued after a failed write = %d, want 0", got)
	}
	// Positive controls: each successful change queues its entity.
	for _, c := range []struct {
		name  string
		write func() error
	}{
		{"add observations", func() error {
			_, err := s.AddObservations(ctx, []ObservationAdd{{EntityName: "x", Contents: []string{"two"}}})
			return err
		}},
		{"delete observations", func() error {
			return s.DeleteObservations(ctx, []ObservationDeletion{{EntityName: "x", Observations: []string{"one"}}})
		}},
		{"import", func() error {
			_, err := s.Import(ctx, []Entity{{Name: "x", EntityType: "t", Observations: []string{"three"}}}, nil, nil)
			return err
		}},
	} {
		if err := c.write(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := queueLen(t, s, "a"); got != 1 {
			t.Fatalf("%s: queued = %d, want 1", c.name, got)
		}
		indexAll(t, s, emb)
	}
	if err := s.DeleteEntities(ctx, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	var vectors int
	if err := s.r.QueryRow(`SELECT count(*) FROM entity_vectors`).Scan(&vectors); err != nil {
		t.Fatal(err)
	}
	if vectors != 1 {
		t.Errorf("vectors after deleting x = %d, want 1 (y's)", vectors)
	}
}

// TestIndexerOutageThenRecovery: while the embedder fails nothing is lost;
// after a restart of the store with the embedder back, the queue drains
// and search finds everything.
func TestIndexerOutageThenRecovery(t *testing.T) {
	dsn := memtest.DSN(t) // opened twice: a restart
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	ctx := as("a")
	var ents []Entity
	for i := range 10 {
		ents = append(ents, Entity{Name: fmt.Sprintf("e%d", i), EntityType: "note", Observations: []string{fmt.Sprintf("topic%d alpha", i)}})
	}
	if _, err := s.CreateEntities(ctx, ents); err != nil {
		t.Fatal(err)
	}
	emb := newBag("m", 64)
	emb.fail = errors.New("connection refused")
	for range 3 {
		if _, err := s.IndexPending(context.Background(), emb, IndexerOptions{Batch: 4}); err == nil {
			t.Fatal("IndexPending with a failing embedder = nil error")
		}
	}
	if got := queueLen(t, s, "a"); got != 10 {
		t.Fatalf("queued during the outage = %d, want 10", got)
	}
	s.Close() // a restart

	s, err = Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := queueLen(t, s, "a"); got != 10 {
		t.Fatalf("queued after restart = %d, want 10", got)
	}
	emb.fail = nil
	indexAll(t, s, emb)
	res := semanticSearch(t, s, "a", SearchSemantic, "topic7", emb)
	if len(res.Hits) == 0 || res.Hits[0].Name != "e7" || !res.Semantic {
		t.Fatalf("semantic search after recovery = %v (semantic %v), want e7 first", vecHitNames(res), res.Semantic)
	}
	if res.Total != 10 {
		t.Errorf("Total = %d, want 10 vectors", res.Total)
	}
}

// TestIndexerKeepsChangeMadeDuringEmbedding: an entity changed while its
// batch is at the embedder stays queued and is embedded again.
func TestIndexerKeepsChangeMadeDuringEmbedding(t *testing.T) {
	s := newTestStore(t)
	ctx := as("a")
	if _, err := s.CreateEntities(ctx, []Entity{{Name: "x", EntityType: "t", Observations: []string{"old words"}}}); err != nil {
		t.Fatal(err)
	}
	emb := newBag("m", 32)
	emb.during = func() {
		if _, err := s.AddObservations(ctx, []ObservationAdd{{EntityName: "x", Contents: []string{"zebra"}}}); err != nil {
			t.Error(err)
		}
	}
	if n, err := s.IndexPending(context.Background(), emb, IndexerOptions{}); err != nil || n != 0 {
		t.Fatalf("IndexPending during a change = %d, %v; want 0 stored", n, err)
	}
	if got := queueLen(t, s, "a"); got != 1 {
		t.Fatalf("queued after a change during embedding = %d, want 1", got)
	}
	indexAll(t, s, emb)
	res := semanticSearch(t, s, "a", SearchSemantic, "zebra", emb)
	if len(res.Hits) != 1 || res.Hits[0].Score <= 0 {
		t.Fatalf("search for the new word = %+v, want x with a positive score", res.Hits)
	}
}

// TestIndexerDropsRefusedInput: an input the provider refuses does not
// block the others.
func TestIndexerDropsRefusedInput(t *testing.T) {
	s := newTestStore(t)
	ctx := as("a")
	if _, err := s.CreateEntities(ctx, []Entity{{Name: "good1", EntityType: "t"}, {Name: "poison", EntityType: "t"}, {Name: "good2", EntityType: "t"}}); err != nil {
		t.Fatal(err)
	}
	emb := newBag("m", 32)
	emb.refuse = "poison"
	indexAll(t, s, emb)
	res := semanticSearch(t, s, "a", SearchSemantic, "good1 good2", emb)
	if got := strings.Join(vecHitNames(res), ","); got != "good1,good2" && got != "good2,good1" {
		t.Fatalf("indexed = %s, want good1 and good2 only", got)
	}
}

// TestModelChangeRequeues: entities whose vector was made by another model
// or dimension are queued again; those of the same model are not.
func TestModelChangeRequeues(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.CreateEntities(as("a"), []Entity{{Name: "x", EntityType: "t"}, {Name: "y", EntityType: "t"}}); err != nil {
		t.Fatal(err)
	}
	indexAll(t, s, newBag("m1", 8))
	for _, c := range []struct {
		model string
		dim   int
		want  int
	}{{"m1", 8, 0}, {"m2", 8, 2}, {"m1", 16, 2}} {
		n, err := s.QueueForEmbedding(context.Background(), "", c.model, c.dim, false)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("QueueForEmbedding(%s, %d) = %d, want %d", c.model, c.dim, n, c.want)
		}
		indexAll(t, s, newBag("m1", 8))
	}
	// Vectors of another model are never compared with the query's.
	res := semanticSearch(t, s, "a", SearchSemantic, "x", newBag("m2", 8))
	if len(res.Hits) != 0 || res.Total != 0 {
		t.Errorf("search with model m2 over m1 vectors = %v, want nothing", vecHitNames(res))
	}
	if res := semanticSearch(t, s, "a", SearchSemantic, "x", newBag("m1", 8)); len(res.Hits) != 2 {
		t.Errorf("search with model m1 = %v, want x and y", vecHitNames(res))
	}
}

// TestHybridFusion: hybrid with a vector fuses both rankings (an entity
// only the vectors find is in it, labelled semantic); without a vector it
// is the word ranking, labelled not semantic.
func TestHybridFusion(t *testing.T) {
	s := newTestStore(t)
	ctx := as("a")
	// "car" is a word of w only; v shares no word with the query but its
	// fake vector collides with "car" on purpose: find a word that hashes
	// to the same bucket.
	emb := newBag("m", 8)
	twin := ""
	for i := 0; twin == ""; i++ {
		w := fmt.Sprintf("w%d", i)
		if fmt.Sprint(bagVector(w, 8)) == fmt.Sprint(bagVector("car", 8)) {
			twin = w
		}
	}
	if _, err := s.CreateEntities(ctx, []Entity{
		{Name: "w", EntityType: "t", Observations: []string{"car"}},
		{Name: "v", EntityType: "t", Observations: []string{twin}},
	}); err != nil {
		t.Fatal(err)
	}
	indexAll(t, s, emb)
	lex, err := s.SearchEntities(ctx, SearchQuery{Query: "car", Mode: SearchHybrid, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(vecHitNames(lex), ","); got != "w" || lex.Semantic {
		t.Fatalf("hybrid without a vector = %s (semantic %v), want w, false", got, lex.Semantic)
	}
	hyb := semanticSearch(t, s, "a", SearchHybrid, "car", emb)
	if got := strings.Join(vecHitNames(hyb), ","); got != "w,v" || !hyb.Semantic {
		t.Fatalf("hybrid with a vector = %s (semantic %v), want w,v (w in both lists first), true", got, hyb.Semantic)
	}
	if hyb.Hits[0].MatchedWords != 1 || hyb.Hits[1].MatchedWords != 0 {
		t.Errorf("matched words = %d, %d; want 1, 0", hyb.Hits[0].MatchedWords, hyb.Hits[1].MatchedWords)
	}
	if _, err := s.SearchEntities(ctx, SearchQuery{Query: "car", Mode: SearchSemantic, Limit: 10}); !errors.Is(err, ErrInvalid) {
		t.Errorf("semantic without a vector = %v, want ErrInvalid", err)
	}
}

// TestSemanticSearchTenantIsolation is the two-tenant attack on the vector
// path: B's semantic and hybrid results, scores and totals are identical
// whether A has no vectors or many vectors closer to B's query than B's
// own, and never name A's entities; A (positive control) finds them.
func TestSemanticSearchTenantIsolation(t *testing.T) {
	s := newTestStore(t)
	emb := newBag("m", 64)
	if _, err := s.CreateEntities(as("b"), []Entity{
		{Name: "b-note", EntityType: "note", Observations: []string{"quarterly budget review"}},
		{Name: "b-other", EntityType: "note", Observations: []string{"team offsite plan"}},
	}); err != nil {
		t.Fatal(err)
	}
	indexAll(t, s, emb)
	const query = "secret merger budget"
	before := map[string]SearchResult{}
	for _, mode := range []string{SearchSemantic, SearchHybrid} {
		before[mode] = semanticSearch(t, s, "b", mode, query, emb)
	}
	var ents []Entity
	for i := range 50 {
		ents = append(ents, Entity{Name: fmt.Sprintf("a-secret-%d", i), EntityType: "note", Observations: []string{query}})
	}
	if _, err := s.CreateEntities(as("a"), ents); err != nil {
		t.Fatal(err)
	}
	indexAll(t, s, emb)
	for _, mode := range []string{SearchSemantic, SearchHybrid} {
		after := semanticSearch(t, s, "b", mode, query, emb)
		if fmt.Sprintf("%+v", after) != fmt.Sprintf("%+v", before[mode]) {
			t.Errorf("B's %s search changed when A wrote:\nbefore %+v\nafter  %+v", mode, before[mode], after)
		}
		for _, h := range after.Hits {
			if strings.HasPrefix(h.Name, "a-") {
				t.Errorf("B's %s search returned A's entity %s", mode, h.Name)
			}
		}
	}
	// Positive control: A's own search finds A's vectors first.
	if res := semanticSearch(t, s, "a", SearchSemantic, query, emb); len(res.Hits) == 0 || !strings.HasPrefix(res.Hits[0].Name, "a-secret-") || res.Total != 50 {
		t.Errorf("A's semantic search = %v (total %d), want A's entities, total 50", vecHitNames(res), res.Total)
	}
}

// BenchmarkVectorSearch measures one exact semantic search over n vectors
// of one tenant (768 dimensions, a common embedding size), the cost that
// grows linearly with the tenant's vectors.
func BenchmarkVectorSearch(b *testing.B) {
	for _, n := range benchVectorCounts {
		b.Run(fmt.Sprintf("vectors=%d", n), func(b *testing.B) {
			const dim = 768
			s := newTestStore(b)
			ctx := as("a")
			ents := make([]Entity, n)
			for i := range ents {
				ents[i] = Entity{Name: fmt.Sprintf("e%d", i), EntityType: "t"}
			}
			if _, err := s.Import(ctx, ents, nil, nil); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			err := s.write(ctx, func(t *txn) error {
				if _, err := t.exec(`DELETE FROM embed_queue WHERE tenant_id = ?`, "a"); err != nil {
					return err
				}
				rows, err := t.query(`SELECT id FROM entities WHERE tenant_id = ?`, "a")
				if err != nil {
					return err
				}
				ids, err := collect(rows, nil, func(r scanner) (int64, error) {
					var id int64
					return id, r.Scan(&id)
				})
				if err != nil {
					return err
				}
				for _, id := range ids {
					v := make([]float32, dim)
					for i := range v {
						v[i] = rng.Float32() - 0.5
					}
					if _, err := t.exec(`INSERT INTO entity_vectors (tenant_id, entity_id, model, dim, vec, updated_at) VALUES (?, ?, 'm', ?, ?, ?)`,
						"a", id, dim, encodeVector(v), t.now); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			q := make([]float32, dim)
			for i := range q {
				q[i] = rng.Float32() - 0.5
			}
			b.ResetTimer()
			for b.Loop() {
				res, err := s.SearchEntities(ctx, SearchQuery{Query: "q", Mode: SearchSemantic, Limit: 10, Vector: q, Model: "m"})
				if err != nil || res.Total != n {
					b.Fatalf("search: total %d, %v", res.Total, err)
				}
			}
		})
	}
}

// benchVectorCounts are the tenant sizes BenchmarkVectorSearch measures.
var benchVectorCounts = []int{10_000, 100_000}
