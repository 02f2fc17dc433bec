package tenancy

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of RateLimiter.
const (
	DefaultRateLimitTenants = 10000
	DefaultRateLimitIdle    = 10 * time.Minute
)

// RateLimiter keeps one token bucket per tenant, so one tenant exhausting
// its limit never affects another. The map is bounded: buckets idle for
// longer than IdleTTL are swept, and when MaxTenants is reached the least
// recently used bucket is evicted. It is safe for concurrent use.
type RateLimiter struct {
	// RPS and Burst are the default per-tenant rate and burst. RPS <= 0
	// means unlimited unless the tenant has an override; Burst <= 0 means
	// max(1, ceil(RPS)).
	RPS   float64
	Burst int
	// MaxTenants bounds the number of buckets (default 10000).
	MaxTenants int
	// IdleTTL is how long an unused bucket is kept (default 10 min).
	IdleTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives misconfiguration errors; nil discards.
	Logger *slog.Logger
	// OnLimited, if set, is called for every 429.
	OnLimited func(r *http.Request, rc RequestContext)
	// Replicas, if set, is the number N of live server replicas sharing
	// the limits (each behind the same load balancer, on one database).
	// Each replica then enforces rate/N and burst/N (rounded up, at least
	// 1) locally, with no coordination per request. Tolerance: with even
	// load balancing the aggregate over all replicas stays within the
	// limit, except that rounding the burst up admits up to N-1 extra
	// requests per burst (aggregate burst <= burst + N - 1, sustained rate
	// <= rate); a change of membership takes up to the heartbeat window
	// (3 s) to apply, during which a replica that joined lets the
	// aggregate reach rate*(N+1)/N and a replica that died makes the
	// survivors refuse below the limit; uneven load balancing refuses a
	// tenant below the aggregate limit (a replica getting more than 1/N
	// of the tenant's requests runs out first). nil or a value < 1 means 1.
	Replicas func() int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// bucket is one tenant's limiter with the settings it was built with.
type bucket struct {
	lim   *rate.Limiter
	rps   float64
	burst int
	seen  time.Time
}

// NewRateLimiter returns a limiter with the given default rate and burst.
func NewRateLimiter(rps float64, burst int) *RateLimiter {
	return &RateLimiter{RPS: rps, Burst: burst}
}

// Allow takes one token from tenantID's bucket at now. The status carries
// per-tenant overrides (RPS, Burst > 0). When no token is available it
// returns false and how long to wait.
func (l *RateLimiter) Allow(tenantID string, st TenantStatus, now time.Time) (ok bool, retryAfter time.Duration) {
	rps, burst := l.RPS, l.Burst
	if st.RPS > 0 {
		rps = st.RPS
	}
	if st.Burst > 0 {
		burst = st.Burst
	}
	if rps <= 0 {
		return true, 0
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(rps)))
	}
	if l.Replicas != nil {
		if n := l.Replicas(); n > 1 {
			rps, burst = rps/float64(n), max(1, int(math.Ceil(float64(burst)/float64(n))))
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.lookup(tenantID, now)
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(rps), burst), rps: rps, burst: burst}
		l.buckets[tenantID] = b
	} else if b.rps != rps || b.burst != burst {
		b.lim.SetLimitAt(now, rate.Limit(rps))
		b.lim.SetBurstAt(now, burst)
		b.rps, b.burst = rps, burst
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// lookup returns tenantID's bucket or nil, sweeping idle buckets and
// making room for a new one. l.mu is held.
func (l *RateLimiter) lookup(tenantID string, now time.Time) *bucket {
	if l.buckets == nil {
		l.buckets = make(map[string]*bucket)
		l.lastSweep = now
	}
	idle := l.IdleTTL
	if idle <= 0 {
		idle = DefaultRateLimitIdle
	}
	if now.Sub(l.lastSweep) > idle {
		l.sweep(now, idle)
	}
	if b, ok := l.buckets[tenantID]; ok {
		return b
	}
	maxN := l.MaxTenants
	if maxN <= 0 {
		maxN = DefaultRateLimitTenants
	}
	if len(l.buckets) >= maxN {
		l.sweep(now, idle)
	}
	for len(l.buckets) >= maxN {
		oldest, first := "", true
		var t time.Time
		for id, b := range l.buckets {
			if first || b.seen.Before(t) {
				oldest, t, first = id, b.seen, false
			}
		}
		delete(l.buckets, oldest)
	}
	return nil
}

// sweep drops buckets unused for longer than idle. l.mu is held.
func (l *RateLimiter) sweep(now time.Time, idle time.Duration) {
	for id, b := range l.buckets {
		if now.Sub(b.seen) > idle {
			delete(l.buckets, id)
		}
	}
	l.lastSweep = now
}

// Len returns the number of buckets held.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Middleware limits requests per tenant. It must run after
// Authenticator.Middleware: it reads the RequestContext (and the tenant's
// overrides) from the request context, and answers 500 when there is none.
// An exhausted tenant gets 429 with Retry-After (whole seconds, at least 1)
// and a fixed body.
func (l *RateLimiter) Middleware(next http.Handler) http.Handler {
	log := l.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := l.Now
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, ok := FromContext(r.Context())
		if !ok || rc.TenantID == "" {
			log.Error("rate limiter without authenticated request context; check middleware order")
			writeFixed(w, http.StatusInternalServerError, bodyInternal)
			return
		}
		st, _ := r.Context().Value(statusKey{}).(TenantStatus)
		if ok, wait := l.Allow(rc.TenantID, st, now()); !ok {
			secs := max(1, int64(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			writeFixed(w, http.StatusTooManyRequests, bodyRateLimited)
			NoteRefusal(r.Context(), ReasonRateLimited)
			if l.OnLimited != nil {
				l.OnLimited(r, rc)
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}
