package memory

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

func TestImportOnce(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	ents := []Entity{{Name: "carried", EntityType: "t", Observations: []string{"over"}}, {Name: "gone", EntityType: "t"}}
	rels := []Relation{{From: "carried", To: "gone", RelationType: "knows"}}

	res, at, err := s.ImportOnce(a, "/home/u/memory.jsonl", "sum1", ents, rels)
	if err != nil || at != "" || res.EntitiesCreated != 2 || res.RelationsCreated != 1 {
		t.Fatalf("first ImportOnce = %+v, %q, %v; want 2 entities and 1 relation created", res, at, err)
	}
	if err := s.DeleteEntities(a, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	// a second start: nothing is imported again, the deletion stays
	res, at, err = s.ImportOnce(a, "/home/u/memory.jsonl", "sum1", ents, rels)
	if err != nil || at == "" || res.EntitiesCreated != 0 {
		t.Errorf("second ImportOnce = %+v, %q, %v; want nothing imported and the first import's time", res, at, err)
	}
	g, err := s.OpenNodes(a, []string{"carried", "gone"}, Page{})
	if err != nil || len(g.Entities) != 1 || g.Entities[0].Name != "carried" {
		t.Errorf("after the second start OpenNodes = %+v, %v; want only carried", g, err)
	}
	// tenant b: a's record does not stop b's import, and b sees only its own
	res, at, err = s.ImportOnce(b, "/home/u/memory.jsonl", "sum1", ents[:1], nil)
	if err != nil || at != "" || res.EntitiesCreated != 1 {
		t.Errorf("ImportOnce in b = %+v, %q, %v; want one entity created", res, at, err)
	}
	gb, err := s.ReadGraph(b, Page{})
	if err != nil || len(gb.Entities) != 1 || len(gb.Relations) != 0 {
		t.Errorf("b's graph = %+v, %v; want only b's import", gb, err)
	}
	// another file in a is imported
	if res, at, err = s.ImportOnce(a, "/home/u/other.jsonl", "sum2", []Entity{{Name: "second", EntityType: "t"}}, nil); err != nil || at != "" || res.EntitiesCreated != 1 {
		t.Errorf("ImportOnce of another file = %+v, %q, %v", res, at, err)
	}
	if _, _, err := s.ImportOnce(context.Background(), "/x", "s", ents, nil); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Errorf("ImportOnce without a tenant = %v, want ErrNoTenant", err)
	}
}

// TestImportedEntitiesAreSearchable: entities and observations that an
// import (the CLI's, or MEMORY_FILE_PATH's at start-up) brings into a
// running store are found by ranked search right away, like created ones
// (the control), without reopening the store.
func TestImportedEntitiesAreSearchable(t *testing.T) {
	s := newTestStore(t)
	a := as("a")
	if _, err := s.CreateEntities(a, []Entity{{Name: "created", EntityType: "t", Observations: []string{"walrus habitat"}}}); err != nil {
		t.Fatal(err)
	}
	ents := []Entity{{Name: "imported", EntityType: "t", Observations: []string{"narwhal migration"}},
		{Name: "created", EntityType: "t", Observations: []string{"narwhal sighting"}}}
	if _, err := s.Import(a, ents, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ImportOnce(a, "/home/u/memory.jsonl", "sum", []Entity{{Name: "from-file", EntityType: "t", Observations: []string{"beluga pod"}}}, nil); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string][]string{"walrus": {"created"}, "narwhal": {"created", "imported"}, "beluga": {"from-file"}} {
		res, err := s.SearchEntities(a, SearchQuery{Query: q, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range res.Hits {
			got = append(got, h.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("search %q = %v, want %v", q, got, want)
		}
	}
}
