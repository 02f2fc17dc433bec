package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// WellKnownProtectedResource is the RFC 9728 metadata path.
const WellKnownProtectedResource = "/.well-known/oauth-protected-resource"

// Bounds of authorization server metadata discovery.
const (
	discoveryTimeout    = 5 * time.Second
	discoveryMaxBytes   = 1 << 20
	discoveryMinRefresh = 10 * time.Second
)

// ResourceServerConfig configures a ResourceServer.
type ResourceServerConfig struct {
	// Issuers are the trusted authorization servers' issuer identifiers
	// (https, or http on a loopback host), exactly as their tokens' "iss".
	Issuers []string
	// Resource is the server's canonical URL (RFC 8707, RFC 9728
	// "resource"): every token's "aud" must contain it.
	Resource string
	// TenantClaim names the claim carrying the tenant (see JWTConfig).
	TenantClaim string
	// Leeway is the clock skew allowed for exp, nbf and iat (see JWTConfig).
	Leeway time.Duration
	// HTTPClient fetches metadata and JWKS; nil means a 10 s client.
	HTTPClient *http.Client
}

// ResourceServer verifies OAuth 2.1 access tokens (JWTs, RFC 9068) issued
// for one resource by one of several authorization servers. Each issuer's
// signing keys come from the jwks_uri of its RFC 8414 (or OpenID Connect)
// metadata, discovered on first use and cached; a token is verified by the
// issuer its "iss" names, must carry the resource in "aud", and yields
// the user (issuer, sub), the tenant claim and the nexus scopes of its
// "scope" (or "scp") claim. It is safe for concurrent use.
type ResourceServer struct {
	resource string
	issuers  map[string]*issuerKeys
	order    []string
}

// issuerKeys discovers and holds the verifier of one issuer.
type issuerKeys struct {
	issuer string
	cfg    JWTConfig // without JWKSURL until discovered
	client *http.Client

	mu    sync.Mutex
	v     *JWTVerifier
	tried time.Time
}

// NewResourceServer checks cfg: at least one issuer, each an absolute
// https URL (http only on loopback) without query or fragment; a resource
// URL of the same kind. It does no I/O (see Discover).
func NewResourceServer(cfg ResourceServerConfig) (*ResourceServer, error) {
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("oauth: no issuer")
	}
	if err := checkServerURL("resource URL", cfg.Resource); err != nil {
		return nil, err
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	rs := &ResourceServer{resource: cfg.Resource, issuers: map[string]*issuerKeys{}}
	for _, iss := range cfg.Issuers {
		if err := checkServerURL("issuer", iss); err != nil {
			return nil, err
		}
		if _, dup := rs.issuers[iss]; dup {
			return nil, fmt.Errorf("oauth: issuer %q given twice", iss)
		}
		rs.issuers[iss] = &issuerKeys{issuer: iss, client: client, cfg: JWTConfig{
			HTTPClient:  client,
			Issuer:      iss,
			Audience:    cfg.Resource,
			Leeway:      cfg.Leeway,
			TenantClaim: cfg.TenantClaim,
			OAuth:       true,
		}}
		rs.order = append(rs.order, iss)
	}
	return rs, nil
}

// checkServerURL accepts an absolute https URL, or http to a loopback host,
// without user info, query or fragment.
func checkServerURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return fmt.Errorf("oauth: %s %q is not an absolute URL", what, raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "#") || strings.HasSuffix(raw, "?") {
		return fmt.Errorf("oauth: %s %q must not have user info, query or fragment", what, raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return fmt.Errorf("oauth: %s %q must be https (http only on a loopback host)", what, raw)
	}
	return nil
}

// Resource is the canonical URL tokens must name in "aud".
func (rs *ResourceServer) Resource() string { return rs.resource }

// Issuers are the trusted issuers, in configuration order.
func (rs *ResourceServer) Issuers() []string { return slices.Clone(rs.order) }

// MetadataURL is where this resource's RFC 9728 metadata is served: the
// well-known path with the resource's path appended
// ("https://h/mcp" → "https://h/.well-known/oauth-protected-resource/mcp").
func (rs *ResourceServer) MetadataURL() string {
	u, _ := url.Parse(rs.resource) // checked by NewResourceServer
	p := strings.TrimSuffix(u.Path, "/")
	return u.Scheme + "://" + u.Host + WellKnownProtectedResource + p
}

// Discover fetches every issuer's metadata and keys now; the composition
// root calls it at start-up to report an unreachable issuer early. A
// failure is not fatal: discovery is retried on use.
func (rs *ResourceServer) Discover(ctx context.Context) error {
	var errs []error
	for _, iss := range rs.order {
		ik := rs.issuers[iss]
		if _, err := ik.verifier(ctx, time.Now(), true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Trusts reports whether token (unverified) names one of the issuers.
func (rs *ResourceServer) Trusts(token string) bool {
	_, ok := rs.issuers[unverifiedIssuer(token)]
	return ok
}

// unverifiedIssuer reads "iss" of a JWT without verifying it, only to pick
// the verifier; the verifier checks it again.
func unverifiedIssuer(token string) string {
	if len(token) > DefaultMaxTokenBytes || !LooksLikeJWT(token) {
		return ""
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		return ""
	}
	iss, _ := claims["iss"].(string)
	return iss
}

// Verify checks an access token at time now. Every failure wraps
// ErrUnauthenticated; the message is for logs only.
func (rs *ResourceServer) Verify(ctx context.Context, token string, now time.Time) (RequestContext, error) {
	ik, ok := rs.issuers[unverifiedIssuer(token)]
	if !ok {
		return RequestContext{}, fmt.Errorf("verify access token: not issued by a trusted issuer: %w", ErrUnauthenticated)
	}
	v, err := ik.verifier(ctx, now, false)
	if err != nil {
		return RequestContext{}, fmt.Errorf("verify access token: %w: %w", err, ErrUnauthenticated)
	}
	return v.Verify(ctx, token, now)
}

// verifier returns the issuer's verifier, discovering its keys first if
// needed (at most once per discoveryMinRefresh unless force).
func (ik *issuerKeys) verifier(ctx context.Context, now time.Time, force bool) (*JWTVerifier, error) {
	ik.mu.Lock()
	defer ik.mu.Unlock()
	if ik.v != nil {
		return ik.v, nil
	}
	if !force && !ik.tried.IsZero() && now.Sub(ik.tried) < discoveryMinRefresh {
		return nil, fmt.Errorf("issuer %s: metadata not available yet", ik.issuer)
	}
	ik.tried = now
	jwksURL, err := discoverJWKS(ctx, ik.client, ik.issuer)
	if err != nil {
		return nil, err
	}
	cfg := ik.cfg
	cfg.JWKSURL = jwksURL
	v, err := NewJWTVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("issuer %s: %w", ik.issuer, err)
	}
	ik.v = v
	return v, nil
}

// metadataURLs lists where an issuer's metadata may live, in order:
// RFC 8414 (path inserted after the well-known prefix), then OpenID
// Connect Discovery (path appended), then OpenID with path insertion.
func metadataURLs(issuer string) []string {
	u, _ := url.Parse(issuer) // checked by NewResourceServer
	p := strings.TrimSuffix(u.Path, "/")
	base := u.Scheme + "://" + u.Host
	return []string{
		base + path.Join("/.well-known/oauth-authorization-server", p),
		base + p + "/.well-known/openid-configuration",
		base + path.Join("/.well-known/openid-configuration", p),
	}
}

// discoverJWKS reads the issuer's metadata and returns its jwks_uri. The
// metadata's "issuer" must equal issuer exactly (RFC 8414 section 3.3).
func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	var errs []error
	for _, mu := range metadataURLs(issuer) {
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(ctx, client, mu, &md); err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Issuer != issuer {
			return "", fmt.Errorf("issuer %s: metadata at %s names issuer %q", issuer, mu, md.Issuer)
		}
		if md.JWKSURI == "" {
			return "", fmt.Errorf("issuer %s: metadata at %s has no jwks_uri", issuer, mu)
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("issuer %s: no authorization server metadata: %w", issuer, errors.Join(errs...))
}

// getJSON fetches u (bounded in time and size) into v; non-200 is an error.
func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, discoveryMaxBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > discoveryMaxBytes {
		return fmt.Errorf("GET %s: response exceeds %d bytes", u, discoveryMaxBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
