package tools

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// TestWriteSizeLimits checks that a write call over MaxWriteBytes or
// MaxWriteItems is refused with isError naming the limit and writes
// nothing (not even for the other entities of the batch), and that a batch
// exactly at each limit is written (the control).
func TestWriteSizeLimits(t *testing.T) {
	ts := newTestServer(t)
	a := asUser("a", "", "")
	// one entity with two observations: text = "entities" + "name" + name +
	// "entityType" + "t" + "observations" + both observations.
	bytesBatch := func(name string, total int) map[string]any {
		fixed := len("entities") + len("name") + len(name) + len("entityType") + len("t") + len("observations")
		n := total - fixed
		return map[string]any{"entities": []any{
			map[string]any{"name": name, "entityType": "t", "observations": []any{strings.Repeat("x", n/2), strings.Repeat("y", n-n/2)}},
		}}
	}
	itemsBatch := func(name string, items int) map[string]any {
		obs := make([]any, items-2) // the entities array holds 2 entities; each observation is one item
		for i := range obs {
			obs[i] = fmt.Sprintf("o%d", i)
		}
		return map[string]any{"entities": []any{
			map[string]any{"name": name, "entityType": "t", "observations": obs},
			map[string]any{"name": name + "-2", "entityType": "t", "observations": []any{}},
		}}
	}
	tests := []struct {
		name    string
		args    map[string]any
		entity  string
		bytes   int    // the fixture's text bytes (0: not checked)
		items   int    // the fixture's array items
		wantErr string // "" = written
	}{
		{"bytes at the limit (control)", bytesBatch("bytes-ok", MaxWriteBytes), "bytes-ok", MaxWriteBytes, 3, ""},
		{"bytes one over the limit", bytesBatch("bytes-over", MaxWriteBytes+1), "bytes-over", MaxWriteBytes + 1, 3, fmt.Sprintf("at most %d (MaxWriteBytes)", MaxWriteBytes)},
		{"items at the limit (control)", itemsBatch("items-ok", MaxWriteItems), "items-ok", 0, MaxWriteItems, ""},
		{"items one over the limit", itemsBatch("items-over", MaxWriteItems+1), "items-over", 0, MaxWriteItems + 1, fmt.Sprintf("at most %d (MaxWriteItems)", MaxWriteItems)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, n := argumentWeight(tt.args); tt.bytes != 0 && b != tt.bytes || n != tt.items {
				t.Fatalf("fixture weighs %d bytes, %d items; want %d, %d", b, n, tt.bytes, tt.items)
			}
			res := ts.call(a, "create_entities", tt.args)
			got := errText(res)
			if tt.wantErr == "" && res.IsError || tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Fatalf("create_entities: isError %v %q, want %q", res.IsError, got, tt.wantErr)
			}
			g, err := ts.store.OpenNodes(a, []string{tt.entity, tt.entity + "-2"}, memory.Page{})
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if tt.wantErr == "" {
				want = len(tt.args["entities"].([]any))
			}
			if len(g.Entities) != want {
				t.Errorf("entities written = %d, want %d", len(g.Entities), want)
			}
		})
	}
	// The limit applies to every write tool, and not to reads.
	obs := make([]any, MaxWriteItems+1)
	for i := range obs {
		obs[i] = "o"
	}
	if got := errText(ts.call(a, "add_observations", map[string]any{"observations": []any{map[string]any{"entityName": "bytes-ok", "contents": obs}}})); !strings.Contains(got, "MaxWriteItems") {
		t.Errorf("add_observations over the item limit = %q, want the MaxWriteItems refusal", got)
	}
	names := make([]any, MaxWriteItems+1)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	if res := ts.call(a, "open_nodes", map[string]any{"names": names}); res.IsError {
		t.Errorf("open_nodes (read-only) with %d names: %q, want no write limit", len(names), errText(res))
	}
}
