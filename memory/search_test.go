package memory

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func hitNames(hs []SearchHit) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func TestSearchEntities(t *testing.T) {
	s := newTestStore(t)
	s.now = (&testClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), step: time.Second}).Now
	a, b := as("a"), as("b")
	// One entity per transaction, so updated_at increases in this order.
	for _, e := range []Entity{
		{Name: "Observer", EntityType: "person", Observations: []string{"talks about kafka"}},
		{Name: "Kafka Cluster", EntityType: "service", Observations: []string{"runs on k8s"}},
		{Name: "Billing", EntityType: "kafka", Observations: []string{"old"}},
		{Name: "Postgres One", EntityType: "database", Observations: []string{"primary store"}},
		{Name: "Postgres Two", EntityType: "database", Observations: []string{"replica"}},
		{Name: "Café Ops", EntityType: "team", Aliases: []string{"ops"}, Metadata: map[string]any{"floor": 3.0}},
	} {
		mustCreate(t, s, a, e)
	}
	mustCreate(t, s, b, Entity{Name: "Kafka Cluster", EntityType: "service"}) // same name in tenant b
	tests := []struct {
		name      string
		q         SearchQuery
		want      []string
		wantTotal int
		wantErr   error
	}{
		{"name above type above observation", SearchQuery{Query: "kafka"}, []string{"Kafka Cluster", "Billing", "Observer"}, 3, nil},
		{"natural language: any word, more words first", SearchQuery{Query: "which kafka service runs on k8s?"}, []string{"Kafka Cluster", "Billing", "Observer"}, 3, nil},
		{"recent first on equal score", SearchQuery{Query: "postgres"}, []string{"Postgres Two", "Postgres One"}, 2, nil},
		{"paging keeps the total", SearchQuery{Query: "kafka", Offset: 1, Limit: 1}, []string{"Billing"}, 3, nil},
		{"offset past the end", SearchQuery{Query: "kafka", Offset: 9}, []string{}, 3, nil},
		{"diacritics folded", SearchQuery{Query: "cafe"}, []string{"Café Ops"}, 1, nil},
		{"fts syntax is just text", SearchQuery{Query: `kafka" OR NEAR(x* -`}, []string{"Kafka Cluster", "Billing", "Observer"}, 3, nil},
		{"no words", SearchQuery{Query: "?!*"}, []string{}, 0, nil},
		{"no match", SearchQuery{Query: "zebra"}, []string{}, 0, nil},
		{"exact substring", SearchQuery{Query: "stgres o", Mode: SearchExact}, []string{"Postgres One"}, 1, nil},
		{"exact short", SearchQuery{Query: "k8", Mode: SearchExact}, []string{"Kafka Cluster"}, 1, nil},
		{"exact tiers", SearchQuery{Query: "kafka", Mode: SearchExact}, []string{"Kafka Cluster", "Billing", "Observer"}, 3, nil},
		{"semantic needs a query vector", SearchQuery{Query: "replica", Mode: SearchSemantic}, nil, 0, ErrInvalid},
		{"empty query", SearchQuery{Query: "  "}, nil, 0, ErrInvalid},
		{"bad mode", SearchQuery{Query: "x", Mode: "vector"}, nil, 0, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.q.Limit == 0 {
				tc.q.Limit = 50
			}
			got, err := s.SearchEntities(a, tc.q)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SearchEntities(%+v) = %v, want %v", tc.q, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if names := hitNames(got.Hits); !reflect.DeepEqual(names, tc.want) || got.Total != tc.wantTotal {
				t.Errorf("SearchEntities(%+v) = %v total %d, want %v total %d", tc.q, names, got.Total, tc.want, tc.wantTotal)
			}
			for i := 1; i < len(got.Hits); i++ {
				if got.Hits[i].Score > got.Hits[i-1].Score {
					t.Errorf("scores not descending: %v", got.Hits)
				}
			}
		})
	}
	t.Run("hits carry observations, aliases and metadata", func(t *testing.T) {
		got, _ := s.SearchEntities(a, SearchQuery{Query: "ops", Limit: 5})
		if len(got.Hits) != 1 || !reflect.DeepEqual(got.Hits[0].Aliases, []string{"ops"}) || got.Hits[0].Metadata["floor"] != 3.0 {
			t.Errorf("SearchEntities(ops) = %+v", got.Hits)
		}
	})
	t.Run("graph mode adds relations", func(t *testing.T) {
		if _, err := s.CreateRelations(a, []Relation{{From: "Billing", To: "Kafka Cluster", RelationType: "uses"}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.SearchEntities(a, SearchQuery{Query: "billing", Mode: SearchGraph, Limit: 5})
		if err != nil || len(got.Relations) != 1 || got.Relations[0].RelationType != "uses" {
			t.Errorf("graph search = %+v, %v; want the uses relation", got, err)
		}
	})
	t.Run("index follows updates and deletes", func(t *testing.T) {
		if err := s.DeleteEntities(a, []string{"Billing"}); err != nil {
			t.Fatal(err)
		}
		got, _ := s.SearchEntities(a, SearchQuery{Query: "kafka", Limit: 5})
		if names := hitNames(got.Hits); !reflect.DeepEqual(names, []string{"Kafka Cluster", "Observer"}) {
			t.Errorf("after delete = %v", names)
		}
		if _, err := s.AddObservations(a, []ObservationAdd{{EntityName: "Postgres One", Contents: []string{"zebra crossing"}}}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.SearchEntities(a, SearchQuery{Query: "zebra", Limit: 5})
		if names := hitNames(got.Hits); !reflect.DeepEqual(names, []string{"Postgres One"}) {
			t.Errorf("after add_observations = %v", names)
		}
	})
	t.Run("tenant isolation", func(t *testing.T) {
		for _, mode := range SearchModes {
			if mode == SearchSemantic {
				continue // needs vectors: TestSemanticSearchTenantIsolation
			}
			got, err := s.SearchEntities(b, SearchQuery{Query: "kafka postgres observer", Mode: mode, Limit: 50})
			if mode == SearchExact {
				got, err = s.SearchEntities(b, SearchQuery{Query: "a", Mode: mode, Limit: 50})
			}
			if names := hitNames(got.Hits); err != nil || !reflect.DeepEqual(names, []string{"Kafka Cluster"}) && !(mode != SearchExact && len(names) == 1) {
				t.Errorf("%s search as b = %v, %v; want only b's entity", mode, names, err)
			}
		}
	})
}

// FuzzSearchQuery: every search of any input succeeds, in every mode.
func FuzzSearchQuery(f *testing.F) {
	for _, seed := range []string{"kafka", `"`, `a"b`, "NEAR(a b)", "x*", "-x", "a AND", "^x", "col:x", "{a b}:c", "\x00", "é", "ﬁ"} {
		f.Add(seed)
	}
	s := newTestStore(f)
	a := as("a")
	if _, err := s.CreateEntities(a, []Entity{{Name: "Kafka", EntityType: "svc", Observations: []string{"near the AND gate"}}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if strings.TrimSpace(q) == "" {
			return
		}
		for _, mode := range SearchModes {
			sq := SearchQuery{Query: q, Mode: mode, Limit: 10}
			if mode == SearchSemantic {
				sq.Vector, sq.Model = []float32{1}, "m" // semantic needs a query vector
			}
			if _, err := s.SearchEntities(a, sq); err != nil {
				t.Errorf("SearchEntities(%q, %s) = %v", q, mode, err)
			}
		}
	})
}
