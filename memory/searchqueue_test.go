package memory

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// queued counts tenant's entities waiting in search_queue.
func queued(t *testing.T, s *Store, tenant string) int {
	t.Helper()
	var n int
	err := s.read(as(tenant), func(tx *txn) error {
		return tx.queryRow(`SELECT count(*) FROM search_queue WHERE tenant_id = ?`, tenant).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writerTime is the writer time tenant has used (writeGate): it moves
// whenever the tenant takes a write turn. Another write may forget a
// tenant's entry (writeGate.release), so tests that read it stop the
// store's background writers first.
func writerTime(s *Store, tenant string) time.Duration {
	s.gate.mu.Lock()
	defer s.gate.mu.Unlock()
	return s.gate.vtime[tenant]
}

// A write's words are indexed after it commits; a ranked search that
// begins after the write sees it even when the background worker has not
// run, by indexing its tenant's queue first.
func TestSearchSeesQueuedWrites(t *testing.T) {
	s := newTestStore(t)
	s.stopSearchIndexer()
	a := as("a")
	mustCreate(t, s, a, Entity{Name: "Billing", EntityType: "service", Observations: []string{"sends invoices"}})
	if n := queued(t, s, "a"); n != 1 {
		t.Fatalf("queued after the write = %d, want 1 (the index is kept after the write)", n)
	}
	if got := searchNames(t, s, "a", "invoice"); len(got) != 1 || got[0] != "Billing" {
		t.Fatalf("search = %v, want [Billing]", got)
	}
	if n := queued(t, s, "a"); n != 0 {
		t.Errorf("queued after the search = %d, want 0", n)
	}
	if _, err := s.AddObservations(a, []ObservationAdd{{EntityName: "Billing", Contents: []string{"runs on kafka"}}}); err != nil {
		t.Fatal(err)
	}
	if got := searchNames(t, s, "a", "kafka"); len(got) != 1 {
		t.Errorf("search for an added observation = %v, want [Billing]", got)
	}
	if err := s.DeleteEntities(a, []string{"Billing"}); err != nil {
		t.Fatal(err)
	}
	if got := searchNames(t, s, "a", "invoice"); len(got) != 0 {
		t.Errorf("search after the delete = %v, want nothing", got)
	}
}

// A search indexes only its own tenant's queue: another tenant's queued
// writes give it no write turn and stay queued. The control: the same
// search with its own tenant's write queued takes a turn and finds it.
func TestSearchIndexesOnlyItsTenantsQueue(t *testing.T) {
	s := newTestStore(t)
	s.stopSearchIndexer()
	s.stopChangeWriter() // no write but the test's own
	s.stopFTSMerger()
	a, b := as("a"), as("b")
	mustCreate(t, s, b, Entity{Name: "Ledger", EntityType: "database", Observations: []string{"stores invoices"}})
	if got := searchNames(t, s, "b", "invoice"); len(got) != 1 {
		t.Fatalf("b's search = %v, want [Ledger]", got)
	}
	mustCreate(t, s, a, Entity{Name: "Billing", EntityType: "service", Observations: []string{"sends invoices"}})

	before := writerTime(s, "b")
	if got := searchNames(t, s, "b", "invoice"); len(got) != 1 || got[0] != "Ledger" {
		t.Fatalf("b's search = %v, want [Ledger]", got)
	}
	if after := writerTime(s, "b"); after != before {
		t.Errorf("b's search took a write turn while only a had queued entities (writer time %v -> %v)", before, after)
	}
	if n := queued(t, s, "a"); n != 1 {
		t.Errorf("a's queue after b's search = %d, want 1", n)
	}

	mustCreate(t, s, b, Entity{Name: "Invoices Topic", EntityType: "topic"})
	before = writerTime(s, "b")
	if got := searchNames(t, s, "b", "invoice"); len(got) != 2 {
		t.Fatalf("control: b's search = %v, want Ledger and Invoices Topic", got)
	}
	if after := writerTime(s, "b"); after == before {
		t.Errorf("control: b's search with its own write queued took no write turn")
	}
}

// The queue is durable: what a process left queued is indexed when the
// store opens again.
func TestSearchQueueSurvivesRestart(t *testing.T) {
	dsn := memtest.DSN(t)
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.stopSearchIndexer()
	if err := s.CreateTenant(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	a := as("a")
	mustCreate(t, s, a, Entity{Name: "Billing", EntityType: "service", Observations: []string{"sends invoices"}})
	if n := queued(t, s, "a"); n != 1 {
		t.Fatalf("queued = %d, want 1", n)
	}
	s.Close()

	s2, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := queued(t, s2, "a"); n != 0 {
		t.Errorf("queued after reopening = %d, want 0 (Open indexes what was left)", n)
	}
	var docs int
	if err := s2.read(a, func(tx *txn) error {
		return tx.queryRow(`SELECT count(*) FROM search_docs WHERE tenant_id = ?`, "a").Scan(&docs)
	}); err != nil {
		t.Fatal(err)
	}
	if docs != 1 {
		t.Errorf("search_docs rows after reopening = %d, want 1", docs)
	}
}

// An indexing transaction commits after the batch during which another
// write began to wait, so that write waits for one batch; with no write
// waiting it indexes batch after batch in one transaction (the control).
func TestIndexQueuedYieldsToWaitingWrites(t *testing.T) {
	s := newTestStore(t)
	s.stopSearchIndexer()
	s.stopChangeWriter() // no write but the test's own
	s.stopFTSMerger()
	a := as("a")
	queue := func(prefix string) {
		t.Helper()
		var es []Entity
		for i := range 3 * searchIndexBatch {
			es = append(es, Entity{Name: fmt.Sprintf("%s%d", prefix, i), EntityType: "service"})
		}
		mustCreate(t, s, a, es...)
	}
	var txns []*txn // the transaction of each full batch, in order
	s.onIndexBatch = func(tx *txn) { txns = append(txns, tx) }

	queue("quiet")
	if err := s.indexQueued(a, "a"); err != nil {
		t.Fatal(err)
	}
	if len(txns) != 3 || txns[0] != txns[1] || txns[1] != txns[2] {
		t.Fatalf("control: %d full batches in transactions %p, want 3 in one", len(txns), txns)
	}

	queue("busy")
	txns = nil
	waiter := make(chan error, 1)
	s.onIndexBatch = func(tx *txn) {
		txns = append(txns, tx)
		if len(txns) > 1 {
			return
		}
		go func() { // a's own write waits for the indexing transaction (on every engine)
			_, err := s.CreateEntities(a, []Entity{{Name: "Ledger", EntityType: "database"}})
			waiter <- err
		}()
		for deadline := time.Now().Add(10 * time.Second); !s.gate.contended(); {
			if time.Now().After(deadline) {
				t.Fatal("the write never waited for the indexing transaction")
			}
			runtime.Gosched()
		}
	}
	if err := s.indexQueued(a, "a"); err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; err != nil {
		t.Fatalf("the waiting write: %v", err)
	}
	if len(txns) != 3 || txns[0] == txns[1] || txns[1] != txns[2] {
		t.Errorf("with a write waiting after the first batch: transactions %p, want the first alone, then the other two together", txns)
	}
	if n := queued(t, s, "a"); n != 0 {
		t.Errorf("queued after indexing = %d, want 0", n)
	}
	if got := searchNames(t, s, "a", "busy17"); len(got) != 1 {
		t.Errorf("search for the last entity queued = %v, want [busy17]", got)
	}
}
