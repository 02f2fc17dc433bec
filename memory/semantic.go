package memory

import (
	"container/heap"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Semantic search (migration 0006).
//
// Every change to an entity's text (create, add or delete observations)
// writes a row of embed_queue in the same transaction; a deleted entity
// takes its row and its vector with it. The indexer (RunIndexer) drains the
// queue through an Embedder outside any request, tenant by tenant, and
// stores one unit-length float32 vector per entity, tagged with the model
// and dimension that made it. A search embeds its query and ranks the
// caller's tenant's vectors of the same model and dimension by cosine
// similarity, exactly (a full scan keeping a k-heap): memory stays bounded
// by k, time grows with the tenant's vector count.

// Embedder turns texts into vectors, one per text and in order, all of one
// dimension. Model names what made them; vectors of another model or
// dimension are never compared with them.
type Embedder interface {
	Model() string
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// permanent reports whether an Embedder error says that sending the same
// input again cannot succeed (the provider refused the input itself): it
// has a Permanent method that returns true. Other errors are retried.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

const (
	// maxEmbedRunes bounds the text embedded per entity: name, type,
	// aliases, then observations in order until the bound. Many local
	// models take 512 tokens; the lexical index still covers the rest.
	maxEmbedRunes = 2000
	// hybridVectorDepth is how many vector hits enter the fusion of a
	// hybrid search, whatever page is asked, so pages agree.
	hybridVectorDepth = 100
	// rrfK is the constant of reciprocal-rank fusion (Cormack et al. 2009).
	rrfK = 60
)

// embedChanged notes, in the caller's transaction, that the text of
// tenant's entities ids changed; write queues them for embedding before it
// commits (one statement per transaction, whatever the number of changes).
func (t *txn) embedChanged(tenant string, ids ...int64) {
	if t.embedIDs == nil {
		t.embedIDs = map[int64]bool{}
	}
	t.embedTenant = tenant
	for _, id := range ids {
		t.embedIDs[id] = true
	}
}

// flushEmbedQueue queues the entities noted by embedChanged. gen counts
// the changes, so that the indexer removes a row only if nothing changed
// while it was embedding.
func flushEmbedQueue(t *txn) error {
	if len(t.embedIDs) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(t.embedIDs))
	for id := range t.embedIDs {
		ids = append(ids, id)
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO embed_queue (tenant_id, entity_id, queued_at, gen)
		SELECT ?, CAST(value AS BIGINT), ?, 1 FROM `+t.s.d.textArray+` WHERE true
		ON CONFLICT (tenant_id, entity_id) DO UPDATE SET gen = embed_queue.gen + 1`, t.embedTenant, t.now, string(list))
	if err != nil {
		return fmt.Errorf("queue embedding: %w", err)
	}
	t.embedIDs = nil
	t.queued = true
	return nil
}

// EmbedQueueLen is the number of entities of tenant (of every tenant when
// "") waiting for a vector; for the admin CLI and tests.
func (s *Store) EmbedQueueLen(ctx context.Context, tenant string) (int, error) {
	var n int
	err := s.read(ctx, func(t *txn) error {
		return t.queryRow(`SELECT count(*) FROM embed_queue WHERE tenant_id = ? OR ? = ''`, tenant, tenant).Scan(&n)
	})
	return n, err
}

// QueueForEmbedding queues entities of tenant (every tenant when tenant is
// "") for embedding: all of them when all is true (reindex), else only
// those without a vector of model and dim (a new model, or entities
// written before vectors existed). It returns how many it queued.
func (s *Store) QueueForEmbedding(ctx context.Context, tenant string, model string, dim int, all bool) (int, error) {
	tenants := []string{tenant}
	if tenant == "" {
		ts, err := s.Tenants(ctx)
		if err != nil {
			return 0, err
		}
		tenants = tenants[:0]
		for _, tn := range ts {
			tenants = append(tenants, tn.ID)
		}
	} else if _, err := s.Tenant(ctx, tenant); err != nil {
		return 0, err
	}
	total := 0
	for _, tn := range tenants {
		err := s.write(tenantContext(ctx, tn), func(t *txn) error {
			res, err := t.exec(`INSERT INTO embed_queue (tenant_id, entity_id, queued_at, gen)
				SELECT e.tenant_id, e.id, ?, 1 FROM entities e
				WHERE e.tenant_id = ? AND (? OR NOT EXISTS (SELECT 1 FROM entity_vectors v
					WHERE v.tenant_id = e.tenant_id AND v.entity_id = e.id AND v.model = ? AND v.dim = ?))
				ON CONFLICT (tenant_id, entity_id) DO UPDATE SET gen = embed_queue.gen + 1`, t.now, tn, all, model, dim)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += int(n)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("queue tenant %q for embedding: %w", tn, err)
		}
	}
	return total, nil
}

// tenantContext is ctx acting for tenant, for the indexer's per-tenant
// transactions (no request carries them).
func tenantContext(ctx context.Context, tenant string) context.Context {
	return tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: tenant})
}

// embedJob is one queued entity with the text to embed.
type embedJob struct {
	id   int64
	gen  int64
	text string
}

// pendingTenants lists the tenants with queued entities.
func (s *Store) pendingTenants(ctx context.Context) ([]string, error) {
	var out []string
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT DISTINCT tenant_id FROM embed_queue ORDER BY tenant_id`)
		out, err = collect(rows, err, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		return err
	})
	return out, err
}

// claimJobs reads up to n of tenant's oldest queued entities with their
// texts. Nothing is locked: storeVectors checks gen.
func (s *Store) claimJobs(ctx context.Context, tenant string, n int) ([]embedJob, error) {
	var jobs []embedJob
	err := s.read(ctx, func(t *txn) error {
		jobs = jobs[:0]
		rows, err := t.query(`SELECT q.entity_id, q.gen, e.name, e.entity_type, e.aliases FROM embed_queue q
			JOIN entities e ON e.tenant_id = q.tenant_id AND e.id = q.entity_id
			WHERE q.tenant_id = ? ORDER BY q.queued_at, q.entity_id LIMIT ?`, tenant, n)
		if err != nil {
			return err
		}
		var texts []*strings.Builder
		pos := map[int64]int{}
		for rows.Next() {
			var (
				j                   embedJob
				name, typ, aliasTxt string
			)
			if err := rows.Scan(&j.id, &j.gen, &name, &typ, &aliasTxt); err != nil {
				rows.Close()
				return err
			}
			var aliases []string
			_ = json.Unmarshal([]byte(aliasTxt), &aliases) // stored by insertEntities; a bad value only loses the aliases
			b := &strings.Builder{}
			b.WriteString(name + " (" + typ + ")")
			if len(aliases) > 0 {
				b.WriteString("\naliases: " + strings.Join(aliases, ", "))
			}
			pos[j.id] = len(jobs)
			jobs = append(jobs, j)
			texts = append(texts, b)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(jobs) == 0 {
			return nil
		}
		ids := make([]int64, len(jobs))
		for i, j := range jobs {
			ids[i] = j.id
		}
		list, _ := json.Marshal(ids)
		obs, err := t.query(`SELECT entity_id, content FROM observations
			WHERE tenant_id = ? AND entity_id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`) ORDER BY entity_id, id`, tenant, string(list))
		if err != nil {
			return err
		}
		defer obs.Close()
		for obs.Next() {
			var (
				id      int64
				content string
			)
			if err := obs.Scan(&id, &content); err != nil {
				return err
			}
			b := texts[pos[id]]
			if utf8.RuneCountInString(b.String()) < maxEmbedRunes {
				b.WriteString("\n" + content)
			}
		}
		if err := obs.Err(); err != nil {
			return err
		}
		for i, b := range texts {
			jobs[i].text = truncateRunes(b.String(), maxEmbedRunes)
		}
		return nil
	})
	return jobs, err
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// storeVectors stores vecs[i] for jobs[i] and removes their queue rows,
// skipping any entity changed (gen moved) or deleted since claimJobs: it
// stays queued or is gone. It returns how many it stored.
func (s *Store) storeVectors(ctx context.Context, tenant, model string, jobs []embedJob, vecs [][]float32) (int, error) {
	stored := 0
	err := s.write(tenantContext(ctx, tenant), func(t *txn) error {
		stored = 0
		for i, j := range jobs {
			if vecs[i] == nil { // refused by the provider: drop from the queue, keep no vector
				if _, err := t.exec(`DELETE FROM embed_queue WHERE tenant_id = ? AND entity_id = ? AND gen = ?`, tenant, j.id, j.gen); err != nil {
					return err
				}
				continue
			}
			res, err := t.exec(`DELETE FROM embed_queue WHERE tenant_id = ? AND entity_id = ? AND gen = ?`, tenant, j.id, j.gen)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			if _, err := t.exec(`INSERT INTO entity_vectors (tenant_id, entity_id, model, dim, vec, updated_at) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (tenant_id, entity_id) DO UPDATE SET model = excluded.model, dim = excluded.dim, vec = excluded.vec, updated_at = excluded.updated_at`,
				tenant, j.id, model, len(vecs[i]), encodeVector(vecs[i]), t.now); err != nil {
				return err
			}
			stored++
		}
		return nil
	})
	return stored, err
}

// encodeVector is v normalised to unit length, as little-endian float32.
func encodeVector(v []float32) []byte {
	norm := vectorNorm(v)
	b := make([]byte, 4*len(v))
	for i, x := range v {
		if norm > 0 {
			x = float32(float64(x) / norm)
		}
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func vectorNorm(v []float32) float64 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	return math.Sqrt(sum)
}

// IndexerOptions configure RunIndexer and IndexPending.
type IndexerOptions struct {
	// Batch is how many entities go to the embedder per call (default 32).
	Batch int
	// Idle is how long the indexer sleeps when the queue is empty
	// (default 1 s); writes on this process wake it at once.
	Idle time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed call
	// (defaults 1 s and 1 min), doubling from one to the other.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives failures and progress; slog.Default() when nil.
	Logger *slog.Logger
	// Tenant restricts IndexPending to one tenant; all when "".
	Tenant string
}

func (o *IndexerOptions) defaults() {
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Idle <= 0 {
		o.Idle = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// IndexPending embeds one batch of every tenant that has queued entities
// (round robin, so one tenant's import cannot starve another) and returns
// how many vectors it stored. An embedder failure stops the pass and is
// returned; the entities stay queued. Inputs the embedder refuses
// (see permanent) one by one are dropped from the queue and logged.
func (s *Store) IndexPending(ctx context.Context, emb Embedder, opts IndexerOptions) (int, error) {
	opts.defaults()
	tenants, err := s.pendingTenants(ctx)
	if err != nil {
		return 0, err
	}
	if opts.Tenant != "" {
		tenants = slices.DeleteFunc(tenants, func(t string) bool { return t != opts.Tenant })
	}
	stored := 0
	for _, tenant := range tenants {
		jobs, err := s.claimJobs(ctx, tenant, opts.Batch)
		if err != nil {
			return stored, err
		}
		if len(jobs) == 0 {
			continue
		}
		vecs, err := s.embedJobs(ctx, emb, tenant, jobs, opts.Logger)
		if err != nil {
			return stored, err
		}
		n, err := s.storeVectors(ctx, tenant, emb.Model(), jobs, vecs)
		stored += n
		if err != nil {
			return stored, err
		}
	}
	return stored, nil
}

// embedJobs embeds the jobs' texts. When the provider refuses the batch as
// such (see permanent), each text is tried alone and a refused one gets a nil
// vector (storeVectors drops it from the queue).
func (s *Store) embedJobs(ctx context.Context, emb Embedder, tenant string, jobs []embedJob, log *slog.Logger) ([][]float32, error) {
	texts := make([]string, len(jobs))
	for i, j := range jobs {
		texts[i] = j.text
	}
	vecs, err := emb.Embed(ctx, texts)
	if err == nil {
		if len(vecs) != len(jobs) {
			return nil, fmt.Errorf("embedder returned %d vectors for %d texts", len(vecs), len(jobs))
		}
		return vecs, nil
	}
	if !permanent(err) {
		return nil, err
	}
	vecs = make([][]float32, len(jobs))
	for i, j := range jobs {
		v, err := emb.Embed(ctx, texts[i:i+1])
		switch {
		case permanent(err):
			log.Warn("embedder refused an entity; it has no vector until it changes or is reindexed",
				"tenant", tenant, "entity_id", j.id, "err", err)
		case err != nil:
			return nil, err
		case len(v) != 1:
			return nil, fmt.Errorf("embedder returned %d vectors for 1 text", len(v))
		default:
			vecs[i] = v[0]
		}
	}
	return vecs, nil
}

// RunIndexer drains the embedding queue until ctx ends: first it learns the
// embedder's dimension and queues every entity without a vector of this
// model and dimension (new entities from before, or a model change), then
// it embeds batches, backing off (MinBackoff doubling to MaxBackoff) while
// the embedder fails, and sleeping Idle when the queue is empty or until
// Wake is called.
func (s *Store) RunIndexer(ctx context.Context, emb Embedder, opts IndexerOptions) {
	opts.defaults()
	log := opts.Logger
	backoff := opts.MinBackoff
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		case <-s.indexWake():
		}
		return true
	}
	fail := func(msg string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		log.Warn(msg, "err", err, "retry_in", backoff)
		ok := wait(backoff)
		backoff = min(2*backoff, opts.MaxBackoff)
		return ok
	}
	var dim int
	for {
		v, err := emb.Embed(ctx, []string{"dimension probe"})
		if err == nil && len(v) == 1 && len(v[0]) > 0 {
			dim = len(v[0])
			break
		}
		if err == nil {
			err = fmt.Errorf("embedder returned %d vectors for 1 text", len(v))
		}
		if !fail("embedder unavailable; semantic index waits", err) {
			return
		}
	}
	for {
		n, err := s.QueueForEmbedding(ctx, "", emb.Model(), dim, false)
		if err == nil {
			if n > 0 {
				log.Info("queued entities without a vector of this model", "count", n, "model", emb.Model(), "dim", dim)
			}
			break
		}
		if !fail("queue entities for embedding failed", err) {
			return
		}
	}
	backoff = opts.MinBackoff
	for ctx.Err() == nil {
		n, err := s.IndexPending(ctx, emb, opts)
		switch {
		case err != nil:
			if !fail("embedding failed; entities stay queued", err) {
				return
			}
		case n > 0:
			backoff = opts.MinBackoff
			log.Debug("embedded entities", "count", n)
		default:
			backoff = opts.MinBackoff
			if !wait(opts.Idle) {
				return
			}
		}
	}
}

// indexWake returns the channel a write on this process closes to wake
// the indexer.
func (s *Store) indexWake() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	return s.wake
}

// wakeIndexer wakes a waiting indexer (after a queued change commits).
func (s *Store) wakeIndexer() {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

// vectorHeap is a min-heap of the k best hits so far (worst on top).
type vectorHeap []rankedID

func (h vectorHeap) Len() int           { return len(h) }
func (h vectorHeap) Less(i, j int) bool { return rankedBefore(h[j], h[i]) }
func (h vectorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *vectorHeap) Push(x any)        { *h = append(*h, x.(rankedID)) }
func (h *vectorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// rankedBefore reports whether a ranks before b in sortRanked's order.
func rankedBefore(a, b rankedID) bool {
	switch {
	case a.score != b.score:
		return a.score > b.score
	case a.updated != b.updated:
		return a.updated > b.updated
	}
	return a.id > b.id
}

// vectorCandidates ranks the tenant's vectors of model and len(query) by
// cosine similarity to query and returns the best k, best first, and how
// many vectors it compared. Rows are streamed; memory is O(k).
func vectorCandidates(t *txn, tenant, model string, query []float32, k int) ([]rankedID, int, error) {
	q := make([]float32, len(query))
	if norm := vectorNorm(query); norm > 0 {
		for i, x := range query {
			q[i] = float32(float64(x) / norm)
		}
	}
	rows, err := t.query(`SELECT v.entity_id, v.vec, e.updated_at FROM entity_vectors v
		JOIN entities e ON e.tenant_id = v.tenant_id AND e.id = v.entity_id
		WHERE v.tenant_id = ? AND v.model = ? AND v.dim = ?`, tenant, model, len(q))
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	h := make(vectorHeap, 0, k+1)
	n := 0
	for rows.Next() {
		var (
			r   rankedID
			vec sql.RawBytes
		)
		if err := rows.Scan(&r.id, &vec, &r.updated); err != nil {
			return nil, 0, err
		}
		if len(vec) != 4*len(q) {
			continue // cannot happen for rows of this dim; never compare across dimensions
		}
		n++
		r.score = roundSimilarity(dotLE(q, vec))
		if len(h) < k {
			heap.Push(&h, r)
		} else if k > 0 && rankedBefore(r, h[0]) {
			h[0] = r
			heap.Fix(&h, 0)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	out := []rankedID(h)
	sortRanked(out)
	return out, n, nil
}

// dotLE is the dot product of q and the little-endian float32 vector b.
func dotLE(q []float32, b []byte) float64 {
	var sum float32
	for i, x := range q {
		sum += x * math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return float64(sum)
}

// roundSimilarity keeps six decimals, so that scores shown are the scores
// sorted.
func roundSimilarity(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// fuseRanks is the reciprocal-rank fusion of the lexical ranking lex and
// the vector ranking vec: each entity scores the sum over the lists it is
// in of 1/(rrfK + rank). An entity keeps its lexical matched-word count.
func fuseRanks(lex, vec []rankedID) []rankedID {
	pos := make(map[int64]int, len(lex)+len(vec))
	out := make([]rankedID, 0, len(lex)+len(vec))
	add := func(list []rankedID, lexical bool) {
		for rank, r := range list {
			i, ok := pos[r.id]
			if !ok {
				i = len(out)
				pos[r.id] = i
				out = append(out, rankedID{id: r.id, updated: r.updated})
			}
			out[i].score += 1 / float64(rrfK+rank+1)
			if lexical {
				out[i].matched = r.matched
			}
		}
	}
	add(lex, true)
	add(vec, false)
	for i := range out {
		out[i].score = roundSimilarity(out[i].score)
	}
	sortRanked(out)
	return out
}

// semanticCandidates is the ranking of search mode q.Mode with the query
// vector q.Vector: semantic ranks by vector alone (total: the vectors
// compared), hybrid fuses lex with the vector ranking.
func semanticCandidates(t *txn, tenant string, q SearchQuery, lex []rankedID) (ranked []rankedID, total int, err error) {
	if q.Mode == SearchSemantic {
		ranked, total, err = vectorCandidates(t, tenant, q.Model, q.Vector, q.Offset+q.Limit)
		return ranked, total, err
	}
	vec, _, err := vectorCandidates(t, tenant, q.Model, q.Vector, hybridVectorDepth)
	if err != nil {
		return nil, 0, err
	}
	ranked = fuseRanks(lex, vec)
	return ranked, len(ranked), nil
}
