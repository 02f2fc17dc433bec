package delegation

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// fakeStore is an in-memory Store keyed by tenant, so tests can check that
// another tenant's agents, sessions and delegations are invisible.
type fakeStore struct {
	agents      map[string]map[string]bool       // tenant -> agent id
	sessions    map[string]map[string]bool       // tenant -> session id -> active
	delegations map[string]map[string]Delegation // tenant -> trace id
	keys        map[string]TrustKey              // tenant -> key
	admins      map[string]map[string]bool       // tenant -> admin user ids
	err         error                            // when set, every method fails with it
}

var _ Store = (*fakeStore)(nil)

func (s *fakeStore) tenant(ctx context.Context) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	return tenancy.TenantFromContext(ctx)
}

func (s *fakeStore) AgentVisible(ctx context.Context, agentID string) (bool, error) {
	t, err := s.tenant(ctx)
	if err != nil {
		return false, err
	}
	return s.agents[t][agentID], nil
}

func (s *fakeStore) DelegationByTrace(ctx context.Context, traceID string) (Delegation, error) {
	t, err := s.tenant(ctx)
	if err != nil {
		return Delegation{}, err
	}
	d, ok := s.delegations[t][traceID]
	if !ok {
		return Delegation{}, ErrNotFound
	}
	return d, nil
}

func (s *fakeStore) TrustSessionActive(ctx context.Context, sessionID string) (bool, error) {
	t, err := s.tenant(ctx)
	if err != nil {
		return false, err
	}
	return s.sessions[t][sessionID], nil
}

func (s *fakeStore) TenantTrustKey(ctx context.Context) (TrustKey, bool, error) {
	t, err := s.tenant(ctx)
	if err != nil {
		return TrustKey{}, false, err
	}
	k, ok := s.keys[t]
	return k, ok, nil
}

func (s *fakeStore) Membership(ctx context.Context, tenantID string, p tenancy.Principal) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	if s.admins[tenantID][p.UserID] {
		return "admin", nil
	}
	return "", nil
}

// testNow is the fixed clock of verification tests.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testPolicy = ChainPolicy{MaxDepth: 8, Now: func() time.Time { return testNow }}

// newFakeStore returns a store where tenant A has agents caller, target and
// helper, an active session sess-a and an expired one sess-old; tenant B has
// agent b-agent, session sess-b and a delegation under trace trace-b.
func newFakeStore() *fakeStore {
	return &fakeStore{
		agents: map[string]map[string]bool{
			"A": {"caller": true, "target": true, "helper": true},
			"B": {"b-agent": true, "target": true},
		},
		sessions: map[string]map[string]bool{
			"A": {"sess-a": true, "sess-old": false},
			"B": {"sess-b": true},
		},
		delegations: map[string]map[string]Delegation{
			"A": {},
			"B": {"trace-b": {ID: "d-b", TraceID: "trace-b", CallingAgent: "caller", TargetAgent: "target", Status: StatusPrepared}},
		},
		keys: map[string]TrustKey{},
	}
}

func ctxFor(tenant string) context.Context {
	return tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: tenant, UserID: "u1", AuthMethod: tenancy.AuthAPIKey})
}

// validTC returns a trust context that passes Verify for tenant A of newFakeStore.
func validTC() TrustContext {
	return TrustContext{
		TraceID:        "trace-1",
		AgentID:        "target",
		HumanOrigin:    map[string]any{"user_id": "u1", "tenant_id": "A"},
		Chain:          []string{"caller"},
		Depth:          1,
		HasDepth:       true,
		Constraints:    map[string]any{"max_cost": 5},
		TrustSessionID: "sess-a",
	}
}

func TestVerify(t *testing.T) {
	delegation := Delegation{ID: "d1", TraceID: "trace-1", CallingAgent: "caller", TargetAgent: "target",
		ToolName: "search_nodes", CreatedAt: testNow.Add(-time.Minute), ExpiresAt: testNow.Add(time.Hour), Status: StatusPrepared}
	tests := []struct {
		name    string
		tenant  string
		mutate  func(tc *TrustContext)
		store   func(s *fakeStore)
		tool    string
		want    error // nil: accepted
		denial  bool  // want a refusal (IsDenial) rather than an internal error
		noCtxRC bool
	}{
		{name: "valid", want: nil},
		{name: "valid without optional fields", mutate: func(tc *TrustContext) {
			*tc = TrustContext{TraceID: "t", AgentID: "target"}
		}},
		{name: "missing agent", mutate: func(tc *TrustContext) { tc.AgentID = "" }, want: ErrUntrusted, denial: true},
		{name: "missing trace", mutate: func(tc *TrustContext) { tc.TraceID = "" }, want: ErrUntrusted, denial: true},
		{name: "unregistered agent", mutate: func(tc *TrustContext) { tc.AgentID = "ghost" }, want: ErrUntrusted, denial: true},
		{name: "agent of another tenant", mutate: func(tc *TrustContext) { tc.AgentID = "b-agent" }, want: ErrUntrusted, denial: true},
		{name: "control: agent registered in both tenants", tenant: "B", mutate: func(tc *TrustContext) {
			tc.HumanOrigin = nil
			tc.TrustSessionID = "sess-b"
			tc.Chain, tc.HasDepth = []string{"b-agent"}, true
			tc.TraceID = "trace-other"
		}},
		{name: "chain names another tenant's agent", mutate: func(tc *TrustContext) {
			tc.Chain, tc.Depth = []string{"b-agent"}, 1
		}, want: ErrUntrusted, denial: true},
		{name: "chain rule: depth mismatch", mutate: func(tc *TrustContext) { tc.Depth = 2 }, want: ErrInvalidChain, denial: true},
		{name: "chain rule: self-call", mutate: func(tc *TrustContext) { tc.Chain = []string{"target"} }, want: ErrSelfCall, denial: true},
		{name: "human origin of another tenant (tenant_id)", mutate: func(tc *TrustContext) {
			tc.HumanOrigin = map[string]any{"tenant_id": "B"}
		}, want: ErrUntrusted, denial: true},
		{name: "human origin of another tenant (tenantId)", mutate: func(tc *TrustContext) {
			tc.HumanOrigin = map[string]any{"tenantId": "B"}
		}, want: ErrUntrusted, denial: true},
		{name: "human origin of another tenant (Tenant-ID)", mutate: func(tc *TrustContext) {
			tc.HumanOrigin = map[string]any{"user_id": "u1", "Tenant-ID": "B"}
		}, want: ErrUntrusted, denial: true},
		{name: "human origin tenant not a string", mutate: func(tc *TrustContext) {
			tc.HumanOrigin = map[string]any{"tenant_id": []any{"A"}}
		}, want: ErrUntrusted, denial: true},
		{name: "control: human origin without tenant", mutate: func(tc *TrustContext) {
			tc.HumanOrigin = map[string]any{"user_id": "u1"}
		}},
		{name: "inactive session", mutate: func(tc *TrustContext) { tc.TrustSessionID = "sess-old" }, want: ErrUntrusted, denial: true},
		{name: "unknown session", mutate: func(tc *TrustContext) { tc.TrustSessionID = "nxs-nope" }, want: ErrUntrusted, denial: true},
		{name: "session of another tenant", mutate: func(tc *TrustContext) { tc.TrustSessionID = "sess-b" }, want: ErrUntrusted, denial: true},
		{name: "delegation matches", store: func(s *fakeStore) { s.delegations["A"]["trace-1"] = delegation }},
		{name: "delegation matches tool", tool: "search_nodes", store: func(s *fakeStore) { s.delegations["A"]["trace-1"] = delegation }},
		{name: "delegation for another tool", tool: "delete_entities", store: func(s *fakeStore) {
			s.delegations["A"]["trace-1"] = delegation
		}, want: ErrUntrusted, denial: true},
		{name: "delegation to another target", store: func(s *fakeStore) {
			d := delegation
			d.TargetAgent = "helper"
			s.delegations["A"]["trace-1"] = d
		}, want: ErrUntrusted, denial: true},
		{name: "delegation from another caller", store: func(s *fakeStore) {
			d := delegation
			d.CallingAgent = "helper"
			s.delegations["A"]["trace-1"] = d
		}, want: ErrUntrusted, denial: true},
		{name: "delegation expired", store: func(s *fakeStore) {
			d := delegation
			d.ExpiresAt = testNow
			s.delegations["A"]["trace-1"] = d
		}, want: ErrExpired, denial: true},
		{name: "delegation revoked", store: func(s *fakeStore) {
			d := delegation
			d.RevokedAt = testNow.Add(-time.Second)
			s.delegations["A"]["trace-1"] = d
		}, want: ErrRevoked, denial: true},
		{name: "delegation completed", store: func(s *fakeStore) {
			d := delegation
			d.Status = StatusCompleted
			s.delegations["A"]["trace-1"] = d
		}, want: ErrUntrusted, denial: true},
		{name: "control: another tenant's delegation under the same trace is invisible", mutate: func(tc *TrustContext) {
			tc.TraceID = "trace-b"
			tc.Chain = []string{"helper"}
		}},
		{name: "trust key and no signature", store: func(s *fakeStore) {
			s.keys["A"] = mustKey(t, AlgHMACSHA256)
		}, want: ErrBadSignature, denial: true},
		{name: "store error is internal", store: func(s *fakeStore) { s.err = errors.New("disk on fire") }, want: nil, denial: false},
		{name: "no tenant in ctx is internal", noCtxRC: true, want: tenancy.ErrNoTenant, denial: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeStore()
			if tt.store != nil {
				tt.store(s)
			}
			tc := validTC()
			if tt.mutate != nil {
				tt.mutate(&tc)
			}
			tenant := tt.tenant
			if tenant == "" {
				tenant = "A"
			}
			ctx := ctxFor(tenant)
			if tt.noCtxRC {
				ctx = context.Background()
			}
			err := Verify(ctx, s, tc, testPolicy, http.MethodPost, "/mcp", tt.tool)
			wantErr := tt.want != nil || tt.denial || s.err != nil
			if !wantErr {
				if err != nil {
					t.Fatalf("Verify() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify() = nil, want error %v", tt.want)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify() = %v, want errors.Is %v", err, tt.want)
			}
			if got := IsDenial(err); got != tt.denial {
				t.Errorf("IsDenial(%v) = %v, want %v", err, got, tt.denial)
			}
		})
	}
}

func TestVerifySignatureWithTrustKey(t *testing.T) {
	for _, alg := range []string{AlgHMACSHA256, AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			s := newFakeStore()
			key := mustKey(t, alg)
			s.keys["A"] = key
			h := ToHeaders(validTC())
			sig, err := Sign(key, http.MethodPost, "/mcp", h)
			if err != nil {
				t.Fatalf("Sign() = %v", err)
			}
			h.Set(HeaderSignature, sig)
			tc, _ := Extract(h, nil)

			if err := Verify(ctxFor("A"), s, tc, testPolicy, http.MethodPost, "/mcp", ""); err != nil {
				t.Errorf("Verify(signed) = %v, want nil", err)
			}
			if err := Verify(ctxFor("A"), s, tc, testPolicy, http.MethodPost, "/other", ""); !errors.Is(err, ErrBadSignature) {
				t.Errorf("Verify(other path) = %v, want ErrBadSignature", err)
			}
			tampered := tc
			tampered.Raw = map[string]string{}
			for k, v := range tc.Raw {
				tampered.Raw[k] = v
			}
			tampered.Raw["X-Eatp-Delegation-Depth"] = "0"
			if err := Verify(ctxFor("A"), s, tampered, testPolicy, http.MethodPost, "/mcp", ""); !errors.Is(err, ErrBadSignature) {
				t.Errorf("Verify(tampered raw) = %v, want ErrBadSignature", err)
			}
			// Replay with a repeated signed header: Extract drops the
			// constraints as malformed, but the signature must not verify.
			replay := h.Clone()
			replay.Add(HeaderConstraints, b64(`{"max_cost":1000}`))
			rtc, _ := Extract(replay, nil)
			if rtc.Constraints != nil {
				t.Errorf("Extract(repeated constraints) kept them")
			}
			if err := Verify(ctxFor("A"), s, rtc, testPolicy, http.MethodPost, "/mcp", ""); !errors.Is(err, ErrBadSignature) {
				t.Errorf("Verify(repeated signed header) = %v, want ErrBadSignature", err)
			}
			// Replay with an extra EATP header.
			extra := h.Clone()
			extra.Set("X-Eatp-Unsigned", "1")
			etc, _ := Extract(extra, nil)
			if err := Verify(ctxFor("A"), s, etc, testPolicy, http.MethodPost, "/mcp", ""); !errors.Is(err, ErrBadSignature) {
				t.Errorf("Verify(extra EATP header) = %v, want ErrBadSignature", err)
			}
		})
	}
}

func mustKey(t *testing.T, alg string) TrustKey {
	t.Helper()
	k, err := NewTrustKey(alg)
	if err != nil {
		t.Fatalf("NewTrustKey(%q) = %v", alg, err)
	}
	return k
}
