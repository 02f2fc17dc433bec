package tenancy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mustVerifier builds a verifier or fails the test.
func mustVerifier(t testing.TB, cfg JWTConfig) *JWTVerifier {
	t.Helper()
	v, err := NewJWTVerifier(cfg)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	return v
}

// jwtAuth wraps whoami with an Authenticator that only accepts JWTs from v.
func jwtAuth(v *JWTVerifier) http.Handler {
	a := &Authenticator{JWT: v, Tenants: newFakeTenants("acme", "globex"), Now: func() time.Time { return testNow }}
	return a.Middleware(whoami)
}

// jwksServer serves a JWKS that tests can swap; it counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t testing.TB, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t testing.TB, keys ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatalf("Marshal JWKS: %v", err)
	}
	s.setBody(http.StatusOK, body)
}

func (s *jwksServer) setBody(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// jwkOf returns the public JWK of a private key.
func jwkOf(t testing.TB, kid string, priv any) map[string]any {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		pt, err := k.PublicKey.Bytes()
		if err != nil {
			t.Fatalf("ecdsa Bytes: %v", err)
		}
		n := (len(pt) - 1) / 2
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": enc(pt[1 : 1+n]), "y": enc(pt[1+n:])}
	case ed25519.PrivateKey:
		return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": enc(k.Public().(ed25519.PublicKey))}
	}
	t.Fatalf("jwkOf: unsupported key %T", priv)
	return nil
}

// TestJWTAttacks: every attack through the middleware gets the
// fixed 401 with error="invalid_token"; every control gets 200 with the
// right identity.
func TestJWTAttacks(t *testing.T) {
	rsKey, otherRSA, ecKey, edKey := testRSAKey(), testRSAOtherKey(), testECKey(), testEdKey()
	rsPEM := publicPEM(t, &rsKey.PublicKey)
	base := JWTConfig{Issuer: testIssuer, Audience: testAudience}

	hsCfg := base
	hsCfg.HMACSecret = testHMACSecret
	rsCfg := base
	rsCfg.PublicKeysPEM, rsCfg.PublicKeyIDs = [][]byte{rsPEM}, []string{"rs-1"}
	rsStrictCfg := rsCfg
	rsStrictCfg.Algorithms = []string{"RS256"}
	esCfg := base
	esCfg.PublicKeysPEM = [][]byte{publicPEM(t, &ecKey.PublicKey)}
	edCfg := base
	edCfg.PublicKeysPEM = [][]byte{publicPEM(t, edKey.Public())}
	js := newJWKSServer(t, jwkOf(t, "jw-1", rsKey), jwkOf(t, "jw-ed", edKey))
	jwksCfg := base
	jwksCfg.JWKSURL, jwksCfg.HTTPClient = js.URL+"/jwks", js.Client()

	verifiers := map[string]*JWTVerifier{
		"hs":       mustVerifier(t, hsCfg),
		"rs":       mustVerifier(t, rsCfg),
		"rsStrict": mustVerifier(t, rsStrictCfg),
		"es":       mustVerifier(t, esCfg),
		"ed":       mustVerifier(t, edCfg),
		"jwks":     mustVerifier(t, jwksCfg),
	}
	handlers := map[string]http.Handler{}
	for name, v := range verifiers {
		handlers[name] = jwtAuth(v)
	}

	kidRS := map[string]any{"kid": "rs-1"}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testHMACSecret, nil, c) }
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, rsKey, kidRS, c) }
	validHS := hs(validClaims())
	validRS := rs(validClaims())
	parts := strings.Split(validHS, ".")

	tamperedPayload := parts[0] + "." + b64JSON(t, with(map[string]any{"tenant_id": "globex"})) + "." + parts[2]
	sig := []byte(parts[2])
	if sig[len(sig)/2] == 'A' {
		sig[len(sig)/2] = 'B'
	} else {
		sig[len(sig)/2] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	noneHeader := b64JSON(t, map[string]any{"alg": "none", "typ": "JWT"})
	mixedNoneHeader := b64JSON(t, map[string]any{"alg": "nOnE", "typ": "JWT"})
	payload := b64JSON(t, validClaims())
	bigClaims := with(map[string]any{"pad": strings.Repeat("x", 70<<10)})

	type tc struct {
		name     string
		verifier string
		auth     string // full Authorization header value
		control  bool
		tenant   string // for controls
	}
	bearer := func(s string) string { return "Bearer " + s }
	cases := []tc{
		{name: "valid HS256 (control)", verifier: "hs", auth: bearer(validHS), control: true, tenant: "acme"},
		{name: "valid RS256 with kid (control)", verifier: "rs", auth: bearer(validRS), control: true, tenant: "acme"},
		{name: "valid RS256 without kid (control)", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, nil, validClaims())), control: true, tenant: "acme"},
		{name: "valid PS256 (control)", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodPS256, rsKey, kidRS, validClaims())), control: true, tenant: "acme"},
		{name: "valid RS256 strict (control)", verifier: "rsStrict", auth: bearer(validRS), control: true, tenant: "acme"},
		{name: "valid ES256 (control)", verifier: "es", auth: bearer(sign(t, jwt.SigningMethodES256, ecKey, nil, validClaims())), control: true, tenant: "acme"},
		{name: "valid EdDSA (control)", verifier: "ed", auth: bearer(sign(t, jwt.SigningMethodEdDSA, edKey, nil, validClaims())), control: true, tenant: "acme"},
		{name: "valid JWKS RSA (control)", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, map[string]any{"kid": "jw-1"}, validClaims())), control: true, tenant: "acme"},
		{name: "valid JWKS EdDSA (control)", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodEdDSA, edKey, map[string]any{"kid": "jw-ed"}, validClaims())), control: true, tenant: "acme"},
		{name: "lower-case bearer scheme (control)", verifier: "hs", auth: "bearer " + validHS, control: true, tenant: "acme"},
		{name: "expired 29s within 30s leeway (control)", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": testNow.Add(-29 * time.Second).Unix(), "iat": testNow.Add(-time.Hour).Unix()}))), control: true, tenant: "acme"},
		{name: "aud array containing ours (control)", verifier: "hs", auth: bearer(hs(with(map[string]any{"aud": []string{"other", testAudience}}))), control: true, tenant: "acme"},
		{name: "org_id instead of tenant_id (control)", verifier: "hs", auth: bearer(hs(with(map[string]any{"tenant_id": nil, "org_id": "globex"}))), control: true, tenant: "globex"},
		{name: "nbf within leeway (control)", verifier: "hs", auth: bearer(hs(with(map[string]any{"nbf": testNow.Add(20 * time.Second).Unix()}))), control: true, tenant: "acme"},
		{name: "exp 23h ahead within max TTL (control)", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": testNow.Add(23 * time.Hour).Unix()}))), control: true, tenant: "acme"},

		{name: "alg none", verifier: "hs", auth: bearer(sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, validClaims()))},
		{name: "alg none with signature", verifier: "rs", auth: bearer(noneHeader + "." + payload + ".c2ln")},
		{name: "alg nOnE", verifier: "hs", auth: bearer(mixedNoneHeader + "." + payload + ".c2ln")},
		{name: "alg nOnE without signature", verifier: "hs", auth: bearer(mixedNoneHeader + "." + payload + ".")},
		{name: "HS256 signed with RS public key PEM", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodHS256, rsPEM, kidRS, validClaims()))},
		{name: "HS256 signed with RS public key PEM to JWKS", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodHS256, rsPEM, map[string]any{"kid": "jw-1"}, validClaims()))},
		{name: "RS256 token to HS verifier", verifier: "hs", auth: bearer(validRS)},
		{name: "disallowed alg PS256 (right key)", verifier: "rsStrict", auth: bearer(sign(t, jwt.SigningMethodPS256, rsKey, kidRS, validClaims()))},
		{name: "disallowed alg HS512 to RS", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodHS512, rsPEM, kidRS, validClaims()))},
		{name: "other HMAC key", verifier: "hs", auth: bearer(sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-32"), nil, validClaims()))},
		{name: "other RSA key same kid", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodRS256, otherRSA, kidRS, validClaims()))},
		{name: "other RSA key to JWKS", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodRS256, otherRSA, map[string]any{"kid": "jw-1"}, validClaims()))},
		{name: "ES256 token to EdDSA verifier", verifier: "ed", auth: bearer(sign(t, jwt.SigningMethodES256, ecKey, nil, validClaims()))},
		{name: "tampered payload (tenant changed)", verifier: "hs", auth: bearer(tamperedPayload)},
		{name: "tampered signature", verifier: "hs", auth: bearer(tamperedSig)},
		{name: "expired 31s with 30s leeway", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": testNow.Add(-31 * time.Second).Unix(), "iat": testNow.Add(-time.Hour).Unix()})))},
		{name: "no exp", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": nil})))},
		{name: "exp beyond max TTL", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": testNow.Add(48 * time.Hour).Unix()})))},
		{name: "exp as string 9999999999", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": "9999999999"})))},
		{name: "exp 9999999999", verifier: "hs", auth: bearer(hs(with(map[string]any{"exp": 9999999999})))},
		{name: "wrong aud", verifier: "hs", auth: bearer(hs(with(map[string]any{"aud": "someone-else"})))},
		{name: "missing aud", verifier: "hs", auth: bearer(hs(with(map[string]any{"aud": nil})))},
		{name: "aud array without ours", verifier: "hs", auth: bearer(hs(with(map[string]any{"aud": []string{"a", "b"}})))},
		{name: "wrong iss", verifier: "hs", auth: bearer(hs(with(map[string]any{"iss": "https://evil.test"})))},
		{name: "missing iss", verifier: "hs", auth: bearer(hs(with(map[string]any{"iss": nil})))},
		{name: "missing tenant claim", verifier: "hs", auth: bearer(hs(with(map[string]any{"tenant_id": nil})))},
		{name: "empty tenant claim", verifier: "hs", auth: bearer(hs(with(map[string]any{"tenant_id": ""})))},
		{name: "numeric tenant claim", verifier: "hs", auth: bearer(hs(with(map[string]any{"tenant_id": 42})))},
		{name: "tenant claim with newline", verifier: "hs", auth: bearer(hs(with(map[string]any{"tenant_id": "acme\nadmin"})))},
		{name: "bad tenant_id does not fall back to org_id", verifier: "hs", auth: bearer(hs(with(map[string]any{"tenant_id": 42, "org_id": "globex"})))},
		{name: "missing sub", verifier: "hs", auth: bearer(hs(with(map[string]any{"sub": nil})))},
		{name: "nbf future", verifier: "hs", auth: bearer(hs(with(map[string]any{"nbf": testNow.Add(time.Minute).Unix()})))},
		{name: "iat future", verifier: "hs", auth: bearer(hs(with(map[string]any{"iat": testNow.Add(time.Minute).Unix()})))},
		{name: "injected kid", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, map[string]any{"kid": "../../x' OR 1=1--"}, validClaims()))},
		{name: "injected kid to JWKS", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, map[string]any{"kid": "../../x' OR 1=1--"}, validClaims()))},
		{name: "numeric kid", verifier: "rs", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, map[string]any{"kid": 1}, validClaims()))},
		{name: "missing kid when required (JWKS)", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, nil, validClaims()))},
		{name: "JWKS kid of another key type", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodRS256, rsKey, map[string]any{"kid": "jw-ed"}, validClaims()))},
		{name: "crit header", verifier: "hs", auth: bearer(sign(t, jwt.SigningMethodHS256, testHMACSecret, map[string]any{"crit": []string{"exp"}}, validClaims()))},
		{name: "jku header pointing elsewhere", verifier: "jwks", auth: bearer(sign(t, jwt.SigningMethodRS256, otherRSA, map[string]any{"kid": "jw-1", "jku": "https://evil.test/jwks"}, validClaims()))},
		{name: "4 segments", verifier: "hs", auth: bearer(validHS + ".AAAA")},
		{name: "2 segments", verifier: "hs", auth: bearer(parts[0] + "." + parts[1])},
		{name: "padded base64", verifier: "hs", auth: bearer(parts[0] + "==." + parts[1] + "." + parts[2])},
		{name: "standard base64 alphabet", verifier: "hs", auth: bearer(strings.NewReplacer("-", "+", "_", "/").Replace(validHS) + "+/")},
		{name: "JSON-serialized JWS", verifier: "hs", auth: bearer(fmt.Sprintf(`{"payload":%q,"signatures":[{"protected":%q,"signature":%q}]}`, parts[1], parts[0], parts[2]))},
		{name: "empty bearer", verifier: "hs", auth: "Bearer "},
		{name: "bearer without token", verifier: "hs", auth: "Bearer"},
		{name: "basic scheme", verifier: "hs", auth: "Basic dXNlcjpwYXNz"},
		{name: "token without scheme", verifier: "hs", auth: validHS},
		{name: "1 MiB of dots", verifier: "hs", auth: bearer(strings.Repeat(".", 1<<20))},
		{name: "oversize 70 KB signed token", verifier: "hs", auth: bearer(hs(bigClaims))},
	}

	attacks, accepted := 0, 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, ok := handlers[c.verifier]
			if !ok {
				t.Fatalf("no verifier %q", c.verifier)
			}
			res := serve(t, h, newRequest(map[string]string{"Authorization": c.auth}))
			if c.control {
				if res.status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %q)", res.status, res.body)
				}
				want := RequestContext{TenantID: c.tenant, UserID: "user-1", AuthMethod: AuthJWT, Issuer: testIssuer, Scopes: AllScopes}
				if res.rc != want {
					t.Errorf("RequestContext = %+v, want %+v", res.rc, want)
				}
				return
			}
			attacks++
			if res.status == http.StatusOK {
				accepted++
			}
			checkUnauthorized(t, c.name, res, true)
			// The verifier itself reports ErrUnauthenticated (bearer tokens only).
			if tok, ok := strings.CutPrefix(c.auth, "Bearer "); ok && tok != "" {
				_, err := verifiers[c.verifier].Verify(context.Background(), tok, testNow)
				if !errors.Is(err, ErrUnauthenticated) {
					t.Errorf("Verify error = %v, want ErrUnauthenticated", err)
				}
				t.Logf("rejected: %v", err)
			}
		})
	}
	t.Logf("metric jwt_attacks=%d", attacks)
	t.Logf("metric jwt_accepted_attacks=%d", accepted)
	if accepted != 0 {
		t.Errorf("jwt_accepted_attacks = %d, want 0", accepted)
	}
}

// TestNewJWTVerifierConfig: weak secrets, unusable keys and conflicting
// key sources are refused at start-up.
func TestNewJWTVerifierConfig(t *testing.T) {
	rsPEM := publicPEM(t, &testRSAKey().PublicKey)
	weakRSA := mustRSA(1024)
	privDER := []byte("not really der")
	cases := []struct {
		name    string
		cfg     JWTConfig
		wantErr bool
	}{
		{name: "HS secret of 32 bytes (control)", cfg: JWTConfig{HMACSecret: testHMACSecret}},
		{name: "HS secret of 31 bytes", cfg: JWTConfig{HMACSecret: testHMACSecret[:31]}, wantErr: true},
		{name: "HS secret of 1 byte", cfg: JWTConfig{HMACSecret: []byte("x")}, wantErr: true},
		{name: "explicit HS384 (control)", cfg: JWTConfig{HMACSecret: testHMACSecret, Algorithms: []string{"HS384"}}},
		{name: "RS256 with a secret", cfg: JWTConfig{HMACSecret: testHMACSecret, Algorithms: []string{"RS256"}}, wantErr: true},
		{name: "none in allow-list", cfg: JWTConfig{HMACSecret: testHMACSecret, Algorithms: []string{"none"}}, wantErr: true},
		{name: "no key source", cfg: JWTConfig{}, wantErr: true},
		{name: "secret and PEM", cfg: JWTConfig{HMACSecret: testHMACSecret, PublicKeysPEM: [][]byte{rsPEM}}, wantErr: true},
		{name: "RSA PEM (control)", cfg: JWTConfig{PublicKeysPEM: [][]byte{rsPEM}}},
		{name: "HS256 with an RSA PEM", cfg: JWTConfig{PublicKeysPEM: [][]byte{rsPEM}, Algorithms: []string{"HS256"}}, wantErr: true},
		{name: "ES256 with an RSA PEM", cfg: JWTConfig{PublicKeysPEM: [][]byte{rsPEM}, Algorithms: []string{"ES256"}}, wantErr: true},
		{name: "RSA 1024 bits", cfg: JWTConfig{PublicKeysPEM: [][]byte{publicPEM(t, &weakRSA.PublicKey)}}, wantErr: true},
		{name: "private key PEM", cfg: JWTConfig{PublicKeysPEM: [][]byte{[]byte("-----BEGIN PRIVATE KEY-----\n" + base64.StdEncoding.EncodeToString(privDER) + "\n-----END PRIVATE KEY-----\n")}}, wantErr: true},
		{name: "garbage PEM", cfg: JWTConfig{PublicKeysPEM: [][]byte{[]byte("hello")}}, wantErr: true},
		{name: "more kids than keys", cfg: JWTConfig{PublicKeysPEM: [][]byte{rsPEM}, PublicKeyIDs: []string{"a", "b"}}, wantErr: true},
		{name: "JWKS https (control)", cfg: JWTConfig{JWKSURL: "https://issuer.test/.well-known/jwks.json"}},
		{name: "JWKS http loopback (control)", cfg: JWTConfig{JWKSURL: "http://127.0.0.1:1/jwks"}},
		{name: "JWKS http remote", cfg: JWTConfig{JWKSURL: "http://issuer.test/jwks"}, wantErr: true},
		{name: "JWKS file URL", cfg: JWTConfig{JWKSURL: "file:///etc/passwd"}, wantErr: true},
		{name: "JWKS with HS256", cfg: JWTConfig{JWKSURL: "https://issuer.test/jwks", Algorithms: []string{"HS256"}}, wantErr: true},
	}
	started := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewJWTVerifier(c.cfg)
			if (err != nil) != c.wantErr {
				t.Fatalf("NewJWTVerifier err = %v, wantErr %v", err, c.wantErr)
			}
			if c.wantErr && err == nil && v != nil {
				started++
			}
		})
	}
	t.Logf("metric weak_secret_started=%d", started)
}

// TestJWTDefaultAlgorithms checks the allow-list derived from the keys.
func TestJWTDefaultAlgorithms(t *testing.T) {
	cases := []struct {
		name string
		cfg  JWTConfig
		want string
	}{
		{name: "secret", cfg: JWTConfig{HMACSecret: testHMACSecret}, want: "HS256,HS384,HS512"},
		{name: "RSA", cfg: JWTConfig{PublicKeysPEM: [][]byte{publicPEM(t, &testRSAKey().PublicKey)}}, want: "RS256,RS384,RS512,PS256,PS384,PS512"},
		{name: "EC P-256", cfg: JWTConfig{PublicKeysPEM: [][]byte{publicPEM(t, &testECKey().PublicKey)}}, want: "ES256"},
		{name: "Ed25519", cfg: JWTConfig{PublicKeysPEM: [][]byte{publicPEM(t, testEdKey().Public())}}, want: "EdDSA"},
		{name: "explicit", cfg: JWTConfig{HMACSecret: testHMACSecret, Algorithms: []string{"HS512", "HS512"}}, want: "HS512"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(mustVerifier(t, c.cfg).Algorithms(), ",")
			if got != c.want {
				t.Errorf("Algorithms() = %s, want %s", got, c.want)
			}
		})
	}
}

// TestJWKSRotation, with a local JWKS server: the old key works,
// a new kid triggers a refetch (at most once per 10 s), a removed key is
// rejected after the next refresh, and a failed fetch keeps the old keys.
func TestJWKSRotation(t *testing.T) {
	oldKey, newKey := testRSAKey(), testEdKey()
	js := newJWKSServer(t, jwkOf(t, "old", oldKey))
	v := mustVerifier(t, JWTConfig{JWKSURL: js.URL + "/jwks", HTTPClient: js.Client(), Audience: testAudience, Issuer: testIssuer})
	oldTok := sign(t, jwt.SigningMethodRS256, oldKey, map[string]any{"kid": "old"}, validClaims())
	newTok := sign(t, jwt.SigningMethodEdDSA, newKey, map[string]any{"kid": "new"}, validClaims())
	ecTok := sign(t, jwt.SigningMethodES256, testECKey(), map[string]any{"kid": "ec"}, validClaims())
	ctx := context.Background()

	rotationErrors := 0
	steps := []struct {
		name        string
		at          time.Duration // offset from testNow
		setup       func()
		token       string
		wantOK      bool
		wantFetches int32
	}{
		{name: "old key accepted (first fetch)", at: 0, token: oldTok, wantOK: true, wantFetches: 1},
		{name: "old key accepted from cache", at: time.Second, token: oldTok, wantOK: true, wantFetches: 1},
		{name: "new kid within 10s: no refetch, rejected", at: 2 * time.Second,
			setup: func() { js.setKeys(t, jwkOf(t, "old", oldKey), jwkOf(t, "new", newKey), jwkOf(t, "ec", testECKey())) },
			token: newTok, wantOK: false, wantFetches: 1},
		{name: "new kid after 10s triggers refetch", at: 11 * time.Second, token: newTok, wantOK: true, wantFetches: 2},
		{name: "EC key from refreshed set", at: 11 * time.Second, token: ecTok, wantOK: true, wantFetches: 2},
		{name: "old key still accepted during overlap", at: 12 * time.Second, token: oldTok, wantOK: true, wantFetches: 2},
		{name: "old key removed upstream, cached until refresh", at: 13 * time.Second,
			setup: func() { js.setKeys(t, jwkOf(t, "new", newKey)) },
			token: oldTok, wantOK: true, wantFetches: 2},
		{name: "unknown kid after 10s refreshes the set", at: 30 * time.Second,
			token: sign(t, jwt.SigningMethodEdDSA, newKey, map[string]any{"kid": "nope"}, validClaims()), wantOK: false, wantFetches: 3},
		{name: "old key rejected after refresh", at: 31 * time.Second, token: oldTok, wantOK: false, wantFetches: 3},
		{name: "new key accepted after refresh", at: 31 * time.Second, token: newTok, wantOK: true, wantFetches: 3},
		{name: "failing endpoint keeps keys when TTL expires", at: 2 * time.Hour,
			setup: func() { js.setBody(http.StatusInternalServerError, []byte("oops")) },
			token: newTok, wantOK: true, wantFetches: 4},
		{name: "oversize JWKS response keeps keys", at: 3 * time.Hour,
			setup: func() {
				js.setBody(http.StatusOK, []byte(`{"keys":[],"pad":"`+strings.Repeat("x", DefaultJWKSMaxBytes)+`"}`))
			},
			token: newTok, wantOK: true, wantFetches: 5},
		{name: "empty JWKS keeps keys", at: 4 * time.Hour,
			setup: func() { js.setBody(http.StatusOK, []byte(`{"keys":[]}`)) },
			token: newTok, wantOK: true, wantFetches: 6},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.setup != nil {
				s.setup()
			}
			now := testNow.Add(s.at)
			tok := s.token
			// Tokens must be valid at now: re-sign with shifted times.
			if s.at > time.Minute {
				var claims jwt.MapClaims
				p, _, err := jwt.NewParser().ParseUnverified(tok, &claims)
				if err != nil {
					t.Fatalf("ParseUnverified: %v", err)
				}
				claims["exp"] = now.Add(5 * time.Minute).Unix()
				claims["iat"] = now.Unix()
				keys := map[string]any{"RS256": oldKey, "EdDSA": newKey, "ES256": testECKey()}
				tok = sign(t, p.Method, keys[p.Method.Alg()], map[string]any{"kid": p.Header["kid"]}, claims)
			}
			rc, err := v.Verify(ctx, tok, now)
			if gotOK := err == nil; gotOK != s.wantOK {
				rotationErrors++
				t.Errorf("Verify ok = %v (err %v), want %v", gotOK, err, s.wantOK)
			}
			if err == nil && rc.TenantID != "acme" {
				t.Errorf("TenantID = %q, want acme", rc.TenantID)
			}
			if err != nil && !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("err = %v, want ErrUnauthenticated", err)
			}
			if got := js.fetches.Load(); got != s.wantFetches {
				t.Errorf("fetches = %d, want %d", got, s.wantFetches)
			}
		})
	}
	t.Logf("metric rotation_errors=%d", rotationErrors)
}

// TestJWKSUnknownKidFlood checks that many unknown kids at once cause at
// most one fetch (the refresh is rate-bounded), and that a valid token
// from the same set still works.
func TestJWKSUnknownKidFlood(t *testing.T) {
	key := testEdKey()
	js := newJWKSServer(t, jwkOf(t, "k1", key))
	v := mustVerifier(t, JWTConfig{JWKSURL: js.URL, HTTPClient: js.Client()})
	valid := sign(t, jwt.SigningMethodEdDSA, key, map[string]any{"kid": "k1"}, validClaims())
	if _, err := v.Verify(context.Background(), valid, testNow); err != nil {
		t.Fatalf("Verify(valid) = %v, want nil", err)
	}
	var tokens []string
	for i := range 50 {
		tokens = append(tokens, sign(t, jwt.SigningMethodEdDSA, key, map[string]any{"kid": fmt.Sprintf("rand-%d", i)}, validClaims()))
	}
	var wg sync.WaitGroup
	var accepted atomic.Int32
	for _, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), tok, testNow.Add(20*time.Second)); err == nil {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := accepted.Load(); got != 0 {
		t.Errorf("unknown kids accepted = %d, want 0", got)
	}
	if got := js.fetches.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2 (initial + one bounded refresh)", got)
	}
	if _, err := v.Verify(context.Background(), valid, testNow.Add(21*time.Second)); err != nil {
		t.Errorf("Verify(valid) after flood = %v, want nil", err)
	}
}

// TestParseJWKS covers JWK parsing edge cases.
func TestParseJWKS(t *testing.T) {
	rsaJWK := jwkOf(t, "r", testRSAKey())
	ec := jwkOf(t, "e", testECKey())
	ed := jwkOf(t, "d", testEdKey())
	mod := func(m map[string]any, k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range m {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	weak := mustRSA(1024)
	cases := []struct {
		name string
		keys []map[string]any
		want []string // usable kids
	}{
		{name: "RSA, EC, OKP (control)", keys: []map[string]any{rsaJWK, ec, ed}, want: []string{"d", "e", "r"}},
		{name: "no kid skipped", keys: []map[string]any{mod(rsaJWK, "kid", nil), ec}, want: []string{"e"}},
		{name: "use enc skipped", keys: []map[string]any{mod(rsaJWK, "use", "enc"), ec}, want: []string{"e"}},
		{name: "duplicate kid dropped", keys: []map[string]any{rsaJWK, mod(ec, "kid", "r"), ed}, want: []string{"d"}},
		{name: "EC point off curve skipped", keys: []map[string]any{mod(ec, "y", ec["x"]), ed}, want: []string{"d"}},
		{name: "weak RSA skipped", keys: []map[string]any{jwkOf(t, "w", weak), ed}, want: []string{"d"}},
		{name: "alg not fitting key skipped", keys: []map[string]any{mod(rsaJWK, "alg", "ES256"), ed}, want: []string{"d"}},
		{name: "symmetric key skipped", keys: []map[string]any{{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}, ed}, want: []string{"d"}},
		{name: "X25519 skipped", keys: []map[string]any{mod(ed, "crv", "X25519"), ec}, want: []string{"e"}},
		{name: "nothing usable", keys: []map[string]any{mod(rsaJWK, "kid", nil)}, want: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"keys": c.keys})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := parseJWKS(body, nil)
			if c.want == nil {
				if err == nil {
					t.Errorf("parseJWKS = %d keys, want error", len(keys))
				}
				return
			}
			if err != nil {
				t.Fatalf("parseJWKS: %v", err)
			}
			var got []string
			for kid := range keys {
				got = append(got, kid)
			}
			if g, w := strings.Join(sortStrings(got), ","), strings.Join(c.want, ","); g != w {
				t.Errorf("kids = %s, want %s", g, w)
			}
		})
	}
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// TestLooksLikeJWT checks the shape test.
func TestLooksLikeJWT(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"a.b.c", true},
		{"eyJh-_.eyJ9.sig_-09", true},
		{"", false},
		{"a.b", false},
		{"a.b.c.d", false},
		{".b.c", false},
		{"a..c", false},
		{"a.b.", false},
		{"a=.b.c", false},
		{"a+.b.c", false},
		{"a.b.c ", false},
		{strings.Repeat(".", 1000), false},
		{"nxk_abc", false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%.20q", c.in), func(t *testing.T) {
			if got := LooksLikeJWT(c.in); got != c.want {
				t.Errorf("LooksLikeJWT(%q) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

// TestJWTDotsAllocation reports the allocation of rejecting 1 MiB of dots
// (the size check runs before any parsing).
func TestJWTDotsAllocation(t *testing.T) {
	v := mustVerifier(t, JWTConfig{HMACSecret: testHMACSecret})
	dots := strings.Repeat(".", 1<<20)
	valid := sign(t, jwt.SigningMethodHS256, testHMACSecret, nil, with(map[string]any{"iss": nil, "aud": nil}))
	if _, err := v.Verify(context.Background(), valid, testNow); err != nil {
		t.Fatalf("Verify(valid) = %v, want nil", err)
	}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := v.Verify(context.Background(), dots, testNow); err == nil {
			t.Fatal("dots accepted")
		}
	})
	t.Logf("metric dots_allocs_per_run=%.0f", allocs)
	if allocs > 10 {
		t.Errorf("allocations for 1 MiB of dots = %.0f, want <= 10", allocs)
	}
}

// BenchmarkJWTVerifyHS256 measures one HS256 verification.
func BenchmarkJWTVerifyHS256(b *testing.B) {
	v := mustVerifier(b, JWTConfig{HMACSecret: testHMACSecret, Issuer: testIssuer, Audience: testAudience})
	tok := sign(b, jwt.SigningMethodHS256, testHMACSecret, nil, validClaims())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// TestJWTExpRequiredWithoutMaxTTL checks exp stays required when the max
// TTL check (which also needs exp) is disabled.
func TestJWTExpRequiredWithoutMaxTTL(t *testing.T) {
	v := mustVerifier(t, JWTConfig{HMACSecret: testHMACSecret, MaxTTL: -1})
	cases := []struct {
		name   string
		claims jwt.MapClaims
		wantOK bool
	}{
		{name: "exp present (control)", claims: validClaims(), wantOK: true},
		{name: "exp far ahead allowed without max TTL (control)", claims: with(map[string]any{"exp": testNow.Add(10 * 365 * 24 * time.Hour).Unix()}), wantOK: true},
		{name: "no exp", claims: with(map[string]any{"exp": nil})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testHMACSecret, nil, c.claims), testNow)
			if (err == nil) != c.wantOK {
				t.Errorf("Verify err = %v, want ok %v", err, c.wantOK)
			}
		})
	}
}
