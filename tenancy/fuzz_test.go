package tenancy

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzKey is a fixed API key for the fuzz target (stable across runs so
// the seed corpus can name it).
var fuzzKey = APIKeyPrefix + strings.Repeat("A", 43)

// FuzzAuthorizationHeader: a raw Authorization header goes
// through credential extraction, JWT parsing and API key verification.
// Properties: no panic; a denial is one of the fixed responses; an identity
// is established only for a header the reference (golang-jwt used
// directly, or an exact key match) accepts, and it is the reference's
// identity.
func FuzzAuthorizationHeader(f *testing.F) {
	if !LooksLikeAPIKey(fuzzKey) {
		f.Fatalf("fuzzKey %q does not look like an API key", fuzzKey)
	}
	keys := &fakeKeys{m: map[string]StoredKey{
		hex.EncodeToString(HashAPIKey(fuzzKey)): {ID: "k1", TenantID: "acme", UserID: "u1", Hash: HashAPIKey(fuzzKey)},
	}}
	auth := &Authenticator{
		JWT:       mustVerifier(f, JWTConfig{HMACSecret: testHMACSecret, Issuer: testIssuer, Audience: testAudience}),
		Keys:      keys,
		LegacyKey: testLegacyKey,
		Tenants:   newFakeTenants("acme", "globex", DefaultTenant),
		Now:       func() time.Time { return testNow },
	}
	if err := auth.Validate(); err != nil {
		f.Fatal(err)
	}

	valid := sign(f, jwt.SigningMethodHS256, testHMACSecret, nil, validClaims())
	for _, s := range []string{
		"Bearer " + valid,
		"bearer " + valid,
		"Bearer " + sign(f, jwt.SigningMethodHS384, testHMACSecret, nil, with(map[string]any{"tenant_id": nil, "org_id": "globex"})),
		"Bearer " + sign(f, jwt.SigningMethodHS256, testHMACSecret, nil, with(map[string]any{"exp": testNow.Add(-31 * time.Second).Unix()})),
		"Bearer " + sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, validClaims()),
		"Bearer " + fuzzKey,
		"Bearer " + testLegacyKey,
		"Bearer  " + valid,
		"Bearer " + valid + ".",
		"Basic dXNlcjpwYXNz",
		"Bearer",
		"",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, header string) {
		var (
			got     RequestContext
			reached bool
		)
		h := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, reached = FromContext(r.Context())
		}))
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header["Authorization"] = []string{header}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		want, ok := referenceIdentity(header)
		if !reached {
			switch {
			case w.Code == http.StatusUnauthorized && w.Body.String() == bodyUnauthorized:
			case w.Code == http.StatusForbidden && w.Body.String() == bodyForbidden:
			default:
				t.Fatalf("denied with %d %q, want a fixed 401 or 403", w.Code, w.Body.String())
			}
			return
		}
		if !ok {
			t.Fatalf("identity %+v established for a header the reference rejects: %q", got, header)
		}
		if got != want {
			t.Fatalf("identity = %+v, reference = %+v", got, want)
		}
	})
}

// referenceIdentity is the fuzz oracle: an independent, simpler reading of
// what the Authenticator in FuzzAuthorizationHeader may accept.
func referenceIdentity(header string) (RequestContext, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return RequestContext{}, false
	}
	switch tok {
	case fuzzKey:
		return RequestContext{TenantID: "acme", UserID: "u1", APIKeyID: "k1", AuthMethod: AuthAPIKey, Scopes: AllScopes}, true
	case testLegacyKey:
		return RequestContext{TenantID: DefaultTenant, AuthMethod: AuthLegacyKey, Scopes: AllScopes}, true
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims,
		func(*jwt.Token) (any, error) { return testHMACSecret, nil },
		jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return testNow }),
		jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience),
	)
	if err != nil || !parsed.Valid {
		return RequestContext{}, false
	}
	sub, _ := claims["sub"].(string)
	tenant, _ := claims["tenant_id"].(string)
	if tenant == "" {
		tenant, _ = claims["org_id"].(string)
	}
	if sub == "" || tenant == "" {
		return RequestContext{}, false
	}
	return RequestContext{TenantID: tenant, UserID: sub, AuthMethod: AuthJWT, Issuer: testIssuer, Scopes: AllScopes}, true
}
