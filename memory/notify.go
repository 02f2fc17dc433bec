package memory

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Change kinds, published with Store.Publish and delivered to OnChange
// callbacks.
const (
	// ChangeGraph: the tenant's knowledge graph changed.
	ChangeGraph = "graph"
	// changeAgent: cached per-agent state of (tenant, agent) changed; every
	// replica drops its cache entries (see collab.invalidate).
	changeAgent = "agent"
)

// notifyChannel is the PostgreSQL NOTIFY channel of change events.
const notifyChannel = "nexus_changes"

// change is one event. On PostgreSQL it travels as the JSON payload of a
// NOTIFY, so that every replica listening sees it after the commit.
type change struct {
	Kind   string `json:"k"`
	Tenant string `json:"t"`
	Agent  string `json:"a,omitempty"`
	// Origin is the sending Store's pgBackend.origin, set on changeAgent
	// events: the sender has already dropped its own entries after the
	// commit, so its listener skips them (a late second drop would only
	// throw away entries filled from the new data).
	Origin string `json:"o,omitempty"`
}

// changeFeed fans change events out to callbacks. On SQLite Publish calls
// them directly, and other processes on the file see graph changes through
// the changes table (crossprocess.go); on PostgreSQL
// Publish sends a NOTIFY and a listener connection delivers every event,
// this replica's included.
type changeFeed struct {
	mu  sync.Mutex
	fns []func(kind, tenant string)
	// live is false while a PostgreSQL listener is (re)connecting: events
	// may be missed, so per-agent caches are bypassed until it is back.
	live atomic.Bool
	// ready is closed when a PostgreSQL listener first connects.
	ready     chan struct{}
	readyOnce sync.Once
}

// OnChange registers fn, called with the kind and tenant of every change
// published by any process sharing the database. Calls come from one
// goroutine at a time; fn must not block.
func (s *Store) OnChange(fn func(kind, tenant string)) {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	s.feed.fns = append(s.feed.fns, fn)
}

// Publish announces that the caller's tenant's data of kind changed. Call
// it after the change committed. Delivery is best effort: a subscriber on a
// replica whose listener is reconnecting misses it.
func (s *Store) Publish(ctx context.Context, kind string) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return s.publish(ctx, change{Kind: kind, Tenant: tenant})
}

func (s *Store) publish(ctx context.Context, c change) error {
	if s.d.notifySQL == "" {
		s.deliver(c)
		if c.Kind != ChangeGraph {
			// per-agent cache drops stay in this process
			return nil
		}
		s.appendChange(c)
		return nil
	}
	b, _ := json.Marshal(c) // three strings: cannot fail
	_, err := s.w.ExecContext(ctx, s.sqlFor(s.d.notifySQL), notifyChannel, string(b))
	return err
}

func (s *Store) deliver(c change) {
	if c.Kind == changeAgent {
		s.collab.drop(c.Tenant, c.Agent)
		return
	}
	s.feed.mu.Lock()
	fns := append([]func(kind, tenant string){}, s.feed.fns...)
	s.feed.mu.Unlock()
	for _, fn := range fns {
		fn(c.Kind, c.Tenant)
	}
}

// listen runs the PostgreSQL listener until ctx ends: one connection of
// its own (not from the pool) LISTENing on notifyChannel, reconnecting
// with backoff. Whenever it is not connected, feed.live is false.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cfg)
		s.feed.live.Store(false)
		s.collab.purge()
		if ctx.Err() != nil {
			return
		}
		log.Warn("change listener disconnected; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	// Whatever was cached before the listener was up may be stale.
	s.collab.purge()
	s.feed.live.Store(true)
	s.feed.readyOnce.Do(func() { close(s.feed.ready) })
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var c change
		if err := json.Unmarshal([]byte(n.Payload), &c); err != nil || c.Tenant == "" {
			continue // not ours
		}
		if c.Kind == changeAgent && c.Origin == s.pg.origin {
			continue // dropped by the writer after its commit
		}
		s.deliver(c)
	}
}

// drop forgets the cached state of (tenant, agent) in this process, on
// notice from any replica.
func (c *collab) drop(tenant, agent string) { c.invalidate(tenant, agent) }

// purge forgets every cached entry.
func (c *collab) purge() {
	c.individual.purge()
	c.prefs.purge()
}

func (c *tenantCache[V]) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.lru.Purge()
}
