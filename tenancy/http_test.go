package tenancy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testLegacyKey = "legacy-key-legacy-key-legacy-key-1" // 34 characters

// keyFixture is an Authenticator over fake storage with keys for tenants
// acme (user u1, env prod on one key), globex, and an unknown tenant.
type keyFixture struct {
	auth     *Authenticator
	keys     *fakeKeys
	tenants  *fakeTenants
	logs     *logBuffer
	valid    string // acme / u1
	noUser   string // acme, no user
	prodKey  string // acme / u1, env prod
	globex   string // globex / g1
	revoked  string
	expired  string
	disabled string // key of hooli, a disabled tenant
	orphan   string // tenant "ghost" that does not exist
}

func newKeyFixture(t testing.TB) *keyFixture {
	t.Helper()
	tenants := newFakeTenants("acme", "globex", DefaultTenant)
	tenants.set("hooli", TenantStatus{Exists: true, Disabled: true})
	f := &keyFixture{keys: &fakeKeys{tenants: tenants}, tenants: tenants}
	f.valid = f.keys.add(t, StoredKey{ID: "k-valid", TenantID: "acme", UserID: "u1", AgentID: "agent-1"})
	f.noUser = f.keys.add(t, StoredKey{ID: "k-nouser", TenantID: "acme"})
	f.prodKey = f.keys.add(t, StoredKey{ID: "k-prod", TenantID: "acme", UserID: "u1", Env: "prod"})
	f.globex = f.keys.add(t, StoredKey{ID: "k-globex", TenantID: "globex", UserID: "g1"})
	f.revoked = f.keys.add(t, StoredKey{ID: "k-revoked", TenantID: "acme", UserID: "u1", RevokedAt: testNow.Add(-time.Hour)})
	f.expired = f.keys.add(t, StoredKey{ID: "k-expired", TenantID: "acme", UserID: "u1", ExpiresAt: testNow.Add(-time.Second)})
	f.disabled = f.keys.add(t, StoredKey{ID: "k-disabled", TenantID: "hooli", UserID: "h1"})
	f.orphan = f.keys.add(t, StoredKey{ID: "k-orphan", TenantID: "ghost", UserID: "u1"})
	logger, logs := newTestLogger()
	f.logs = logs
	f.auth = &Authenticator{
		JWT:       mustVerifier(t, JWTConfig{HMACSecret: testHMACSecret, Issuer: testIssuer, Audience: testAudience}),
		Keys:      f.keys,
		LegacyKey: testLegacyKey,
		Members: fakeMembers{roles: map[[2]string]string{
			{"globex", "tenant:acme/u1"}:                "member",
			{"initech", "issuer:" + testIssuer + "/u1"}: "admin",
		}},
		Tenants: f.tenants,
		Now:     func() time.Time { return testNow },
		Logger:  logger,
	}
	return f
}

// TestAPIKeyAttacks: every bad key gets 401 with one
// byte-identical body; the controls get the key's identity.
func TestAPIKeyAttacks(t *testing.T) {
	f := newKeyFixture(t)
	h := f.auth.Middleware(whoami)
	unknown, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(f.valid, APIKeyPrefix)
	flipped := []byte(secret)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	lower := strings.ToLower(f.valid)
	if lower == f.valid {
		t.Fatalf("test key %q has no upper-case letter", f.valid)
	}
	wantRC := RequestContext{TenantID: "acme", UserID: "u1", APIKeyID: "k-valid", AgentID: "agent-1", AuthMethod: AuthAPIKey, Scopes: AllScopes}

	cases := []struct {
		name    string
		target  string
		headers map[string]string
		control bool
		want    RequestContext
		invalid bool // a credential was presented
	}{
		{name: "valid X-API-Key (control)", headers: map[string]string{HeaderAPIKey: f.valid}, control: true, want: wantRC},
		{name: "valid bearer key (control)", headers: map[string]string{"Authorization": "Bearer " + f.valid}, control: true, want: wantRC},
		{name: "legacy key (control)", headers: map[string]string{HeaderAPIKey: testLegacyKey}, control: true, want: RequestContext{TenantID: DefaultTenant, AuthMethod: AuthLegacyKey, Scopes: AllScopes}},
		{name: "legacy key as bearer (control)", headers: map[string]string{"Authorization": "Bearer " + testLegacyKey}, control: true, want: RequestContext{TenantID: DefaultTenant, AuthMethod: AuthLegacyKey, Scopes: AllScopes}},
		{name: "unknown", headers: map[string]string{HeaderAPIKey: unknown}, invalid: true},
		{name: "revoked", headers: map[string]string{HeaderAPIKey: f.revoked}, invalid: true},
		{name: "expired", headers: map[string]string{HeaderAPIKey: f.expired}, invalid: true},
		{name: "wrong prefix", headers: map[string]string{HeaderAPIKey: "nxx_" + secret}, invalid: true},
		{name: "valid prefix wrong secret", headers: map[string]string{HeaderAPIKey: APIKeyPrefix + string(flipped)}, invalid: true},
		{name: "trailing whitespace", headers: map[string]string{HeaderAPIKey: f.valid + " "}, invalid: true},
		{name: "trailing whitespace bearer", headers: map[string]string{"Authorization": "Bearer " + f.valid + " "}, invalid: true},
		{name: "lower-cased", headers: map[string]string{HeaderAPIKey: lower}, invalid: true},
		{name: "truncated", headers: map[string]string{HeaderAPIKey: f.valid[:len(f.valid)-1]}, invalid: true},
		{name: "empty X-API-Key", headers: map[string]string{HeaderAPIKey: ""}, invalid: true},
		{name: "legacy key with suffix", headers: map[string]string{HeaderAPIKey: testLegacyKey + "x"}, invalid: true},
		{name: "legacy key prefix", headers: map[string]string{HeaderAPIKey: testLegacyKey[:32]}, invalid: true},
		{name: "key in query string api_key", target: "/mcp?api_key=" + f.valid},
		{name: "key in query string access_token", target: "/mcp?access_token=" + f.valid},
		{name: "no credential", target: "/mcp"},
	}
	bodies := map[string]bool{}
	accepted := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := c.target
			if target == "" {
				target = "/mcp"
			}
			r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{}`))
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			res := serve(t, h, r)
			if c.control {
				if res.status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %q)", res.status, res.body)
				}
				if res.rc != c.want {
					t.Errorf("RequestContext = %+v, want %+v", res.rc, c.want)
				}
				return
			}
			if res.status == http.StatusOK {
				accepted++
			}
			bodies[res.body] = true
			checkUnauthorized(t, c.name, res, c.invalid)
		})
	}
	t.Logf("metric apikey_accepted_attacks=%d", accepted)
	t.Logf("metric distinct_401_bodies=%d", len(bodies))
	if len(bodies) != 1 {
		t.Errorf("distinct 401 bodies = %d, want 1: %v", len(bodies), bodies)
	}
	if strings.Contains(f.logs.String(), f.valid) || strings.Contains(f.logs.String(), secret) {
		t.Errorf("logs contain key material")
	}
}

// TestAuthenticatorOutcomes covers the non-401 outcomes of credentials and
// storage: disabled tenant, unknown tenant per method, storage errors,
// ambiguous credentials.
func TestAuthenticatorOutcomes(t *testing.T) {
	f := newKeyFixture(t)
	jwtFor := func(tenant string) string {
		return sign(t, jwt.SigningMethodHS256, testHMACSecret, nil, with(map[string]any{"tenant_id": tenant}))
	}
	cases := []struct {
		name       string
		headers    map[string]string
		keysErr    error
		tenantsErr error
		wantStatus int
		wantTenant string
		wantInv    bool
	}{
		{name: "valid key (control)", headers: map[string]string{HeaderAPIKey: f.valid}, wantStatus: 200, wantTenant: "acme"},
		{name: "key of disabled tenant flag", headers: map[string]string{HeaderAPIKey: f.disabled}, wantStatus: 403},
		{name: "key of unknown tenant", headers: map[string]string{HeaderAPIKey: f.orphan}, wantStatus: 403},
		{name: "JWT of unknown tenant is allowed", headers: map[string]string{"Authorization": "Bearer " + jwtFor("newco")}, wantStatus: 200, wantTenant: "newco"},
		{name: "JWT of known tenant (control)", headers: map[string]string{"Authorization": "Bearer " + jwtFor("acme")}, wantStatus: 200, wantTenant: "acme"},
		{name: "key storage error", headers: map[string]string{HeaderAPIKey: f.valid}, keysErr: errStorage, wantStatus: 503},
		// A stored key's tenant status comes with the key: a request on
		// the key's own tenant makes no second read, so a failing tenant
		// lookup does not touch it; a switched tenant is read (control).
		{name: "API key on its own tenant reads no tenant status", headers: map[string]string{HeaderAPIKey: f.valid}, tenantsErr: errStorage, wantStatus: 200, wantTenant: "acme"},
		{name: "tenant storage error after X-Tenant-Id", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"}, tenantsErr: errStorage, wantStatus: 503},
		{name: "tenant storage error with JWT", headers: map[string]string{"Authorization": "Bearer " + jwtFor("acme")}, tenantsErr: errStorage, wantStatus: 503},
		{name: "key storage error for malformed key is 401", headers: map[string]string{HeaderAPIKey: "short"}, keysErr: errStorage, wantStatus: 401, wantInv: true},
		{name: "both X-API-Key and Authorization", headers: map[string]string{HeaderAPIKey: f.valid, "Authorization": "Bearer " + f.valid}, wantStatus: 401, wantInv: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.keys.err, f.tenants.err = c.keysErr, c.tenantsErr
			defer func() { f.keys.err, f.tenants.err = nil, nil }()
			var denied []string
			f.auth.OnDenied = func(_ *http.Request, _ RequestContext, reason string, status int) {
				denied = append(denied, fmt.Sprintf("%s/%d", reason, status))
			}
			defer func() { f.auth.OnDenied = nil }()
			res := serve(t, f.auth.Middleware(whoami), newRequest(c.headers))
			if res.status != c.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", res.status, c.wantStatus, res.body)
			}
			switch c.wantStatus {
			case 200:
				if res.rc.TenantID != c.wantTenant {
					t.Errorf("TenantID = %q, want %q", res.rc.TenantID, c.wantTenant)
				}
				if len(denied) != 0 {
					t.Errorf("OnDenied called %v on success", denied)
				}
				return
			case 401:
				checkUnauthorized(t, c.name, res, c.wantInv)
			case 403:
				if res.body != bodyForbidden {
					t.Errorf("body = %q, want %q", res.body, bodyForbidden)
				}
			case 503:
				if res.body != bodyUnavailable || strings.Contains(res.body, errStorage.Error()) {
					t.Errorf("body = %q, want %q", res.body, bodyUnavailable)
				}
			}
			if len(denied) != 1 || !strings.HasSuffix(denied[0], fmt.Sprint(c.wantStatus)) {
				t.Errorf("OnDenied calls = %v, want one with status %d", denied, c.wantStatus)
			}
		})
	}
	if !strings.Contains(f.logs.String(), errStorage.Error()) {
		t.Errorf("storage error not logged")
	}
}

// TestDevHeaders: X-User-Id is honoured only when dev headers
// are on (ENABLE_DEV_HEADERS exactly "1") and a valid credential was
// presented; it never changes the tenant and is logged.
func TestDevHeaders(t *testing.T) {
	honouredWhenOff := 0
	for _, env := range []string{"", "0", "true", "TRUE", " 1", "1"} {
		for _, header := range []bool{false, true} {
			for _, cred := range []string{"none", "key"} {
				name := fmt.Sprintf("env=%q/header=%v/cred=%s", env, header, cred)
				t.Run(name, func(t *testing.T) {
					f := newKeyFixture(t)
					f.auth.DevHeaders = DevHeadersEnabled(env)
					hdr := map[string]string{}
					if header {
						hdr[HeaderUserID] = "dev-user"
					}
					if cred == "key" {
						hdr[HeaderAPIKey] = f.valid
					}
					res := serve(t, f.auth.Middleware(whoami), newRequest(hdr))
					if cred == "none" {
						checkUnauthorized(t, name, res, false)
						return
					}
					if res.status != http.StatusOK {
						t.Fatalf("status = %d, want 200", res.status)
					}
					if res.rc.TenantID != "acme" {
						t.Errorf("TenantID = %q, want acme", res.rc.TenantID)
					}
					on := env == "1"
					wantUser, wantOverride := "u1", false
					if on && header {
						wantUser, wantOverride = "dev-user", true
					}
					if !on && res.rc.UserID != "u1" {
						honouredWhenOff++
					}
					if res.rc.UserID != wantUser || res.rc.DevOverride != wantOverride {
						t.Errorf("UserID, DevOverride = %q, %v, want %q, %v", res.rc.UserID, res.rc.DevOverride, wantUser, wantOverride)
					}
					if logged := strings.Contains(f.logs.String(), "dev header override"); logged != wantOverride {
						t.Errorf("override logged = %v, want %v", logged, wantOverride)
					}
				})
			}
		}
	}
	t.Logf("metric dev_header_honoured_when_off=%d", honouredWhenOff)

	t.Run("override cannot switch tenant", func(t *testing.T) {
		f := newKeyFixture(t)
		f.auth.DevHeaders = true
		h := f.auth.Middleware(whoami)
		// Control: without the dev header u1 may switch to globex.
		if res := serve(t, h, newRequest(map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"})); res.status != 200 || res.rc.TenantID != "globex" {
			t.Fatalf("control: status %d tenant %q, want 200 globex", res.status, res.rc.TenantID)
		}
		res := serve(t, h, newRequest(map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex", HeaderUserID: "u1"}))
		if res.status != http.StatusForbidden {
			t.Errorf("status = %d, want 403", res.status)
		}
	})
}

// TestTenantSwitch covers X-Tenant-Id: a member switches (with role), a
// non-member or a credential without user gets 403, the credential's own
// tenant is fine.
func TestTenantSwitch(t *testing.T) {
	f := newKeyFixture(t)
	f.tenants.set("initech", TenantStatus{Exists: true})
	jwtU1 := sign(t, jwt.SigningMethodHS256, testHMACSecret, nil, with(map[string]any{"sub": "u1"}))
	cases := []struct {
		name       string
		headers    map[string]string
		members    MembershipLookup
		noMembers  bool
		wantStatus int
		wantTenant string
		wantRole   string
	}{
		{name: "no header (control)", headers: map[string]string{HeaderAPIKey: f.valid}, wantStatus: 200, wantTenant: "acme"},
		{name: "own tenant", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "acme"}, wantStatus: 200, wantTenant: "acme"},
		{name: "member switches", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"}, wantStatus: 200, wantTenant: "globex", wantRole: "member"},
		{name: "admin switches via JWT", headers: map[string]string{"Authorization": "Bearer " + jwtU1, HeaderTenantID: "initech"}, wantStatus: 200, wantTenant: "initech", wantRole: "admin"},
		{name: "non-member", headers: map[string]string{HeaderAPIKey: f.globex, HeaderTenantID: "acme"}, wantStatus: 403},
		{name: "API-key u1 is not the JWT u1 member", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "initech"}, wantStatus: 403},
		{name: "JWT u1 is not acme's u1 member", headers: map[string]string{"Authorization": "Bearer " + jwtU1, HeaderTenantID: "globex"}, wantStatus: 403},
		{name: "non-member unknown tenant", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "umbrella"}, wantStatus: 403},
		{name: "no user", headers: map[string]string{HeaderAPIKey: f.noUser, HeaderTenantID: "globex"}, wantStatus: 403},
		{name: "legacy key has no user", headers: map[string]string{HeaderAPIKey: testLegacyKey, HeaderTenantID: "globex"}, wantStatus: 403},
		{name: "empty header value", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: ""}, wantStatus: 403},
		{name: "membership lookup off", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"}, noMembers: true, wantStatus: 403},
		{name: "membership says forbidden", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"}, members: fakeMembers{err: fmt.Errorf("no: %w", ErrForbidden)}, wantStatus: 403},
		{name: "membership storage error", headers: map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"}, members: fakeMembers{err: errStorage}, wantStatus: 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := *f.auth
			if c.members != nil {
				a.Members = c.members
			}
			if c.noMembers {
				a.Members = nil
			}
			res := serve(t, a.Middleware(whoami), newRequest(c.headers))
			if res.status != c.wantStatus {
				t.Fatalf("status = %d, want %d", res.status, c.wantStatus)
			}
			if c.wantStatus == 200 && (res.rc.TenantID != c.wantTenant || res.rc.Role != c.wantRole) {
				t.Errorf("TenantID, Role = %q, %q, want %q, %q", res.rc.TenantID, res.rc.Role, c.wantTenant, c.wantRole)
			}
		})
	}

	t.Run("switched tenant disabled", func(t *testing.T) {
		f := newKeyFixture(t)
		h := f.auth.Middleware(whoami)
		hdr := map[string]string{HeaderAPIKey: f.valid, HeaderTenantID: "globex"}
		if res := serve(t, h, newRequest(hdr)); res.status != 200 {
			t.Fatalf("control: status = %d, want 200", res.status)
		}
		f.tenants.set("globex", TenantStatus{Exists: true, Disabled: true})
		if res := serve(t, h, newRequest(hdr)); res.status != 403 {
			t.Errorf("status = %d, want 403", res.status)
		}
	})
}

// TestEnvHeader covers X-Env against the credential's environment.
func TestEnvHeader(t *testing.T) {
	f := newKeyFixture(t)
	h := f.auth.Middleware(whoami)
	cases := []struct {
		name       string
		key        string
		env        *string
		wantStatus int
	}{
		{name: "bound key, matching X-Env (control)", key: f.prodKey, env: ptr("prod"), wantStatus: 200},
		{name: "bound key, no X-Env", key: f.prodKey, wantStatus: 200},
		{name: "bound key, other X-Env", key: f.prodKey, env: ptr("staging"), wantStatus: 403},
		{name: "bound key, empty X-Env", key: f.prodKey, env: ptr(""), wantStatus: 403},
		{name: "bound key, case variant", key: f.prodKey, env: ptr("PROD"), wantStatus: 403},
		{name: "unbound key, any X-Env", key: f.valid, env: ptr("staging"), wantStatus: 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{HeaderAPIKey: c.key}
			r := newRequest(hdr)
			if c.env != nil {
				r.Header[HeaderEnv] = []string{*c.env}
			}
			res := serve(t, h, r)
			if res.status != c.wantStatus {
				t.Fatalf("status = %d, want %d", res.status, c.wantStatus)
			}
			if c.wantStatus == 403 && res.body != bodyForbidden {
				t.Errorf("body = %q, want %q", res.body, bodyForbidden)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestKillSwitch checks that disabling a tenant takes effect on the next
// request and re-enabling it too, without rebuilding anything.
func TestKillSwitch(t *testing.T) {
	f := newKeyFixture(t)
	h := f.auth.Middleware(whoami)
	tok := sign(t, jwt.SigningMethodHS256, testHMACSecret, nil, validClaims())
	creds := map[string]map[string]string{
		"api key": {HeaderAPIKey: f.valid},
		"jwt":     {"Authorization": "Bearer " + tok},
	}
	steps := []struct {
		name       string
		status     TenantStatus
		wantStatus int
	}{
		{name: "enabled (control)", status: TenantStatus{Exists: true}, wantStatus: 200},
		{name: "disabled", status: TenantStatus{Exists: true, Disabled: true}, wantStatus: 403},
		{name: "re-enabled", status: TenantStatus{Exists: true}, wantStatus: 200},
	}
	for credName, hdr := range creds {
		for _, s := range steps {
			t.Run(credName+"/"+s.name, func(t *testing.T) {
				f.tenants.set("acme", s.status)
				res := serve(t, h, newRequest(hdr))
				if res.status != s.wantStatus {
					t.Errorf("status = %d, want %d", res.status, s.wantStatus)
				}
			})
		}
	}
	t.Run("legacy key needs the default tenant row", func(t *testing.T) {
		f := newKeyFixture(t)
		h := f.auth.Middleware(whoami)
		hdr := map[string]string{HeaderAPIKey: testLegacyKey}
		if res := serve(t, h, newRequest(hdr)); res.status != 200 {
			t.Fatalf("control: status = %d, want 200", res.status)
		}
		f.tenants.set(DefaultTenant, TenantStatus{})
		if res := serve(t, h, newRequest(hdr)); res.status != 403 {
			t.Errorf("status = %d, want 403", res.status)
		}
	})
}

// TestTimezoneHeader checks X-User-Timezone is informational and sanitised.
func TestTimezoneHeader(t *testing.T) {
	f := newKeyFixture(t)
	h := f.auth.Middleware(whoami)
	cases := []struct{ in, want string }{
		{"Europe/Berlin", "Europe/Berlin"},
		{"America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"},
		{"Etc/GMT+5", "Etc/GMT+5"},
		{"", ""},
		{"Europe/Berlin\r\nX-Evil: 1", ""},
		{"../../etc/passwd", ""},
		{strings.Repeat("A", 65), ""},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%.30q", c.in), func(t *testing.T) {
			r := newRequest(map[string]string{HeaderAPIKey: f.valid})
			r.Header[HeaderTimezone] = []string{c.in}
			res := serve(t, h, r)
			if res.status != 200 {
				t.Fatalf("status = %d, want 200", res.status)
			}
			if res.rc.Timezone != c.want {
				t.Errorf("Timezone = %q, want %q", res.rc.Timezone, c.want)
			}
		})
	}
}

// TestAuthenticatorValidate checks start-up validation and that a
// misconfigured middleware fails closed.
func TestAuthenticatorValidate(t *testing.T) {
	tenants := newFakeTenants("acme")
	cases := []struct {
		name    string
		a       Authenticator
		wantErr bool
	}{
		{name: "keys only (control)", a: Authenticator{Keys: &fakeKeys{}, Tenants: tenants}},
		{name: "legacy key of 32 characters (control)", a: Authenticator{LegacyKey: strings.Repeat("k", 32), Tenants: tenants}},
		{name: "legacy key of 31 characters", a: Authenticator{LegacyKey: strings.Repeat("k", 31), Tenants: tenants}, wantErr: true},
		{name: "legacy key with whitespace", a: Authenticator{LegacyKey: strings.Repeat("k", 32) + " ", Tenants: tenants}, wantErr: true},
		{name: "no credential source", a: Authenticator{Tenants: tenants}, wantErr: true},
		{name: "no tenant lookup", a: Authenticator{Keys: &fakeKeys{}}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.a.Validate()
			if (err != nil) != c.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, c.wantErr)
			}
			if !c.wantErr {
				return
			}
			// Fails closed even with a credential that would match.
			res := serve(t, c.a.Middleware(whoami), newRequest(map[string]string{HeaderAPIKey: strings.Repeat("k", 31)}))
			if res.status != http.StatusServiceUnavailable {
				t.Errorf("misconfigured middleware status = %d, want 503", res.status)
			}
		})
	}
}

// TestWriteResponses pins the fixed bodies and challenges.
func TestWriteResponses(t *testing.T) {
	cases := []struct {
		name       string
		write      func(http.ResponseWriter)
		wantStatus int
		wantAuth   string
		wantBody   string
	}{
		{name: "missing credential", write: func(w http.ResponseWriter) { WriteUnauthorized(w, false) }, wantStatus: 401, wantAuth: "Bearer", wantBody: `{"error":"unauthorized","error_description":"missing or invalid API key (send Authorization: Bearer nxk_…)"}`},
		{name: "invalid credential", write: func(w http.ResponseWriter) { WriteUnauthorized(w, true) }, wantStatus: 401, wantAuth: `Bearer error="invalid_token"`, wantBody: `{"error":"unauthorized","error_description":"missing or invalid API key (send Authorization: Bearer nxk_…)"}`},
		{name: "forbidden", write: WriteForbidden, wantStatus: 403, wantBody: `{"error":"forbidden"}`},
		{name: "unavailable", write: WriteUnavailable, wantStatus: 503, wantBody: `{"error":"service unavailable"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			c.write(w)
			if w.Code != c.wantStatus || w.Header().Get("WWW-Authenticate") != c.wantAuth || strings.TrimSpace(w.Body.String()) != c.wantBody {
				t.Errorf("got %d %q %q, want %d %q %q", w.Code, w.Header().Get("WWW-Authenticate"), w.Body.String(), c.wantStatus, c.wantAuth, c.wantBody)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
		})
	}
}

// okHandler answers 200 "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

// TestOriginCheck: a browser Origin not on the allow list is refused on every
// method; listed origins and requests without Origin pass.
func TestOriginCheck(t *testing.T) {
	h := OriginCheck([]string{"http://localhost:3000", "https://app.example.com/"}, false, okHandler)
	evil := 0
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		cases := []struct {
			name   string
			origin []string
			want   int
		}{
			{name: "no Origin (control)", want: 200},
			{name: "allowed (control)", origin: []string{"http://localhost:3000"}, want: 200},
			{name: "allowed with trailing slash in list (control)", origin: []string{"https://app.example.com"}, want: 200},
			{name: "allowed upper-case (control)", origin: []string{"HTTPS://APP.EXAMPLE.COM"}, want: 200},
			{name: "evil", origin: []string{"https://evil.example"}, want: 403},
			{name: "null", origin: []string{"null"}, want: 403},
			{name: "empty", origin: []string{""}, want: 403},
			{name: "other port", origin: []string{"http://localhost:3001"}, want: 403},
			{name: "other scheme", origin: []string{"https://localhost:3000"}, want: 403},
			{name: "suffix trick", origin: []string{"http://localhost:3000.evil.example"}, want: 403},
			{name: "with path", origin: []string{"https://app.example.com/x"}, want: 403},
			{name: "two Origins", origin: []string{"http://localhost:3000", "https://evil.example"}, want: 403},
		}
		for _, c := range cases {
			t.Run(method+"/"+c.name, func(t *testing.T) {
				r := httptest.NewRequest(method, "/mcp", nil)
				if c.origin != nil {
					r.Header["Origin"] = c.origin
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != c.want {
					t.Errorf("status = %d, want %d", w.Code, c.want)
				}
				if c.want == 403 && w.Code != 403 {
					evil++
				}
				if c.want == 403 && w.Body.String() != bodyForbidden {
					t.Errorf("body = %q, want %q", w.Body.String(), bodyForbidden)
				}
			})
		}
	}
	t.Logf("metric evil_origin_accepted=%d", evil)
}

// TestOriginCheckLoopbackSameOrigin: on a loopback bind, an Origin equal
// to the scheme plus the request's loopback Host passes (the conformance
// suite's dns-rebinding-protection control); any other Origin, a
// non-loopback Host with its own Origin, and the same request on a
// non-loopback bind get 403.
func TestOriginCheckLoopbackSameOrigin(t *testing.T) {
	cases := []struct {
		name, host, origin string
		loopback           bool
		want               int
	}{
		{"same origin 127.0.0.1 (control)", "127.0.0.1:8080", "http://127.0.0.1:8080", true, 200},
		{"same origin localhost, other case (control)", "localhost:8080", "http://LocalHost:8080", true, 200},
		{"same origin [::1] https (control)", "[::1]:8080", "https://[::1]:8080", true, 200},
		{"same origin without port (control)", "127.0.0.1", "http://127.0.0.1", true, 200},
		{"same origin, not a loopback bind", "127.0.0.1:8080", "http://127.0.0.1:8080", false, 403},
		{"evil host with its own origin", "evil.example.com:8080", "http://evil.example.com:8080", true, 403},
		{"loopback origin of another port", "127.0.0.1:8080", "http://127.0.0.1:3000", true, 403},
		{"loopback origin of another name", "127.0.0.1:8080", "http://localhost:8080", true, 403},
		{"origin with a path", "127.0.0.1:8080", "http://127.0.0.1:8080/", true, 403},
		{"other scheme", "127.0.0.1:8080", "ws://127.0.0.1:8080", true, 403},
		{"null", "127.0.0.1:8080", "null", true, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := OriginCheck(nil, c.loopback, okHandler)
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.Host = c.host
			r.Header.Set("Origin", c.origin)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Errorf("Host %q Origin %q (loopback bind %v) = %d, want %d", c.host, c.origin, c.loopback, w.Code, c.want)
			}
		})
	}
}

// TestHostCheck: on a loopback bind a foreign Host (DNS rebinding) is
// refused, through a real loopback server.
func TestHostCheck(t *testing.T) {
	srv := httptest.NewServer(HostCheck([]string{"127.0.0.1", "localhost", "[::1]"}, okHandler))
	defer srv.Close()
	cases := []struct {
		host string
		want int
	}{
		{"", 200}, // the server's own 127.0.0.1:port (control)
		{"localhost", 200},
		{"localhost:8080", 200},
		{"LOCALHOST:8080", 200},
		{"[::1]:8080", 200},
		{"evil.example.com", 403},
		{"evil.example.com:8080", 403},
		{"127.0.0.1.evil.example.com", 403},
		{"localhost.", 403},
		{"[::2]:8080", 403},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("host=%q", c.host), func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			if c.host != "" {
				req.Host = c.host
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, c.want)
			}
		})
	}
	t.Run("empty Host", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r.Host = ""
		w := httptest.NewRecorder()
		HostCheck([]string{"localhost"}, okHandler).ServeHTTP(w, r)
		if w.Code != 403 {
			t.Errorf("status = %d, want 403", w.Code)
		}
	})
}

// TestBodyLimit checks 413 on a declared oversize body and the capped
// reader on an undeclared one.
func TestBodyLimit(t *testing.T) {
	const limit = 16
	var readErr error
	var read int
	h := BodyLimit(limit, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		read, readErr = len(b), err
		_, _ = io.WriteString(w, "ok")
	}))
	cases := []struct {
		name       string
		size       int
		chunked    bool
		wantStatus int
		wantErr    bool
	}{
		{name: "at limit (control)", size: limit, wantStatus: 200},
		{name: "empty (control)", size: 0, wantStatus: 200},
		{name: "over limit declared", size: limit + 1, wantStatus: 413},
		{name: "2 MiB declared", size: 2 << 20, wantStatus: 413},
		{name: "at limit chunked (control)", size: limit, chunked: true, wantStatus: 200},
		{name: "over limit chunked", size: limit + 1, chunked: true, wantStatus: 200, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			readErr, read = nil, -1
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(strings.Repeat("x", c.size)))
			if c.chunked {
				r.ContentLength = -1
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, c.wantStatus)
			}
			if c.wantStatus == 413 {
				if read != -1 {
					t.Errorf("handler ran for a 413")
				}
				if w.Body.String() != bodyTooLarge {
					t.Errorf("body = %q, want %q", w.Body.String(), bodyTooLarge)
				}
				return
			}
			var mbe *http.MaxBytesError
			if gotErr := errors.As(readErr, &mbe); gotErr != c.wantErr {
				t.Errorf("read error = %v, want MaxBytesError %v", readErr, c.wantErr)
			}
			if !c.wantErr && read != c.size {
				t.Errorf("read %d bytes, want %d", read, c.size)
			}
		})
	}
}

// BenchmarkVerifyAPIKey measures one API key verification with a fake lookup.
func BenchmarkVerifyAPIKey(b *testing.B) {
	keys := &fakeKeys{}
	key := keys.add(b, StoredKey{ID: "k1", TenantID: "acme", UserID: "u1"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := VerifyAPIKey(ctx, keys, key, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticatorJWT measures the whole middleware for a JWT request.
func BenchmarkAuthenticatorJWT(b *testing.B) {
	f := newKeyFixture(b)
	h := f.auth.Middleware(okHandler)
	tok := sign(b, jwt.SigningMethodHS256, testHMACSecret, nil, validClaims())
	r := newRequest(map[string]string{"Authorization": "Bearer " + tok})
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
