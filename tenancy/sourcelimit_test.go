package tenancy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestSourceOf(t *testing.T) {
	cases := []struct{ remote, want string }{
		{"192.0.2.7:1234", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"}, // same /64, same source
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"},
		{"garbage", "unknown"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = c.remote
		if got := SourceOf(r); got != c.want {
			t.Errorf("SourceOf(%q) = %q, want %q", c.remote, got, c.want)
		}
	}
}

// TestSourceLimiter: a source that used up its failures gets 429 with
// Retry-After before next runs; another source (control) and the same
// source after the refill (control) pass.
func TestSourceLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	limited := 0
	l := &SourceLimiter{RPS: 0.5, Burst: 3, Now: func() time.Time { return now }, OnLimited: func(*http.Request, string) { limited++ }}
	// authenticate lets "good" and "good2" through and refuses (401)
	// anything else, charging the source as the Authenticator's hook does.
	authenticate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if a := r.Header.Get("Authorization"); a == "Bearer good" || a == "Bearer good2" {
				next.ServeHTTP(w, r)
				return
			}
			l.Failed(r)
			w.WriteHeader(http.StatusUnauthorized)
		})
	}
	h := l.Middleware(authenticate, okHandler)
	req := func(remote, cred string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = remote
		if cred != "" {
			r.Header.Set("Authorization", "Bearer "+cred)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	bad := "192.0.2.1:1000"
	if w := req("192.0.2.9:1", "good"); w.Code != 200 {
		t.Fatalf("good credential = %d, want 200", w.Code)
	}
	for i := range 3 {
		if w := req(bad, "wrong"); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong credential %d before any limit = %d, want 401", i, w.Code)
		}
	}
	w := req(bad, "wrong")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Errorf("after 3 failures = %d, Retry-After %q; want 429, 2", w.Code, w.Header().Get("Retry-After"))
	}
	if limited != 1 {
		t.Errorf("OnLimited called %d times, want 1", limited)
	}
	if w := req(bad, ""); w.Code != http.StatusTooManyRequests {
		t.Errorf("no credential from the limited source = %d, want 429", w.Code)
	}
	if w := req(bad, "good2"); w.Code != http.StatusTooManyRequests {
		t.Errorf("a credential never seen to authenticate, from the limited source = %d, want 429", w.Code)
	}
	if w := req(bad, "good"); w.Code != 200 {
		t.Errorf("a credential that authenticated, from the limited source = %d, want 200", w.Code)
	}
	if w := req("192.0.2.2:1000", "wrong"); w.Code != http.StatusUnauthorized {
		t.Errorf("another source = %d, want 401 (not limited)", w.Code)
	}
	now = now.Add(2 * time.Second)
	if w := req(bad, "good2"); w.Code != 200 {
		t.Errorf("same source after the refill = %d, want 200", w.Code)
	}
}

// TestBoundedLRU: the least recently used entry is evicted at the bound.
func TestBoundedLRU(t *testing.T) {
	c := newBoundedLRU[string, int](2)
	c.getOrAdd("a", func() int { return 1 })
	c.getOrAdd("b", func() int { return 2 })
	c.get("a") // b is now the least recently used
	c.getOrAdd("c", func() int { return 3 })
	if c.has("b") || !c.has("a") || !c.has("c") || c.len() != 2 {
		t.Errorf("after a, b, use a, c with bound 2: has a=%v b=%v c=%v len %d; want a and c only",
			c.has("a"), c.has("b"), c.has("c"), c.len())
	}
	if v := c.getOrAdd("a", func() int { return 9 }); v != 1 {
		t.Errorf("getOrAdd(a) = %d, want the held 1", v)
	}
}
