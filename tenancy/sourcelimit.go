package tenancy

import (
	"container/list"
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of SourceLimiter.
const (
	DefaultSourceFailRPS   = 1.0
	DefaultSourceFailBurst = 100
	DefaultMaxSources      = 10000
)

// SourceOf names the network source of r for limits and audit: the
// client IP of the connection, an IPv6 address reduced to its /64 (what
// one host can easily spread over). Headers such as X-Forwarded-For are
// not read: they are the client's to forge.
func SourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return "unknown"
	case ip.To4() != nil:
		return ip.To4().String()
	default:
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
}

// SourceLimiter refuses, before authentication, the requests of a source
// that keeps failing authentication, so that a flood of bad credentials
// costs neither a key lookup nor a signature check nor an audit write
// each. Every refusal that establishes no tenant takes one token from its
// source's bucket (Failed); while the bucket is empty, requests of that
// source get 429 with Retry-After — except those presenting a credential
// that recently authenticated (a bounded set of SHA-256 hashes), so a
// client sharing an address with a flooder keeps working; authentication
// still verifies that credential in full. Authenticated requests take no
// token (tenants have their own RateLimiter). Sources live in a bounded
// LRU: an evicted source starts again with a full bucket. Safe for
// concurrent use. (The LRU is container/list: tenancy takes no
// third-party dependency beyond golang-jwt and x/time.)
type SourceLimiter struct {
	// RPS is how many failures per second a source may sustain, Burst how
	// many it may have in a row. RPS <= 0 turns the limiter off.
	RPS   float64
	Burst int
	// MaxSources bounds the sources remembered (default DefaultMaxSources).
	MaxSources int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnLimited, if set, is called for every 429.
	OnLimited func(r *http.Request, source string)

	once    sync.Once
	sources *boundedLRU[string, *rate.Limiter]
	good    *boundedLRU[[sha256.Size]byte, struct{}]
}

func (l *SourceLimiter) init() {
	l.once.Do(func() {
		n := l.MaxSources
		if n <= 0 {
			n = DefaultMaxSources
		}
		l.sources = newBoundedLRU[string, *rate.Limiter](n)
		l.good = newBoundedLRU[[sha256.Size]byte, struct{}](n)
	})
}

func (l *SourceLimiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *SourceLimiter) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.RPS)))
}

// Failed charges one failure to the source of r.
func (l *SourceLimiter) Failed(r *http.Request) {
	if l == nil || l.RPS <= 0 {
		return
	}
	l.init()
	src := SourceOf(r)
	lim := l.sources.getOrAdd(src, func() *rate.Limiter { return rate.NewLimiter(rate.Limit(l.RPS), l.burst()) })
	lim.AllowN(l.now(), 1)
}

// retryAfter reports how long the source of r must wait before its next
// request, 0 when it may go on.
func (l *SourceLimiter) retryAfter(r *http.Request) (string, time.Duration) {
	src := SourceOf(r)
	lim, ok := l.sources.get(src)
	if !ok {
		return src, 0
	}
	tokens := lim.TokensAt(l.now())
	if tokens >= 1 {
		return src, 0
	}
	return src, time.Duration((1 - tokens) / l.RPS * float64(time.Second))
}

// credentialHash is the SHA-256 of r's credential, ok false when r
// presents none (or an unusable one).
func credentialHash(r *http.Request) (sum [sha256.Size]byte, ok bool) {
	tok, _, reason := credential(r.Header)
	if tok == "" || reason != "" {
		return sum, false
	}
	return sha256.Sum256([]byte(tok)), true
}

// Middleware wraps authenticate (the authentication middleware) and the
// handler after it: a source with no failures left gets 429 with
// Retry-After before authentication runs, unless its credential is one
// that authenticated recently; every request authenticate lets through
// marks its credential so.
func (l *SourceLimiter) Middleware(authenticate func(http.Handler) http.Handler, next http.Handler) http.Handler {
	if l == nil || l.RPS <= 0 {
		return authenticate(next)
	}
	l.init()
	authed := authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sum, ok := credentialHash(r); ok {
			l.good.getOrAdd(sum, func() struct{} { return struct{}{} })
		}
		next.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src, wait := l.retryAfter(r)
		if wait <= 0 {
			authed.ServeHTTP(w, r)
			return
		}
		if sum, ok := credentialHash(r); ok && l.good.has(sum) {
			authed.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", strconv.FormatInt(max(1, int64(math.Ceil(wait.Seconds()))), 10))
		NoteRefusal(r.Context(), ReasonSourceRateLimited)
		writeFixed(w, http.StatusTooManyRequests, bodyRateLimited)
		if l.OnLimited != nil {
			l.OnLimited(r, src)
		}
	})
}

// boundedLRU is a map of at most n entries that evicts the least recently
// used. Safe for concurrent use.
type boundedLRU[K comparable, V any] struct {
	mu    sync.Mutex
	n     int
	order *list.List // of *lruEntry[K, V], most recent first
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newBoundedLRU[K comparable, V any](n int) *boundedLRU[K, V] {
	return &boundedLRU[K, V]{n: n, order: list.New(), items: make(map[K]*list.Element, n)}
}

// get returns the value of k and marks it used.
func (c *boundedLRU[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// has reports whether k is held, and marks it used.
func (c *boundedLRU[K, V]) has(k K) bool {
	_, ok := c.get(k)
	return ok
}

// getOrAdd returns the value of k, adding mk() first when absent (and
// evicting the least recently used entry when full).
func (c *boundedLRU[K, V]) getOrAdd(k K, mk func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val
	}
	if c.order.Len() >= c.n {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry[K, V]).key)
	}
	v := mk()
	c.items[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v})
	return v
}

func (c *boundedLRU[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
