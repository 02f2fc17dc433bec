package tenancy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRateLimitPerTenant proves one tenant cannot use up another's rate: tenant A sends burst + 50 while B
// sends 10, all at one instant; A gets exactly burst then 429 with
// Retry-After, B is never limited.
func TestRateLimitPerTenant(t *testing.T) {
	const burst = 10
	f := newKeyFixture(t)
	clock := testNow
	var limited atomic.Int32
	rl := &RateLimiter{RPS: 1, Burst: burst, Now: func() time.Time { return clock }}
	rl.OnLimited = func(_ *http.Request, rc RequestContext) {
		if rc.TenantID != "acme" {
			t.Errorf("OnLimited for tenant %q, want acme", rc.TenantID)
		}
		limited.Add(1)
	}
	h := f.auth.Middleware(rl.Middleware(whoami))

	aAccepted, bAccepted, bRejected := 0, 0, 0
	for i := range burst + 50 {
		res := serveRL(t, h, f.valid)
		switch res.Code {
		case http.StatusOK:
			aAccepted++
		case http.StatusTooManyRequests:
			if i < burst {
				t.Errorf("A request %d limited within burst", i)
			}
			checkLimited(t, res, 1)
		default:
			t.Fatalf("A request %d: status %d", i, res.Code)
		}
		if i%6 == 0 { // interleave B's 10 requests
			if res := serveRL(t, h, f.globex); res.Code == http.StatusOK {
				bAccepted++
			} else {
				bRejected++
			}
		}
	}
	t.Logf("metric a_accepted=%d", aAccepted)
	t.Logf("metric b_rejected=%d", bRejected)
	if aAccepted != burst {
		t.Errorf("A accepted = %d, want %d", aAccepted, burst)
	}
	if bAccepted != 10 || bRejected != 0 {
		t.Errorf("B accepted/rejected = %d/%d, want 10/0", bAccepted, bRejected)
	}
	if got := limited.Load(); got != 50 {
		t.Errorf("OnLimited calls = %d, want 50", got)
	}

	// One second later A has one token again (control: the limit recovers).
	clock = clock.Add(time.Second)
	if res := serveRL(t, h, f.valid); res.Code != http.StatusOK {
		t.Errorf("A after 1s: status %d, want 200", res.Code)
	}
	if res := serveRL(t, h, f.valid); res.Code != http.StatusTooManyRequests {
		t.Errorf("A second request after 1s: status %d, want 429", res.Code)
	}
}

func serveRL(t *testing.T, h http.Handler, key string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, newRequest(map[string]string{HeaderAPIKey: key}))
	return w
}

// checkLimited checks a 429 has the fixed body and Retry-After >= minSecs.
func checkLimited(t *testing.T, w *httptest.ResponseRecorder, minSecs int) {
	t.Helper()
	if w.Body.String() != bodyRateLimited {
		t.Errorf("429 body = %q, want %q", w.Body.String(), bodyRateLimited)
	}
	ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if err != nil || ra < minSecs {
		t.Errorf("Retry-After = %q, want integer >= %d", w.Header().Get("Retry-After"), minSecs)
	}
}

// TestRateLimitOverride checks per-tenant overrides from TenantStatus.
func TestRateLimitOverride(t *testing.T) {
	f := newKeyFixture(t)
	f.tenants.set("globex", TenantStatus{Exists: true, RPS: 0.5, Burst: 2})
	clock := testNow
	rl := &RateLimiter{RPS: 100, Burst: 100, Now: func() time.Time { return clock }}
	h := f.auth.Middleware(rl.Middleware(whoami))
	for i := range 3 {
		w := serveRL(t, h, f.globex)
		want := http.StatusOK
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if w.Code != want {
			t.Fatalf("globex request %d: status %d, want %d", i, w.Code, want)
		}
		if want == http.StatusTooManyRequests {
			checkLimited(t, w, 2) // one token per 2 s
		}
	}
	// Control: acme uses the defaults and is not limited after 3 requests.
	for i := range 3 {
		if w := serveRL(t, h, f.valid); w.Code != http.StatusOK {
			t.Errorf("acme request %d: status %d, want 200", i, w.Code)
		}
	}
	// Lifting the override takes effect on the next request. The change
	// grants no tokens by itself (time before it counts at the old rate),
	// but one second later the default rate has refilled the bucket, where
	// the override would have left half a token.
	f.tenants.set("globex", TenantStatus{Exists: true})
	if w := serveRL(t, h, f.globex); w.Code != http.StatusTooManyRequests {
		t.Errorf("globex right after override removed: status %d, want 429", w.Code)
	}
	clock = clock.Add(time.Second)
	for i := range 5 {
		if w := serveRL(t, h, f.globex); w.Code != http.StatusOK {
			t.Errorf("globex request %d after override removed: status %d, want 200", i, w.Code)
		}
	}
}

// TestRateLimiterBounded checks the bucket map stays bounded and idle
// buckets are swept.
func TestRateLimiterBounded(t *testing.T) {
	clock := testNow
	rl := &RateLimiter{RPS: 1, Burst: 1, MaxTenants: 3, IdleTTL: time.Minute}
	for i := range 10 {
		if ok, _ := rl.Allow(fmt.Sprintf("t%d", i), TenantStatus{}, clock); !ok {
			t.Errorf("first request of t%d limited", i)
		}
		if n := rl.Len(); n > 3 {
			t.Fatalf("Len() = %d after %d tenants, want <= 3", n, i+1)
		}
	}
	// The most recent tenant is still tracked (control): limited now.
	if ok, _ := rl.Allow("t9", TenantStatus{}, clock); ok {
		t.Errorf("t9 second request allowed, want limited")
	}
	clock = clock.Add(2 * time.Minute)
	rl.Allow("fresh", TenantStatus{}, clock)
	if n := rl.Len(); n != 1 {
		t.Errorf("Len() after idle sweep = %d, want 1", n)
	}
}

// TestRateLimiterConcurrent exercises the limiter from many goroutines (for
// -race) and checks the exact count at a fixed instant.
func TestRateLimiterConcurrent(t *testing.T) {
	const burst = 25
	rl := NewRateLimiter(1, burst)
	var wg sync.WaitGroup
	var accepted [4]atomic.Int32
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				tenant := (g + i) % 4
				if ok, _ := rl.Allow(fmt.Sprintf("t%d", tenant), TenantStatus{}, testNow); ok {
					accepted[tenant].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i := range accepted {
		if got := accepted[i].Load(); got != burst {
			t.Errorf("tenant t%d accepted %d, want %d", i, got, burst)
		}
	}
}

// TestRateLimiterWithoutAuth checks the limiter fails closed when it runs
// before authentication.
func TestRateLimiterWithoutAuth(t *testing.T) {
	rl := NewRateLimiter(1, 1)
	w := httptest.NewRecorder()
	rl.Middleware(okHandler).ServeHTTP(w, newRequest(nil))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", w.Code)
	}
	// Control: with a RequestContext the request passes.
	w = httptest.NewRecorder()
	r := newRequest(nil)
	rl.Middleware(okHandler).ServeHTTP(w, r.WithContext(NewContext(r.Context(), RequestContext{TenantID: "acme"})))
	if w.Code != http.StatusOK {
		t.Errorf("with context: status = %d, want 200", w.Code)
	}
}

// TestRateLimiterReplicaShare: with Replicas reporting N, one replica
// admits ceil(burst/N) (at least 1) at an instant and refills at rate/N;
// N = 1 and nil (the control) keep the whole limit, and a change of N
// applies on the next request.
func TestRateLimiterReplicaShare(t *testing.T) {
	cases := []struct {
		name      string
		rps       float64
		burst     int
		replicas  func() int
		wantBurst int
		wantRate  float64 // tokens per second after the burst
	}{
		{"no replicas (control)", 30, 30, nil, 30, 30},
		{"one replica", 30, 30, func() int { return 1 }, 30, 30},
		{"three replicas", 30, 30, func() int { return 3 }, 10, 10},
		{"rounding up", 10, 10, func() int { return 3 }, 4, 10.0 / 3},
		{"at least one", 2, 2, func() int { return 5 }, 1, 0.4},
		{"default burst shared", 9, 0, func() int { return 3 }, 3, 3},
		{"zero replicas is one", 6, 6, func() int { return 0 }, 6, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rl := &RateLimiter{RPS: tc.rps, Burst: tc.burst, Replicas: tc.replicas}
			now := testNow
			got := 0
			for range tc.wantBurst + 10 {
				if ok, _ := rl.Allow("acme", TenantStatus{}, now); ok {
					got++
				}
			}
			if got != tc.wantBurst {
				t.Errorf("admitted at one instant = %d, want %d", got, tc.wantBurst)
			}
			// After 3 s the bucket holds min(burst, 3*rate) new tokens.
			later := now.Add(3 * time.Second)
			refill := 0
			for range 200 {
				if ok, _ := rl.Allow("acme", TenantStatus{}, later); ok {
					refill++
				}
			}
			if want := min(tc.wantBurst, int(3*tc.wantRate+1e-9)); refill != want {
				t.Errorf("admitted 3 s later = %d, want %d", refill, want)
			}
		})
	}

	t.Run("membership change", func(t *testing.T) {
		var n atomic.Int32
		n.Store(1)
		rl := &RateLimiter{RPS: 1, Burst: 12, Replicas: func() int { return int(n.Load()) }}
		if ok, _ := rl.Allow("acme", TenantStatus{}, testNow); !ok {
			t.Fatal("first request refused")
		}
		n.Store(4) // the bucket shrinks to burst 12/4 = 3: its 11 tokens are capped at 3
		got := 0
		for range 10 {
			if ok, _ := rl.Allow("acme", TenantStatus{}, testNow); ok {
				got++
			}
		}
		if got != 3 {
			t.Errorf("admitted after N went 1 -> 4 = %d, want 3 (burst 12/4)", got)
		}
	})
}
