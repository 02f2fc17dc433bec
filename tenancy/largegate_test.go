package tenancy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLargeRequestGateIsPerTenant: a tenant's large requests are served
// one at a time, and that never makes another tenant's large request, or
// the same tenant's small one, wait. Tenant a holds one large request in
// the handler; a's second large request waits at the gate, while b's large
// request and a's small request are served (the controls that the gate is
// keyed by tenant and by size), as is a's small request of unknown length
// (a streamed one). A request of unknown length waits once its body proves
// large. When a's first request ends, the waiters are served; a waiter
// whose client goes away leaves without being served.
func TestLargeRequestGateIsPerTenant(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan string, 8)
	h := LargeRequestGate(1024, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get("X-Name")
		if _, err := io.ReadAll(r.Body); err != nil {
			entered <- name + ": " + err.Error()
			return
		}
		entered <- name
		if name == "a-large-1" {
			<-release
		}
	}))
	g := h.(*largeRequestGate)

	// size < 0: a body of -size bytes whose length the request does not say.
	serve := func(ctx context.Context, tenant, name string, size int) *sync.WaitGroup {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(strings.Repeat("x", max(size, -size))))
			if size < 0 {
				r.ContentLength = -1
			}
			r = r.WithContext(NewContext(ctx, RequestContext{TenantID: tenant, AuthMethod: AuthAPIKey}))
			r.Header.Set("X-Name", name)
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
		return &wg
	}
	waitEntered := func(want string) {
		t.Helper()
		select {
		case got := <-entered:
			if got != want {
				t.Fatalf("%s was served, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not served", want)
		}
	}
	waitWaiting := func(tenant string, n int) {
		t.Helper()
		for range 1000 {
			if g.waiting(tenant) == n {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("tenant %s: %d waiting, want %d", tenant, g.waiting(tenant), n)
	}

	a1 := serve(context.Background(), "a", "a-large-1", 4096)
	waitEntered("a-large-1")
	a2 := serve(context.Background(), "a", "a-large-2", 4096)
	waitWaiting("a", 1)

	serve(context.Background(), "b", "b-large", 4096)
	waitEntered("b-large")
	serve(context.Background(), "a", "a-small", 100)
	waitEntered("a-small")
	serve(context.Background(), "a", "a-small-streamed", -100)
	waitEntered("a-small-streamed")

	ctx, cancel := context.WithCancel(context.Background())
	gone := serve(ctx, "a", "a-large-gone", 4096)
	waitWaiting("a", 2)
	cancel()
	gone.Wait()
	waitWaiting("a", 1)

	select {
	case name := <-entered:
		t.Fatalf("%s was served while a's first large request was", name)
	default:
	}
	a3 := serve(context.Background(), "a", "a-large-streamed", -4096)
	waitWaiting("a", 2)
	close(release)
	defer a1.Wait()
	a2.Wait()
	a3.Wait()
	got := []string{<-entered, <-entered}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a-large-2", "a-large-streamed"}) {
		t.Fatalf("after a's first large request: %q served, want a-large-2 and a-large-streamed", got)
	}
	if n := g.tenants(); n != 0 {
		t.Errorf("the gate keeps %d tenants after every request ended", n)
	}
}

// waiting returns how many of tenant's large requests wait for their turn.
func (g *largeRequestGate) waiting(tenant string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	turn := g.turns[tenant]
	if turn == nil {
		return 0
	}
	return turn.users - len(turn.sem)
}

// tenants returns how many tenants the gate keeps state for.
func (g *largeRequestGate) tenants() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.turns)
}
