package tenancy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Request headers the middleware reads.
const (
	HeaderAPIKey   = "X-API-Key"
	HeaderTenantID = "X-Tenant-Id"
	HeaderUserID   = "X-User-Id" // dev only, see Authenticator.DevHeaders
	HeaderEnv      = "X-Env"
	HeaderTimezone = "X-User-Timezone"
)

// DevHeadersEnabled reports whether the value of the ENABLE_DEV_HEADERS
// environment variable turns dev headers on: only exactly "1" does.
func DevHeadersEnabled(envValue string) bool { return envValue == "1" }

// MinLegacyKeyLen is the minimum length of Authenticator.LegacyKey.
const MinLegacyKeyLen = 32

// The fixed response bodies. They never vary with the cause, so a client
// learns nothing about which check failed.
const (
	bodyUnauthorized = `{"error":"unauthorized","error_description":"missing or invalid API key (send Authorization: Bearer nxk_…)"}` + "\n"
	// bodyUnauthorizedOAuth is the 401 body of a server that also accepts
	// OAuth access tokens (Authenticator.OAuth).
	bodyUnauthorizedOAuth = `{"error":"unauthorized","error_description":"missing or invalid access token or API key (authorization servers: see the resource_metadata URL in WWW-Authenticate)"}` + "\n"
	bodyForbidden         = `{"error":"forbidden"}` + "\n"
	bodyUnavailable       = `{"error":"service unavailable"}` + "\n"
	bodyTooLarge          = `{"error":"request body too large"}` + "\n"
	bodyRateLimited       = `{"error":"rate limited"}` + "\n"
	bodyInternal          = `{"error":"internal error"}` + "\n"
)

// Reasons passed to Authenticator.OnDenied and logged.
const (
	ReasonMissingCredentials  = "missing_credentials"
	ReasonAmbiguousCredential = "ambiguous_credentials"
	ReasonInvalidJWT          = "invalid_jwt"
	ReasonInvalidKey          = "invalid_key"
	ReasonTenantDisabled      = "tenant_disabled"
	ReasonTenantUnknown       = "tenant_unknown"
	ReasonNotMember           = "not_member"
	ReasonEnvMismatch         = "env_mismatch"
	ReasonStorage             = "storage_error"
	ReasonMisconfigured       = "misconfigured"
)

// MembershipLookup reports a principal's role in a tenant. It returns
// ("", nil) or an error wrapping ErrForbidden when p is not a member of
// tenantID; any other error is treated as a storage failure (503).
type MembershipLookup interface {
	Membership(ctx context.Context, tenantID string, p Principal) (role string, err error)
}

// TenantStatus is what storage knows about one tenant.
type TenantStatus struct {
	Exists   bool
	Disabled bool    // the kill switch: every request of the tenant gets 403
	RPS      float64 // per-tenant rate override; 0 = RateLimiter default
	Burst    int     // per-tenant burst override; 0 = RateLimiter default
}

// TenantLookup reports a tenant's status. An unknown tenant is
// TenantStatus{Exists: false} with a nil error; an error is a storage
// failure (503).
type TenantLookup interface {
	TenantStatus(ctx context.Context, tenantID string) (TenantStatus, error)
}

// writeFixed writes one of the fixed JSON bodies.
func writeFixed(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// WriteUnauthorized writes 401 with WWW-Authenticate: Bearer, adding
// error="invalid_token" when a credential was presented but failed, and
// the one fixed body used for every credential failure.
func WriteUnauthorized(w http.ResponseWriter, invalidToken bool) {
	if invalidToken {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	} else {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeFixed(w, http.StatusUnauthorized, bodyUnauthorized)
}

// WriteOAuthUnauthorized writes the 401 of an OAuth resource server (RFC
// 6750, RFC 9728 section 5.1): WWW-Authenticate names the resource
// metadata URL and the scopes a client should request, plus
// error="invalid_token" when a credential was presented but failed.
func WriteOAuthUnauthorized(w http.ResponseWriter, metadataURL string, invalidToken bool) {
	v := fmt.Sprintf(`Bearer resource_metadata=%q, scope=%q`, metadataURL, AllScopes.String())
	if invalidToken {
		v = `Bearer error="invalid_token", ` + strings.TrimPrefix(v, "Bearer ")
	}
	w.Header().Set("WWW-Authenticate", v)
	writeFixed(w, http.StatusUnauthorized, bodyUnauthorizedOAuth)
}

// WriteInsufficientScope writes 403 for a credential holding have that
// lacks need (RFC 6750 section 3.1): WWW-Authenticate carries
// error="insufficient_scope", the scope to request — have plus need, so a
// client that re-authorizes with exactly it (step-up) keeps what it could
// already do — and the resource metadata URL when there is one. The body
// names the missing scope, so that a person reading a client's error
// knows what to ask for.
func WriteInsufficientScope(w http.ResponseWriter, metadataURL string, have ScopeSet, need Scope) {
	v := fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q`, (have | ScopeSet(need)).String())
	if metadataURL != "" {
		v += fmt.Sprintf(`, resource_metadata=%q`, metadataURL)
	}
	w.Header().Set("WWW-Authenticate", v)
	body, _ := json.Marshal(map[string]string{ // strings always marshal
		"error":             "insufficient_scope",
		"error_description": "this credential lacks the scope " + need.String(),
		"scope":             need.String(),
	})
	writeFixed(w, http.StatusForbidden, string(body)+"\n")
}

// WriteForbidden writes 403 with a fixed body.
func WriteForbidden(w http.ResponseWriter) {
	writeFixed(w, http.StatusForbidden, bodyForbidden)
}

// WriteUnavailable writes 503 with a fixed body (storage failure).
func WriteUnavailable(w http.ResponseWriter) {
	writeFixed(w, http.StatusServiceUnavailable, bodyUnavailable)
}

// Authenticator is the HTTP authentication middleware. Set the fields,
// call Validate at start-up (refuse to start on error), then wrap the MCP
// handler with Middleware. Recommended order, outermost first:
// BodyLimit, HostCheck (loopback binds), OriginCheck, Authenticator,
// RateLimiter, MCP handler.
type Authenticator struct {
	// JWT verifies bearer tokens that look like JWTs; nil turns JWT off.
	JWT *JWTVerifier
	// OAuth verifies OAuth access tokens (bearer JWTs whose iss is one of
	// its issuers; every JWT when JWT is nil) and turns 401s into OAuth
	// challenges naming its metadata URL; nil turns OAuth off.
	OAuth *ResourceServer
	// Keys looks up API keys (X-API-Key or a non-JWT bearer); nil turns
	// API keys off.
	Keys KeyLookup
	// LegacyKey, when set (at least 32 characters), authenticates as
	// DefaultTenant with no user (AuthLegacyKey). It is compared in
	// constant time.
	LegacyKey string
	// Members allows X-Tenant-Id to switch to another tenant the user is a
	// member of; nil means no switching.
	Members MembershipLookup
	// Tenants is the kill switch, consulted on every request (required).
	// A tenant that does not exist is allowed only for JWTs (the issuer
	// creates tenants; the composition root creates the row lazily); for
	// every other method it is 403.
	Tenants TenantLookup
	// DevHeaders honours X-User-Id (within the credential's tenant). Set it
	// only when ENABLE_DEV_HEADERS is exactly "1".
	DevHeaders bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives denials and dev overrides; nil discards.
	Logger *slog.Logger
	// OnDenied, if set, is called for every 401/403/503 the middleware
	// writes, with whatever identity was established (may be empty).
	OnDenied func(r *http.Request, rc RequestContext, reason string, status int)
}

// Validate checks the configuration: at least one credential source,
// a legacy key of at least MinLegacyKeyLen characters, and a TenantLookup.
func (a *Authenticator) Validate() error {
	if a.JWT == nil && a.OAuth == nil && a.Keys == nil && a.LegacyKey == "" {
		return errors.New("authenticator: no credential source (JWT, OAuth, API keys or legacy key)")
	}
	if a.LegacyKey != "" && len(a.LegacyKey) < MinLegacyKeyLen {
		return fmt.Errorf("authenticator: legacy key is %d characters, need at least %d", len(a.LegacyKey), MinLegacyKeyLen)
	}
	if a.LegacyKey != "" && strings.TrimSpace(a.LegacyKey) != a.LegacyKey {
		return errors.New("authenticator: legacy key has leading or trailing whitespace")
	}
	if a.Tenants == nil {
		return errors.New("authenticator: no tenant lookup (kill switch)")
	}
	return nil
}

// Middleware authenticates every request and passes it on with the
// RequestContext in its context. In order:
//
//  1. Credential: exactly one of "Authorization: Bearer <token>" or
//     X-API-Key. A bearer that looks like a JWT goes to JWT (when
//     configured); anything else is tried as an API key, then as the legacy
//     key. The query string is never read. None: 401 "Bearer"; presented
//     but bad (or both headers): 401 `Bearer error="invalid_token"`, one
//     fixed body.
//  2. X-User-Timezone sets rc.Timezone when it looks like an IANA name.
//  3. X-User-Id, only with DevHeaders: replaces UserID (same tenant),
//     sets DevOverride and logs a warning.
//  4. X-Tenant-Id naming another tenant: allowed only when the
//     credential's own user (not a dev override) is a member; sets
//     TenantID and Role. Otherwise 403.
//  5. X-Env: when the credential is bound to an Env, a present X-Env must
//     equal it (403 otherwise); without a bound Env it is ignored.
//     The credential's home tenant must not be disabled (403 otherwise),
//     for every credential kind.
//  6. Kill switch: the status of the final tenant, read on every request
//     (with the key's row for an API key on its own tenant, from
//     TenantStatus otherwise): disabled or (except for JWTs on their own
//     tenant) unknown: 403; storage error: 503.
//
// When Validate fails, every request gets 503 (fail closed); call Validate
// at start-up to refuse to start instead.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := a.Validate(); err != nil {
		log.Error("authentication misconfigured; refusing every request", "err", err)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.deny(w, r, log, RequestContext{}, ReasonMisconfigured, http.StatusServiceUnavailable, err)
		})
	}
	var legacyHash []byte
	if a.LegacyKey != "" {
		h := sha256.Sum256([]byte(a.LegacyKey))
		legacyHash = h[:]
	}
	now := a.Now
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, st, reason, status, err := a.authenticate(r, legacyHash, now(), log)
		if status != 0 {
			a.deny(w, r, log, rc, reason, status, err)
			return
		}
		ctx := NewContext(r.Context(), rc)
		ctx = context.WithValue(ctx, statusKey{}, st)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// statusKey carries the TenantStatus of the final tenant to RateLimiter.
type statusKey struct{}

// deny writes the response for a failed request, logs it and calls OnDenied.
func (a *Authenticator) deny(w http.ResponseWriter, r *http.Request, log *slog.Logger, rc RequestContext, reason string, status int, err error) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	attrs := []any{"reason", reason, "status", status, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr}
	if rc.TenantID != "" {
		attrs = append(attrs, "tenant", rc.TenantID, "user", rc.UserID, "auth", string(rc.AuthMethod), "api_key_id", rc.APIKeyID)
	}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	log.Log(r.Context(), level, "request denied", attrs...)
	NoteRefusal(r.Context(), reason)
	switch {
	case status == http.StatusUnauthorized && a.OAuth != nil:
		WriteOAuthUnauthorized(w, a.OAuth.MetadataURL(), reason != ReasonMissingCredentials)
	case status == http.StatusUnauthorized:
		WriteUnauthorized(w, reason != ReasonMissingCredentials)
	case status == http.StatusForbidden:
		WriteForbidden(w)
	default:
		WriteUnavailable(w)
	}
	if a.OnDenied != nil {
		a.OnDenied(r, rc, reason, status)
	}
}

// authenticate establishes the RequestContext of r. A non-zero status
// means the request is denied for reason; err holds detail for the log.
func (a *Authenticator) authenticate(r *http.Request, legacyHash []byte, now time.Time, log *slog.Logger) (rc RequestContext, st TenantStatus, reason string, status int, err error) {
	ctx := r.Context()
	token, fromBearer, reason := credential(r.Header)
	switch {
	case reason != "":
		return rc, st, reason, http.StatusUnauthorized, nil
	case token == "":
		return rc, st, ReasonMissingCredentials, http.StatusUnauthorized, nil
	case fromBearer && a.OAuth != nil && LooksLikeJWT(token) && (a.JWT == nil || a.OAuth.Trusts(token)):
		rc, err = a.OAuth.Verify(ctx, token, now)
		if err != nil {
			return RequestContext{}, st, ReasonInvalidJWT, http.StatusUnauthorized, err
		}
	case fromBearer && a.JWT != nil && LooksLikeJWT(token):
		rc, err = a.JWT.Verify(ctx, token, now)
		if err != nil {
			return RequestContext{}, st, ReasonInvalidJWT, http.StatusUnauthorized, err
		}
	default:
		rc, st, reason, status, err = a.verifyKey(ctx, token, legacyHash, now)
		if status != 0 {
			return rc, st, reason, status, err
		}
	}

	if tz := r.Header.Get(HeaderTimezone); validTimezone(tz) {
		rc.Timezone = tz
	}

	credTenant := rc.TenantID
	if vals := r.Header.Values(HeaderUserID); len(vals) > 0 && a.DevHeaders {
		if len(vals) == 1 && validIdentityValue(vals[0]) {
			log.Warn("dev header override of user", "tenant", rc.TenantID, "credential_user", rc.UserID, "user", vals[0], "auth", string(rc.AuthMethod))
			rc.UserID = vals[0]
			rc.DevOverride = true
		} else {
			log.Warn("dev header X-User-Id ignored: invalid value", "tenant", rc.TenantID)
		}
	}

	if vals := r.Header.Values(HeaderTenantID); len(vals) > 0 {
		if len(vals) != 1 {
			return rc, st, ReasonNotMember, http.StatusForbidden, errors.New("several X-Tenant-Id headers")
		}
		if want := vals[0]; want != credTenant {
			// The credential's home tenant must be enabled wherever the
			// credential is used. A stored API key brought its status (and
			// VerifyAPIKey refused a disabled one); any other credential
			// reads it now.
			if rc.AuthMethod != AuthAPIKey {
				home, err := a.Tenants.TenantStatus(ctx, credTenant)
				if err != nil {
					return rc, st, ReasonStorage, http.StatusServiceUnavailable, fmt.Errorf("home tenant status: %w", err)
				}
				if home.Disabled {
					return rc, st, ReasonTenantDisabled, http.StatusForbidden, errors.New("home tenant disabled")
				}
			}
			rc, reason, status, err = a.switchTenant(ctx, rc, want)
			if status != 0 {
				return rc, st, reason, status, err
			}
		}
	}

	if rc.Env != "" {
		if vals := r.Header.Values(HeaderEnv); len(vals) > 0 && (len(vals) != 1 || vals[0] != rc.Env) {
			return rc, st, ReasonEnvMismatch, http.StatusForbidden, nil
		}
	}

	// A stored API key brought its tenant's status along (read in the same
	// statement); any other credential, or a switched tenant, reads it now.
	if rc.AuthMethod != AuthAPIKey || rc.TenantID != credTenant {
		if st, err = a.Tenants.TenantStatus(ctx, rc.TenantID); err != nil {
			return rc, st, ReasonStorage, http.StatusServiceUnavailable, fmt.Errorf("tenant status: %w", err)
		}
	}
	switch {
	case st.Disabled:
		return rc, st, ReasonTenantDisabled, http.StatusForbidden, nil
	case !st.Exists && !(rc.AuthMethod == AuthJWT && rc.TenantID == credTenant):
		return rc, st, ReasonTenantUnknown, http.StatusForbidden, nil
	}
	return rc, st, "", 0, nil
}

// verifyKey checks an API key, then the legacy key. A stored API key
// comes with its tenant's status; the legacy key with none.
func (a *Authenticator) verifyKey(ctx context.Context, token string, legacyHash []byte, now time.Time) (RequestContext, TenantStatus, string, int, error) {
	var keyErr error
	if a.Keys != nil && LooksLikeAPIKey(token) {
		rc, st, err := VerifyAPIKey(ctx, a.Keys, token, now)
		switch {
		case err == nil:
			return rc, st, "", 0, nil
		case errors.Is(err, ErrForbidden):
			return rc, st, ReasonTenantDisabled, http.StatusForbidden, err
		case !errors.Is(err, ErrUnauthenticated):
			return RequestContext{}, st, ReasonStorage, http.StatusServiceUnavailable, fmt.Errorf("api key lookup: %w", err)
		}
		keyErr = err
	}
	if legacyHash != nil {
		h := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(h[:], legacyHash) == 1 {
			return RequestContext{TenantID: DefaultTenant, AuthMethod: AuthLegacyKey, Scopes: AllScopes}, TenantStatus{}, "", 0, nil
		}
	}
	if keyErr == nil {
		keyErr = ErrUnauthenticated
	}
	return RequestContext{}, TenantStatus{}, ReasonInvalidKey, http.StatusUnauthorized, keyErr
}

// switchTenant moves rc to tenant want when rc's principal (the user with
// its home tenant or issuer) is a member. A dev-overridden user never
// switches tenants.
func (a *Authenticator) switchTenant(ctx context.Context, rc RequestContext, want string) (RequestContext, string, int, error) {
	p := rc.Principal()
	if !p.Valid() || rc.DevOverride || a.Members == nil || !validIdentityValue(want) {
		return rc, ReasonNotMember, http.StatusForbidden, nil
	}
	role, err := a.Members.Membership(ctx, want, p)
	switch {
	case err != nil && !errors.Is(err, ErrForbidden):
		return rc, ReasonStorage, http.StatusServiceUnavailable, fmt.Errorf("membership: %w", err)
	case err != nil || role == "":
		return rc, ReasonNotMember, http.StatusForbidden, nil
	}
	rc.HomeTenant = rc.TenantID
	rc.TenantID = want
	rc.Role = role
	return rc, "", 0, nil
}

// credential extracts the presented credential. fromBearer tells whether
// it came from Authorization: Bearer. A non-empty reason means a credential
// was presented but is unusable (several, or an unsupported scheme). The
// query string is never read.
func credential(h http.Header) (token string, fromBearer bool, reason string) {
	auths := h.Values("Authorization")
	keys := h.Values(HeaderAPIKey)
	switch {
	case len(auths)+len(keys) == 0:
		return "", false, ""
	case len(auths)+len(keys) > 1:
		return "", false, ReasonAmbiguousCredential
	case len(keys) == 1:
		if keys[0] == "" {
			return "", false, ReasonInvalidKey
		}
		return keys[0], false, ""
	}
	scheme, tok, ok := strings.Cut(auths[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false, ReasonInvalidKey
	}
	return tok, true, ""
}

// validTimezone accepts IANA-like names (letters, digits, _ + - /), at most
// 64 bytes; anything else is ignored.
func validTimezone(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

// OriginCheck answers 403 to any request whose Origin header is present
// and not exactly one of allowed ("scheme://host[:port]", compared
// case-insensitively; a trailing "/" in allowed is ignored). Requests
// without Origin (non-browser clients) pass. With loopbackSameOrigin (a
// loopback bind) a same-origin request to a loopback Host passes too: an
// Origin of "http://" + Host or "https://" + Host, where Host names
// loopback. That is a page this very address served, not a rebinding: a
// rebound name keeps its own (non-loopback) Host, which HostCheck refuses,
// and another loopback origin (another port or name) is cross-origin.
func OriginCheck(allowed []string, loopbackSameOrigin bool, next http.Handler) http.Handler {
	set := make(map[string]bool, len(allowed))
	for _, o := range allowed {
		set[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if vals := r.Header.Values("Origin"); len(vals) > 0 {
			ok := len(vals) == 1 && (set[strings.ToLower(vals[0])] || loopbackSameOrigin && sameLoopbackOrigin(vals[0], r.Host))
			if !ok {
				NoteRefusal(r.Context(), ReasonOriginNotAllowed)
				WriteForbidden(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// sameLoopbackOrigin reports whether origin is exactly http://host or
// https://host (case-insensitively) and host names loopback.
func sameLoopbackOrigin(origin, host string) bool {
	if host == "" || !isLoopbackHost(hostOnly(host)) {
		return false
	}
	o := strings.ToLower(origin)
	h := strings.ToLower(host)
	return o == "http://"+h || o == "https://"+h
}

// HostCheck protects loopback binds against DNS rebinding: the Host
// header, without port and brackets, must be one of allowedHosts (for
// example "127.0.0.1", "localhost", "[::1]"), compared case-insensitively;
// otherwise 403.
func HostCheck(allowedHosts []string, next http.Handler) http.Handler {
	set := make(map[string]bool, len(allowedHosts))
	for _, h := range allowedHosts {
		set[hostOnly(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := hostOnly(r.Host); h == "" || !set[h] {
			NoteRefusal(r.Context(), ReasonHostNotAllowed)
			WriteForbidden(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostOnly strips the port and IPv6 brackets from a Host value and lower-cases it.
func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimPrefix(h, "[")
	h = strings.TrimSuffix(h, "]")
	return strings.ToLower(h)
}

// BodyLimit answers 413 at once when Content-Length exceeds n and caps the
// body at n bytes otherwise (reading past it fails in the handler).
func BodyLimit(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			NoteRefusal(r.Context(), ReasonBodyTooLarge)
			w.Header().Set("Connection", "close")
			writeFixed(w, http.StatusRequestEntityTooLarge, bodyTooLarge)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		r2.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r2)
	})
}
