package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/httpserver"
	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// defaultHTTPAddr is the address of --http given without a value: loopback
// only. There is no non-loopback default.
const defaultHTTPAddr = "127.0.0.1:8080"

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
		"dev_headers", devHeaders, "host_check", app.HostCheck())
	if !app.HostCheck() {
		logger.Warn("listening beyond loopback: terminate TLS in front of nexus-mcp", "addr", addr)
	}
	return app.serve(ctx, ln)
}

// httpApp is serve --http: the HTTP server (package httpserver) built from
// the flags over the store, and the embedding indexer that runs beside it.
type httpApp struct {
	*httpserver.Server
	store *memory.Store
	log   *slog.Logger
	embed *embedFlags
	auth  *tenancy.Authenticator // the server's, with its hooks
}

// newHTTPApp wires the transport from the flags; adjust (tests) changes
// the server's configuration before it is built. It fails on a
// configuration the server must refuse to start with.
func newHTTPApp(store *memory.Store, logger *slog.Logger, sf *serveFlags, jwtV *tenancy.JWTVerifier, devHeaders bool, adjust ...func(*httpserver.Config)) (*httpApp, error) {
	f := sf.http
	if err := sf.embed.setup(logger); err != nil {
		return nil, err
	}
	rs, err := f.resourceServer()
	if err != nil {
		return nil, err
	}
	mode, err := sf.trust.validate()
	if err != nil {
		return nil, err
	}
	policy := delegation.ChainPolicy{MaxDepth: sf.trust.maxDepth}
	cfg := httpserver.Config{
		Addr:                f.addr,
		AllowedOrigins:      f.allowedOrigins,
		MaxBody:             f.maxBody,
		RateRPS:             f.rateRPS,
		RateBurst:           f.rateBurst,
		AuthFailRPS:         f.authFailRPS,
		AuthFailBurst:       f.authFailBurst,
		MetricsTenantLabels: f.metricsTenantLabels,
		SessionIdleTimeout:  f.sessionIdleTimeout,
		ShutdownTimeout:     f.shutdownTimeout,
		Replicas:            store.Backend() == "postgres",
		Version:             buildVersion(),
		Store:               httpStore{store},
		Logger:              logger,
		Auth: &tenancy.Authenticator{
			JWT:        jwtV,
			OAuth:      rs,
			Keys:       store,
			LegacyKey:  f.legacyAPIKey,
			Members:    store,
			Tenants:    store,
			DevHeaders: devHeaders,
			Logger:     logger,
		},
		Trust: delegation.MiddlewareConfig{
			Mode:               mode,
			ExemptPaths:        sf.trust.exempt,
			RequireHumanOrigin: sf.trust.requireHumanOrigin,
			Policy:             policy,
			Verifier:           delegation.NewVerifier(store, policy),
			Membership:         store,
		},
		NewMCP: func(extra ...server.ServerOption) *server.MCPServer {
			return newMCPServer(store, logger, sf, nil, extra...)
		},
	}
	for _, fn := range adjust {
		fn(&cfg)
	}
	srv, err := httpserver.New(cfg)
	if err != nil {
		return nil, err
	}
	return &httpApp{Server: srv, store: store, log: logger, embed: &sf.embed, auth: cfg.Auth}, nil
}

// serve runs the server and the embedding indexer until ctx ends.
func (a *httpApp) serve(ctx context.Context, ln net.Listener) error {
	defer a.embed.startIndexer(ctx, a.store, a.log)()
	return a.Serve(ctx, ln)
}

// httpStore is the store as httpserver declares it: memory's not-found
// and audit rows in the server's words.
type httpStore struct{ *memory.Store }

func (s httpStore) MCPSession(ctx context.Context, id string) (string, time.Time, error) {
	ms, err := s.Store.MCPSession(ctx, id)
	if errors.Is(err, memory.ErrNotFound) {
		return "", time.Time{}, httpserver.ErrNoSession
	}
	return ms.Principal, ms.LastUsed, err
}

func (s httpStore) TouchMCPSession(ctx context.Context, id, principal string, idle time.Duration) error {
	_, err := s.Store.TouchMCPSession(ctx, id, principal, idle)
	if errors.Is(err, memory.ErrNotFound) {
		return httpserver.ErrNoSession
	}
	return err
}

func (s httpStore) AuditDenial(ctx context.Context, rc tenancy.RequestContext, d httpserver.Denial) error {
	return s.Store.AuditDenial(ctx, rc, memory.AuditEntry{Action: d.Action, Outcome: memory.OutcomeDenied,
		Detail: memory.DenialDetail(d.Reason, d.Status, d.Method, d.Path)})
}

func (s httpStore) AuditDenialTally(ctx context.Context, t httpserver.Tally) error {
	return s.Store.AuditDenial(ctx, tenancy.RequestContext{}, memory.AuditEntry{Action: t.Action, Outcome: memory.OutcomeDenied,
		Detail: memory.DenialTallyDetail(t.Reason, t.Status, t.Source, t.Count, t.First, t.Last)})
}
