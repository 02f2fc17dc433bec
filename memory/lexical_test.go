package memory

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// TestSearchScoresPerTenant: the statistics that enter tenant b's scores
// (document count, document frequencies, average lengths) are b's alone.
// b's ranking and scores are compared bit for bit before and after tenant
// a writes 10,000 entities containing the query's words.
func TestSearchScoresPerTenant(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	for _, e := range []Entity{
		{Name: "Billing", EntityType: "service", Observations: []string{"sends invoices through kafka", "owned by the payments team"}},
		{Name: "Kafka Cluster", EntityType: "service", Observations: []string{"three brokers", "invoices topic is the busiest"}},
		{Name: "Ledger", EntityType: "database", Observations: []string{"stores invoices and payments"}},
		{Name: "Dashboard", EntityType: "app", Observations: []string{"shows payments per day"}},
	} {
		mustCreate(t, s, b, e)
	}
	const query = "kafka invoices payments"
	type scored struct {
		Name  string
		Score float64
	}
	ranking := func() []scored {
		t.Helper()
		res, err := s.SearchEntities(b, SearchQuery{Query: query, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		var out []scored
		for _, h := range res.Hits {
			out = append(out, scored{h.Name, h.Score})
		}
		return out
	}
	before := ranking()
	if len(before) != 4 {
		t.Fatalf("b's search = %v, want its 4 entities", before)
	}
	const n, batch = 10000, 1000
	for i := 0; i < n; i += batch {
		var es []Entity
		for j := i; j < i+batch; j++ {
			es = append(es, Entity{Name: fmt.Sprintf("a-%d", j), EntityType: "kafka",
				Observations: []string{fmt.Sprintf("invoices %d and payments via kafka kafka", j)}})
		}
		if _, err := s.CreateEntities(a, es); err != nil {
			t.Fatal(err)
		}
	}
	// Positive control: a's own search does see a's rows.
	if res, err := s.SearchEntities(a, SearchQuery{Query: query, Limit: 1}); err != nil || res.Total != n {
		t.Fatalf("a's search total = %d, %v; want %d", res.Total, err, n)
	}
	if after := ranking(); !reflect.DeepEqual(after, before) {
		t.Errorf("b's ranking changed when a wrote %d rows:\nbefore %v\nafter  %v", n, before, after)
	}
}

// TestOpenIndexesUnindexedEntities: entities written before the word
// index existed (migration 0005) are indexed when the store opens.
func TestOpenIndexesUnindexedEntities(t *testing.T) {
	dsn := memtest.DSN(t)
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.CreateTenant(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, s, as("a"), Entity{Name: "Kafka Cluster", EntityType: "service", Observations: []string{"three brokers"}})
	mustCreate(t, s, as("b"), Entity{Name: "Ledger", EntityType: "database", Observations: []string{"three replicas"}})
	find := func(s *Store) int {
		t.Helper()
		r, err := s.SearchEntities(as("a"), SearchQuery{Query: "brokers", Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Hits)
	}
	if n := find(s); n != 1 {
		t.Fatalf("before: %d hits, want 1", n)
	}
	for _, table := range []string{"search_docs", "search_postings", "search_stats"} {
		if _, err := s.w.Exec(`DELETE FROM ` + table); err != nil {
			t.Fatal(err)
		}
	}
	if n := find(s); n != 0 {
		t.Fatalf("index emptied: %d hits, want 0", n)
	}
	s.Close()
	s, err = Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := find(s); n != 1 {
		t.Errorf("after reopening: %d hits, want 1", n)
	}
	if r, err := s.SearchEntities(as("b"), SearchQuery{Query: "brokers replicas", Limit: 5}); err != nil || hitNames(r.Hits)[0] != "Ledger" || len(r.Hits) != 1 {
		t.Errorf("b after reopening = %v, %v; want only Ledger", r.Hits, err)
	}
}

// TestQueryLeavesOutQuestionWords: the words of how a question is asked
// ("what kind of", "would ... likely") are not searched when the query
// has other words; documents still hold them, so a query of nothing else
// finds them.
func TestQueryLeavesOutQuestionWords(t *testing.T) {
	s := newTestStore(t)
	b := as("b")
	mustCreate(t, s, b, Entity{Name: "Broker", EntityType: "service", Observations: []string{"a kind broker that would likely retry"}})
	mustCreate(t, s, b, Entity{Name: "Queue", EntityType: "service", Observations: []string{"kafka topic of many kinds"}})
	res, err := s.SearchEntities(b, SearchQuery{Query: "What kind of kafka would she likely use?", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Words, []string{"kafka", "use"}) || len(res.Hits) != 1 || res.Hits[0].Name != "Queue" {
		t.Fatalf("words %v, hits %v; want [kafka use] and only Queue", res.Words, res.Hits)
	}
	// Positive control: the question words are in the index and found
	// when the query has nothing else.
	res, err = s.SearchEntities(b, SearchQuery{Query: "kind likely", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Words, []string{"kind", "like"}) || len(res.Hits) != 2 || res.Hits[0].Name != "Broker" {
		t.Fatalf("words %v, hits %v; want [kind like], Broker first", res.Words, res.Hits)
	}
}
