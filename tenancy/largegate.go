package tenancy

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// LargeRequestGate serves each tenant's large requests one at a time:
// a request whose body is over threshold bytes (or of unknown length)
// waits until the same tenant's previous large request has been served
// (one of unknown length waits once it has sent threshold bytes).
// Other tenants' requests and the tenant's small ones never wait. Decoding
// and storing a large write is most of the CPU a request costs, and one
// tenant sending many of them at once took the cores that another tenant's
// small write needed (BenchmarkNeighbourWrites); a tenant's writes are
// serialized at the single writer anyway, so it loses little by waiting
// here instead. A waiter whose client goes away leaves unserved. It must
// run after authentication (the tenant comes from the RequestContext);
// requests without one share the tenant "".
func LargeRequestGate(threshold int64, next http.Handler) http.Handler {
	return &largeRequestGate{threshold: threshold, next: next, turns: map[string]*largeTurn{}}
}

type largeRequestGate struct {
	threshold int64
	next      http.Handler
	mu        sync.Mutex
	turns     map[string]*largeTurn // tenants with a large request in progress or waiting
}

type largeTurn struct {
	sem   chan struct{} // holds one token while a request is served
	users int           // requests served or waiting
}

func (g *largeRequestGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength >= 0 && r.ContentLength <= g.threshold {
		g.next.ServeHTTP(w, r)
		return
	}
	rc, _ := FromContext(r.Context())
	turn := g.join(rc.TenantID)
	defer g.leave(rc.TenantID, turn)
	if r.ContentLength < 0 {
		// Unknown length: the turn is taken once the body proves large, so
		// a small streamed request (a listen stream's) never holds it.
		b := &gatedBody{ReadCloser: r.Body, left: g.threshold, turn: turn, done: r.Context().Done()}
		r.Body = b
		defer b.release()
		g.next.ServeHTTP(w, r)
		return
	}
	select {
	case turn.sem <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	defer func() { <-turn.sem }()
	g.next.ServeHTTP(w, r)
}

// join counts a large request of tenant in and returns the tenant's turn.
func (g *largeRequestGate) join(tenant string) *largeTurn {
	g.mu.Lock()
	defer g.mu.Unlock()
	turn := g.turns[tenant]
	if turn == nil {
		turn = &largeTurn{sem: make(chan struct{}, 1)}
		g.turns[tenant] = turn
	}
	turn.users++
	return turn
}

// leave counts a large request of tenant out.
func (g *largeRequestGate) leave(tenant string, turn *largeTurn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if turn.users--; turn.users == 0 {
		delete(g.turns, tenant)
	}
}

// gatedBody takes its request's turn before it reads past left bytes.
type gatedBody struct {
	io.ReadCloser
	left int64
	turn *largeTurn
	done <-chan struct{}
	held bool
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if !b.held && b.left < int64(len(p)) {
		select {
		case b.turn.sem <- struct{}{}:
			b.held = true
		case <-b.done:
			return 0, errClientGone
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *gatedBody) release() {
	if b.held {
		<-b.turn.sem
	}
}

var errClientGone = errors.New("client went away while waiting for its tenant's large-request turn")
