package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// defaultHTTPAddr is the address of --http given without a value: loopback
// only. There is no non-loopback default.
const defaultHTTPAddr = "127.0.0.1:8080"

// Limits of the HTTP server that are not flags.
const (
	// readHeaderTimeout bounds slowloris clients.
	readHeaderTimeout = 5 * time.Second
	// defaultReadTimeout bounds reading one request, body included. The
	// session guard lifts it once the body is read, so that an SSE stream or
	// a long tool call is not cut off by it.
	defaultReadTimeout = 30 * time.Second
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
)

// envDevHeaders turns the X-User-Id dev header on when exactly "1".
const envDevHeaders = "ENABLE_DEV_HEADERS"

// httpFlags are the flags of the HTTP transport. Every flag can also be set
// as NEXUS_<FLAG> (flagsFromEnv).
type httpFlags struct {
	addr                string
	allowedOrigins      []string
	maxBody             int64
	legacyAPIKey        string
	jwtSecret           string
	jwtSecretFile       string
	jwtPublicKeys       []string
	jwksURL             string
	jwtIssuer           string
	jwtAudience         string
	jwtLeeway           time.Duration
	jwtTenantClaim      string
	rateRPS             float64
	rateBurst           int
	authFailRPS         float64
	authFailBurst       int
	metricsTenantLabels bool
	sessionIdleTimeout  time.Duration
	shutdownTimeout     time.Duration
	oauth               oauthFlags // --oauth-issuer, --resource-url (oauth.go)
}

func addHTTPFlags(fs *pflag.FlagSet, f *httpFlags) {
	fs.StringVar(&f.addr, "http", "", "serve MCP streamable HTTP at http://ADDR/mcp instead of stdio ("+defaultHTTPAddr+" when given without a value)")
	fs.Lookup("http").NoOptDefVal = defaultHTTPAddr
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "browser origins (scheme://host[:port]) allowed to send requests; any other Origin gets 403")
	fs.Int64Var(&f.maxBody, "max-body", 4<<20, "largest HTTP request body in bytes; larger gets 413")
	fs.StringVar(&f.legacyAPIKey, "legacy-api-key", "", "single shared key (at least 32 characters) authenticating as tenant \"default\" without a user")
	fs.StringVar(&f.jwtSecret, "jwt-secret", "", "HMAC secret (at least 32 bytes) verifying HS256/384/512 JWTs; prefer --jwt-secret-file or NEXUS_JWT_SECRET")
	fs.StringVar(&f.jwtSecretFile, "jwt-secret-file", "", "file holding the JWT HMAC secret (a final newline is ignored)")
	fs.StringArrayVar(&f.jwtPublicKeys, "jwt-public-key", nil, "PEM file of RSA, ECDSA or Ed25519 public keys verifying JWTs (repeatable)")
	fs.StringVar(&f.jwksURL, "jwks-url", "", "JWKS URL (https, or http on loopback) of the keys verifying JWTs")
	fs.StringVar(&f.jwtIssuer, "jwt-issuer", "", "required JWT issuer (iss)")
	fs.StringVar(&f.jwtAudience, "jwt-audience", "", "required JWT audience (aud)")
	fs.DurationVar(&f.jwtLeeway, "jwt-leeway", tenancy.DefaultJWTLeeway, "clock skew allowed for JWT exp, nbf and iat (0: none)")
	fs.StringVar(&f.jwtTenantClaim, "jwt-tenant-claim", tenancy.DefaultTenantClaim, "JWT claim naming the tenant (org_id is accepted when it is absent)")
	fs.Float64Var(&f.rateRPS, "rate-rps", 0, "default requests per second per tenant (0: unlimited unless set per tenant with nexus-mcp tenants limit)")
	fs.IntVar(&f.rateBurst, "rate-burst", 0, "default burst per tenant (0: max(1, ceil(rate-rps)))")
	fs.Float64Var(&f.authFailRPS, "auth-fail-rps", tenancy.DefaultSourceFailRPS, "refused authentications per second a client address (IPv6: its /64) may sustain before its requests get 429 (0: no limit)")
	fs.IntVar(&f.authFailBurst, "auth-fail-burst", tenancy.DefaultSourceFailBurst, "refused authentications a client address may have in a row")
	fs.BoolVar(&f.metricsTenantLabels, "metrics-tenant-labels", false, "label /metrics series with tenant IDs")
	fs.DurationVar(&f.sessionIdleTimeout, "session-idle-timeout", 30*time.Minute, "MCP sessions unused for this long expire (then 404)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long SIGTERM/SIGINT (and, on stdio, the end of stdin) waits for in-flight requests")
	addOAuthFlags(fs, &f.oauth)
}

// serveArgs accepts `serve --http ADDR`: pflag binds an optional flag
// value only as --http=ADDR, so ADDR arrives as the one positional argument
// while --http holds its no-value default.
func serveArgs(sf *serveFlags) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		if f := cmd.Flags().Lookup("http"); len(args) == 1 && f != nil && f.Changed && sf.http.addr == defaultHTTPAddr {
			if _, _, err := net.SplitHostPort(args[0]); err == nil {
				sf.http.addr = args[0]
				return nil
			}
		}
		return cobra.NoArgs(cmd, args)
	}
}

// validate checks the flags that need no I/O.
func (f *httpFlags) validate() error {
	if _, _, err := net.SplitHostPort(f.addr); err != nil {
		return fmt.Errorf("--http %q: want HOST:PORT: %w", f.addr, err)
	}
	if f.legacyAPIKey != "" && len(f.legacyAPIKey) < tenancy.MinLegacyKeyLen {
		return fmt.Errorf("--legacy-api-key is %d characters, need at least %d; refusing to start", len(f.legacyAPIKey), tenancy.MinLegacyKeyLen)
	}
	if f.maxBody <= 0 {
		return errors.New("--max-body must be positive")
	}
	if f.rateRPS < 0 || f.rateBurst < 0 {
		return errors.New("--rate-rps and --rate-burst must not be negative")
	}
	if f.authFailRPS < 0 || f.authFailBurst < 0 {
		return errors.New("--auth-fail-rps and --auth-fail-burst must not be negative")
	}
	if f.sessionIdleTimeout <= 0 || f.shutdownTimeout <= 0 {
		return errors.New("--session-idle-timeout and --shutdown-timeout must be positive")
	}
	return nil
}

// jwtVerifier builds the JWT verifier from the flags, or nil when no key
// source is configured (JWT off). Weak configuration is an error.
func (f *httpFlags) jwtVerifier() (*tenancy.JWTVerifier, error) {
	cfg := tenancy.JWTConfig{
		JWKSURL:     f.jwksURL,
		Issuer:      f.jwtIssuer,
		Audience:    f.jwtAudience,
		Leeway:      f.jwtLeeway,
		TenantClaim: f.jwtTenantClaim,
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = -1 // JWTConfig reads 0 as the default
	}
	switch {
	case f.jwtSecret != "" && f.jwtSecretFile != "":
		return nil, errors.New("give --jwt-secret or --jwt-secret-file, not both")
	case f.jwtSecret != "":
		cfg.HMACSecret = []byte(f.jwtSecret)
	case f.jwtSecretFile != "":
		b, err := os.ReadFile(f.jwtSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		cfg.HMACSecret = bytes.TrimRight(b, "\r\n")
		if len(cfg.HMACSecret) == 0 {
			return nil, errors.New("--jwt-secret-file is empty")
		}
	}
	for _, p := range f.jwtPublicKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
		cfg.PublicKeysPEM = append(cfg.PublicKeysPEM, b)
	}
	if len(cfg.HMACSecret) == 0 && len(cfg.PublicKeysPEM) == 0 && cfg.JWKSURL == "" {
		if f.jwtIssuer != "" || f.jwtAudience != "" {
			return nil, errors.New("--jwt-issuer/--jwt-audience given without a JWT key (--jwt-secret[-file], --jwt-public-key or --jwks-url)")
		}
		return nil, nil
	}
	v, err := tenancy.NewJWTVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w; refusing to start", err)
	}
	return v, nil
}

// serveHTTP runs `serve --http`: it refuses to start on weak or
// inconsistent configuration, serves until ctx ends (SIGTERM/SIGINT), then
// drains in-flight requests and closes the store.
func serveHTTP(ctx context.Context, g *globalFlags, sf *serveFlags, stderr io.Writer) error {
	logger, err := newLogger(stderr, g)
	if err != nil {
		return err
	}
	f := &sf.http
	if err := f.validate(); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	jwtV, err := f.jwtVerifier()
	if err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	if jwtV != nil && f.jwksURL != "" {
		if err := jwtV.Refresh(ctx); err != nil {
			logger.Warn("JWKS not reachable at start-up; keys are fetched on first use", "url", f.jwksURL, "err", err)
		}
	}
	if f.oauth.resourceURL != "" && !strings.HasSuffix(f.oauth.resourceURL, "/mcp") {
		logger.Warn("--resource-url does not end in /mcp; it must be the URL clients use for this server's MCP endpoint", "resource_url", f.oauth.resourceURL)
	}
	if jwtV != nil && f.jwtAudience == "" {
		logger.Warn("JWTs are accepted for any audience; set --jwt-audience")
	}
	devHeaders := tenancy.DevHeadersEnabled(os.Getenv(envDevHeaders))
	if devHeaders {
		logger.Warn(envDevHeaders + "=1: X-User-Id overrides the user of authenticated requests; never use in production")
	}

	store, err := openServeStore(ctx, g, sf, logger, true)
	if err != nil {
		return err
	}
	defer store.Close()
	if f.legacyAPIKey != "" {
		// The legacy key acts as tenant "default", as in the system it replaces.
		if err := store.EnsureTenant(ctx, tenancy.DefaultTenant); err != nil {
			return err
		}
	}

	app, err := newHTTPApp(store, logger, sf, jwtV, devHeaders)
	if err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	defer startTrustSweep(ctx, store, logger, sf.trust.sweepInterval)()
	if rs := app.auth.OAuth; rs != nil {
		if err := rs.Discover(ctx); err != nil {
			logger.Warn("OAuth issuer metadata not reachable at start-up; retried on first use", "err", err)
		}
	}

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	logger.Info("nexus-mcp starting", "version", buildVersion(), "db", store.Location(), "transport", "http",
		"addr", addr, "url", "http://"+addr+"/mcp", "jwt", jwtV != nil, "oauth_issuers", f.oauth.issuers, "resource_url", f.oauth.resourceURL,
		"legacy_key", f.legacyAPIKey != "",
		"dev_headers", devHeaders, "host_check", app.hostCheck)
	if !app.hostCheck {
		logger.Warn("listening beyond loopback: terminate TLS in front of nexus-mcp", "addr", addr)
	}
	return app.serve(ctx, ln)
}

// httpApp is the HTTP transport: the MCP server behind the middleware
// chain, the ops endpoints, and the http.Server.
type httpApp struct {
	store *memory.Store
	log   *slog.Logger
	flags httpFlags

	// trust is the EATP trust middleware, run after authentication and
	// before rate limiting; nil means none. Set it before serve.
	trust func(http.Handler) http.Handler

	// readTimeout is http.Server.ReadTimeout (tests shorten it).
	readTimeout time.Duration
	// hostCheck is true for loopback binds: Host must name loopback.
	hostCheck bool

	auth    *tenancy.Authenticator
	limiter *tenancy.RateLimiter
	// sources refuses the sources that keep failing authentication;
	// denials counts their refusals for the audit log (unauth.go).
	sources  *tenancy.SourceLimiter
	denials  *denialTally
	metrics  *metrics
	mcp      *server.MCPServer
	streams  *server.StreamableHTTPServer
	sessions *sessionGuard
	tenants  knownTenants
	srv      *http.Server
	// heartbeat counts the live replicas sharing the database; nil on
	// SQLite (one server per file).
	heartbeat *replicaHeartbeat
	// embed is the embedder configuration; serve runs its indexer.
	embed *embedFlags
}

// newHTTPApp wires the transport. It fails on an authentication
// configuration the server must refuse to start with.
func newHTTPApp(store *memory.Store, logger *slog.Logger, sf *serveFlags, jwtV *tenancy.JWTVerifier, devHeaders bool) (*httpApp, error) {
	f := sf.http
	a := &httpApp{store: store, log: logger, flags: f, readTimeout: defaultReadTimeout}
	host, _, err := net.SplitHostPort(f.addr)
	if err != nil {
		return nil, fmt.Errorf("--http %q: %w", f.addr, err)
	}
	a.hostCheck = isLoopback(host)
	if err := sf.embed.setup(logger); err != nil {
		return nil, err
	}
	a.embed = &sf.embed

	a.sessions = newSessionGuard(store, f.sessionIdleTimeout, logger)
	a.metrics = newMetrics(f.metricsTenantLabels, a.sessions.len)
	rs, err := f.resourceServer()
	if err != nil {
		return nil, err
	}
	a.auth = &tenancy.Authenticator{
		JWT:        jwtV,
		OAuth:      rs,
		Keys:       store,
		LegacyKey:  f.legacyAPIKey,
		Members:    store,
		Tenants:    store,
		DevHeaders: devHeaders,
		Logger:     logger,
		OnDenied:   a.metrics.denied,
	}
	if err := a.auth.Validate(); err != nil {
		return nil, fmt.Errorf("%w; refusing to start", err)
	}
	a.denials = newDenialTally(store, logger)
	a.sources = &tenancy.SourceLimiter{RPS: f.authFailRPS, Burst: f.authFailBurst}
	a.limiter = tenancy.NewRateLimiter(f.rateRPS, f.rateBurst)
	a.limiter.Logger = logger
	a.limiter.OnLimited = a.metrics.limited
	if store.Backend() == "postgres" {
		// Replicas on one PostgreSQL database share each tenant's limit
		// (see tenancy.RateLimiter.Replicas for the tolerance); serve keeps
		// the count current with the heartbeat.
		a.heartbeat = newReplicaHeartbeat(store, logger)
		a.limiter.Replicas = a.heartbeat.live
	}

	a.mcp = newMCPServer(store, logger, sf, nil, server.WithToolHandlerMiddleware(a.metrics.toolMiddleware))
	a.srv = &http.Server{
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// The RequestContext reaches tool handlers through r.Context(): the
	// streamable server derives every handler's ctx from it, so no
	// WithHTTPContextFunc is needed (http_test.go proves it).
	a.streams = server.NewStreamableHTTPServer(a.mcp,
		server.WithStreamableHTTPServer(a.srv),
		server.WithStreamableHTTPLogger(logger),
		server.WithHeartbeatInterval(sseHeartbeat),
	)
	a.sessions.next = a.streams
	// The EATP trust middleware and the audit of refused requests (trust.go).
	if err := a.installTrust(sf.trust); err != nil {
		return nil, err
	}
	return a, nil
}

// largeRequestBytes is the body size over which a tenant's requests are
// served one at a time (tenancy.LargeRequestGate): a fifth of the largest
// write call (tools.MaxWriteBytes), far above what reads and small writes
// send.
const largeRequestBytes = 16 << 10

// handler is the whole HTTP surface. /mcp runs, outermost first:
// Origin check → body limit → source limit (addresses that keep failing
// authentication) → authentication → one large request per tenant at a
// time → trust → rate limit → MCP (session guard, then mcp-go). The Host
// check (loopback binds), the Origin check and the request metrics cover
// every path; /healthz, /readyz and /metrics need no credential.
func (a *httpApp) handler() http.Handler {
	trust := a.trust
	if trust == nil {
		trust = func(h http.Handler) http.Handler { return h }
	}
	var h http.Handler = a.sessions
	h = a.scopeCheck(h)
	h = a.limiter.Middleware(h)
	h = trust(h)
	h = a.ensureTenant(h)
	h = tenancy.LargeRequestGate(largeRequestBytes, h)
	h = accessTenant(h)
	h = a.sources.Middleware(a.auth.Middleware, h)
	h = tenancy.BodyLimit(a.flags.maxBody, h)

	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", a.metrics.handler())
	mux.HandleFunc("/", a.notFound)

	var root http.Handler = a.wellKnown(tenancy.OriginCheck(a.flags.allowedOrigins, a.hostCheck, mux))
	if a.hostCheck {
		root = tenancy.HostCheck(loopbackHosts(a.flags.addr), root)
	}
	return accessLog(a.log, a.metrics.httpMiddleware(writeDeadline(root)))
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

// serve serves on ln until ctx ends, then shuts down gracefully: listening
// SSE streams are closed, in-flight requests get up to --shutdown-timeout
// to finish, then remaining connections are closed.
func (a *httpApp) serve(ctx context.Context, ln net.Listener) error {
	a.srv.Handler = a.handler()
	a.srv.ReadTimeout = a.readTimeout
	// Requests must not be cancelled by the signal that starts shutdown:
	// in-flight calls finish first.
	a.srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }

	defer every(context.WithoutCancel(ctx), a.sessions.sweepInterval(), a.sessions.sweepOnce)()
	// Registered before the server stops (defers run last in, first
	// out), so the final flush counts every refusal served.
	defer a.denials.flush(context.WithoutCancel(ctx))
	defer every(context.WithoutCancel(ctx), denialTallyInterval, a.denials.flush)()
	if a.heartbeat != nil {
		defer a.heartbeat.start(context.WithoutCancel(ctx))()
	}
	defer a.embed.startIndexer(ctx, a.store, a.log)()

	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	a.log.Info("shutting down: finishing in-flight requests", "timeout", a.flags.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.flags.shutdownTimeout)
	defer cancel()
	err := a.streams.Shutdown(sctx) // closes SSE streams, then http.Server.Shutdown
	if err != nil {
		a.log.Warn("shutdown timed out; closing connections", "err", err)
		_ = a.srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", serr)
	}
	a.log.Info("stopped")
	return nil
}

func (a *httpApp) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
}

func (a *httpApp) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		a.log.Error("readiness check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, `{"status":"unavailable"}`)
		return
	}
	writeJSON(w, http.StatusOK, `{"status":"ready"}`)
}

// ensureTenant creates the tenants row of a JWT-authenticated tenant on
// its first request: the token issuer, not the CLI, creates tenants. The
// Authenticator has already refused a disabled tenant.
func (a *httpApp) ensureTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, _ := tenancy.FromContext(r.Context())
		if rc.AuthMethod == tenancy.AuthJWT && !a.tenants.has(rc.TenantID) {
			if !memory.ValidTenantID(rc.TenantID) {
				a.log.Info("request denied", "reason", reasonInvalidTenantID, "status", http.StatusForbidden, "auth", string(rc.AuthMethod))
				a.denied(r, tenancy.RequestContext{}, reasonInvalidTenantID, http.StatusForbidden)
				tenancy.WriteForbidden(w)
				return
			}
			if err := a.store.EnsureTenant(r.Context(), rc.TenantID); err != nil {
				a.log.Error("create tenant of JWT", "tenant", rc.TenantID, "err", err)
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
// is not a valid tenant id (memory.ValidTenantID).
const reasonInvalidTenantID = "invalid_tenant_id"

// denied reports a refusal made after authentication through the
// Authenticator's OnDenied hook, so that metrics (and whatever else is
// hooked there) see it like the Authenticator's own.
func (a *httpApp) denied(r *http.Request, rc tenancy.RequestContext, reason string, status int) {
	tenancy.NoteRefusal(r.Context(), reason)
	if a.auth.OnDenied != nil {
		a.auth.OnDenied(r, rc, reason, status)
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

// principal is who created an MCP session: a session id is usable only by
// the same principal. Every field of the verified identity takes part, so
// another key, user, tenant or dev override of the same tenant is another
// principal.
type principal struct {
	tenant, user, keyID, agent, env, home, issuer string
	method                                        tenancy.AuthMethod
	dev                                           bool
}

func principalOf(rc tenancy.RequestContext) principal {
	return principal{tenant: rc.TenantID, user: rc.UserID, keyID: rc.APIKeyID, agent: rc.AgentID,
		env: rc.Env, home: rc.HomeTenant, issuer: rc.Issuer, method: rc.AuthMethod, dev: rc.DevOverride}
}

// hash is what the store keeps of p: every field, unambiguously encoded,
// hashed (the store needs equality only).
func (p principal) hash() string {
	b, _ := json.Marshal([]any{p.tenant, p.user, p.keyID, p.agent, p.env, p.home, p.issuer, string(p.method), p.dev}) // strings and a bool always marshal
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sessionGuard sits between the middleware and mcp-go. mcp-go accepts any
// well-formed Mcp-Session-Id (and a GET with another client's id would
// receive that client's notifications), so the guard:
//   - binds each session id mcp-go mints on initialize to the principal
//     that asked for it, and answers 404 to any other principal, to unknown
//     ids and to ids idle for longer than the idle timeout (expired
//     sessions are also terminated in mcp-go, freeing their state);
//   - confines notifications/cancelled to the sender's own requests
//     (inflightRequests): mcp-go keys 2026-07-28 requests by JSON-RPC id
//     alone, so a cancel reaching it could end another tenant's call;
//   - reads the body once (413 past --max-body, even when chunked), lifts
//     the request read deadline, and renews a write deadline on every
//     write.
//
// Bindings are shared through the store (table mcp_sessions, keyed by the
// presenting principal's tenant), so that replicas on one database behave
// as one server: a client whose requests alternate between replicas keeps
// its session. The in-process map is a cache in front of the store: a
// local miss reads the store, and each session's stored last use is
// written at most every idle/4 (touchEvery), not on every request. The
// costs of that: a session expires between idle-idle/4 and idle after its
// last use when that use was served by another replica, and a DELETE
// through one replica takes up to idle/4 to be noticed by a replica that
// still holds the session (it only ever served the same principal).
// Expiry is by the later of the local and the stored last use; the sweep
// deletes the stored rows idle for longer than idle.
type sessionGuard struct {
	next     http.Handler
	store    *memory.Store
	idle     time.Duration
	log      *slog.Logger
	now      func() time.Time
	inflight *inflightRequests

	mu       sync.Mutex
	sessions map[string]*boundSession
}

type boundSession struct {
	owner    principal
	lastUsed time.Time // the last use through this replica
	stored   time.Time // the last use recorded in the store (or being recorded)
	inflight int
}

// seen is the later of the local and the stored last use.
func (s *boundSession) seen() time.Time {
	if s.stored.After(s.lastUsed) {
		return s.stored
	}
	return s.lastUsed
}

func newSessionGuard(store *memory.Store, idle time.Duration, log *slog.Logger) *sessionGuard {
	return &sessionGuard{store: store, idle: idle, log: log, now: time.Now, sessions: make(map[string]*boundSession),
		inflight: newInflightRequests()}
}

// touchEvery is how often a session's last use is written to the store.
func (g *sessionGuard) touchEvery() time.Duration { return g.idle / 4 }

func (g *sessionGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc, ok := tenancy.FromContext(r.Context())
	if !ok || rc.TenantID == "" {
		g.log.Error("MCP request without a RequestContext; check the middleware order")
		writeJSON(w, http.StatusInternalServerError, `{"error":"internal error"}`)
		return
	}
	p := principalOf(rc)

	var body []byte
	if r.Method == http.MethodPost && r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				tenancy.NoteRefusal(r.Context(), tenancy.ReasonBodyTooLarge)
				w.Header().Set("Connection", "close")
				writeJSON(w, http.StatusRequestEntityTooLarge, `{"error":"request body too large"}`)
				return
			}
			tenancy.NoteRefusal(r.Context(), "unreadable_body")
			writeJSON(w, http.StatusBadRequest, `{"error":"cannot read request body"}`)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rctl := http.NewResponseController(w)
	_ = rctl.SetReadDeadline(time.Time{}) // the request is read; streams and long calls go on
	mw := &mcpWriter{ResponseWriter: w, rc: rctl}

	var env rpcEnvelope
	isRPC := false
	if r.Method == http.MethodPost {
		env, isRPC = parseEnvelope(body)
		noteRPC(r.Context(), string(env.Method))
	}

	ids := r.Header.Values(server.HeaderKeySessionID)
	switch {
	case len(ids) > 1:
		tenancy.NoteRefusal(r.Context(), "several_session_ids")
		writeJSON(w, http.StatusBadRequest, `{"error":"several session ids"}`)
		return
	case len(ids) == 0:
		if isRPC && env.Method != mcp.MethodInitialize {
			g.serveRPC(mw, r, p, "", env)
			return
		}
		if r.Method == http.MethodPost {
			// initialize: bind the id mcp-go mints to p before the client sees it
			mw.onHeader = func(h http.Header) {
				if id := h.Get(server.HeaderKeySessionID); id != "" {
					g.bind(r.Context(), id, p)
				}
			}
		}
		g.next.ServeHTTP(mw, r)
		return
	}

	id := ids[0]
	if !g.acquire(r.Context(), id, p) {
		tenancy.NoteRefusal(r.Context(), "session_not_found")
		writeJSON(w, http.StatusNotFound, `{"error":"session not found"}`)
		return
	}
	defer g.release(id)
	if isRPC {
		g.serveRPC(mw, r, p, id, env)
	} else {
		g.next.ServeHTTP(mw, r)
	}
	if r.Method == http.MethodDelete && mw.status >= 200 && mw.status < 300 {
		g.forget(r.Context(), id)
	}
}

// bind records a new session of p, here and in the store. When the store
// fails the binding is kept here only: the session works on this replica
// and is unknown (404) on the others.
func (g *sessionGuard) bind(ctx context.Context, id string, p principal) {
	g.mu.Lock()
	_, ok := g.sessions[id]
	if !ok {
		now := g.now()
		g.sessions[id] = &boundSession{owner: p, lastUsed: now, stored: now}
	}
	g.mu.Unlock()
	if ok {
		return
	}
	if err := g.store.BindMCPSession(ctx, id, p.hash()); err != nil {
		g.log.Error("MCP session not shared with other replicas", "tenant", p.tenant, "err", err)
	}
}

// acquire reports whether p may use session id, and marks it in use.
// Another principal's session, an unknown one (here and in the store, in
// p's tenant) and an expired one are all refused the same way.
func (g *sessionGuard) acquire(ctx context.Context, id string, p principal) bool {
	g.mu.Lock()
	s, ok := g.sessions[id]
	if ok && s.owner != p {
		g.mu.Unlock()
		g.log.Warn("MCP session used by another principal; refused", "owner_tenant", s.owner.tenant, "tenant", p.tenant, "user", p.user)
		return false
	}
	now := g.now()
	if ok && (s.inflight > 0 || now.Sub(s.seen()) <= g.idle) {
		s.inflight++
		s.lastUsed = now
		touch := now.Sub(s.stored) >= g.touchEvery()
		if touch {
			s.stored = now // one request records the use; the others do not wait for it
		}
		g.mu.Unlock()
		if touch && !g.touch(ctx, id, p) {
			g.release(id)
			g.expire(ctx, id, p, "deleted or expired on another replica")
			return false
		}
		return true
	}
	g.mu.Unlock()

	// Unknown here, or idle here: the store knows whether another replica
	// created or used it since.
	if ok {
		if !g.touch(ctx, id, p) {
			g.expire(ctx, id, p, "expired")
			return false
		}
		return g.adopt(id, p, now, now)
	}
	ms, err := g.store.MCPSession(ctx, id)
	switch {
	case errors.Is(err, memory.ErrNotFound):
		return false
	case err != nil:
		g.log.Error("read MCP session", "tenant", p.tenant, "err", err)
		return false
	case ms.Principal != p.hash():
		g.log.Warn("MCP session used by another principal; refused", "tenant", p.tenant, "user", p.user)
		return false
	case now.Sub(ms.LastUsed) > g.idle:
		if err := g.store.DeleteMCPSession(ctx, id); err != nil {
			g.log.Error("delete expired MCP session", "tenant", p.tenant, "err", err)
		}
		return false
	}
	stored := ms.LastUsed
	if now.Sub(stored) >= g.touchEvery() {
		if !g.touch(ctx, id, p) {
			return false
		}
		stored = now
	}
	return g.adopt(id, p, now, stored)
}

// adopt holds session id of p here, in use, after the store vouched for
// it; stored is its last use as the store now records it.
func (g *sessionGuard) adopt(id string, p principal, now, stored time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.sessions[id]
	if !ok {
		s = &boundSession{owner: p}
		g.sessions[id] = s
	}
	if s.owner != p {
		return false
	}
	s.inflight++
	s.lastUsed = now
	if stored.After(s.stored) {
		s.stored = stored
	}
	return true
}

// touch records a use of session id in the store. It reports false when
// the store no longer holds the session for p (deleted, or expired by its
// stored last use); a storage error keeps the session (logged).
func (g *sessionGuard) touch(ctx context.Context, id string, p principal) bool {
	_, err := g.store.TouchMCPSession(ctx, id, p.hash(), g.idle)
	switch {
	case errors.Is(err, memory.ErrNotFound):
		return false
	case err != nil:
		g.log.Error("record MCP session use", "tenant", p.tenant, "err", err)
	}
	return true
}

// expire drops session id here and in mcp-go, unless a request is using it.
func (g *sessionGuard) expire(ctx context.Context, id string, p principal, why string) {
	g.mu.Lock()
	s, ok := g.sessions[id]
	if !ok || s.inflight > 0 {
		g.mu.Unlock()
		return
	}
	delete(g.sessions, id)
	g.mu.Unlock()
	g.log.Info("MCP session "+why, "session", id, "tenant", p.tenant)
	g.terminate(ctx, id)
}

// release ends one use of session id.
func (g *sessionGuard) release(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.sessions[id]; ok {
		s.inflight--
		s.lastUsed = g.now()
	}
}

// forget drops a session the client deleted, here and in the store.
func (g *sessionGuard) forget(ctx context.Context, id string) {
	g.mu.Lock()
	delete(g.sessions, id)
	g.mu.Unlock()
	if err := g.store.DeleteMCPSession(ctx, id); err != nil {
		g.log.Error("delete MCP session", "err", err)
	}
}

func (g *sessionGuard) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// sweepInterval is how often sweepOnce runs: a quarter of the idle
// timeout, between one second and one minute.
func (g *sessionGuard) sweepInterval() time.Duration {
	return min(max(g.idle/4, time.Second), time.Minute)
}

// sweepOnce expires idle sessions: the ones held here (by the
// later of the local and the stored last use), and the stored ones of
// every replica (by the stored last use). It also records the use of the
// sessions held in use here, so a long SSE stream or call does not let
// the session expire on the other replicas.
func (g *sessionGuard) sweepOnce(ctx context.Context) {
	var expired []string
	busy := map[string]principal{}
	g.mu.Lock()
	now := g.now()
	for id, s := range g.sessions {
		switch {
		case s.inflight == 0 && now.Sub(s.seen()) > g.idle:
			expired = append(expired, id)
			delete(g.sessions, id)
		case s.inflight > 0 && now.Sub(s.stored) >= g.touchEvery():
			// in use for a long time (an SSE stream, a long call):
			// keep it alive for the other replicas too
			s.stored = now
			busy[id] = s.owner
		}
	}
	g.mu.Unlock()
	for _, id := range expired {
		g.terminate(ctx, id)
	}
	for id, p := range busy {
		g.touch(tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: p.tenant}), id, p)
	}
	if len(expired) > 0 {
		g.log.Info("expired idle MCP sessions", "count", len(expired))
	}
	if n, err := g.store.DeleteIdleMCPSessions(ctx, g.idle); err != nil && ctx.Err() == nil {
		g.log.Error("MCP session sweep failed", "err", err)
	} else if n > 0 {
		g.log.Info("deleted idle MCP sessions from the store", "count", n)
	}
}

// terminate ends session id inside mcp-go, as the client's DELETE would,
// so that its per-session state is freed.
func (g *sessionGuard) terminate(ctx context.Context, id string) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodDelete, "/mcp", nil)
	if err != nil {
		return
	}
	req.Header.Set(server.HeaderKeySessionID, id)
	g.next.ServeHTTP(&discardWriter{header: http.Header{}}, req)
}

// mcpWriter is the response writer mcp-go gets: it renews the write
// deadline on every write, records the status, and calls onHeader once
// just before the header is sent. It keeps Flush (SSE) and Unwrap.
type mcpWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	status   int
	onHeader func(http.Header)
}

func (w *mcpWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if w.onHeader != nil {
			w.onHeader(w.Header())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *mcpWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeStallTimeout))
	return w.ResponseWriter.Write(p)
}

func (w *mcpWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeStallTimeout))
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *mcpWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// discardWriter is the response writer of internal requests.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// Replica heartbeat (PostgreSQL only): how rate limits are shared by
// replicas on one database.
const (
	// heartbeatInterval is how often each replica records that it is alive.
	heartbeatInterval = time.Second
	// heartbeatWindow is how recent a beat must be for its replica to count
	// as live: a replica that joins or dies changes the count within it.
	heartbeatWindow = 3 * time.Second
)

// replicaHeartbeat keeps this replica's row in the store's replicas table
// and the number of live replicas, which the rate limiter divides each
// tenant's limit by (tenancy.RateLimiter.Replicas states the tolerance).
type replicaHeartbeat struct {
	store *memory.Store
	log   *slog.Logger
	id    string
	n     atomic.Int32
}

func newReplicaHeartbeat(store *memory.Store, log *slog.Logger) *replicaHeartbeat {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	h := &replicaHeartbeat{store: store, log: log, id: hex.EncodeToString(b)}
	h.n.Store(1)
	return h
}

// live is the number of live replicas, this one included (at least 1).
func (h *replicaHeartbeat) live() int { return int(h.n.Load()) }

// beat records one heartbeat. On a storage error the last count stays.
func (h *replicaHeartbeat) beat(ctx context.Context) {
	n, err := h.store.ReplicaHeartbeat(ctx, h.id, heartbeatWindow)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Error("replica heartbeat failed", "err", err)
		}
		return
	}
	if old := h.n.Swap(int32(n)); int(old) != n {
		h.log.Info("live replicas changed; each enforces its share of the rate limits", "replicas", n, "was", old)
	}
}

// start beats once, then every heartbeatInterval until the returned stop
// is called; stop removes this replica's row so the others stop counting
// it at their next beat.
func (h *replicaHeartbeat) start(ctx context.Context) (stop func()) {
	h.beat(ctx)
	stopBeats := every(ctx, heartbeatInterval, h.beat)
	return func() {
		stopBeats()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		if err := h.store.RemoveReplica(rctx, h.id); err != nil {
			h.log.Warn("remove replica heartbeat", "err", err)
		}
	}
}
