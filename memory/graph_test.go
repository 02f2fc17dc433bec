package memory

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func names(es []Entity) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func rels(rs []Relation) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.From+"-"+r.RelationType+"->"+r.To)
	}
	return out
}

func mustCreate(t *testing.T, s *Store, ctx context.Context, es ...Entity) {
	t.Helper()
	if _, err := s.CreateEntities(ctx, es); err != nil {
		t.Fatalf("CreateEntities: %v", err)
	}
}

func TestCreateEntities(t *testing.T) {
	s := newTestStore(t)
	a := as("a")
	got, err := s.CreateEntities(a, []Entity{
		{Name: "Alice", EntityType: "person", Observations: []string{"likes tea", "likes tea", "lives in Oslo"}},
		{Name: "Bob", EntityType: "person"},
		{Name: "Alice", EntityType: "duplicate in batch"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got); !reflect.DeepEqual(n, []string{"Alice", "Bob"}) {
		t.Errorf("created = %v, want [Alice Bob]", n)
	}
	if !reflect.DeepEqual(got[0].Observations, []string{"likes tea", "lives in Oslo"}) {
		t.Errorf("Alice observations = %q, want duplicates dropped", got[0].Observations)
	}
	// existing name: skipped, not merged
	again, err := s.CreateEntities(a, []Entity{{Name: "Alice", EntityType: "robot", Observations: []string{"new"}}, {Name: "Carol", EntityType: "person"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(again); !reflect.DeepEqual(n, []string{"Carol"}) {
		t.Errorf("second create = %v, want [Carol]", n)
	}
	g, _ := s.OpenNodes(a, []string{"Alice"}, Page{})
	if g.Entities[0].EntityType != "person" || len(g.Entities[0].Observations) != 2 {
		t.Errorf("Alice after re-create = %+v, want unchanged", g.Entities[0])
	}
	// isolation: B creating the same name is independent of A
	b := as("b")
	gotB, err := s.CreateEntities(b, []Entity{{Name: "Alice", EntityType: "cat"}})
	if err != nil || len(gotB) != 1 {
		t.Fatalf("B create Alice = %v, %v; want created in B", gotB, err)
	}
	gb, _ := s.ReadGraph(b, Page{})
	if n := names(gb.Entities); !reflect.DeepEqual(n, []string{"Alice"}) || gb.Entities[0].EntityType != "cat" {
		t.Errorf("B graph = %+v, want only B's Alice (cat)", gb.Entities)
	}
}

func TestCreateRelations(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	mustCreate(t, s, a, Entity{Name: "A1", EntityType: "t"}, Entity{Name: "A2", EntityType: "t"})
	mustCreate(t, s, b, Entity{Name: "B1", EntityType: "t"})
	tests := []struct {
		name    string
		ctx     context.Context
		in      []Relation
		want    []string
		missing string // the entity the error names
	}{
		{"new", a, []Relation{{From: "A1", To: "A2", RelationType: "knows"}}, []string{"A1-knows->A2"}, ""},
		{"duplicate skipped", a, []Relation{{From: "A1", To: "A2", RelationType: "knows"}, {From: "A2", To: "A1", RelationType: "knows"}}, []string{"A2-knows->A1"}, ""},
		{"missing endpoint", a, []Relation{{From: "A1", To: "A2", RelationType: "likes"}, {From: "A1", To: "Nobody", RelationType: "x"}}, nil, "Nobody"},
		{"other tenant's entity is not found", b, []Relation{{From: "B1", To: "A1", RelationType: "x"}}, nil, "A1"},
		{"control in b", b, []Relation{{From: "B1", To: "B1", RelationType: "self"}}, []string{"B1-self->B1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CreateRelations(tt.ctx, tt.in)
			if tt.missing != "" {
				if got := missingEntity(err); got != tt.missing || !errors.Is(err, ErrNotFound) {
					t.Fatalf("CreateRelations err = %v naming entity %q, want ErrNotFound naming %q", err, got, tt.missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := rels(got); !reflect.DeepEqual(r, tt.want) {
				t.Errorf("CreateRelations = %v, want %v", r, tt.want)
			}
		})
	}
	// nothing from the failed call was written
	g, _ := s.ReadGraph(a, Page{})
	if r := rels(g.Relations); !reflect.DeepEqual(r, []string{"A1-knows->A2", "A2-knows->A1"}) {
		t.Errorf("A relations = %v, want the failed call to have written nothing", r)
	}
}

// missingEntity is the entity a not-found error names, or "" when err is
// not one.
func missingEntity(err error) string {
	var me *Error
	if !errors.As(err, &me) || me.Code != CodeNotFound || me.Field != FieldEntity {
		return ""
	}
	return me.ID
}

func TestAddObservations(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	mustCreate(t, s, a, Entity{Name: "E", EntityType: "t", Observations: []string{"one"}})
	got, err := s.AddObservations(a, []ObservationAdd{{EntityName: "E", Contents: []string{"one", "two", "three"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []ObservationsAdded{{EntityName: "E", Added: []string{"two", "three"}}}) {
		t.Errorf("AddObservations = %+v, want two, three added", got)
	}
	_, err = s.AddObservations(a, []ObservationAdd{{EntityName: "E", Contents: []string{"four"}}, {EntityName: "Missing", Contents: []string{"x"}}})
	if got := missingEntity(err); got != "Missing" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("AddObservations(missing) err = %v naming entity %q, want ErrNotFound naming \"Missing\"", err, got)
	}
	// B cannot add to A's entity
	if _, err := s.AddObservations(b, []ObservationAdd{{EntityName: "E", Contents: []string{"b was here"}}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("B AddObservations to A's entity err = %v, want ErrNotFound", err)
	}
	g, _ := s.OpenNodes(a, []string{"E"}, Page{})
	if want := []string{"one", "two", "three"}; !reflect.DeepEqual(g.Entities[0].Observations, want) {
		t.Errorf("E observations = %q, want %q (nothing from failed calls)", g.Entities[0].Observations, want)
	}
}

func TestDeletes(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	for _, ctx := range []context.Context{a, b} {
		mustCreate(t, s, ctx, Entity{Name: "X", EntityType: "t", Observations: []string{"o1", "o2"}}, Entity{Name: "Y", EntityType: "t"}, Entity{Name: "Z", EntityType: "t"})
		if _, err := s.CreateRelations(ctx, []Relation{{From: "X", To: "Y", RelationType: "r"}, {From: "Y", To: "Z", RelationType: "r"}}); err != nil {
			t.Fatal(err)
		}
	}
	// B deletes everything of its own; A must be untouched
	if err := s.DeleteObservations(b, []ObservationDeletion{{EntityName: "X", Observations: []string{"o1", "absent"}}, {EntityName: "Nope", Observations: []string{"o"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRelations(b, []Relation{{From: "Y", To: "Z", RelationType: "r"}, {From: "Q", To: "Z", RelationType: "r"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEntities(b, []string{"Y", "absent"}); err != nil {
		t.Fatal(err)
	}
	gb, _ := s.ReadGraph(b, Page{})
	if n, r := names(gb.Entities), rels(gb.Relations); !reflect.DeepEqual(n, []string{"X", "Z"}) || len(r) != 0 {
		t.Errorf("B after deletes: entities %v relations %v, want [X Z] and none (cascade)", n, r)
	}
	if gb.Entities[0].Observations[0] != "o2" || len(gb.Entities[0].Observations) != 1 {
		t.Errorf("B X observations = %q, want [o2]", gb.Entities[0].Observations)
	}
	ga, _ := s.ReadGraph(a, Page{})
	if n, r := names(ga.Entities), rels(ga.Relations); !reflect.DeepEqual(n, []string{"X", "Y", "Z"}) || len(r) != 2 || len(ga.Entities[0].Observations) != 2 {
		t.Errorf("A after B's deletes: %v %v %q, want untouched", n, r, ga.Entities[0].Observations)
	}
	// deleted observations and entities leave the search index
	if g, _ := s.SearchNodes(b, "o1", Page{}); len(g.Entities) != 0 {
		t.Errorf("search o1 in B = %v, want none after delete", names(g.Entities))
	}
	if g, _ := s.SearchNodes(a, "o1", Page{}); len(g.Entities) != 1 {
		t.Errorf("search o1 in A = %v, want X (control)", names(g.Entities))
	}
}

func TestSearchNodes(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	mustCreate(t, s, a,
		Entity{Name: "Ada Lovelace", EntityType: "Person", Observations: []string{"wrote the first PROGRAM", "Émile's friend"}},
		Entity{Name: "Analytical Engine", EntityType: "Machine", Observations: []string{"designed by Babbage"}},
		Entity{Name: "Zürich", EntityType: "City", Observations: []string{`has "quotes" and 100% signs_`}},
	)
	mustCreate(t, s, b, Entity{Name: "Ada B", EntityType: "Person", Observations: []string{"program of B"}})
	if _, err := s.CreateRelations(a, []Relation{{From: "Analytical Engine", To: "Zürich", RelationType: "near"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		want  []string
		rels  []string
	}{
		{"program", []string{"Ada Lovelace"}, []string{}},
		{"ADA", []string{"Ada Lovelace"}, []string{}},
		{"machine", []string{"Analytical Engine"}, []string{"Analytical Engine-near->Zürich"}},
		{"zÜr", []string{"Zürich"}, []string{"Analytical Engine-near->Zürich"}},
		{"émile", []string{"Ada Lovelace"}, []string{}},
		{`"quotes"`, []string{"Zürich"}, []string{"Analytical Engine-near->Zürich"}},
		{"100%", []string{"Zürich"}, []string{"Analytical Engine-near->Zürich"}},
		{"s_", []string{"Zürich"}, []string{"Analytical Engine-near->Zürich"}},
		{"an", []string{"Analytical Engine", "Zürich"}, []string{"Analytical Engine-near->Zürich"}},
		{"", []string{"Ada Lovelace", "Analytical Engine", "Zürich"}, []string{"Analytical Engine-near->Zürich"}},
		{"first program by", []string{}, []string{}},
		{"OR AND NOT *", []string{}, []string{}},
		{"nothing matches this", []string{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			g, err := s.SearchNodes(a, tt.query, Page{})
			if err != nil {
				t.Fatalf("SearchNodes(%q): %v", tt.query, err)
			}
			if n := names(g.Entities); !reflect.DeepEqual(n, tt.want) {
				t.Errorf("SearchNodes(%q) entities = %v, want %v", tt.query, n, tt.want)
			}
			if r := rels(g.Relations); !reflect.DeepEqual(r, tt.rels) {
				t.Errorf("SearchNodes(%q) relations = %v, want %v", tt.query, r, tt.rels)
			}
		})
	}
	// B's search never sees A's entities, and vice versa
	if g, _ := s.SearchNodes(b, "program", Page{}); !reflect.DeepEqual(names(g.Entities), []string{"Ada B"}) {
		t.Errorf("B search program = %v, want [Ada B]", names(g.Entities))
	}
}

func TestOpenNodes(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	mustCreate(t, s, a, Entity{Name: "P", EntityType: "t"}, Entity{Name: "Q", EntityType: "t"}, Entity{Name: "R", EntityType: "t"})
	if _, err := s.CreateRelations(a, []Relation{{From: "P", To: "Q", RelationType: "r"}, {From: "R", To: "P", RelationType: "r"}, {From: "Q", To: "R", RelationType: "r"}}); err != nil {
		t.Fatal(err)
	}
	g, err := s.OpenNodes(a, []string{"Q", "P", "missing"}, Page{})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(g.Entities); !reflect.DeepEqual(n, []string{"P", "Q"}) {
		t.Errorf("OpenNodes entities = %v, want [P Q] in creation order", n)
	}
	if r := rels(g.Relations); !reflect.DeepEqual(r, []string{"P-r->Q", "R-r->P", "Q-r->R"}) {
		t.Errorf("OpenNodes relations = %v, want every relation touching P or Q", r)
	}
	gb, _ := s.OpenNodes(b, []string{"P", "Q"}, Page{})
	if len(gb.Entities) != 0 || len(gb.Relations) != 0 {
		t.Errorf("B OpenNodes(A's names) = %+v, want nothing", gb)
	}
}

func TestReadGraphPagesAndBudget(t *testing.T) {
	s := newTestStore(t)
	a := as("a")
	var es []Entity
	for i := 0; i < 50; i++ {
		es = append(es, Entity{Name: fmt.Sprintf("e%02d", i), EntityType: "t", Observations: []string{strings.Repeat("x", 100)}})
	}
	mustCreate(t, s, a, es...)
	var rs []Relation
	for i := 0; i < 49; i++ {
		rs = append(rs, Relation{From: fmt.Sprintf("e%02d", i), To: fmt.Sprintf("e%02d", i+1), RelationType: "next"})
	}
	if _, err := s.CreateRelations(a, rs); err != nil {
		t.Fatal(err)
	}
	full, err := s.ReadGraph(a, Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Entities) != 50 || len(full.Relations) != 49 || full.Truncated || full.Total != 50 {
		t.Fatalf("ReadGraph() = %d entities %d relations truncated=%v total=%d", len(full.Entities), len(full.Relations), full.Truncated, full.Total)
	}
	// page by limit/offset
	p, _ := s.ReadGraph(a, Page{Offset: 10, Limit: 5})
	if n := names(p.Entities); !reflect.DeepEqual(n, []string{"e10", "e11", "e12", "e13", "e14"}) || !p.Truncated || p.NextOffset != 15 {
		t.Errorf("page(10,5) = %v truncated=%v next=%d", n, p.Truncated, p.NextOffset)
	}
	// walking the graph by budget yields every entity and relation exactly once
	budget := entityCost(es[0])*7 + relationCost(rs[0])*7 + 64
	seenE, seenR := map[string]int{}, map[string]int{}
	offset, pages := 0, 0
	for {
		g, err := s.ReadGraph(a, Page{Offset: offset, MaxBytes: budget})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(g.Entities) == 0 {
			t.Fatalf("page at offset %d is empty: no progress", offset)
		}
		for _, e := range g.Entities {
			seenE[e.Name]++
		}
		for _, r := range rels(g.Relations) {
			seenR[r]++
		}
		if !g.Truncated {
			break
		}
		offset = g.NextOffset
	}
	if len(seenE) != 50 || len(seenR) != 49 || pages < 7 {
		t.Errorf("paged walk saw %d entities, %d relations in %d pages; want 50, 49, >= 7 pages", len(seenE), len(seenR), pages)
	}
	for k, n := range seenE {
		if n != 1 {
			t.Errorf("entity %s seen %d times", k, n)
		}
	}
	for k, n := range seenR {
		if n != 1 {
			t.Errorf("relation %s seen %d times", k, n)
		}
	}
}

func TestJSONStringCostBoundsEncoding(t *testing.T) {
	for _, s := range []string{"plain", `q"uo\te`, "<&>", "ctl\x01\n", "ünï", "\xff"} {
		// structured copy + escaped text copy must fit the estimate
		enc := fmt.Sprintf("%q", s) // an approximation with the same escapes for ASCII
		if c := jsonStringCost(s); c < 2*len(enc) {
			t.Errorf("jsonStringCost(%q) = %d, want >= %d", s, c, 2*len(enc))
		}
	}
}

func TestConcurrentWritesLoseNothing(t *testing.T) {
	s := newTestStore(t)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ctx := as([]string{"a", "b"}[w%2])
			for i := 0; i < each; i++ {
				if _, err := s.CreateEntities(ctx, []Entity{{Name: fmt.Sprintf("w%d-%d", w, i), EntityType: "t", Observations: []string{"o"}}}); err != nil {
					errs <- err
				}
				if _, err := s.SearchNodes(ctx, fmt.Sprintf("w%d-", w), Page{}); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	for _, tenant := range []string{"a", "b"} {
		g, _ := s.ReadGraph(as(tenant), Page{})
		if len(g.Entities) != writers/2*each {
			t.Errorf("tenant %s has %d entities, want %d", tenant, len(g.Entities), writers/2*each)
		}
	}
}

// TestSearchAndOpenPagesCountRelations: search_nodes and open_nodes pages
// stay within MaxBytes with the relations touching their entities counted
// (a hub entity has many), and walking them by NextOffset yields every
// matching entity exactly once and every touching relation at least once.
// Tenant b, whose graph is empty, gets nothing at any offset.
func TestSearchAndOpenPagesCountRelations(t *testing.T) {
	s := newTestStore(t)
	a := as("a")
	var es []Entity
	var all []string
	for i := 0; i < 60; i++ {
		n := fmt.Sprintf("n%02d", i)
		all = append(all, n)
		es = append(es, Entity{Name: n, EntityType: "t", Observations: []string{"match " + strings.Repeat("x", 100)}})
	}
	es = append(es, Entity{Name: "other", EntityType: "t", Observations: []string{"none"}})
	mustCreate(t, s, a, es...)
	var rs []Relation
	for i := 1; i < 60; i++ {
		rs = append(rs, Relation{From: "n00", To: all[i], RelationType: "hub"}, Relation{From: "other", To: all[i], RelationType: "points"})
	}
	if _, err := s.CreateRelations(a, rs); err != nil {
		t.Fatal(err)
	}
	budget := entityCost(es[0])*8 + relationCost(rs[0])*70 + graphOverhead
	cost := func(g Graph) int {
		n := graphOverhead
		for _, e := range g.Entities {
			n += entityCost(e)
		}
		for _, r := range g.Relations {
			n += relationCost(r)
		}
		return n
	}
	for _, tc := range []struct {
		name string
		read func(ctx context.Context, p Page) (Graph, error)
	}{
		{"SearchNodes", func(ctx context.Context, p Page) (Graph, error) { return s.SearchNodes(ctx, "match", p) }},
		{"OpenNodes", func(ctx context.Context, p Page) (Graph, error) { return s.OpenNodes(ctx, all, p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full, err := tc.read(a, Page{})
			if err != nil || len(full.Entities) != 60 || len(full.Relations) != len(rs) || full.Truncated {
				t.Fatalf("%s(no bound) = %d entities, %d relations, truncated %v, %v", tc.name, len(full.Entities), len(full.Relations), full.Truncated, err)
			}
			if cost(full) <= budget {
				t.Fatalf("the graph (%d bytes) fits the budget %d: the test proves nothing", cost(full), budget)
			}
			seenE, seenR := map[string]int{}, map[string]bool{}
			offset, pages := 0, 0
			for {
				g, err := tc.read(a, Page{Offset: offset, MaxBytes: budget})
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if c := cost(g); c > budget {
					t.Errorf("page at %d costs %d, budget %d", offset, c, budget)
				}
				if len(g.Entities) == 0 || g.Total != 60 {
					t.Fatalf("page at %d: %d entities, total %d", offset, len(g.Entities), g.Total)
				}
				for _, e := range g.Entities {
					seenE[e.Name]++
				}
				for _, r := range rels(g.Relations) {
					seenR[r] = true
				}
				if !g.Truncated {
					break
				}
				if g.NextOffset != offset+len(g.Entities) {
					t.Fatalf("NextOffset = %d after %d entities from %d", g.NextOffset, len(g.Entities), offset)
				}
				offset = g.NextOffset
			}
			if pages < 3 || len(seenE) != 60 || len(seenR) != len(rs) {
				t.Errorf("walk: %d pages, %d entities, %d relations; want >= 3, 60, %d", pages, len(seenE), len(seenR), len(rs))
			}
			for k, n := range seenE {
				if n != 1 {
					t.Errorf("entity %s seen %d times", k, n)
				}
			}
			if g, err := tc.read(as("b"), Page{Offset: 1, MaxBytes: budget}); err != nil || len(g.Entities) != 0 || len(g.Relations) != 0 || g.Total != 0 {
				t.Errorf("tenant b at offset 1 = %+v, %v; want nothing", g, err)
			}
		})
	}
}
