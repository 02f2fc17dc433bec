package memory

import (
	"context"
	"errors"
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
