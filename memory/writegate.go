package memory

import (
	"context"
	"slices"
	"sync"
	"time"
)

// writeGate admits write transactions: at most slots at a time and at most
// one per tenant. When several tenants wait, the turn goes to the tenant
// that has held the writer least (start-time fair queuing over writer
// time): each tenant has a virtual time that grows by how long each of
// its writes held a slot, and a tenant that was idle starts from the
// virtual time of the latest turn, so it cannot bank credit. First come
// first served within a tenant; ties go in arrival order. Without it the
// single SQLite writer went to a random waiter (database/sql picks one at
// random), and with turns merely round-robin a tenant sending maximal
// batches still made another tenant's small write wait for two of them.
// A waiter holds no connection. Writes with no tenant (administration)
// share the tenant "".
type writeGate struct {
	mu      sync.Mutex
	now     func() time.Time
	slots   int                      // free slots
	active  map[string]time.Time     // tenants with a write in progress, since when
	waiting map[string][]*gateWaiter // per tenant, in arrival order
	ring    []string                 // tenants with waiters, in arrival order
	vtime   map[string]time.Duration // per tenant: writer time used, shifted (see above)
	clock   time.Duration            // the virtual time of the latest turn
	// foreground counts the waiters that are not background writes.
	foreground int
}

type gateWaiter struct {
	ch         chan struct{} // closed when granted
	granted    bool
	background bool // does not count for contended
}

func newWriteGate(slots int) *writeGate {
	return &writeGate{now: time.Now, slots: max(1, slots), active: map[string]time.Time{},
		waiting: map[string][]*gateWaiter{}, vtime: map[string]time.Duration{}}
}

// acquire waits for tenant's turn, or returns ctx's error (holding
// nothing). A background waiter takes its turn as any other, but does not
// count for contended.
func (g *writeGate) acquire(ctx context.Context, tenant string, background bool) error {
	g.mu.Lock()
	if _, busy := g.active[tenant]; g.slots > 0 && !busy && len(g.waiting[tenant]) == 0 {
		// a free slot means no waiter could take it (each waiting tenant
		// has a write in progress), so taking it skips no one
		g.grant(tenant)
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{ch: make(chan struct{}), background: background}
	if !background {
		g.foreground++
	}
	if len(g.waiting[tenant]) == 0 {
		g.ring = append(g.ring, tenant)
	}
	g.waiting[tenant] = append(g.waiting[tenant], w)
	g.mu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.granted { // granted while giving up: pass the turn on
		g.mu.Unlock()
		g.release(tenant)
		return ctx.Err()
	}
	q := g.waiting[tenant]
	if i := slices.Index(q, w); i >= 0 {
		q = slices.Delete(q, i, i+1)
		if !w.background {
			g.foreground--
		}
	}
	if len(q) == 0 {
		delete(g.waiting, tenant)
		g.ring = slices.DeleteFunc(g.ring, func(t string) bool { return t == tenant })
	} else {
		g.waiting[tenant] = q
	}
	g.dispatch() // a slot may be free and held back for this waiter
	g.mu.Unlock()
	return ctx.Err()
}

// contended reports whether a write other than a background one waits
// for its turn.
func (g *writeGate) contended() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.foreground > 0
}

// grant starts tenant's write; g.mu is held.
func (g *writeGate) grant(tenant string) {
	v := max(g.vtime[tenant], g.clock)
	g.vtime[tenant], g.clock = v, v
	g.active[tenant] = g.now()
	g.slots--
}

// release ends tenant's write and hands the freed turn on.
func (g *writeGate) release(tenant string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.vtime[tenant] += g.now().Sub(g.active[tenant])
	delete(g.active, tenant)
	g.slots++
	g.dispatch()
	for t, v := range g.vtime { // forget tenants that are level with the clock
		if _, busy := g.active[t]; !busy && len(g.waiting[t]) == 0 && v <= g.clock {
			delete(g.vtime, t)
		}
	}
}

// dispatch grants free slots to the waiting tenants with no write in
// progress, least virtual time first; g.mu is held.
func (g *writeGate) dispatch() {
	for g.slots > 0 {
		best := -1
		for i, t := range g.ring {
			if _, busy := g.active[t]; busy {
				continue
			}
			if best < 0 || max(g.vtime[t], g.clock) < max(g.vtime[g.ring[best]], g.clock) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		t := g.ring[best]
		q := g.waiting[t]
		w := q[0]
		if len(q) == 1 {
			delete(g.waiting, t)
			g.ring = slices.Delete(g.ring, best, best+1)
		} else {
			g.waiting[t] = q[1:]
		}
		g.grant(t)
		if !w.background {
			g.foreground--
		}
		w.granted = true
		close(w.ch)
	}
}
