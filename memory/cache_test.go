package memory

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// Cache keys: the (tenant, agent) caches in front of
// individual memory and preferences. TestIndividualCache and
// TestCacheKeyCollision are the unit tests; the tests here print the
// figures and cover every write that must invalidate.

// cacheSnapshot reads agent's individual memory and preferences as tenant
// through the caches, as one JSON text.
func cacheSnapshot(t *testing.T, s *Store, tenant, agent string) string {
	t.Helper()
	ctx := as(tenant)
	m, err := s.IndividualMemory(ctx, agent)
	if err != nil {
		t.Fatalf("IndividualMemory(%q) as %s: %v", agent, tenant, err)
	}
	p, err := s.Preferences(ctx, agent)
	if err != nil {
		t.Fatalf("Preferences(%q) as %s: %v", agent, tenant, err)
	}
	b, err := json.Marshal([]any{m, p})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCacheTenantIsolation: tenants a and b both have an
// agent ag1 (tenant-scoped registry), each with its own canary in
// preferences, learnings and capabilities. Whichever tenant warms the
// caches first, the other never gets its entry; and after every write that
// changes cached rows the writer's next read reflects it while the other
// tenant's cached view is untouched.
func TestCacheTenantIsolation(t *testing.T) {
	s := openTestStore(t, "", Options{AgentScope: AgentScopeTenant})
	const agent = "ag1"
	canary := map[string]string{"a": "cnr-a-7f3e9c1d", "b": "cnr-b-2b8a4e60"}
	other := map[string]string{"a": "b", "b": "a"}
	for _, tenant := range []string{"a", "b"} {
		ctx := as(tenant)
		if _, _, err := s.RegisterAgent(ctx, AgentRegistration{ID: agent, Name: "Agent", Capabilities: []string{canary[tenant]}}); err != nil {
			t.Fatalf("RegisterAgent as %s: %v", tenant, err)
		}
		if _, err := s.SetPreferences(ctx, agent, map[string]any{"who": canary[tenant]}); err != nil {
			t.Fatalf("SetPreferences as %s: %v", tenant, err)
		}
		if _, err := s.RecordLearning(ctx, agent, NewLearning{Context: "c", Lesson: canary[tenant], Confidence: 1}); err != nil {
			t.Fatalf("RecordLearning as %s: %v", tenant, err)
		}
	}

	crossHits := 0
	// read checks one cached read: it must show the reader's canary
	// (positive control) and never the other tenant's.
	read := func(tenant string) string {
		t.Helper()
		got := cacheSnapshot(t, s, tenant, agent)
		if strings.Contains(got, canary[other[tenant]]) {
			crossHits++
			t.Errorf("%s's read of %s = %s; contains %s's canary", tenant, agent, got, other[tenant])
		}
		if !strings.Contains(got, canary[tenant]) {
			t.Errorf("%s's read of %s = %s; missing its own canary", tenant, agent, got)
		}
		return got
	}
	t.Run("C1 warm one tenant, read as the other", func(t *testing.T) {
		for _, order := range [][]string{{"a", "a", "b", "b", "a"}, {"b", "a", "b", "a"}} {
			for _, tenant := range order {
				read(tenant)
			}
		}
		// The entries themselves carry the tenant in their key; check what
		// each key holds.
		for _, tenant := range []string{"a", "b"} {
			e, ok := s.collab.individual.get(cacheKey{tenantID: tenant, agentID: agent})
			if !ok {
				t.Fatalf("individual cache has no entry for (%s, %s) after reads", tenant, agent)
			}
			b, _ := json.Marshal([]any{e.prefs, e.learnings, e.caps})
			if strings.Contains(string(b), canary[other[tenant]]) || !strings.Contains(string(b), canary[tenant]) {
				crossHits++
				t.Errorf("individual cache entry (%s, %s) = %s", tenant, agent, b)
			}
			p, ok := s.collab.prefs.get(cacheKey{tenantID: tenant, agentID: agent})
			if !ok || strings.Contains(p, canary[other[tenant]]) || !strings.Contains(p, canary[tenant]) {
				crossHits++
				t.Errorf("preferences cache entry (%s, %s) = %q, %v", tenant, agent, p, ok)
			}
		}
	})

	staleReads := 0
	// Each write is made by a on ag1 (or, for the rename, moves ag1's
	// registration to ag2); want reports whether a's fresh view shows it.
	writes := []struct {
		name  string
		write func(ctx context.Context) error
		agent string // the agent whose view must change
		want  func(m IndividualMemory, p map[string]any) bool
	}{
		{"set_preferences", func(ctx context.Context) error {
			_, err := s.SetPreferences(ctx, agent, map[string]any{"step": "prefs"})
			return err
		}, agent, func(m IndividualMemory, p map[string]any) bool {
			return m.Preferences["step"] == "prefs" && p["step"] == "prefs"
		}},
		{"set_preferences null removes", func(ctx context.Context) error {
			_, err := s.SetPreferences(ctx, agent, map[string]any{"step": nil})
			return err
		}, agent, func(m IndividualMemory, p map[string]any) bool {
			_, inM := m.Preferences["step"]
			_, inP := p["step"]
			return !inM && !inP
		}},
		{"record_learning", func(ctx context.Context) error {
			_, err := s.RecordLearning(ctx, agent, NewLearning{Context: "c", Lesson: "learned", Confidence: 1})
			return err
		}, agent, func(m IndividualMemory, _ map[string]any) bool {
			return len(m.Learnings) > 0 && m.Learnings[0].Lesson == "learned"
		}},
		{"end_session learnings", func(ctx context.Context) error {
			_, err := s.EndSession(ctx, EndSession{Agent: agent, Project: "p", Summary: "s",
				Learnings: []NewLearning{{Context: "c", Lesson: "handed over", Confidence: 1}}})
			return err
		}, agent, func(m IndividualMemory, _ map[string]any) bool {
			return len(m.Learnings) > 0 && m.Learnings[0].Lesson == "handed over"
		}},
		{"register_agent update", func(ctx context.Context) error {
			_, _, err := s.RegisterAgent(ctx, AgentRegistration{ID: agent, Name: "Agent", Capabilities: []string{canary["a"], "review"}})
			return err
		}, agent, func(m IndividualMemory, _ map[string]any) bool {
			return slices.Contains(m.Capabilities, "review")
		}},
		{"set_agent_identity capabilities", func(ctx context.Context) error {
			_, err := s.SetAgentIdentity(ctx, IdentityChange{NewID: agent, CurrentID: agent, Capabilities: []string{canary["a"], "deploy"}})
			return err
		}, agent, func(m IndividualMemory, _ map[string]any) bool {
			return slices.Contains(m.Capabilities, "deploy") && !slices.Contains(m.Capabilities, "review")
		}},
		{"set_agent_identity rename: new id", func(ctx context.Context) error {
			_, err := s.SetAgentIdentity(ctx, IdentityChange{NewID: "ag2", CurrentID: agent})
			return err
		}, "ag2", func(m IndividualMemory, _ map[string]any) bool {
			return slices.Contains(m.Capabilities, "deploy")
		}},
		{"set_agent_identity rename: old id", nil, agent, func(m IndividualMemory, _ map[string]any) bool {
			return len(m.Capabilities) == 0 // the registration moved to ag2
		}},
	}
	t.Run("C3 writes invalidate", func(t *testing.T) {
		for _, w := range writes {
			// Warm every entry involved, for both tenants.
			for _, id := range []string{agent, "ag2"} {
				cacheSnapshot(t, s, "a", id)
				cacheSnapshot(t, s, "b", id)
			}
			bBefore := cacheSnapshot(t, s, "b", agent)
			if w.write != nil {
				if err := w.write(as("a")); err != nil {
					t.Fatalf("%s: %v", w.name, err)
				}
			}
			m, err := s.IndividualMemory(as("a"), w.agent)
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.Preferences(as("a"), w.agent)
			if err != nil {
				t.Fatal(err)
			}
			if !w.want(m, p) {
				staleReads++
				t.Errorf("after %s, a's read of %s = %+v, %v; stale", w.name, w.agent, m, p)
			}
			if got := cacheSnapshot(t, s, "b", agent); got != bBefore {
				t.Errorf("after a's %s, b's view of %s changed:\n got %s\nwant %s", w.name, agent, got, bBefore)
			}
			if got := cacheSnapshot(t, s, "b", agent); strings.Contains(got, canary["a"]) {
				crossHits++
				t.Errorf("after a's %s, b's view of %s = %s; contains a's canary", w.name, agent, got)
			}
		}
	})
	t.Logf("metric cache_cross_hits=%d", crossHits)
	t.Logf("metric stale_reads=%d", staleReads)
	t.Logf("metric cache_invalidation_cases=%d", len(writes))
}

// cacheKeyIDs are ids that would collide under a joined-string key or a
// careless normalization: separators, empty ids, NUL, case, Unicode
// normalization forms and full-width forms.
var cacheKeyIDs = []string{"", "a", "b", "a:b", "b:c", ":", "a:", ":a", "a/b", "a\x00b", "ag1", "ag1 ", "AG1",
	"\uff41\uff47\uff11", "\u00e9", "e\u0301", "日本", "🙂", strings.Repeat("x", 256)}

// TestCacheKeyFigures, exhaustively over cacheKeyIDs: every
// (tenant, agent) pair is a distinct key, both as a value and inside a
// tenantCache holding all of them at once.
func TestCacheKeyFigures(t *testing.T) {
	type pair struct{ tenant, agent string }
	var pairs []pair
	for _, tn := range cacheKeyIDs {
		for _, ag := range cacheKeyIDs {
			pairs = append(pairs, pair{tn, ag})
		}
	}
	collisions := 0
	for i, p := range pairs {
		for j, q := range pairs {
			if i != j && (cacheKey{tenantID: p.tenant, agentID: p.agent} == cacheKey{tenantID: q.tenant, agentID: q.agent}) {
				collisions++
				t.Errorf("cacheKey(%q, %q) == cacheKey(%q, %q)", p.tenant, p.agent, q.tenant, q.agent)
			}
		}
	}
	c := newTenantCache[pair](len(pairs))
	for _, p := range pairs {
		c.fill(cacheKey{tenantID: p.tenant, agentID: p.agent}, p, c.begin())
	}
	for _, p := range pairs {
		if got, ok := c.get(cacheKey{tenantID: p.tenant, agentID: p.agent}); !ok || got != p {
			collisions++
			t.Errorf("cache get(%q, %q) = %q, %v; want its own entry", p.tenant, p.agent, got, ok)
		}
	}
	t.Logf("metric cache_keys_checked=%d", len(pairs))
	t.Logf("metric key_collisions=%d", collisions)
}

// FuzzCacheKey: for any two (tenant,
// agent) pairs, the keys are equal exactly when the pairs are, and a
// tenantCache never answers one pair with the other's entry.
func FuzzCacheKey(f *testing.F) {
	f.Add("a:b", "c", "a", "b:c")
	f.Add("a", "", "", "a")
	f.Add("t", "ag1", "t", "ag1")
	f.Fuzz(func(t *testing.T, t1, a1, t2, a2 string) {
		k1, k2 := cacheKey{tenantID: t1, agentID: a1}, cacheKey{tenantID: t2, agentID: a2}
		same := t1 == t2 && a1 == a2
		if (k1 == k2) != same {
			t.Fatalf("cacheKey(%q, %q) == cacheKey(%q, %q) is %v, want %v", t1, a1, t2, a2, k1 == k2, same)
		}
		c := newTenantCache[string](2)
		c.fill(k1, "first", c.begin())
		v, ok := c.get(k2)
		if ok != same || (ok && v != "first") {
			t.Fatalf("after fill(%q, %q), get(%q, %q) = %q, %v; want hit %v", t1, a1, t2, a2, v, ok, same)
		}
		if same {
			return
		}
		c.fill(k2, "second", c.begin())
		if v, ok := c.get(k1); !ok || v != "first" {
			t.Fatalf("get(%q, %q) = %q, %v after filling (%q, %q); want first", t1, a1, v, ok, t2, a2)
		}
		c.invalidate(k2)
		if v, ok := c.get(k1); !ok || v != "first" {
			t.Fatalf("invalidating (%q, %q) dropped (%q, %q): %q, %v", t2, a2, t1, a1, v, ok)
		}
	})
}

// TestCacheInvalidationAcrossReplicas: a write through one replica is seen
// by the cached reads of another (on PostgreSQL through the change
// listener, so eventually; on SQLite there is one process, so the two
// replicas are the same Store). On PostgreSQL a replica whose listener is
// down reads around its caches.
func TestCacheInvalidationAcrossReplicas(t *testing.T) {
	replicas := newReplicas(t, 2, AgentScopeTenant)
	if replicas[0].pg == nil {
		replicas[1] = replicas[0]
	}
	reader, writer := replicas[0], replicas[1]
	a := as("a")
	const agent = "ag1"
	if _, _, err := writer.RegisterAgent(a, AgentRegistration{ID: agent, Name: "A", Capabilities: []string{"cap0"}}); err != nil {
		t.Fatal(err)
	}
	// eventually waits until reader's cached view of agent contains want.
	eventually := func(t *testing.T, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := cacheSnapshot(t, reader, "a", agent)
			if strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("reader's view of %s = %s; want it to contain %q after the other replica's write", agent, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	writes := []struct {
		name  string
		write func() error
		want  string
	}{
		{"set_preferences", func() error { _, err := writer.SetPreferences(a, agent, map[string]any{"p": "pref1"}); return err }, "pref1"},
		{"record_learning", func() error {
			_, err := writer.RecordLearning(a, agent, NewLearning{Context: "c", Lesson: "lesson1", Confidence: 1})
			return err
		}, "lesson1"},
		{"register_agent", func() error {
			_, _, err := writer.RegisterAgent(a, AgentRegistration{ID: agent, Name: "A", Capabilities: []string{"cap1"}})
			return err
		}, "cap1"},
		{"set_agent_identity", func() error {
			_, err := writer.SetAgentIdentity(a, IdentityChange{NewID: agent, Capabilities: []string{"cap2"}})
			return err
		}, "cap2"},
		{"end_session", func() error {
			_, err := writer.EndSession(a, EndSession{Agent: agent, Project: "p", Summary: "s",
				Learnings: []NewLearning{{Context: "c", Lesson: "lesson2", Confidence: 1}}})
			return err
		}, "lesson2"},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			// Warm the reader's caches (again, while notifications of the
			// previous write still arrive and drop them).
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				cacheSnapshot(t, reader, "a", agent)
				if _, ok := reader.collab.individual.get(cacheKey{"a", agent}); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("reader does not cache (a, %s)", agent)
				}
			}
			if err := w.write(); err != nil {
				t.Fatal(err)
			}
			eventually(t, w.want)
		})
	}
	if reader.pg == nil {
		return
	}
	t.Run("listener down: caches bypassed", func(t *testing.T) {
		reader.feed.live.Store(false) // as a disconnect does
		reader.collab.purge()
		defer func() { reader.collab.purge(); reader.feed.live.Store(true) }() // as a reconnect does
		// A change no notification announces stands for one sent while
		// the listener was down.
		res, err := reader.w.Exec(`UPDATE preferences SET preferences = '{"p":"unannounced"}' WHERE tenant_id = 'a' AND agent_id = $1`, agent)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("update preferences: %d rows, want 1", n)
		}
		if got := cacheSnapshot(t, reader, "a", agent); !strings.Contains(got, "unannounced") {
			t.Errorf("read with the listener down = %s; want the database's current preferences", got)
		}
		if n := reader.collab.individual.len(); n != 0 {
			t.Errorf("reads with the listener down filled %d cache entries; want none", n)
		}
	})
}
