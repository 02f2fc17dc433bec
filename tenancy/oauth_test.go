package tenancy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testResource is the resource URL of the OAuth tests.
const testResource = "https://nexus.example/mcp"

// authServer is a minimal authorization server's discovery surface: its
// metadata (at the RFC 8414 path, or only at the OpenID path) and its JWKS.
// Tokens are minted by the test with the server's key.
type authServer struct {
	*httptest.Server
	issuer string
	key    *ecdsa.PrivateKey
	kid    string
	// metadataIssuer, when set, is the issuer the metadata claims (a
	// mismatch test); jwksURI likewise overrides jwks_uri.
	metadataIssuer string
	jwksURI        string
	metaHits       atomic.Int32
}

// newAuthServer starts an authorization server whose issuer is its URL
// plus path; oidcOnly serves the metadata only at the OpenID Connect
// (path-appended) location.
func newAuthServer(t *testing.T, path string, oidcOnly bool) *authServer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	as := &authServer{key: k, kid: "k-" + strings.Trim(path, "/")}
	mux := http.NewServeMux()
	as.Server = httptest.NewServer(mux)
	t.Cleanup(as.Close)
	as.issuer = as.URL + path
	meta := func(w http.ResponseWriter, _ *http.Request) {
		as.metaHits.Add(1)
		iss, jwks := as.issuer, as.URL+"/jwks"
		if as.metadataIssuer != "" {
			iss = as.metadataIssuer
		}
		if as.jwksURI != "" {
			jwks = as.jwksURI
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": jwks})
	}
	if oidcOnly {
		mux.HandleFunc("GET "+path+"/.well-known/openid-configuration", meta)
	} else {
		mux.HandleFunc("GET /.well-known/oauth-authorization-server"+path, meta)
	}
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(t, as.kid, as.key)}})
	})
	return as
}

// token mints an ES256 access token of as: valid for testResource, tenant
// acme, sub user-1, scope read+write; set changes claims (nil deletes).
func (as *authServer) token(t *testing.T, set map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{
		"iss": as.issuer, "sub": "user-1", "aud": testResource, "tenant_id": "acme",
		"scope": "nexus:read nexus:write openid",
		"iat":   testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(5 * time.Minute).Unix(),
	}
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return sign(t, jwt.SigningMethodES256, as.key, map[string]any{"kid": as.kid}, c)
}

// oauthAuth is an Authenticator with OAuth for issuers (and API keys off).
func oauthAuth(t *testing.T, members fakeMembers, cfg ResourceServerConfig) http.Handler {
	t.Helper()
	if cfg.Resource == "" {
		cfg.Resource = testResource
	}
	rs, err := NewResourceServer(cfg)
	if err != nil {
		t.Fatalf("NewResourceServer: %v", err)
	}
	a := &Authenticator{OAuth: rs, Tenants: newFakeTenants("acme", "beta"), Members: members, Now: func() time.Time { return testNow }}
	return a.Middleware(whoami)
}

// TestOAuthAccessTokens checks audience, issuer, expiry, scope and tenant
// claim handling of OAuth access tokens through the middleware. Every
// refusal is a 401 OAuth challenge; the controls get their identity.
func TestOAuthAccessTokens(t *testing.T) {
	asA := newAuthServer(t, "", false)
	asB := newAuthServer(t, "/realms/b", true) // OpenID discovery, issuer with a path
	h := oauthAuth(t, fakeMembers{}, ResourceServerConfig{Issuers: []string{asA.issuer, asB.issuer}})
	userA := OAuthUserID(asA.issuer, "user-1")
	userB := OAuthUserID(asB.issuer, "user-1")
	if userA == userB {
		t.Fatalf("OAuthUserID gives %q for both issuers", userA)
	}
	readWrite := ScopeSet(ScopeRead | ScopeWrite)

	cases := []struct {
		name       string
		token      string
		want       RequestContext // zero: want 401
		wantScopes ScopeSet
	}{
		{name: "valid token of issuer A (control)", token: asA.token(t, nil),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT, Scopes: readWrite}},
		{name: "valid token of issuer B (control)", token: asB.token(t, nil),
			want: RequestContext{TenantID: "acme", UserID: userB, Issuer: asB.issuer, AuthMethod: AuthJWT, Scopes: readWrite}},
		{name: "aud array holding the resource (control)", token: asA.token(t, map[string]any{"aud": []string{"other", testResource}}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT, Scopes: readWrite}},
		{name: "token for another audience", token: asA.token(t, map[string]any{"aud": "https://other.example/mcp"})},
		{name: "resource URL with a trailing slash", token: asA.token(t, map[string]any{"aud": testResource + "/"})},
		{name: "no aud", token: asA.token(t, map[string]any{"aud": nil})},
		{name: "untrusted issuer signing with a trusted key", token: asA.token(t, map[string]any{"iss": "http://127.0.0.1:1/evil"})},
		{name: "iss of B, signed by A's key", token: func() string {
			tok := asB.token(t, nil)
			c := jwt.MapClaims{}
			_, _, _ = jwt.NewParser().ParseUnverified(tok, c)
			return sign(t, jwt.SigningMethodES256, asA.key, map[string]any{"kid": asB.kid}, c)
		}()},
		{name: "no iss", token: asA.token(t, map[string]any{"iss": nil})},
		{name: "expired beyond leeway", token: asA.token(t, map[string]any{"exp": testNow.Add(-time.Minute).Unix()})},
		{name: "expired within leeway (control)", token: asA.token(t, map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT, Scopes: readWrite}},
		{name: "no exp", token: asA.token(t, map[string]any{"exp": nil})},
		{name: "not yet valid", token: asA.token(t, map[string]any{"nbf": testNow.Add(time.Hour).Unix()})},
		{name: "no sub", token: asA.token(t, map[string]any{"sub": nil})},
		{name: "no tenant claim", token: asA.token(t, map[string]any{"tenant_id": nil})},
		{name: "tenant claim not a string", token: asA.token(t, map[string]any{"tenant_id": 7})},
		{name: "org_id fallback (control)", token: asA.token(t, map[string]any{"tenant_id": nil, "org_id": "beta"}),
			want: RequestContext{TenantID: "beta", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT, Scopes: readWrite}},
		{name: "no scope claim: no scopes, still authenticated", token: asA.token(t, map[string]any{"scope": nil}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT}},
		{name: "only other resources' scopes", token: asA.token(t, map[string]any{"scope": "openid profile nexus:everything"}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT}},
		{name: "comma is not a scope separator", token: asA.token(t, map[string]any{"scope": "nexus:read,nexus:admin"}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT}},
		{name: "scp array (Okta)", token: asA.token(t, map[string]any{"scope": nil, "scp": []string{"nexus:read", "nexus:admin"}}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT, Scopes: ScopeSet(ScopeRead | ScopeAdmin)}},
		{name: "scp string (Entra ID)", token: asA.token(t, map[string]any{"scope": nil, "scp": "nexus:delegate"}),
			want: RequestContext{TenantID: "acme", UserID: userA, Issuer: asA.issuer, AuthMethod: AuthJWT, Scopes: ScopeSet(ScopeDelegate)}},
		{name: "scope claim of another type", token: asA.token(t, map[string]any{"scope": 42})},
		{name: "scp array holding a number", token: asA.token(t, map[string]any{"scope": nil, "scp": []any{"nexus:read", 1}})},
		{name: "HS256 with the public key bytes as secret", token: sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)),
			map[string]any{"kid": asA.kid}, jwt.MapClaims{"iss": asA.issuer, "sub": "u", "aud": testResource, "tenant_id": "acme",
				"exp": testNow.Add(time.Minute).Unix()})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := serve(t, h, newRequest(bearer(c.token)))
			if c.want == (RequestContext{}) {
				checkOAuthUnauthorized(t, c.name, res, true)
				return
			}
			if res.status != http.StatusOK || res.rc != c.want {
				t.Errorf("%s: got %d %+v, want 200 %+v (body %q)", c.name, res.status, res.rc, c.want, res.body)
			}
		})
	}

	t.Run("no credential", func(t *testing.T) {
		checkOAuthUnauthorized(t, "no credential", serve(t, h, newRequest(nil)), false)
	})
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// checkOAuthUnauthorized reports whether res is the OAuth 401: the
// challenge names the metadata URL and every scope, error="invalid_token"
// iff invalid.
func checkOAuthUnauthorized(t *testing.T, name string, res result, invalid bool) {
	t.Helper()
	if res.status != http.StatusUnauthorized {
		t.Errorf("%s: status = %d, want 401 (rc %+v)", name, res.status, res.rc)
		return
	}
	want := `Bearer resource_metadata="https://nexus.example/.well-known/oauth-protected-resource/mcp", scope="nexus:read nexus:write nexus:delegate nexus:admin"`
	if invalid {
		want = `Bearer error="invalid_token", ` + strings.TrimPrefix(want, "Bearer ")
	}
	if res.wwwAuth != want {
		t.Errorf("%s: WWW-Authenticate = %q, want %q", name, res.wwwAuth, want)
	}
	if res.body != bodyUnauthorizedOAuth {
		t.Errorf("%s: body = %q, want %q", name, res.body, bodyUnauthorizedOAuth)
	}
}

// TestOAuthUserIsIssuerAndSub: the same sub at two authorization servers
// is two users, so a membership granted to one is not the other's.
func TestOAuthUserIsIssuerAndSub(t *testing.T) {
	asA := newAuthServer(t, "", false)
	asB := newAuthServer(t, "", false)
	userA := Principal{Kind: PrincipalIssuer, Source: asA.issuer, UserID: OAuthUserID(asA.issuer, "user-1")}
	members := fakeMembers{roles: map[[2]string]string{{"beta", userA.String()}: "member"}}
	h := oauthAuth(t, members, ResourceServerConfig{Issuers: []string{asA.issuer, asB.issuer}})
	switchTo := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, HeaderTenantID: "beta"}
	}
	if res := serve(t, h, newRequest(switchTo(asA.token(t, nil)))); res.status != http.StatusOK || res.rc.TenantID != "beta" {
		t.Errorf("member of beta at issuer A, X-Tenant-Id beta = %d %+v, want 200 in beta (control)", res.status, res.rc)
	}
	if res := serve(t, h, newRequest(switchTo(asB.token(t, nil)))); res.status != http.StatusForbidden {
		t.Errorf("same sub at issuer B, X-Tenant-Id beta = %d %+v, want 403", res.status, res.rc)
	}
}

// TestOAuthDiscovery covers the metadata a verifier trusts: the issuer it
// names must be the configured one, and its jwks_uri must be https or
// loopback; the well-known locations of RFC 8414 and OpenID are both used.
func TestOAuthDiscovery(t *testing.T) {
	t.Run("metadata naming another issuer", func(t *testing.T) {
		as := newAuthServer(t, "", false)
		as.metadataIssuer = "https://evil.example"
		h := oauthAuth(t, fakeMembers{}, ResourceServerConfig{Issuers: []string{as.issuer}})
		checkOAuthUnauthorized(t, "mismatched metadata", serve(t, h, newRequest(bearer(as.token(t, nil)))), true)
		as.metadataIssuer = "" // control: the same server, now consistent (after the refresh bound)
		rs, _ := NewResourceServer(ResourceServerConfig{Issuers: []string{as.issuer}, Resource: testResource})
		if _, err := rs.Verify(context.Background(), as.token(t, nil), testNow); err != nil {
			t.Errorf("consistent metadata (control): %v", err)
		}
	})
	t.Run("jwks_uri over plain http to a remote host", func(t *testing.T) {
		as := newAuthServer(t, "", false)
		as.jwksURI = "http://keys.example/jwks"
		rs, _ := NewResourceServer(ResourceServerConfig{Issuers: []string{as.issuer}, Resource: testResource})
		if _, err := rs.Verify(context.Background(), as.token(t, nil), testNow); err == nil {
			t.Error("jwks_uri http://keys.example accepted")
		}
	})
	t.Run("discovery failure is retried, bounded", func(t *testing.T) {
		as := newAuthServer(t, "", false)
		as.metadataIssuer = "https://evil.example"
		rs, _ := NewResourceServer(ResourceServerConfig{Issuers: []string{as.issuer}, Resource: testResource})
		for range 5 {
			_, _ = rs.Verify(context.Background(), as.token(t, nil), testNow)
		}
		if n := as.metaHits.Load(); n != 1 {
			t.Errorf("5 tokens within the refresh bound fetched metadata %d times, want 1", n)
		}
		as.metadataIssuer = ""
		if _, err := rs.Verify(context.Background(), as.token(t, nil), testNow.Add(discoveryMinRefresh)); err != nil {
			t.Errorf("after the refresh bound (control): %v", err)
		}
	})
}

func TestNewResourceServer(t *testing.T) {
	cases := []struct {
		name     string
		issuers  []string
		resource string
		ok       bool
	}{
		{"https issuer and resource", []string{"https://idp.example"}, "https://nexus.example/mcp", true},
		{"loopback http issuer and resource", []string{"http://127.0.0.1:9000", "http://localhost:9001/realms/x"}, "http://127.0.0.1:8080/mcp", true},
		{"no issuer", nil, "https://nexus.example/mcp", false},
		{"http issuer off loopback", []string{"http://idp.example"}, "https://nexus.example/mcp", false},
		{"relative issuer", []string{"idp.example"}, "https://nexus.example/mcp", false},
		{"issuer with query", []string{"https://idp.example?x=1"}, "https://nexus.example/mcp", false},
		{"issuer with user info", []string{"https://u@idp.example"}, "https://nexus.example/mcp", false},
		{"duplicate issuer", []string{"https://idp.example", "https://idp.example"}, "https://nexus.example/mcp", false},
		{"no resource", []string{"https://idp.example"}, "", false},
		{"resource with fragment", []string{"https://idp.example"}, "https://nexus.example/mcp#x", false},
		{"http resource off loopback", []string{"https://idp.example"}, "http://nexus.example/mcp", false},
	}
	for _, c := range cases {
		_, err := NewResourceServer(ResourceServerConfig{Issuers: c.issuers, Resource: c.resource})
		if (err == nil) != c.ok {
			t.Errorf("%s: NewResourceServer(%q, %q) error = %v, want ok %v", c.name, c.issuers, c.resource, err, c.ok)
		}
	}
}

func TestMetadataURL(t *testing.T) {
	for resource, want := range map[string]string{
		"https://nexus.example/mcp":      "https://nexus.example/.well-known/oauth-protected-resource/mcp",
		"https://nexus.example/a/mcp":    "https://nexus.example/.well-known/oauth-protected-resource/a/mcp",
		"https://nexus.example":          "https://nexus.example/.well-known/oauth-protected-resource",
		"https://nexus.example/":         "https://nexus.example/.well-known/oauth-protected-resource",
		"http://127.0.0.1:8080/mcp":      "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp",
		"https://nexus.example:8443/mcp": "https://nexus.example:8443/.well-known/oauth-protected-resource/mcp",
	} {
		rs, err := NewResourceServer(ResourceServerConfig{Issuers: []string{"https://idp.example"}, Resource: resource})
		if err != nil {
			t.Fatal(err)
		}
		if got := rs.MetadataURL(); got != want {
			t.Errorf("MetadataURL(%q) = %q, want %q", resource, got, want)
		}
	}
}

func TestParseScopes(t *testing.T) {
	cases := []struct {
		in          string
		want        ScopeSet
		wantUnknown int
	}{
		{"", 0, 0},
		{"nexus:read", ScopeSet(ScopeRead), 0},
		{"nexus:read nexus:write,nexus:delegate  nexus:admin", AllScopes, 0},
		{"read nexus:READ openid", 0, 3},
	}
	for _, c := range cases {
		got, unknown := ParseScopes(c.in)
		if got != c.want || len(unknown) != c.wantUnknown {
			t.Errorf("ParseScopes(%q) = %v, %q; want %v and %d unknown", c.in, got, unknown, c.want, c.wantUnknown)
		}
	}
	if got := AllScopes.String(); got != "nexus:read nexus:write nexus:delegate nexus:admin" {
		t.Errorf("AllScopes.String() = %q", got)
	}
	if ScopeSet(0).Has(ScopeRead) || !AllScopes.Has(ScopeAdmin) || ScopeSet(ScopeRead).Has(ScopeWrite) || AllScopes.Has(0) {
		t.Error("Has is wrong")
	}
}

func TestWriteInsufficientScope(t *testing.T) {
	w := httptest.NewRecorder()
	WriteInsufficientScope(w, "https://nexus.example/.well-known/oauth-protected-resource/mcp", ScopeSet(ScopeRead|ScopeAdmin), ScopeWrite)
	wantAuth := `Bearer error="insufficient_scope", scope="nexus:read nexus:write nexus:admin", resource_metadata="https://nexus.example/.well-known/oauth-protected-resource/mcp"`
	if w.Code != http.StatusForbidden || w.Header().Get("WWW-Authenticate") != wantAuth {
		t.Errorf("got %d %q, want 403 %q", w.Code, w.Header().Get("WWW-Authenticate"), wantAuth)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "insufficient_scope" || body["scope"] != "nexus:write" {
		t.Errorf("body = %q (%v)", w.Body.String(), err)
	}
}
