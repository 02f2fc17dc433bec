package memory

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
)

func TestRecordLearning(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	tests := []struct {
		name    string
		l       NewLearning
		wantErr error
	}{
		{"ok", NewLearning{Context: "ctx", Lesson: "lesson", Confidence: 0.8}, nil},
		{"zero confidence ok", NewLearning{Context: "ctx", Lesson: "l2", Confidence: 0}, nil},
		{"confidence above 1", NewLearning{Context: "ctx", Lesson: "l", Confidence: 1.5}, ErrInvalid},
		{"no lesson", NewLearning{Context: "ctx"}, ErrInvalid},
		{"no context", NewLearning{Lesson: "l"}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.RecordLearning(a, "alice", tc.l)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("RecordLearning(%+v) = %v, want %v", tc.l, err, tc.wantErr)
			}
			if err == nil && (!uuidV4.MatchString(got.ID) || got.Lesson != tc.l.Lesson || got.Source != "record") {
				t.Errorf("RecordLearning(%+v) = %+v", tc.l, got)
			}
		})
	}
	t.Run("tenant isolation", func(t *testing.T) {
		m, err := s.IndividualMemory(b, "alice")
		if err != nil || len(m.Learnings) != 0 || m.LearningsTotal != 0 {
			t.Errorf("IndividualMemory(alice) as b = %+v, %v; want no learnings", m, err)
		}
		m, err = s.IndividualMemory(a, "alice") // positive control
		if err != nil || m.LearningsTotal != 2 || m.Learnings[0].Lesson != "l2" {
			t.Errorf("IndividualMemory(alice) as a = %+v, %v; want 2 learnings, newest first", m, err)
		}
	})
}

func TestSetPreferences(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	steps := []struct {
		name  string
		patch map[string]any
		want  map[string]any
	}{
		{"first write creates the row", map[string]any{"theme": "dark", "editor": map[string]any{"tabs": 4.0}}, map[string]any{"theme": "dark", "editor": map[string]any{"tabs": 4.0}}},
		{"partial merge keeps other keys", map[string]any{"lang": "go", "editor": map[string]any{"wrap": true}}, map[string]any{"theme": "dark", "lang": "go", "editor": map[string]any{"tabs": 4.0, "wrap": true}}},
		{"null removes", map[string]any{"theme": nil}, map[string]any{"lang": "go", "editor": map[string]any{"tabs": 4.0, "wrap": true}}},
		{"empty patch", map[string]any{}, map[string]any{"lang": "go", "editor": map[string]any{"tabs": 4.0, "wrap": true}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := s.SetPreferences(a, "alice", st.patch)
			if err != nil || !reflect.DeepEqual(got, st.want) {
				t.Errorf("SetPreferences(%v) = %v, %v; want %v", st.patch, got, err, st.want)
			}
		})
	}
	var rows int
	if err := s.r.QueryRow(`SELECT count(*) FROM preferences WHERE tenant_id = 'a'`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("preferences rows of a = %d, %v; want 1 (merged in place)", rows, err)
	}
	t.Run("tenant isolation", func(t *testing.T) {
		got, err := s.Preferences(b, "alice")
		if err != nil || len(got) != 0 {
			t.Errorf("Preferences(alice) as b = %v, %v; want {}", got, err)
		}
	})
}

// TestIndividualCache: same agent id in tenants a and b; a's warm cache is
// never served to b, and every write invalidates.
func TestIndividualCache(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	if _, err := s.SetPreferences(a, "alice", map[string]any{"who": "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordLearning(a, "alice", NewLearning{Context: "c", Lesson: "a's", Confidence: 1}); err != nil {
		t.Fatal(err)
	}
	// Warm a's entries.
	ma, _ := s.IndividualMemory(a, "alice")
	pa, _ := s.Preferences(a, "alice")
	if ma.Preferences["who"] != "a" || pa["who"] != "a" {
		t.Fatalf("a's own reads = %v, %v; want who=a", ma.Preferences, pa)
	}
	if _, ok := s.collab.individual.get(cacheKey{"a", "alice"}); !ok {
		t.Fatalf("a's individual memory was not cached after a read")
	}
	t.Run("b never gets a's entry", func(t *testing.T) {
		mb, err := s.IndividualMemory(b, "alice")
		if err != nil || len(mb.Preferences) != 0 || len(mb.Learnings) != 0 {
			t.Errorf("IndividualMemory(alice) as b = %+v, %v; want empty", mb, err)
		}
		pb, err := s.Preferences(b, "alice")
		if err != nil || len(pb) != 0 {
			t.Errorf("Preferences(alice) as b = %v, %v; want {}", pb, err)
		}
	})
	t.Run("writes invalidate", func(t *testing.T) {
		writes := []struct {
			name  string
			write func() error
			check func(IndividualMemory) bool
		}{
			{"set_preferences", func() error {
				_, err := s.SetPreferences(a, "alice", map[string]any{"who": "a2"})
				return err
			}, func(m IndividualMemory) bool { return m.Preferences["who"] == "a2" }},
			{"record_learning", func() error {
				_, err := s.RecordLearning(a, "alice", NewLearning{Context: "c", Lesson: "new", Confidence: 1})
				return err
			}, func(m IndividualMemory) bool { return m.LearningsTotal == 2 && m.Learnings[0].Lesson == "new" }},
			{"register_agent", func() error {
				_, _, err := s.RegisterAgent(a, AgentRegistration{ID: "alice", Name: "A", Capabilities: []string{"go"}})
				return err
			}, func(m IndividualMemory) bool { return reflect.DeepEqual(m.Capabilities, []string{"go"}) }},
			{"end_session learnings", func() error {
				_, err := s.EndSession(a, EndSession{Agent: "alice", Project: "p", Summary: "s",
					Learnings: []NewLearning{{Context: "c", Lesson: "handoff", Confidence: 1}}})
				return err
			}, func(m IndividualMemory) bool { return m.LearningsTotal == 3 && m.Learnings[0].Lesson == "handoff" }},
		}
		for _, w := range writes {
			if _, err := s.IndividualMemory(a, "alice"); err != nil { // warm
				t.Fatal(err)
			}
			if err := w.write(); err != nil {
				t.Fatalf("%s: %v", w.name, err)
			}
			m, err := s.IndividualMemory(a, "alice")
			if err != nil || !w.check(m) {
				t.Errorf("after %s IndividualMemory = %+v, %v; stale cache", w.name, m, err)
			}
		}
		if p, _ := s.Preferences(a, "alice"); p["who"] != "a2" {
			t.Errorf("Preferences after set_preferences = %v, want who=a2", p)
		}
	})
	t.Run("returned values do not alias the cache", func(t *testing.T) {
		m, _ := s.IndividualMemory(a, "alice")
		m.Preferences["who"] = "mutated"
		m.Learnings[0].Lesson = "mutated"
		again, _ := s.IndividualMemory(a, "alice")
		if again.Preferences["who"] == "mutated" || again.Learnings[0].Lesson == "mutated" {
			t.Errorf("cached entry changed through a returned value: %+v", again)
		}
	})
}

// TestCacheKeyCollision: distinct (tenant, agent) pairs are distinct keys,
// even where joining them with a separator would collide.
func TestCacheKeyCollision(t *testing.T) {
	prop := func(t1, a1, t2, a2 string) bool {
		same := cacheKey{t1, a1} == cacheKey{t2, a2}
		return same == (t1 == t2 && a1 == a2)
	}
	if err := quick.Check(prop, nil); err != nil {
		t.Error(err)
	}
	for _, c := range [][4]string{{"a:b", "c", "a", "b:c"}, {"a", "", "", "a"}, {"t", "x", "t", "x "}} {
		if !prop(c[0], c[1], c[2], c[3]) {
			t.Errorf("keys %q/%q and %q/%q collide", c[0], c[1], c[2], c[3])
		}
	}
	c := newTenantCache[string](2)
	c.fill(cacheKey{"a:b", "c"}, "first", c.begin())
	if v, ok := c.get(cacheKey{"a", "b:c"}); ok {
		t.Errorf("get(a, b:c) = %q, want a miss", v)
	}
	// A fill that raced with an invalidation is dropped.
	e := c.begin()
	c.invalidate(cacheKey{"x", "y"})
	c.fill(cacheKey{"x", "y"}, "stale", e)
	if _, ok := c.get(cacheKey{"x", "y"}); ok {
		t.Errorf("a fill older than an invalidation was stored")
	}
	c.fill(cacheKey{"p", "q"}, "v", c.begin())
	c.fill(cacheKey{"r", "s"}, "v", c.begin())
	if c.len() > 2 {
		t.Errorf("cache holds %d entries, want at most its bound 2", c.len())
	}
}

// TestMergePatchMatchesJSONPatch: the merge PostgreSQL's SetPreferences
// does in Go gives what SQLite's json_patch gives (compared as JSON).
func TestMergePatchMatchesJSONPatch(t *testing.T) {
	sq := openSQLiteStore(t)
	tests := []struct{ name, doc, patch string }{
		{"add and replace", `{"a":1,"b":"x"}`, `{"b":"y","c":true}`},
		{"null removes", `{"a":1,"b":2}`, `{"a":null}`},
		{"nested merge", `{"e":{"tabs":4,"wrap":false}}`, `{"e":{"wrap":true,"x":null}}`},
		{"object replaces scalar", `{"e":3}`, `{"e":{"k":null,"v":1}}`},
		{"array replaced whole", `{"l":[1,2]}`, `{"l":[3,null]}`},
		{"big number keeps its digits", `{}`, `{"n":12345678901234567890}`},
		{"markup", `{}`, `{"h":"<b>&</b>"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mergePatch(tc.doc, []byte(tc.patch))
			if err != nil {
				t.Fatal(err)
			}
			var want string
			if err := sq.r.QueryRow(`SELECT json_patch(?, ?)`, tc.doc, tc.patch).Scan(&want); err != nil {
				t.Fatal(err)
			}
			var g, w any
			json.Unmarshal([]byte(got), &g)
			json.Unmarshal([]byte(want), &w)
			if !reflect.DeepEqual(g, w) || strings.Contains(want, "12345678901234567890") != strings.Contains(got, "12345678901234567890") {
				t.Errorf("mergePatch(%s, %s) = %s, want %s (json_patch)", tc.doc, tc.patch, got, want)
			}
		})
	}
}
