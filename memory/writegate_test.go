package memory

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestWriteGateRoundRobin checks the order the gate grants turns in: while
// tenant h holds the writer with three more of its writes queued, a write
// of tenant n that arrives last is granted right after the current one
// (round-robin across tenants), h's own writes keep their order, and a
// waiter that gives up is skipped without losing the turn.
func TestWriteGateRoundRobin(t *testing.T) {
	g := newWriteGate(1)
	ctx := context.Background()
	if err := g.acquire(ctx, "h"); err != nil { // h holds the writer
		t.Fatal(err)
	}
	order := make(chan string, 8)
	wait := func(ctx context.Context, tenant, name string) <-chan error {
		done := make(chan error, 1)
		go func() {
			err := g.acquire(ctx, tenant)
			if err == nil {
				order <- name
				g.release(tenant)
			}
			done <- err
		}()
		return done
	}
	queued := func(n int) { // wait until n waiters are queued
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			g.mu.Lock()
			q := 0
			for _, ws := range g.waiting {
				q += len(ws)
			}
			g.mu.Unlock()
			if q == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters queued, want %d", q, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var dones []<-chan error
	for i, name := range []string{"h1", "h2", "h3"} {
		dones = append(dones, wait(ctx, "h", name))
		queued(i + 1)
	}
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := wait(cctx, "x", "x (gave up)")
	queued(4)
	dones = append(dones, wait(ctx, "n", "n"))
	queued(5)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: %v, want context.Canceled", err)
	}
	g.release("h")
	for _, d := range dones {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	close(order)
	var got []string
	for s := range order {
		got = append(got, s)
	}
	// h's queue went first (it arrived first), then n, then the rest of h.
	if want := []string{"h1", "n", "h2", "h3"}; !slices.Equal(got, want) {
		t.Errorf("grant order = %v, want %v", got, want)
	}
	if g.slots != 1 || len(g.active) != 0 || len(g.waiting) != 0 || len(g.ring) != 0 {
		t.Errorf("gate after all writes: slots %d, active %v, waiting %v, ring %v; want 1 free slot, nothing else", g.slots, g.active, g.waiting, g.ring)
	}
}
