package tools

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestSearchEntitiesTool(t *testing.T) {
	ts := newTestServer(t)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	runSteps(t, ts, []step{
		{"create with extras", a, "create_entities", map[string]any{"entities": []map[string]any{
			{"name": "Kafka Cluster", "entityType": "service", "observations": []string{"runs on k8s"}, "aliases": []string{"events"}, "metadata": map[string]any{"tier": 1}},
			{"name": "Billing", "entityType": "kafka", "observations": []string{}},
			{"name": "Observer", "entityType": "person", "observations": []string{"talks about kafka"}},
		}}, `{"entities":[{"name":"Kafka Cluster","aliases":["events"],"metadata":{"tier":1}},{"name":"Billing"},{"name":"Observer"}]}`, ""},
		{"reference shape without extras", a, "create_entities", map[string]any{"entities": []map[string]any{{"name": "Plain", "entityType": "t", "observations": []string{}}}},
			`{"entities":[{"name":"Plain","entityType":"t","observations":[]}]}`, ""},
		{"relation with properties", a, "create_relations", map[string]any{"relations": []map[string]any{{"from": "Billing", "to": "Kafka Cluster", "relationType": "uses", "properties": map[string]any{"since": 2020}}}},
			`{"relations":[{"from":"Billing","to":"Kafka Cluster","relationType":"uses","properties":{"since":2020}}]}`, ""},
		{"ranked", a, "search_entities", map[string]any{"query": "kafka"},
			`{"total":3,"offset":0,"limit":10,"searchType":"hybrid","words":["kafka"],"entities":[{"name":"Kafka Cluster","aliases":["events"],"metadata":{"tier":1}},{"name":"Billing"},{"name":"Observer"}]}`, ""},
		{"natural language never errors", a, "search_entities", map[string]any{"query": `what "runs" on k8s (NEAR kafka*)?`},
			`{"total":3,"entities":[{"name":"Kafka Cluster","matchedWords":3},{"name":"Billing"},{"name":"Observer"}]}`, ""},
		{"paged", a, "search_entities", map[string]any{"query": "kafka", "limit": 1, "offset": 1}, `{"total":3,"nextOffset":2,"entities":[{"name":"Billing"}]}`, ""},
		{"exact", a, "search_entities", map[string]any{"query": "s on k", "searchType": "exact"}, `{"total":1,"entities":[{"name":"Kafka Cluster","score":1}]}`, ""},
		{"graph", a, "search_entities", map[string]any{"query": "billing", "searchType": "graph"},
			`{"entities":[{"name":"Billing"}],"relations":[{"from":"Billing","to":"Kafka Cluster","relationType":"uses"}]}`, ""},
		{"bad searchType", a, "search_entities", map[string]any{"query": "x", "searchType": "vector"}, "", "invalid arguments"},
		{"tenant isolation", b, "search_entities", map[string]any{"query": "kafka billing observer"}, `{"total":0,"entities":[]}`, ""},
	})
}

// TestGraphExtrasKeepReferenceSchema: the extras are optional; the
// reference's required properties are exactly as before.
func TestGraphExtrasKeepReferenceSchema(t *testing.T) {
	h := New(Deps{})
	want := map[string][]string{"create_entities": {"name", "entityType", "observations"}, "create_relations": {"from", "to", "relationType"}}
	for _, st := range h.all() {
		w, ok := want[st.Tool.Name]
		if !ok {
			continue
		}
		var schema struct {
			Properties map[string]struct {
				Items struct {
					Required []string `json:"required"`
				} `json:"items"`
			} `json:"properties"`
			Required []string `json:"required"`
		}
		if err := json.Unmarshal(st.Tool.RawInputSchema, &schema); err != nil {
			t.Fatal(err)
		}
		for _, p := range schema.Properties {
			got := slices.Clone(p.Items.Required)
			slices.Sort(got)
			ww := slices.Clone(w)
			slices.Sort(ww)
			if !slices.Equal(got, ww) {
				t.Errorf("%s items required = %v, want %v", st.Tool.Name, got, ww)
			}
		}
	}
}
