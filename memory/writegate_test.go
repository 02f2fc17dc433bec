package memory

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestWriteGateFairOrder checks the order the gate grants turns in: while
// tenant h holds the writer with three more of its writes queued, a write
// of tenant n that arrives last is granted first (n has used no writer
// time, h has), h's own writes keep their order, and a waiter that gives
// up is skipped without losing the turn.
func TestWriteGateFairOrder(t *testing.T) {
	g := newWriteGate(1)
	now := time.Unix(0, 0)
	g.now = func() time.Time { return now } // only this goroutine moves it, before the waiters run
	ctx := context.Background()
	if err := g.acquire(ctx, "h", false); err != nil { // h holds the writer
		t.Fatal(err)
	}
	order := make(chan string, 8)
	wait := func(ctx context.Context, tenant, name string) <-chan error {
		done := make(chan error, 1)
		go func() {
			err := g.acquire(ctx, tenant, false)
			if err == nil {
				order <- name
				g.release(tenant)
			}
			done <- err
		}()
		return done
	}
	var dones []<-chan error
	for i, name := range []string{"h1", "h2", "h3"} {
		dones = append(dones, wait(ctx, "h", name))
		awaitWaiters(t, g, "", i+1)
	}
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := wait(cctx, "x", "x (gave up)")
	awaitWaiters(t, g, "", 4)
	dones = append(dones, wait(ctx, "n", "n"))
	awaitWaiters(t, g, "", 5)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: %v, want context.Canceled", err)
	}
	g.mu.Lock()
	now = now.Add(10 * time.Millisecond) // h held the writer 10 ms
	g.mu.Unlock()
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
	// n first (h has used the writer, n has not), then h's in order; the
	// control is the arrival order, h1 n h2 h3 (what round-robin gave).
	if want := []string{"n", "h1", "h2", "h3"}; !slices.Equal(got, want) {
		t.Errorf("grant order = %v, want %v", got, want)
	}
	if g.slots != 1 || len(g.active) != 0 || len(g.waiting) != 0 || len(g.ring) != 0 || len(g.vtime) > 2 {
		t.Errorf("gate after all writes: slots %d, active %v, waiting %v, ring %v; want 1 free slot, nothing else (vtime %v)", g.slots, g.active, g.waiting, g.ring, g.vtime)
	}
}

// TestWriteGateNoBankedCredit checks that fairness is over recent writer
// time: tenant q writes once, then tenant h writes alone for a long time;
// when both keep waiting, with every write holding the writer 1 ms, turns
// alternate (q's idle time earned it no run of turns), and q goes first
// (h has used more).
func TestWriteGateNoBankedCredit(t *testing.T) {
	g := newWriteGate(1)
	now := time.Unix(0, 0)
	g.now = func() time.Time { return now }
	ctx := context.Background()
	write := func(tenant string) { // uncontended: acquire returns at once
		t.Helper()
		if err := g.acquire(ctx, tenant, false); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Millisecond)
		g.release(tenant)
	}
	write("q")
	for range 100 {
		write("h")
	}
	// Both tenants keep one write waiting at all times: a turn's holder
	// queues its next write before releasing.
	if err := g.acquire(ctx, "h", false); err != nil {
		t.Fatal(err)
	}
	var got []string
	granted := make(chan string)
	next := func(tenant string) {
		go func() {
			if err := g.acquire(ctx, tenant, false); err == nil {
				granted <- tenant
			}
		}()
	}
	next("q")
	awaitWaiters(t, g, "q", 1)
	holder := "h"
	for range 8 {
		next(holder)
		awaitWaiters(t, g, holder, 1)
		g.mu.Lock()
		now = now.Add(time.Millisecond)
		g.mu.Unlock()
		g.release(holder)
		holder = <-granted
		got = append(got, holder)
	}
	g.release(holder)
	for range 1 { // the last queued write of the other tenant
		t := <-granted
		g.release(t)
	}
	if want := []string{"q", "h", "q", "h", "q", "h", "q", "h"}; !slices.Equal(got, want) {
		t.Errorf("turns = %v, want %v", got, want)
	}
}

// A background write waiting for its turn (the word indexer's) leaves the
// writer uncontended, so the holder may keep it; another write waiting
// makes it contended (the control), until it is granted or gives up.
func TestWriteGateContended(t *testing.T) {
	g := newWriteGate(1)
	ctx := context.Background()
	if err := g.acquire(ctx, "h", false); err != nil {
		t.Fatal(err)
	}
	bg := make(chan error, 1)
	go func() { bg <- g.acquire(ctx, "i", true) }()
	awaitWaiters(t, g, "", 1)
	if g.contended() {
		t.Errorf("contended() with a background waiter only = true, want false")
	}
	cctx, cancel := context.WithCancel(ctx)
	fg := make(chan error, 1)
	go func() { fg <- g.acquire(cctx, "n", false) }()
	awaitWaiters(t, g, "", 2)
	if !g.contended() {
		t.Errorf("control: contended() with a write waiting = false, want true")
	}
	cancel()
	if err := <-fg; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", err)
	}
	if g.contended() {
		t.Errorf("contended() after the waiting write gave up = true, want false")
	}
	g.release("h")
	if err := <-bg; err != nil {
		t.Fatal(err)
	}
	g.release("i")
}

// awaitWaiters waits until g holds n queued waiters of tenant ("": of
// every tenant together), failing after 10 s.
func awaitWaiters(t *testing.T, g *writeGate, tenant string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		g.mu.Lock()
		q := len(g.waiting[tenant])
		if tenant == "" {
			for _, ws := range g.waiting {
				q += len(ws)
			}
		}
		g.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters of %q queued, want %d", q, tenant, n)
		}
		time.Sleep(time.Millisecond)
	}
}
