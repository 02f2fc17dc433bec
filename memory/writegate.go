package memory

import (
	"context"
	"slices"
	"sync"
)

// writeGate admits write transactions: at most slots at a time and at most
// one per tenant; when several tenants wait, the turns go round-robin
// across tenants, first come first served within a tenant. Without it the
// single SQLite writer goes to a random waiter (database/sql picks one at
// random), so a tenant with many clients sending large batches made
// another tenant's small write wait for many of its transactions in a row.
// A waiter holds no connection. Writes with no tenant (administration)
// share the tenant "".
type writeGate struct {
	mu      sync.Mutex
	slots   int                      // free slots
	active  map[string]bool          // tenants with a write in progress
	waiting map[string][]*gateWaiter // per tenant, in arrival order
	ring    []string                 // tenants with waiters, in turn order
}

type gateWaiter struct {
	ch      chan struct{} // closed when granted
	granted bool
}

func newWriteGate(slots int) *writeGate {
	return &writeGate{slots: max(1, slots), active: map[string]bool{}, waiting: map[string][]*gateWaiter{}}
}

// acquire waits for tenant's turn, or returns ctx's error (holding nothing).
func (g *writeGate) acquire(ctx context.Context, tenant string) error {
	g.mu.Lock()
	if g.slots > 0 && !g.active[tenant] && len(g.waiting[tenant]) == 0 {
		g.slots--
		g.active[tenant] = true
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{ch: make(chan struct{})}
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
	}
	if len(q) == 0 {
		delete(g.waiting, tenant)
		g.ring = slices.DeleteFunc(g.ring, func(t string) bool { return t == tenant })
	} else {
		g.waiting[tenant] = q
	}
	g.mu.Unlock()
	return ctx.Err()
}

// release ends tenant's write and hands the freed turn on.
func (g *writeGate) release(tenant string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.active, tenant)
	g.slots++
	for g.slots > 0 {
		i := slices.IndexFunc(g.ring, func(t string) bool { return !g.active[t] })
		if i < 0 {
			return
		}
		t := g.ring[i]
		q := g.waiting[t]
		w := q[0]
		g.ring = slices.Delete(g.ring, i, i+1)
		if len(q) == 1 {
			delete(g.waiting, t)
		} else {
			g.waiting[t] = q[1:]
			g.ring = append(g.ring, t) // its next waiter goes after the others
		}
		g.active[t] = true
		g.slots--
		w.granted = true
		close(w.ch)
	}
}
