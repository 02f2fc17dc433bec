// Package httpserver is nexus-mcp's streamable HTTP transport as a unit:
// the middleware chain in front of mcp-go (Origin, Host and body checks,
// authentication, per-tenant large-request turns, EATP trust, rate limits,
// OAuth scopes), the MCP session guard with its cancellation confinement,
// the ops endpoints, the audit of refused requests, the replica heartbeat
// and graceful shutdown. It depends on storage only through Store, which
// it declares, and on time only through Config.Now.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Limits of the HTTP server that are not configurable.
const (
	// ReadHeaderTimeout bounds slowloris clients.
	ReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout bounds reading one request, body included. The
	// session guard lifts it once the body is read, so that an SSE stream or
	// a long tool call is not cut off by it.
	DefaultReadTimeout = 30 * time.Second
	// writeStallTimeout is the write deadline of each write to /mcp,
	// renewed on every write: an SSE stream may last for hours, but a single
	// write to a client that stopped reading may not. http.Server's own
	// WriteTimeout (one deadline per request) would end every SSE stream.
	writeStallTimeout = 60 * time.Second
	// idleTimeout closes idle keep-alive connections.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds request headers (a 70 KB token gets 431).
	maxHeaderBytes = 64 << 10
	// sseHeartbeat pings clients on a GET stream so that dead peers and
	// proxies with idle timeouts are noticed.
	sseHeartbeat = 30 * time.Second
	// maxKnownTenants bounds the set of JWT tenants known to have a row.
	maxKnownTenants = 10000
	// largeRequestBytes is the body size over which a tenant's requests are
	// served one at a time (tenancy.LargeRequestGate): a fifth of the
	// largest write call (tools.MaxWriteBytes), far above what reads and
	// small writes send.
	largeRequestBytes = 16 << 10
)

// Store is what the server needs from storage: readiness, the tenant rows
// of JWT tenants, the MCP sessions shared by replicas, the audit of
// refused requests and the replica heartbeat.
type Store interface {
	SessionStore
	// Ping checks that storage answers (/readyz).
	Ping(ctx context.Context) error
	// EnsureTenant creates tenant id unless it exists.
	EnsureTenant(ctx context.Context, id string) error
	// AuditDenial writes the audit row of a request refused after its
	// tenant (rc) was established.
	AuditDenial(ctx context.Context, rc tenancy.RequestContext, d Denial) error
	// AuditDenialTally writes one row counting refusals that established
	// no tenant.
	AuditDenialTally(ctx context.Context, t Tally) error
	// ReplicaHeartbeat records that replica id is alive and returns the
	// number of replicas that beat within window, this one included.
	ReplicaHeartbeat(ctx context.Context, id string, window time.Duration) (int, error)
	// RemoveReplica deletes replica id's heartbeat.
	RemoveReplica(ctx context.Context, id string) error
}

// Denial is a refused request of an established tenant, for the audit.
type Denial struct {
	Action, Reason string
	Status         int
	Method, Path   string
}

// Tally counts the refusals of one source, action, reason and status that
// established no tenant, between First and Last.
type Tally struct {
	Action, Reason, Source string
	Status                 int
	Count                  int64
	First, Last            time.Time
}

// Config is everything the server is built from.
type Config struct {
	// Addr is the configured listen address (HOST:PORT); a loopback host
	// turns the Host check on.
	Addr           string
	AllowedOrigins []string // browser origins allowed to send requests
	MaxBody        int64    // largest request body; larger gets 413
	// RateRPS and RateBurst are the default per-tenant rate limit;
	// AuthFailRPS and AuthFailBurst the per-source limit of refused
	// authentications.
	RateRPS             float64
	RateBurst           int
	AuthFailRPS         float64
	AuthFailBurst       int
	MetricsTenantLabels bool          // label /metrics series with tenant ids
	SessionIdleTimeout  time.Duration // MCP sessions unused this long expire
	ShutdownTimeout     time.Duration // how long shutdown waits for in-flight requests
	ReadTimeout         time.Duration // http.Server.ReadTimeout; 0 is DefaultReadTimeout
	// Replicas turns the replica heartbeat on: replicas sharing one
	// database share each tenant's rate limit.
	Replicas bool

	// Version is the running build, for /metrics.
	Version string
	Store   Store
	Logger  *slog.Logger
	// Auth authenticates every /mcp request; the server adds its refusal
	// hooks (metrics, audit) to Auth.OnDenied.
	Auth *tenancy.Authenticator
	// Trust is the EATP middleware's configuration with Mode, ExemptPaths,
	// RequireHumanOrigin, Policy, Verifier and Membership set; the server
	// sets Logger and the audit hooks.
	Trust delegation.MiddlewareConfig
	// NewMCP builds the MCP server with the extra options the server needs
	// (its tool metrics), after the tool handlers' own.
	NewMCP func(extra ...server.ServerOption) *server.MCPServer
	// Now is the clock of sessions, refusal tallies and the per-source
	// limiter; nil is time.Now.
	Now func() time.Time
}

// Server is the HTTP transport: the MCP server behind the middleware chain,
// the ops endpoints, and the http.Server.
type Server struct {
	// cfg is the configuration New completed: Trust has the server's
	// hooks, Auth.OnDenied its metrics and audit.
	cfg Config

	// hostCheck is true for loopback binds: Host must name loopback.
	hostCheck bool

	limiter *tenancy.RateLimiter
	// sources refuses the sources that keep failing authentication;
	// denials counts their refusals for the audit log (refusals.go).
	sources  *tenancy.SourceLimiter
	denials  *denialTally
	metrics  *metrics
	streams  *server.StreamableHTTPServer
	sessions *sessionGuard
	tenants  knownTenants
	srv      *http.Server
	// heartbeat counts the live replicas sharing the database; nil without
	// Config.Replicas.
	heartbeat *replicaHeartbeat
}

// New builds the server. It fails on an authentication configuration the
// server must refuse to start with.
func New(cfg Config) (*Server, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Addr, err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	a := &Server{cfg: cfg, hostCheck: isLoopback(host)}
	a.sessions = newSessionGuard(cfg.Store, cfg.SessionIdleTimeout, cfg.Logger, cfg.Now)
	a.metrics = newMetrics(cfg.Version, cfg.MetricsTenantLabels, a.sessions.len)
	a.cfg.Auth.OnDenied = a.metrics.denied
	if err := a.cfg.Auth.Validate(); err != nil {
		return nil, fmt.Errorf("%w; refusing to start", err)
	}
	a.denials = newDenialTally(cfg.Store, cfg.Logger, cfg.Now)
	a.sources = &tenancy.SourceLimiter{RPS: cfg.AuthFailRPS, Burst: cfg.AuthFailBurst, Now: cfg.Now}
	a.limiter = tenancy.NewRateLimiter(cfg.RateRPS, cfg.RateBurst)
	a.limiter.Logger = cfg.Logger
	a.limiter.OnLimited = a.metrics.limited
	if cfg.Replicas {
		// Replicas on one database share each tenant's limit (see
		// tenancy.RateLimiter.Replicas for the tolerance); Serve keeps the
		// count current with the heartbeat.
		a.heartbeat = newReplicaHeartbeat(cfg.Store, cfg.Logger)
		a.limiter.Replicas = a.heartbeat.live
	}

	mcpServer := cfg.NewMCP(server.WithToolHandlerMiddleware(a.metrics.toolMiddleware))
	a.srv = &http.Server{
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	// The RequestContext reaches tool handlers through r.Context(): the
	// streamable server derives every handler's ctx from it, so no
	// WithHTTPContextFunc is needed (cmd/nexus-mcp's http_test.go proves it).
	a.streams = server.NewStreamableHTTPServer(mcpServer,
		server.WithStreamableHTTPServer(a.srv),
		server.WithStreamableHTTPLogger(cfg.Logger),
		server.WithHeartbeatInterval(sseHeartbeat),
	)
	a.sessions.next = a.streams
	// The EATP trust middleware and the audit of refused requests (trust.go).
	a.installTrust()
	return a, nil
}

// HostCheck reports whether the server requires a loopback Host (a
// loopback bind).
func (a *Server) HostCheck() bool { return a.hostCheck }

// LiveSessions is the number of MCP sessions this replica holds.
func (a *Server) LiveSessions() int { return a.sessions.len() }

// FlushDenials writes the pending tallies of refusals that established no
// tenant now (Serve writes them every minute and at shutdown).
func (a *Server) FlushDenials(ctx context.Context) { a.denials.flush(ctx) }

// Handler is the whole HTTP surface. /mcp runs, outermost first:
// Origin check → body limit → source limit (addresses that keep failing
// authentication) → authentication → one large request per tenant at a
// time → trust → rate limit → OAuth scopes → MCP (session guard, then
// mcp-go). The Host check (loopback binds), the Origin check and the
// request metrics cover every path; /healthz, /readyz and /metrics need
// no credential.
func (a *Server) Handler() http.Handler {
	var h http.Handler = a.sessions
	h = a.scopeCheck(h)
	h = a.limiter.Middleware(h)
	h = delegation.Middleware(a.cfg.Trust, h)
	h = a.ensureTenant(h)
	h = tenancy.LargeRequestGate(largeRequestBytes, h)
	h = accessTenant(h)
	h = a.sources.Middleware(a.cfg.Auth.Middleware, h)
	h = tenancy.BodyLimit(a.cfg.MaxBody, h)

	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", a.metrics.handler())
	mux.HandleFunc("/", a.notFound)

	var root http.Handler = a.wellKnown(tenancy.OriginCheck(a.cfg.AllowedOrigins, a.hostCheck, mux))
	if a.hostCheck {
		root = tenancy.HostCheck(loopbackHosts(a.cfg.Addr), root)
	}
	return accessLog(a.cfg.Logger, a.metrics.httpMiddleware(writeDeadline(root)))
}

// writeDeadline gives every response a fresh write deadline. Without it a
// keep-alive connection would carry the deadline a previous /mcp response
// left (http.Server resets write deadlines only with WriteTimeout set).
func writeDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeStallTimeout))
		next.ServeHTTP(w, r)
	})
}

// Serve serves on ln until ctx ends, then shuts down gracefully: listening
// SSE streams are closed, in-flight requests get up to
// Config.ShutdownTimeout to finish, then remaining connections are closed.
func (a *Server) Serve(ctx context.Context, ln net.Listener) error {
	a.srv.Handler = a.Handler()
	// Requests must not be cancelled by the signal that starts shutdown:
	// in-flight calls finish first.
	a.srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }

	defer Every(context.WithoutCancel(ctx), a.sessions.sweepInterval(), a.sessions.sweepOnce)()
	// Registered before the server stops (defers run last in, first
	// out), so the final flush counts every refusal served.
	defer a.denials.flush(context.WithoutCancel(ctx))
	defer Every(context.WithoutCancel(ctx), denialTallyInterval, a.denials.flush)()
	if a.heartbeat != nil {
		defer a.heartbeat.start(context.WithoutCancel(ctx))()
	}

	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	a.cfg.Logger.Info("shutting down: finishing in-flight requests", "timeout", a.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancel()
	err := a.streams.Shutdown(sctx) // closes SSE streams, then http.Server.Shutdown
	if err != nil {
		a.cfg.Logger.Warn("shutdown timed out; closing connections", "err", err)
		_ = a.srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", serr)
	}
	a.cfg.Logger.Info("stopped")
	return nil
}

// Every calls fn every interval until ctx ends or the returned stop is
// called; stop waits for a running fn to return. The server's sweeps,
// tallies and heartbeat run on it, as does cmd's trust-session sweep.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
func (a *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
}

func (a *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.cfg.Store.Ping(ctx); err != nil {
		a.cfg.Logger.Error("readiness check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, `{"status":"unavailable"}`)
		return
	}
	writeJSON(w, http.StatusOK, `{"status":"ready"}`)
}

// ensureTenant creates the tenants row of a JWT-authenticated tenant on
// its first request: the token issuer, not the CLI, creates tenants. The
// Authenticator has already refused a disabled tenant.
func (a *Server) ensureTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, _ := tenancy.FromContext(r.Context())
		if rc.AuthMethod == tenancy.AuthJWT && !a.tenants.has(rc.TenantID) {
			if !tenancy.ValidTenantID(rc.TenantID) {
				a.cfg.Logger.Info("request denied", "reason", reasonInvalidTenantID, "status", http.StatusForbidden, "auth", string(rc.AuthMethod))
				a.denied(r, tenancy.RequestContext{}, reasonInvalidTenantID, http.StatusForbidden)
				tenancy.WriteForbidden(w)
				return
			}
			if err := a.cfg.Store.EnsureTenant(r.Context(), rc.TenantID); err != nil {
				a.cfg.Logger.Error("create tenant of JWT", "tenant", rc.TenantID, "err", err)
				a.denied(r, rc, tenancy.ReasonStorage, http.StatusServiceUnavailable)
				tenancy.WriteUnavailable(w)
				return
			}
			a.tenants.add(rc.TenantID)
		}
		next.ServeHTTP(w, r)
	})
}

// reasonInvalidTenantID is the denial reason of a JWT whose tenant claim
// is not a valid tenant id (tenancy.ValidTenantID).
const reasonInvalidTenantID = "invalid_tenant_id"

// denied reports a refusal made after authentication through the
// Authenticator's OnDenied hook, so that metrics (and whatever else is
// hooked there) see it like the Authenticator's own.
func (a *Server) denied(r *http.Request, rc tenancy.RequestContext, reason string, status int) {
	tenancy.NoteRefusal(r.Context(), reason)
	if a.cfg.Auth.OnDenied != nil {
		a.cfg.Auth.OnDenied(r, rc, reason, status)
	}
}

// knownTenants remembers tenants known to have a row, so that a JWT request
// does not write on every call. Bounded: it starts over when full.
type knownTenants struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (k *knownTenants) has(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[id]
	return ok
}

func (k *knownTenants) add(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil || len(k.m) >= maxKnownTenants {
		k.m = make(map[string]struct{})
	}
	k.m[id] = struct{}{}
}

// isLoopback reports whether a bind host is a loopback name or address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHosts are the Host values accepted on a loopback bind.
func loopbackHosts(addr string) []string {
	host, _, _ := net.SplitHostPort(addr)
	return []string{"localhost", "127.0.0.1", "::1", host}
}

// writeJSON writes a fixed JSON body.
func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}
