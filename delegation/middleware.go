package delegation

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Mode is how the trust middleware treats EATP headers (--eatp-mode).
type Mode string

// The trust middleware modes.
const (
	// ModeDisabled passes every request without reading EATP headers.
	ModeDisabled Mode = "disabled"
	// ModePermissive verifies, logs failures at Warn and passes every request.
	ModePermissive Mode = "permissive"
	// ModeEnforcing refuses requests whose trust context is missing (401),
	// fails verification (403) or cannot be verified (503).
	ModeEnforcing Mode = "enforcing"
)

// DefaultMode is the mode when none is configured.
const DefaultMode = ModePermissive

// ParseMode parses a mode name, ignoring case and surrounding space.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeDisabled, ModePermissive, ModeEnforcing:
		return m, nil
	}
	return "", fmt.Errorf("unknown EATP mode %q (want disabled, permissive or enforcing)", s)
}

// MiddlewareConfig configures Middleware.
type MiddlewareConfig struct {
	// Mode selects the behaviour; an unknown mode acts as ModeEnforcing.
	Mode Mode
	// ExemptPaths are passed without EATP processing: an exact path
	// ("/health") or a prefix ending in "/*" ("/metrics/*" matches
	// "/metrics" and everything below it). Paths are compared by segments
	// after cleaning, and a request path that is not already clean (".",
	// "..", "//", percent-encoded slashes) is never exempt.
	ExemptPaths []string
	// RequireHumanOrigin refuses (401) contexts without a human origin.
	RequireHumanOrigin bool
	// Policy holds the chain limits the middleware checks before Verifier.
	Policy ChainPolicy
	// Verifier does the store-backed verification, usually
	// NewVerifier(store, policy). In enforcing mode a nil Verifier refuses
	// every request with 503 (fail closed); in permissive mode only the
	// chain rules are checked and contexts are never marked Verified.
	Verifier Verifier
	// Logger receives warnings and errors; nil means slog.Default().
	Logger *slog.Logger
	// OnDenied, when set, is called for every refused request (for the
	// audit log) with a reason that holds no request values.
	OnDenied func(r *http.Request, reason string, status int)
	// Membership is the membership lookup of CheckHumanOrigin (an admin
	// may name another user of its tenant); nil finds no memberships.
	Membership tenancy.MembershipLookup
	// OnOriginDropped, when set, is called in permissive mode for every
	// request whose human origin failed CheckHumanOrigin and was dropped
	// (for the audit log), with a reason that holds no request values.
	OnOriginDropped func(r *http.Request, reason string)
}

// Fixed response bodies: a refusal never echoes request values.
const (
	bodyUnauthorized = "EATP trust context required"
	bodyForbidden    = "EATP trust verification failed"
	bodyUnavailable  = "EATP trust verification unavailable"
)

// Reasons passed to OnDenied for refusals that are not verification errors.
const (
	ReasonMissingContext     = "missing trace id or agent id"
	ReasonHumanOriginMissing = "human origin required"
	ReasonInternal           = "internal error"
)

// Middleware returns the trust middleware of the HTTP edge. It must run
// after authentication, so the RequestContext (tenant) is in the request's
// context. Except in disabled mode and on exempt paths, a request carrying
// any EATP header gets its TrustContext attached to the RequestContext
// (FromContext reads it back), with Verified set when verification passed.
func Middleware(cfg MiddlewareConfig, next http.Handler) http.Handler {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	mode := cfg.Mode
	switch mode {
	case ModeDisabled, ModePermissive, ModeEnforcing:
	default:
		mode = ModeEnforcing
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode == ModeDisabled || isExempt(r, cfg.ExemptPaths) {
			next.ServeHTTP(w, r)
			return
		}
		tc, _ := Extract(r.Header, logger) // warnings are logged by Extract
		present := len(tc.Raw) > 0

		// The human origin gets the rule a human_origin argument gets, in
		// every mode, whatever else the context carries.
		var originErr error
		if len(tc.HumanOrigin) > 0 {
			_, originErr = CheckHumanOrigin(r.Context(), tc.HumanOrigin, cfg.Membership)
		}
		status, reason, err := check(r, tc, cfg, mode, originErr)
		tc.Verified = status == 0 && cfg.Verifier != nil
		if mode == ModePermissive {
			if status != 0 && present {
				logger.Warn("eatp trust verification failed (permissive: passed)", "reason", reason)
			}
			if err != nil && status == http.StatusServiceUnavailable {
				logger.Error("eatp trust verification error", "err", err)
			}
			if originErr != nil {
				// Never stored nor forwarded: the request goes on without it.
				tc.HumanOrigin = nil
				delete(tc.Raw, http.CanonicalHeaderKey(HeaderHumanOrigin))
				dropReason := ReasonInternal
				if IsDenial(originErr) {
					dropReason = originErr.Error()
				} else {
					logger.Error("eatp human origin check error", "err", originErr)
				}
				logger.Warn("eatp human origin dropped (permissive)", "reason", dropReason)
				if cfg.OnOriginDropped != nil {
					cfg.OnOriginDropped(r, "human origin dropped: "+dropReason)
				}
			}
			if present {
				r = r.WithContext(NewContext(r.Context(), tc))
			}
			next.ServeHTTP(w, r)
			return
		}

		// Enforcing.
		if status != 0 {
			body := bodyForbidden
			switch status {
			case http.StatusUnauthorized:
				body = bodyUnauthorized
			case http.StatusServiceUnavailable:
				body = bodyUnavailable
				logger.Error("eatp trust verification error", "err", err)
			}
			logger.Warn("eatp request refused", "status", status, "reason", reason)
			if cfg.OnDenied != nil {
				cfg.OnDenied(r, reason, status)
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, body, status)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), tc)))
	})
}

// check runs the middleware's checks and returns 0 when tc passes, or the
// refusal status, a value-free reason and (for 503) the underlying error.
func check(r *http.Request, tc TrustContext, cfg MiddlewareConfig, mode Mode, originErr error) (int, string, error) {
	switch {
	case originErr != nil && IsDenial(originErr):
		return http.StatusForbidden, originErr.Error(), nil
	case originErr != nil:
		return http.StatusServiceUnavailable, ReasonInternal, originErr
	}
	if !tc.Valid() {
		return http.StatusUnauthorized, ReasonMissingContext, nil
	}
	if cfg.RequireHumanOrigin && len(tc.HumanOrigin) == 0 {
		return http.StatusUnauthorized, ReasonHumanOriginMissing, nil
	}
	if err := CheckChain(tc, cfg.Policy); err != nil {
		return http.StatusForbidden, err.Error(), nil
	}
	if cfg.Verifier == nil {
		if mode == ModePermissive {
			return 0, "", nil
		}
		return http.StatusServiceUnavailable, ReasonInternal, fmt.Errorf("eatp: enforcing mode without a verifier")
	}
	err := cfg.Verifier(r.Context(), tc, r.Method, r.URL.Path)
	switch {
	case err == nil:
		return 0, "", nil
	case IsDenial(err):
		return http.StatusForbidden, err.Error(), nil
	}
	return http.StatusServiceUnavailable, ReasonInternal, err
}

// isExempt reports whether r's path is one of the exempt paths.
func isExempt(r *http.Request, patterns []string) bool {
	if len(patterns) == 0 || r.URL == nil {
		return false
	}
	p := r.URL.Path
	if p == "" || p[0] != '/' || r.URL.RawPath != "" {
		return false
	}
	c := path.Clean(p)
	if c != p && c+"/" != p {
		return false // not clean: "..", ".", "//" never reach an exempt path
	}
	trailingSlash := c != p
	for _, pat := range patterns {
		if pat == "" || pat[0] != '/' {
			continue
		}
		if prefix, ok := strings.CutSuffix(pat, "/*"); ok {
			prefix = path.Clean("/" + prefix)
			if prefix == "/" || c == prefix || strings.HasPrefix(c, prefix+"/") {
				return true
			}
			continue
		}
		if !trailingSlash && c == path.Clean(pat) {
			return true // exact: "/health" matches neither "/health/" nor "/healthz"
		}
	}
	return false
}

// NewContext returns a copy of ctx whose RequestContext carries tc as its
// Trust. Without a RequestContext in ctx, one holding only tc is added (it
// has no tenant, so storage still fails closed).
func NewContext(ctx context.Context, tc TrustContext) context.Context {
	rc, _ := tenancy.FromContext(ctx)
	rc.Trust = tc
	return tenancy.NewContext(ctx, rc)
}

// FromContext returns the TrustContext attached to ctx's RequestContext.
func FromContext(ctx context.Context) (TrustContext, bool) {
	rc, ok := tenancy.FromContext(ctx)
	if !ok {
		return TrustContext{}, false
	}
	return Of(rc)
}

// Of returns the TrustContext rc carries, if any: the one typed reader of
// RequestContext.Trust (tenancy cannot name the type).
func Of(rc tenancy.RequestContext) (TrustContext, bool) {
	tc, ok := rc.Trust.(TrustContext)
	return tc, ok
}
