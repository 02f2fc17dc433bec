package tenancy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed clock of every test: no test depends on wall time.
var testNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "nexus-mcp"
)

var testHMACSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

// Keys are generated once per test binary; RSA generation is slow.
var (
	testRSAKey      = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSAOtherKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testECKey       = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
	testEdKey = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// publicPEM encodes the public half of a private key as a PKIX PEM block.
func publicPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// validClaims are the claims of a token every test verifier accepts.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":       "user-1",
		"tenant_id": "acme",
		"iss":       testIssuer,
		"aud":       testAudience,
		"exp":       testNow.Add(5 * time.Minute).Unix(),
		"iat":       testNow.Add(-time.Minute).Unix(),
	}
}

// with returns a copy of validClaims changed by set (nil value deletes).
func with(set map[string]any) jwt.MapClaims {
	c := validClaims()
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// sign mints a token with method and key; header entries are added (nil
// value deletes).
func sign(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("SignedString(%s): %v", method.Alg(), err)
	}
	return s
}

// b64JSON base64url-encodes the JSON of v.
func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// fakeTenants is an in-memory TenantLookup.
type fakeTenants struct {
	mu    sync.Mutex
	m     map[string]TenantStatus
	err   error
	calls int
}

func newFakeTenants(ids ...string) *fakeTenants {
	f := &fakeTenants{m: map[string]TenantStatus{}}
	for _, id := range ids {
		f.m[id] = TenantStatus{Exists: true}
	}
	return f
}

func (f *fakeTenants) TenantStatus(_ context.Context, id string) (TenantStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return TenantStatus{}, f.err
	}
	return f.m[id], nil
}

func (f *fakeTenants) set(id string, st TenantStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[id] = st
}

// fakeKeys is an in-memory KeyLookup keyed by hex(hash). Like the store's
// join, a lookup returns the key with its tenant's status from tenants
// (every tenant exists and is enabled when tenants is nil).
type fakeKeys struct {
	m       map[string]StoredKey
	tenants *fakeTenants
	err     error
}

func (f *fakeKeys) APIKeyByHash(_ context.Context, hash []byte) (StoredKey, error) {
	if f.err != nil {
		return StoredKey{}, f.err
	}
	sk, ok := f.m[hex.EncodeToString(hash)]
	if !ok {
		return StoredKey{}, fmt.Errorf("api key: %w", ErrUnauthenticated)
	}
	sk.Tenant = TenantStatus{Exists: true}
	if sk.Scopes == 0 {
		sk.Scopes = AllScopes // as memory reads a key created without --scopes
	}
	if f.tenants != nil {
		f.tenants.mu.Lock()
		sk.Tenant = f.tenants.m[sk.TenantID]
		f.tenants.mu.Unlock()
	}
	return sk, nil
}

// add stores a fresh key for sk and returns the plaintext key.
func (f *fakeKeys) add(t testing.TB, sk StoredKey) string {
	t.Helper()
	key, err := NewAPIKey()
	if err != nil {
		t.Fatalf("NewAPIKey: %v", err)
	}
	sk.Hash = HashAPIKey(key)
	if f.m == nil {
		f.m = map[string]StoredKey{}
	}
	f.m[hex.EncodeToString(sk.Hash)] = sk
	return key
}

// fakeMembers maps {tenant, principal.String()} to a role; err, if set, is returned.
type fakeMembers struct {
	roles map[[2]string]string
	err   error
}

func (f fakeMembers) Membership(_ context.Context, tenantID string, p Principal) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	return f.roles[[2]string{tenantID, p.String()}], nil
}

// whoami is the protected handler: it answers 200 with the RequestContext.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	rc, ok := FromContext(r.Context())
	if !ok {
		http.Error(w, "no request context", http.StatusInternalServerError)
		return
	}
	rc.Trust = nil
	_ = json.NewEncoder(w).Encode(rc)
})

// result is one response of the middleware under test.
type result struct {
	status  int
	body    string
	wwwAuth string
	rc      RequestContext // set when status is 200
}

// serve runs r through h and decodes the RequestContext of a 200.
func serve(t testing.TB, h http.Handler, r *http.Request) result {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := result{status: w.Code, body: w.Body.String(), wwwAuth: w.Header().Get("WWW-Authenticate")}
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &res.rc); err != nil {
			t.Fatalf("decode whoami body %q: %v", w.Body.String(), err)
		}
	}
	return res
}

// newRequest builds a POST to /mcp with the given headers.
func newRequest(headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{}`))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

// checkUnauthorized reports whether res is the fixed 401, with
// error="invalid_token" iff invalid.
func checkUnauthorized(t testing.TB, name string, res result, invalid bool) {
	t.Helper()
	if res.status != http.StatusUnauthorized {
		t.Errorf("%s: status = %d, want 401 (body %q)", name, res.status, res.body)
		return
	}
	if res.body != bodyUnauthorized {
		t.Errorf("%s: body = %q, want %q", name, res.body, bodyUnauthorized)
	}
	if !strings.HasPrefix(res.wwwAuth, "Bearer") {
		t.Errorf("%s: WWW-Authenticate = %q, want Bearer challenge", name, res.wwwAuth)
	}
	if got := strings.Contains(res.wwwAuth, `error="invalid_token"`); got != invalid {
		t.Errorf("%s: WWW-Authenticate = %q, invalid_token = %v, want %v", name, res.wwwAuth, got, invalid)
	}
}

// logBuffer is a concurrency-safe buffer for a test logger.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

var errStorage = errors.New("disk on fire")
