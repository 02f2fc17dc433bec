package delegation

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// seen records what the handler behind the middleware observed.
type seen struct {
	called   bool
	trust    TrustContext
	hasTrust bool
	rc       tenancy.RequestContext
}

func okHandler(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.called = true
		s.trust, s.hasTrust = FromContext(r.Context())
		s.rc, _ = tenancy.FromContext(r.Context())
		io.WriteString(w, "ok")
	})
}

// serve runs one request for tenant A through the middleware.
func serve(t *testing.T, cfg MiddlewareConfig, method, target string, h http.Header) (*httptest.ResponseRecorder, *seen, string) {
	t.Helper()
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := &seen{}
	req := httptest.NewRequest(method, target, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	req = req.WithContext(ctxFor("A"))
	rec := httptest.NewRecorder()
	Middleware(cfg, okHandler(s)).ServeHTTP(rec, req)
	if s.called != (rec.Code == http.StatusOK) {
		t.Fatalf("handler called=%v but status %d", s.called, rec.Code)
	}
	return rec, s, logs.String()
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"disabled": ModeDisabled, " Permissive ": ModePermissive, "ENFORCING": ModeEnforcing} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "strict", "off"} {
		if _, err := ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) = nil error", in)
		}
	}
	if DefaultMode != ModePermissive {
		t.Errorf("DefaultMode = %q", DefaultMode)
	}
}

// TestMiddlewareModeMatrix: every mode against every case.
func TestMiddlewareModeMatrix(t *testing.T) {
	store := newFakeStore()
	valid := ToHeaders(validTC())
	without := func(name string) http.Header {
		h := valid.Clone()
		h.Del(name)
		return h
	}
	with := func(name, value string) http.Header {
		h := valid.Clone()
		h.Set(name, value)
		return h
	}
	denyVerifier := Verifier(func(context.Context, TrustContext, string, string) error {
		return errors.Join(ErrUntrusted, errors.New("policy says no"))
	})
	failVerifier := Verifier(func(context.Context, TrustContext, string, string) error {
		return errors.New("database is locked")
	})
	storeVerifier := NewVerifier(store, testPolicy)

	cases := []struct {
		name         string
		h            http.Header
		requireHuman bool
		verifier     Verifier
		want         int // enforcing status; disabled and permissive always 200
		warn         bool
	}{
		{name: "all headers valid", h: valid, want: 200},
		{name: "no EATP headers", h: http.Header{}, want: 401},
		{name: "missing Trace-ID", h: without(HeaderTraceID), want: 401, warn: true},
		{name: "missing Agent-ID", h: without(HeaderAgentID), want: 401, warn: true},
		{name: "human origin required and present", h: valid, requireHuman: true, want: 200},
		{name: "human origin required and absent", h: without(HeaderHumanOrigin), requireHuman: true, want: 401, warn: true},
		{name: "malformed base64 human origin, not required", h: with(HeaderHumanOrigin, "%%%not-base64"), want: 200, warn: true},
		{name: "malformed base64 human origin, required", h: with(HeaderHumanOrigin, "%%%not-base64"), requireHuman: true, want: 401, warn: true},
		{name: "malformed base64 constraints", h: with(HeaderConstraints, "%%%"), want: 200, warn: true},
		{name: "malformed depth", h: with(HeaderDelegationDepth, "x"), want: 200, warn: true},
		{name: "verifier returns deny", h: valid, verifier: denyVerifier, want: 403, warn: true},
		{name: "verifier errors", h: valid, verifier: failVerifier, want: 503, warn: true},
		{name: "store: unknown agent", h: with(HeaderAgentID, "ghost"), want: 403, warn: true},
		{name: "store: human origin of tenant B", h: with(HeaderHumanOrigin, b64(`{"tenant_id":"B"}`)), want: 403, warn: true},
		{name: "store: agent of tenant B", h: with(HeaderAgentID, "b-agent"), want: 403, warn: true},
		{name: "store: inactive session", h: with(HeaderSessionID, "sess-old"), want: 403, warn: true},
		{name: "chain rule refused before verifier", h: with(HeaderDelegationDepth, "3"), want: 403, warn: true},
		{name: "no verifier configured", h: valid, verifier: Verifier(nil), want: 503, warn: true},
	}
	mismatches := 0
	for _, mode := range []Mode{ModeDisabled, ModePermissive, ModeEnforcing} {
		for _, tc := range cases {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				v := storeVerifier
				if tc.verifier != nil || tc.name == "no verifier configured" {
					v = tc.verifier
				}
				var denied []int
				cfg := MiddlewareConfig{Mode: mode, RequireHumanOrigin: tc.requireHuman, Policy: testPolicy, Verifier: v,
					OnDenied: func(_ *http.Request, reason string, status int) { denied = append(denied, status) }}
				rec, s, logs := serve(t, cfg, http.MethodPost, "/mcp", tc.h)
				want := 200
				if mode == ModeEnforcing {
					want = tc.want
				}
				if rec.Code != want {
					mismatches++
					t.Errorf("status = %d, want %d (body %q)", rec.Code, want, rec.Body.String())
				}
				warned := strings.Contains(logs, "level=WARN")
				switch mode {
				case ModeDisabled:
					if s.hasTrust || logs != "" {
						t.Errorf("disabled: trust attached=%v, logs %q", s.hasTrust, logs)
					}
				case ModePermissive:
					if warned != tc.warn && tc.name != "no verifier configured" {
						mismatches++
						t.Errorf("permissive: warned = %v, want %v\n%s", warned, tc.warn, logs)
					}
					if s.hasTrust != (len(tc.h) > 0) {
						t.Errorf("permissive: trust attached = %v, want %v", s.hasTrust, len(tc.h) > 0)
					}
					if wantVerified := tc.want == 200 && v != nil; s.hasTrust && s.trust.Verified != wantVerified {
						t.Errorf("permissive: Verified = %v, want %v", s.trust.Verified, wantVerified)
					}
				case ModeEnforcing:
					if want != 200 && (len(denied) != 1 || denied[0] != want) {
						t.Errorf("OnDenied calls = %v, want [%d]", denied, want)
					}
					if want == 200 && (!s.hasTrust || !s.trust.Verified || len(denied) != 0) {
						t.Errorf("enforcing pass: trust attached=%v verified=%v denied=%v", s.hasTrust, s.trust.Verified, denied)
					}
				}
				if s.called && s.rc.TenantID != "A" {
					t.Errorf("RequestContext tenant = %q, want A", s.rc.TenantID)
				}
			})
		}
	}
	t.Logf("metric mode_mismatches=%d", mismatches)
}

// TestMiddlewareChainRules: the delegation-chain rules over HTTP in
// enforcing mode.
func TestMiddlewareChainRules(t *testing.T) {
	store := newFakeStore()
	cfg := MiddlewareConfig{Mode: ModeEnforcing, Policy: testPolicy, Verifier: NewVerifier(store, testPolicy)}
	set := func(kv ...string) http.Header {
		h := ToHeaders(validTC())
		for i := 0; i+1 < len(kv); i += 2 {
			h[http.CanonicalHeaderKey(kv[i])] = []string{kv[i+1]}
		}
		return h
	}
	const marker = "INJECTED-MARKER"
	cases := []struct {
		name string
		h    http.Header
		want int
	}{
		{name: "control: valid chain", h: set(), want: 200},
		{name: "control: two-hop chain", h: set(HeaderDelegationChain, "helper,caller", HeaderDelegationDepth, "2"), want: 200},
		{name: "depth != chain length", h: set(HeaderDelegationDepth, "2"), want: 403},
		{name: "negative depth", h: set(HeaderDelegationDepth, "-1", HeaderDelegationChain, ""), want: 403},
		{name: "depth over max", h: set(HeaderDelegationDepth, "9", HeaderDelegationChain, ""), want: 403},
		{name: "chain longer than max", h: set(HeaderDelegationChain, "a1,a2,a3,a4,a5,a6,a7,a8,caller", HeaderDelegationDepth, "9"), want: 403},
		{name: "self-call", h: set(HeaderDelegationChain, `["target"]`), want: 403},
		{name: "loop A->B->A", h: set(HeaderDelegationChain, `["target","caller"]`, HeaderDelegationDepth, "2"), want: 403},
		{name: "agent twice in chain", h: set(HeaderDelegationChain, `["caller","helper","caller"]`, HeaderDelegationDepth, "3"), want: 403},
		{name: "chain contains another tenant's agent", h: set(HeaderDelegationChain, "b-agent"), want: 403},
		{name: "8 KiB agent header", h: set(HeaderAgentID, strings.Repeat("a", MaxHeaderBytes+1)), want: 401},
		{name: "CR/LF in Agent-ID", h: set(HeaderAgentID, "target\r\n"+marker+": 1"), want: 401},
		{name: "CR/LF in Trace-ID", h: set(HeaderTraceID, "t\n"+marker), want: 401},
	}
	accepted := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, _, logs := serve(t, cfg, http.MethodPost, "/mcp", tc.h)
			if rec.Code != tc.want {
				if rec.Code == 200 {
					accepted++
				}
				t.Errorf("status = %d, want %d", rec.Code, tc.want)
			}
			if strings.Contains(logs, marker) || strings.Contains(rec.Body.String(), marker) || strings.Contains(logs, "\r") {
				t.Errorf("raw header value reached logs or body:\n%s\n%s", logs, rec.Body.String())
			}
			for _, v := range tc.h {
				if len(v[0]) > 3 && strings.Contains(rec.Body.String(), v[0]) {
					t.Errorf("body echoes a header value: %q", rec.Body.String())
				}
			}
		})
	}
	t.Logf("metric chain_violations_accepted=%d", accepted)
}

// TestMiddlewareExemptPaths: exempt paths skip trust checks, matched as
// written ("/health" is not "/healthz"; "/metrics/*" covers what is below).
func TestMiddlewareExemptPaths(t *testing.T) {
	cfg := MiddlewareConfig{Mode: ModeEnforcing, ExemptPaths: []string{"/health", "/metrics/*"},
		Verifier: NewVerifier(newFakeStore(), testPolicy)}
	cases := []struct {
		target string
		exempt bool
	}{
		{"/health", true},
		{"/healthz", false},
		{"/health/", false},
		{"/health/x", false},
		{"/health/../mcp", false},
		{"/mcp/../health", false},
		{"/./health", false},
		{"//health", false},
		{"/health%2F..%2Fmcp", false},
		{"/mcp?x=/health", false},
		{"/mcp#/health", false},
		{"/HEALTH", false},
		{"/metrics", true},
		{"/metrics/", true},
		{"/metrics/cpu", true},
		{"/metrics/a/b", true},
		{"/metricsx", false},
		{"/metrics/../mcp", false},
		{"/mcp", false},
		{"/", false},
	}
	overmatch := 0
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			rec, _, _ := serve(t, cfg, http.MethodGet, tc.target, nil)
			if got := rec.Code == http.StatusOK; got != tc.exempt {
				if got {
					overmatch++
				}
				t.Errorf("exempt = %v (status %d), want %v", got, rec.Code, tc.exempt)
			}
		})
	}
	t.Logf("metric exempt_overmatch=%d", overmatch)
	// A "/*" pattern exempts everything; a nil list exempts nothing.
	if !isExempt(httptest.NewRequest("GET", "/anything", nil), []string{"/*"}) {
		t.Errorf(`"/*" does not exempt /anything`)
	}
	if isExempt(httptest.NewRequest("GET", "/health", nil), nil) {
		t.Errorf("nil patterns exempt /health")
	}
}

// TestMiddlewareSignature: enforcing with a tenant trust key.
func TestMiddlewareSignature(t *testing.T) {
	for _, alg := range []string{AlgHMACSHA256, AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			store := newFakeStore()
			key := mustKey(t, alg)
			store.keys["A"] = key
			cfg := MiddlewareConfig{Mode: ModeEnforcing, Policy: testPolicy, Verifier: NewVerifier(store, testPolicy)}
			signed := func(method, path string) http.Header {
				h := ToHeaders(validTC())
				sig, err := Sign(key, method, path, h)
				if err != nil {
					t.Fatal(err)
				}
				h.Set(HeaderSignature, sig)
				return h
			}
			good := signed("POST", "/mcp")
			cases := []struct {
				name string
				h    http.Header
				want int
			}{
				{name: "good signature", h: good, want: 200},
				{name: "missing signature", h: ToHeaders(validTC()), want: 403},
				{name: "bad signature", h: func() http.Header { h := good.Clone(); h.Set(HeaderSignature, "AAAA"); return h }(), want: 403},
				{name: "signature for another path", h: signed("POST", "/other"), want: 403},
				{name: "signature by another key", h: func() http.Header {
					h := ToHeaders(validTC())
					s, _ := Sign(mustKey(t, alg), "POST", "/mcp", h)
					h.Set(HeaderSignature, s)
					return h
				}(), want: 403},
				{name: "tampered constraints", h: func() http.Header {
					h := good.Clone()
					h.Set(HeaderConstraints, b64(`{"max_cost":9999}`))
					return h
				}(), want: 403},
				{name: "lower-case header names still verify", h: func() http.Header {
					h := http.Header{}
					for k, v := range good {
						h[strings.ToLower(k)] = v
					}
					return h
				}(), want: 200},
			}
			unsigned := 0
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					rec, _, _ := serve(t, cfg, http.MethodPost, "/mcp", tc.h)
					if rec.Code != tc.want {
						if rec.Code == 200 {
							unsigned++
						}
						t.Errorf("status = %d, want %d", rec.Code, tc.want)
					}
				})
			}
			t.Logf("metric unsigned_accepted=%d", unsigned)
			// Control: the tenant without a key accepts unsigned requests.
			delete(store.keys, "A")
			if rec, _, _ := serve(t, cfg, http.MethodPost, "/mcp", ToHeaders(validTC())); rec.Code != 200 {
				t.Errorf("no trust key: status = %d, want 200", rec.Code)
			}
		})
	}
}

func TestMiddlewareFixedBodies(t *testing.T) {
	store := newFakeStore()
	fail := Verifier(func(context.Context, TrustContext, string, string) error { return errors.New("SELECT secret FROM t") })
	bodies := map[int]string{}
	for _, c := range []struct {
		v Verifier
		h http.Header
	}{
		{NewVerifier(store, testPolicy), hdr(HeaderTraceID, "t")},
		{NewVerifier(store, testPolicy), ToHeaders(TrustContext{TraceID: "t", AgentID: "ghost-agent-name"})},
		{fail, ToHeaders(validTC())},
	} {
		rec, _, _ := serve(t, MiddlewareConfig{Mode: ModeEnforcing, Verifier: c.v}, "POST", "/mcp", c.h)
		bodies[rec.Code] = rec.Body.String()
		if strings.Contains(rec.Body.String(), "ghost") || strings.Contains(rec.Body.String(), "SELECT") {
			t.Errorf("body leaks request or internal values: %q", rec.Body.String())
		}
	}
	want := map[int]string{401: bodyUnauthorized + "\n", 403: bodyForbidden + "\n", 503: bodyUnavailable + "\n"}
	for code, body := range want {
		if bodies[code] != body {
			t.Errorf("body for %d = %q, want %q", code, bodies[code], body)
		}
	}
}

func TestMiddlewareUnknownModeEnforces(t *testing.T) {
	rec, _, _ := serve(t, MiddlewareConfig{Mode: "bogus", Verifier: NewVerifier(newFakeStore(), testPolicy)}, "POST", "/mcp", nil)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("unknown mode: status = %d, want 401", rec.Code)
	}
	rec, _, _ = serve(t, MiddlewareConfig{Mode: "bogus", Verifier: NewVerifier(newFakeStore(), testPolicy)}, "POST", "/mcp", ToHeaders(validTC()))
	if rec.Code != http.StatusOK {
		t.Errorf("unknown mode, valid context: status = %d, want 200", rec.Code)
	}
}

func TestContextAccessors(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Errorf("FromContext(empty) ok")
	}
	if _, ok := FromContext(ctxFor("A")); ok {
		t.Errorf("FromContext(no trust) ok")
	}
	ctx := NewContext(ctxFor("A"), validTC())
	tc, ok := FromContext(ctx)
	rc, _ := tenancy.FromContext(ctx)
	if !ok || tc.AgentID != "target" || rc.TenantID != "A" || rc.UserID != "u1" {
		t.Errorf("NewContext/FromContext = %+v, %v; rc %+v", tc, ok, rc)
	}
	// Without a RequestContext the trust context is carried but no tenant appears.
	ctx = NewContext(context.Background(), validTC())
	if _, ok := FromContext(ctx); !ok {
		t.Errorf("FromContext(NewContext(background)) not ok")
	}
	if _, err := tenancy.TenantFromContext(ctx); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Errorf("TenantFromContext = %v, want ErrNoTenant", err)
	}
}
