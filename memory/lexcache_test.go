package memory

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// searchNames returns the names of tenant ctx's hits for query, best first.
func searchNames(t *testing.T, s *Store, tenant, query string) []string {
	t.Helper()
	res, err := s.SearchEntities(as(tenant), SearchQuery{Query: query, Limit: 50})
	if err != nil {
		t.Fatalf("SearchEntities(%q) as %s: %v", query, tenant, err)
	}
	names := []string{}
	for _, h := range res.Hits {
		names = append(names, h.Name)
	}
	return names
}

// TestPostingsCacheTenantIsolation: a and b both hold the query's words,
// and both indexes have version 0 (as when built before versions
// existed), so only the tenant in the key tells their lists apart.
// Whichever tenant searches first (and so fills the kept posting lists),
// each tenant's search returns its own entities only.
func TestPostingsCacheTenantIsolation(t *testing.T) {
	for _, first := range []string{"a", "b"} {
		t.Run(first+" first", func(t *testing.T) {
			s := newTestStore(t)
			for _, tenant := range []string{"a", "b"} {
				for i := range 3 {
					mustCreate(t, s, as(tenant), Entity{Name: fmt.Sprintf("%s-%d", tenant, i), EntityType: "note",
						Observations: []string{fmt.Sprintf("canary kafka invoice %s %d", tenant, i)}})
				}
			}
			if err := s.indexAllQueued(context.Background()); err != nil { // the words are indexed before the versions are set
				t.Fatal(err)
			}
			if err := s.write(as("a"), func(t *txn) error {
				_, err := t.exec(`UPDATE search_stats SET version = 0 WHERE tenant_id IN ('a', 'b')`)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{}
			for _, tenant := range []string{"a", "b"} {
				for i := range 3 {
					want[tenant] = append(want[tenant], fmt.Sprintf("%s-%d", tenant, i))
				}
			}
			order := []string{first, map[string]string{"a": "b", "b": "a"}[first]}
			for round := range 2 { // round 1 reads the kept lists
				for _, tenant := range order {
					got := searchNames(t, s, tenant, "canary kafka invoice")
					slices.Sort(got)
					if !reflect.DeepEqual(got, want[tenant]) {
						t.Errorf("round %d: %s's search = %v, want %v", round, tenant, got, want[tenant])
					}
				}
			}
		})
	}
}

// TestPostingsCacheSeesWrites: after a search kept the lists of its
// words, every kind of change to the index shows in the next search, on
// the replica that wrote and on one that did not (whose kept lists are
// stale and must not be used).
func TestPostingsCacheSeesWrites(t *testing.T) {
	rs := newReplicas(t, 2, AgentScopeTenant)
	reader, writer := rs[0], rs[1]
	ctx := as("a")
	mustCreate(t, writer, ctx, Entity{Name: "one", EntityType: "note", Observations: []string{"zebra crossing"}})
	steps := []struct {
		name  string
		write func() error
		want  []string
	}{
		{"create", func() error {
			_, err := writer.CreateEntities(ctx, []Entity{{Name: "two", EntityType: "note", Observations: []string{"a zebra"}}})
			return err
		}, []string{"one", "two"}},
		{"add observation", func() error {
			_, err := writer.CreateEntities(ctx, []Entity{{Name: "three", EntityType: "note", Observations: []string{"nothing"}}})
			if err != nil {
				return err
			}
			_, err = writer.AddObservations(ctx, []ObservationAdd{{EntityName: "three", Contents: []string{"zebra zebra zebra"}}})
			return err
		}, []string{"one", "three", "two"}},
		{"delete observation", func() error {
			return writer.DeleteObservations(ctx, []ObservationDeletion{{EntityName: "one", Observations: []string{"zebra crossing"}}})
		}, []string{"three", "two"}},
		{"delete entity", func() error { return writer.DeleteEntities(ctx, []string{"two"}) }, []string{"three"}},
	}
	for _, replica := range []*Store{writer, reader} {
		if got := searchNames(t, replica, "a", "zebra"); !reflect.DeepEqual(got, []string{"one"}) {
			t.Fatalf("before the writes: search = %v, want [one]", got) // also keeps the list on both replicas
		}
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for i, replica := range []*Store{writer, reader} {
			got := searchNames(t, replica, "a", "zebra")
			slices.Sort(got)
			if !reflect.DeepEqual(got, st.want) {
				t.Errorf("after %s, replica %d: search = %v, want %v", st.name, i, got, st.want)
			}
		}
	}
}

// TestPostingsCacheBounded: the kept postings never exceed
// maxCachedPostings, a list longer than maxCachedList is not kept, and a
// list is found only under its tenant, term and version.
func TestPostingsCacheBounded(t *testing.T) {
	c := newPostingsCache()
	list := func(n int) []cachedPosting { return make([]cachedPosting, n) }
	c.add("a", "x", 1, list(3))
	if got, ok := c.get("a", "x", 1); !ok || len(got) != 3 {
		t.Fatalf("get(a, x, 1) = %d postings, %v; want 3, true", len(got), ok)
	}
	for _, k := range []struct {
		tenant, term string
		version      int64
	}{{"b", "x", 1}, {"a", "y", 1}, {"a", "x", 2}} {
		if _, ok := c.get(k.tenant, k.term, k.version); ok {
			t.Errorf("get(%s, %s, %d) found a's list of x at version 1", k.tenant, k.term, k.version)
		}
	}
	c.add("a", "huge", 1, list(maxCachedList+1))
	if _, ok := c.get("a", "huge", 1); ok {
		t.Errorf("a list of %d postings was kept; the longest kept is %d", maxCachedList+1, maxCachedList)
	}
	for i := range 10 {
		c.add("a", fmt.Sprint("t", i), 1, list(maxCachedList))
		if c.size > maxCachedPostings {
			t.Fatalf("after %d lists of %d: %d postings kept, want at most %d", i+1, maxCachedList, c.size, maxCachedPostings)
		}
	}
	if _, ok := c.get("a", "t9", 1); !ok {
		t.Error("the newest list was evicted")
	}
	if _, ok := c.get("a", "t0", 1); ok {
		t.Error("the oldest list is still kept beyond the bound")
	}
	c.add("a", "t9", 2, list(1)) // replacing a list releases its postings
	if want := 3*maxCachedList + 1; c.size != want {
		t.Errorf("after replacing a list: %d postings kept, want %d", c.size, want)
	}
}
