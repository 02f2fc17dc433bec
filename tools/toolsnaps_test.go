package tools

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// snapDir holds one golden file per tool: its full tools/list entry.
var snapDir = filepath.Join("..", "testdata", "toolsnaps")

// TestToolSnapshots compares every tool's definition with its golden file
// in testdata/toolsnaps; UPDATE_GOLDEN=1 rewrites them (review the diff).
// A tool without a golden file fails, and so does a golden file without a tool.
func TestToolSnapshots(t *testing.T) {
	h := New(Deps{})
	update := os.Getenv("UPDATE_GOLDEN") == "1"
	seen := map[string]bool{}
	for _, st := range h.all() {
		name := st.Tool.Name
		seen[name] = true
		got, err := json.MarshalIndent(st.Tool, "", "  ")
		if err != nil {
			t.Fatalf("marshal %s: %v", name, err)
		}
		got = append(got, '\n')
		path := filepath.Join(snapDir, name+".json")
		if update {
			if err := os.MkdirAll(snapDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("tool %s has no snapshot %s (run UPDATE_GOLDEN=1 go test ./tools): %v", name, path, err)
			continue
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatalf("snapshot %s: %v", path, err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("tool %s differs from %s:\n got: %s\nwant: %s", name, path, bytes.TrimSpace(got), bytes.TrimSpace(want))
		}
	}
	files, _ := filepath.Glob(filepath.Join(snapDir, "*.json"))
	for _, f := range files {
		if n := filepath.Base(f); !seen[n[:len(n)-len(".json")]] {
			t.Errorf("snapshot %s has no tool", f)
		}
	}
}

// TestEveryToolDeclaresHintsAndLimits checks what every tool must have:
// a description, explicit read-only and destructive hints, a strict input
// schema, and a bound on every string and array.
func TestEveryToolDeclaresHintsAndLimits(t *testing.T) {
	h := New(Deps{})
	var names []string
	for _, st := range h.all() {
		tool := st.Tool
		names = append(names, tool.Name)
		if tool.Description == "" {
			t.Errorf("%s: no description", tool.Name)
		}
		if tool.Annotations.ReadOnlyHint == nil || tool.Annotations.DestructiveHint == nil {
			t.Errorf("%s: read-only and destructive hints must be set explicitly", tool.Name)
		}
		var schema map[string]any
		if err := json.Unmarshal(tool.RawInputSchema, &schema); err != nil {
			t.Fatalf("%s: input schema: %v", tool.Name, err)
		}
		if schema["additionalProperties"] != false {
			t.Errorf("%s: input schema allows additional properties", tool.Name)
		}
		for _, path := range unbounded(schema, "") {
			t.Errorf("%s: %s has no maxLength/maxItems", tool.Name, path)
		}
	}
	if len(names) < 9 {
		t.Errorf("all() has %d tools, want at least the 9 reference tools", len(names))
	}
}

// unbounded lists the paths of string and array schemas without a limit.
func unbounded(s map[string]any, path string) []string {
	var out []string
	switch s["type"] {
	case "string":
		if _, ok := s["maxLength"]; !ok {
			if _, isEnum := s["enum"]; !isEnum {
				out = append(out, path)
			}
		}
	case "array":
		if _, ok := s["maxItems"]; !ok {
			out = append(out, path)
		}
		if items, ok := s["items"].(map[string]any); ok {
			out = append(out, unbounded(items, path+"[]")...)
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for k, v := range props {
			if m, ok := v.(map[string]any); ok {
				out = append(out, unbounded(m, path+"."+k)...)
			}
		}
	}
	return out
}
