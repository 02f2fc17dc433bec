package memory

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Individual memory: what one agent of a tenant learned and how it likes to
// work. Rows are keyed by (tenant, agent); so are the caches in front of them.

const (
	// individualCacheSize bounds each (tenant, agent) cache.
	individualCacheSize = 4096
	// individualLearnings is how many recent learnings IndividualMemory
	// returns (and caches) at most.
	individualLearnings = 50
	maxLearningText     = 65536
)

// cacheKey is a cache key: a struct, so no two (tenant, agent) pairs can
// collide the way a joined string like "a:b"+"c" vs "a"+"b:c" could.
type cacheKey struct {
	tenantID string
	agentID  string
}

// tenantCache is a bounded LRU filled on read and invalidated on write.
// A read that raced with a write must not put its older snapshot back after
// the write's invalidation: fill only stores a value when no invalidation
// happened since the reader called begin.
type tenantCache[V any] struct {
	mu    sync.Mutex
	epoch uint64
	lru   *lru.Cache[cacheKey, V]
}

func newTenantCache[V any](size int) *tenantCache[V] {
	c, err := lru.New[cacheKey, V](size)
	if err != nil {
		panic(err) // only for size <= 0, a programming error
	}
	return &tenantCache[V]{lru: c}
}

func (c *tenantCache[V]) get(k cacheKey) (V, bool) { return c.lru.Get(k) }

// begin returns the epoch to pass to fill after reading the database.
func (c *tenantCache[V]) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

func (c *tenantCache[V]) fill(k cacheKey, v V, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == epoch {
		c.lru.Add(k, v)
	}
}

func (c *tenantCache[V]) invalidate(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Remove(k)
}

func (c *tenantCache[V]) len() int { return c.lru.Len() }

// invalidate drops every cached entry of (tenant, agent). Called after the
// commit of each write that changes them (and on PostgreSQL by the change
// listener, for the writes of every replica: see agentChanged).
func (c *collab) invalidate(tenant, agent string) {
	k := cacheKey{tenantID: tenant, agentID: agent}
	c.individual.invalidate(k)
	c.prefs.invalidate(k)
}

// agentChanged, called inside each write that changes what the (tenant,
// agent) caches hold, makes every other replica drop its entries: on
// PostgreSQL it queues a NOTIFY that the listeners (notify.go) receive when
// the write commits, and only if it does, so no replica can miss a change
// that committed or fill from a snapshot older than it (the epoch check
// of tenantCache). The writer itself drops its entries when the write
// returns (collab.invalidate), error or not — a commit whose reply was
// lost still changed the rows — and its listener skips its own
// notification. On SQLite the process is alone and there is nothing to
// send.
func agentChanged(t *txn, tenant, agent string) error {
	if t.s.d.notifySQL == "" {
		return nil
	}
	b, _ := json.Marshal(change{Kind: changeAgent, Tenant: tenant, Agent: agent, Origin: t.s.pg.origin}) // strings only: cannot fail
	_, err := t.exec(t.s.d.notifySQL, notifyChannel, string(b))
	return err
}

// agentCachesLive reports whether the (tenant, agent) caches may be used:
// always on SQLite; on PostgreSQL only while this replica's change
// listener is connected, since invalidations from other replicas arrive
// through it.
func (s *Store) agentCachesLive() bool { return s.d.notifySQL == "" || s.feed.live.Load() }

// Learning is one lesson an agent recorded.
type Learning struct {
	ID         string
	AgentID    string
	Context    string
	Lesson     string
	Confidence float64
	Source     string // "record" or "handoff"
	ProjectID  string // set when Source is "handoff"
	CreatedAt  string
}

// NewLearning is a lesson to record.
type NewLearning struct {
	Context    string
	Lesson     string
	Confidence float64
}

// IndividualMemory is an agent's preferences, recent learnings and, when
// the caller's tenant registered it, capabilities.
type IndividualMemory struct {
	AgentID     string
	Preferences map[string]any
	// Learnings are the most recent first, at most 50.
	Learnings      []Learning
	LearningsTotal int
	Capabilities   []string
}

// individualEntry is the cached, immutable form of IndividualMemory.
type individualEntry struct {
	prefs          string
	learnings      []Learning
	learningsTotal int
	caps           []string
}

func checkLearning(l NewLearning) error {
	switch {
	case strings.TrimSpace(l.Context) == "":
		return errEmpty(FieldContext)
	case strings.TrimSpace(l.Lesson) == "":
		return errEmpty(FieldLesson)
	case len(l.Context) > maxLearningText || len(l.Lesson) > maxLearningText:
		return errTooLong(FieldLearningText, maxLearningText)
	case math.IsNaN(l.Confidence) || l.Confidence < 0 || l.Confidence > 1:
		return errBadValue(FieldConfidence, "must be between 0 and 1")
	}
	return nil
}

func insertLearning(t *txn, tenant, agent string, l NewLearning, source, project string) (Learning, error) {
	out := Learning{ID: newUUID(), AgentID: agent, Context: l.Context, Lesson: l.Lesson, Confidence: l.Confidence,
		Source: source, ProjectID: project, CreatedAt: t.now}
	_, err := t.exec(`INSERT INTO learnings (tenant_id, id, agent_id, context, lesson, confidence, source, project_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tenant, out.ID, agent, out.Context, out.Lesson, out.Confidence, source, project, out.CreatedAt)
	return out, err
}

// RecordLearning stores a lesson of agent in the caller's tenant.
func (s *Store) RecordLearning(ctx context.Context, agent string, l NewLearning) (Learning, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Learning{}, err
	}
	if err := checkAgentID(FieldAgent, agent); err != nil {
		return Learning{}, err
	}
	if err := checkLearning(l); err != nil {
		return Learning{}, err
	}
	var out Learning
	err = s.write(ctx, func(t *txn) error {
		if out, err = insertLearning(t, tenant, agent, l, "record", ""); err != nil {
			return err
		}
		return agentChanged(t, tenant, agent)
	})
	s.collab.invalidate(tenant, agent) // error or not: see agentChanged
	if err != nil {
		return Learning{}, err
	}
	return out, nil
}

// recentLearnings returns agent's newest learnings, at most limit, and the
// total.
func recentLearnings(t *txn, tenant, agent string, limit int) ([]Learning, int, error) {
	var total int
	if err := t.queryRow(`SELECT count(*) FROM learnings WHERE tenant_id = ? AND agent_id = ?`, tenant, agent).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := t.query(`SELECT id, agent_id, context, lesson, confidence, source, project_id, created_at
		FROM learnings WHERE tenant_id = ? AND agent_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`, tenant, agent, limit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out := []Learning{}
	for rows.Next() {
		var l Learning
		if err := rows.Scan(&l.ID, &l.AgentID, &l.Context, &l.Lesson, &l.Confidence, &l.Source, &l.ProjectID, &l.CreatedAt); err != nil {
			return nil, 0, err
		}
		out = append(out, l)
	}
	return out, total, rows.Err()
}

func preferencesJSON(t *txn, tenant, agent string) (string, error) {
	var p string
	err := t.queryRow(`SELECT preferences FROM preferences WHERE tenant_id = ? AND agent_id = ?`, tenant, agent).Scan(&p)
	if err == sql.ErrNoRows {
		return "{}", nil
	}
	return p, err
}

func prefsObject(s string) (map[string]any, error) {
	m := map[string]any{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// ownCapabilities returns the capabilities of agent as registered by tenant,
// or none.
func ownCapabilities(t *txn, tenant, agent string) ([]string, error) {
	var caps string
	err := t.queryRow(`SELECT capabilities FROM agents WHERE tenant_id = ? AND agent_id = ?`, tenant, agent).Scan(&caps)
	if err == sql.ErrNoRows {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []string{}
	return out, json.Unmarshal([]byte(caps), &out)
}

// IndividualMemory returns agent's preferences, its 50 most recent
// learnings with their total, and its capabilities if the caller's tenant
// registered it. It is served from a (tenant, agent) cache, filled here and
// invalidated by every write to those rows.
func (s *Store) IndividualMemory(ctx context.Context, agent string) (IndividualMemory, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return IndividualMemory{}, err
	}
	e, err := cachedRead(ctx, s, s.collab.individual, cacheKey{tenantID: tenant, agentID: agent}, func(t *txn) (individualEntry, error) {
		var e individualEntry
		var err error
		if e.prefs, err = preferencesJSON(t, tenant, agent); err != nil {
			return e, err
		}
		if e.learnings, e.learningsTotal, err = recentLearnings(t, tenant, agent, individualLearnings); err != nil {
			return e, err
		}
		e.caps, err = ownCapabilities(t, tenant, agent)
		return e, err
	})
	if err != nil {
		return IndividualMemory{}, err
	}
	prefs, err := prefsObject(e.prefs)
	if err != nil {
		return IndividualMemory{}, err
	}
	return IndividualMemory{
		AgentID:        agent,
		Preferences:    prefs,
		Learnings:      slices.Clone(e.learnings),
		LearningsTotal: e.learningsTotal,
		Capabilities:   slices.Clone(e.caps),
	}, nil
}

// cachedRead returns k's entry of c, or reads it with load in one read
// transaction and caches it. While the caches are not live (a PostgreSQL
// listener reconnecting) it always reads and caches nothing.
func cachedRead[V any](ctx context.Context, s *Store, c *tenantCache[V], k cacheKey, load func(t *txn) (V, error)) (V, error) {
	live := s.agentCachesLive()
	if live {
		if v, ok := c.get(k); ok {
			return v, nil
		}
	}
	epoch := c.begin()
	var v V
	err := s.read(ctx, func(t *txn) error {
		var err error
		v, err = load(t)
		return err
	})
	if err != nil {
		var zero V
		return zero, err
	}
	if live {
		c.fill(k, v, epoch)
	}
	return v, nil
}

// SetPreferences merges patch into agent's preferences as a JSON merge patch
// (RFC 7396: nested objects merge, a null value removes the key) — one row
// per (tenant, agent), created on first use — and returns the result.
func (s *Store) SetPreferences(ctx context.Context, agent string, patch map[string]any) (map[string]any, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkAgentID(FieldAgent, agent); err != nil {
		return nil, err
	}
	if patch == nil {
		patch = map[string]any{}
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return nil, errBadValue(FieldPreferences, "must be a JSON object")
	}
	var merged string
	err = s.write(ctx, func(t *txn) error {
		now := t.now
		if !s.d.jsonPatch {
			// PostgreSQL has no json_patch: merge here, reading the row under
			// the tenant's write lock, which every writer of it holds.
			cur, err := preferencesJSON(t, tenant, agent)
			if err != nil {
				return err
			}
			if merged, err = mergePatch(cur, b); err != nil {
				return err
			}
			if _, err := t.exec(`INSERT INTO preferences (tenant_id, agent_id, preferences, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (tenant_id, agent_id) DO UPDATE SET preferences = excluded.preferences, updated_at = excluded.updated_at`,
				tenant, agent, merged, now, now); err != nil {
				return err
			}
			return agentChanged(t, tenant, agent)
		}
		return t.queryRow(`INSERT INTO preferences (tenant_id, agent_id, preferences, created_at, updated_at)
			VALUES (?, ?, json_patch('{}', ?), ?, ?)
			ON CONFLICT (tenant_id, agent_id) DO UPDATE SET preferences = json_patch(preferences, ?), updated_at = excluded.updated_at
			RETURNING preferences`, tenant, agent, string(b), now, now, string(b)).Scan(&merged)
	})
	s.collab.invalidate(tenant, agent) // error or not: see agentChanged
	if err != nil {
		return nil, err
	}
	return prefsObject(merged)
}

// mergePatch applies the JSON merge patch patch (RFC 7396) to the JSON
// object doc and returns the result, as SQLite's json_patch does. Numbers
// keep their text.
func mergePatch(doc string, patch []byte) (string, error) {
	var d, p any
	if err := decodeJSON([]byte(doc), &d); err != nil {
		return "", err
	}
	if err := decodeJSON(patch, &p); err != nil {
		return "", err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // store "<" as json_patch does, not as \u003c
	if err := enc.Encode(mergeValue(d, p)); err != nil {
		return "", err
	}
	return strings.TrimSuffix(out.String(), "\n"), nil
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// mergeValue is RFC 7396's MergePatch(target, patch).
func mergeValue(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergeValue(t[k], v)
	}
	return t
}
