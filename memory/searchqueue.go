package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// The word index (lexical.go) is kept up to date outside the writes that
// change it: a write notes the entities it changed (indexChanged) and
// queues them in search_queue in its own transaction; indexQueued brings
// their index entries up to date in short transactions of their own. A
// background worker does it shortly after the write (searchIndexDelay),
// and a ranked search first indexes what its tenant has queued, so it sees
// every write that committed before it began. A write therefore does not
// hold the single SQLite writer while its words are indexed, and indexing
// one tenant's large batch is cut into transactions that take turns with
// other tenants' writes (writeGate).

// searchIndexBatch is how many queued entities one indexing transaction
// takes: small enough that, at the per-call limit of text, one indexing
// transaction holds the writer about as long as an ordinary write.
const searchIndexBatch = 6

// searchIndexDelay is how long after a write the background worker waits
// before indexing, so that it indexes a burst of writes together instead
// of competing with each of them for the writer. (Shorter, 10 ms, halved
// the cost of the first search after a bulk write on LoCoMo but made the
// harness's create_entities slower; see the commit that set it.)
const searchIndexDelay = 100 * time.Millisecond

// indexChanged notes, in the caller's transaction, that the text of
// tenant's entities ids changed (or that they were deleted); write queues
// them for the word index before it commits.
func (t *txn) indexChanged(tenant string, ids ...int64) {
	if t.searchIDs == nil {
		t.searchIDs = map[int64]bool{}
	}
	t.searchTenant = tenant
	for _, id := range ids {
		t.searchIDs[id] = true
	}
}

// textChanged notes, in the caller's transaction, that the text of
// tenant's entities ids changed: the word index and the embeddings both
// queue them. Every statement that inserts or removes an entity's text
// calls it (a deleted entity's vector goes with it, so deletions call
// indexChanged alone).
func (t *txn) textChanged(tenant string, ids ...int64) {
	t.indexChanged(tenant, ids...)
	t.embedChanged(tenant, ids...)
}

// flushSearchQueue queues the entities noted by indexChanged.
func flushSearchQueue(t *txn) error {
	if len(t.searchIDs) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(t.searchIDs))
	for id := range t.searchIDs {
		ids = append(ids, id)
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	if _, err := t.exec(`INSERT INTO search_queue (tenant_id, entity_id)
		SELECT ?, CAST(value AS BIGINT) FROM `+t.s.d.textArray+` WHERE true
		ON CONFLICT (tenant_id, entity_id) DO NOTHING`, t.searchTenant, string(list)); err != nil {
		return fmt.Errorf("queue for the word index: %w", err)
	}
	t.searchIDs = nil
	t.searchQueued = true
	return nil
}

// searchPending reports, inside a read, whether tenant has entities
// waiting for the word index.
func searchPending(t *txn, tenant string) (bool, error) {
	var n int
	err := t.queryRow(`SELECT count(*) FROM (SELECT 1 FROM search_queue WHERE tenant_id = ? LIMIT 1) x`, tenant).Scan(&n)
	return n > 0, err
}

// errSearchPending aborts a read that found its tenant's word index behind.
var errSearchPending = errors.New("word index has queued entities")

// searchIndexChunks bounds the batches of searchIndexBatch entities one
// indexing transaction takes.
const searchIndexChunks = 8

// indexQueued brings the word index of the tenant in ctx up to date with
// everything queued. A write transaction of it indexes searchIndexBatch
// entities at a time and commits as soon as another write waits for the
// writer (writeGate; another indexer's turn does not count), or after
// searchIndexChunks batches: a waiting write waits for one batch at most,
// as it would for a transaction of one batch, while an indexer that has
// the writer to itself does not pay a commit, the index statistics and
// its turn for every batch (it indexed twice as fast). Each transaction of it is a write of the tenant (its
// turn at the writer, its advisory lock on PostgreSQL), so concurrent
// callers and replicas index each entity once; reindexEntities is
// idempotent besides.
func (s *Store) indexQueued(ctx context.Context, tenant string) error {
	ctx = withoutAudit(ctx)
	for {
		more := false
		err := s.writeTurn(ctx, true, func(t *txn) error {
			more = false
			for range searchIndexChunks {
				n, err := indexQueuedBatch(t, tenant)
				if err != nil || n < searchIndexBatch {
					return err
				}
				if s.onIndexBatch != nil {
					s.onIndexBatch(t)
				}
				if s.gate.contended() {
					break
				}
			}
			more = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("index queued entities: %w", err)
		}
		if !more {
			return nil
		}
	}
}

// indexQueuedBatch indexes up to searchIndexBatch of tenant's queued
// entities and returns how many it took.
func indexQueuedBatch(t *txn, tenant string) (int, error) {
	rows, err := t.query(`SELECT entity_id FROM search_queue WHERE tenant_id = ? ORDER BY entity_id LIMIT `+
		strconv.Itoa(searchIndexBatch), tenant)
	ids, err := collect(rows, err, scanOne[int64])
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	if err := reindexEntities(t, tenant, ids); err != nil {
		return 0, err
	}
	list, _ := json.Marshal(ids)
	_, err = t.exec(`DELETE FROM search_queue WHERE tenant_id = ? AND entity_id IN (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`)`,
		tenant, string(list))
	return len(ids), err
}

// indexAllQueued runs indexQueued for every tenant with queued entities.
func (s *Store) indexAllQueued(ctx context.Context) error {
	var tenants []string
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT DISTINCT tenant_id FROM search_queue`)
		tenants, err = collect(rows, err, scanOne[string])
		return err
	})
	if err != nil {
		return fmt.Errorf("index queued entities: %w", err)
	}
	for _, tenant := range tenants {
		if err := s.indexQueued(tenantContext(ctx, tenant), tenant); err != nil {
			return err
		}
	}
	return nil
}

// searchIndexer is the background worker of the word index: started by
// Open, stopped by Close.
type searchIndexer struct {
	kick chan struct{} // a write queued entities
	stop chan struct{}
	done chan struct{}
}

// startSearchIndexer starts the worker (Open has indexed what an earlier
// process left queued).
func (s *Store) startSearchIndexer(log *slog.Logger) {
	w := &searchIndexer{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.searchIdx = w
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-w.stop
		cancel()
	}()
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-w.kick:
			}
			select {
			case <-w.stop:
				return
			case <-time.After(searchIndexDelay):
			}
			if err := s.indexAllQueued(ctx); err != nil && ctx.Err() == nil {
				// What stays queued is indexed by the next search or write.
				log.Error("word index", "err", err)
			}
		}
	}()
}

// kickSearchIndexer tells the worker that a write queued entities.
func (s *Store) kickSearchIndexer() {
	if s.searchIdx == nil {
		return
	}
	select {
	case s.searchIdx.kick <- struct{}{}:
	default:
	}
}

// stopSearchIndexer stops the worker and waits for it.
func (s *Store) stopSearchIndexer() {
	if s.searchIdx == nil {
		return
	}
	close(s.searchIdx.stop)
	<-s.searchIdx.done
	s.searchIdx = nil
}
