package memory

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

func mustSession(t *testing.T, s *Store, ctx context.Context, user string, ttl time.Duration) TrustSession {
	t.Helper()
	ts, err := s.CreateTrustSession(ctx, NewTrustSession{HumanUserID: user, HumanOrigin: map[string]any{"user_id": user},
		AgentID: "agent-a", TTL: ttl})
	if err != nil {
		t.Fatalf("CreateTrustSession: %v", err)
	}
	return ts
}

var sessionIDPattern = regexp.MustCompile(`^nxs-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTrustSessionLifecycle(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	ctx := as("a")
	ts := mustSession(t, s, ctx, "alice", 8*time.Hour)
	if !sessionIDPattern.MatchString(ts.ID) {
		t.Errorf("session id %q, want nxs-<uuid v4>", ts.ID)
	}
	if got := ts.ExpiresAt.Sub(ts.CreatedAt); got != 8*time.Hour {
		t.Errorf("expires - created = %v, want 8h", got)
	}
	active := func() bool {
		t.Helper()
		ok, err := s.TrustSessionActive(ctx, ts.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	t.Run("touch counts workflows while active", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			c.Advance(time.Minute)
			if ok, err := s.TouchTrustSession(ctx, ts.ID); err != nil || !ok {
				t.Fatalf("TouchTrustSession = %v, %v; want true", ok, err)
			}
		}
		got, _ := s.TrustSession(ctx, ts.ID)
		if got.WorkflowCount != 3 || !got.LastActivityAt.Equal(c.Now()) {
			t.Errorf("after 3 touches count %d last %v, want 3 at %v", got.WorkflowCount, got.LastActivityAt, c.Now())
		}
	})
	t.Run("active before expiry", func(t *testing.T) {
		if !active() {
			t.Fatal("session inactive before its expiry")
		}
	})
	t.Run("expires by TTL", func(t *testing.T) {
		c.Advance(8 * time.Hour)
		if active() {
			t.Fatal("session still active after its TTL")
		}
		got, err := s.TrustSession(ctx, ts.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := got.InactiveReason(c.Now()); r != TrustSessionExpired {
			t.Errorf("InactiveReason = %q, want expired", r)
		}
		if ok, _ := s.TouchTrustSession(ctx, ts.ID); ok {
			t.Error("TouchTrustSession of an expired session reported active")
		}
		if got2, _ := s.TrustSession(ctx, ts.ID); got2.WorkflowCount != 3 {
			t.Errorf("expired session's workflow count = %d, want 3 (unchanged)", got2.WorkflowCount)
		}
	})
}

func TestRevokeTrustSessions(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	ctx := as("a")
	one := mustSession(t, s, ctx, "alice", time.Hour)
	alice2 := mustSession(t, s, ctx, "alice", time.Hour)
	alice3 := mustSession(t, s, ctx, "alice", time.Hour)
	bob := mustSession(t, s, ctx, "bob", time.Hour)
	otherTenant := mustSession(t, s, as("b"), "alice", time.Hour)

	got, err := s.RevokeTrustSession(ctx, one.ID, "lost laptop")
	if err != nil {
		t.Fatal(err)
	}
	if got.InactiveReason(c.Now()) != TrustSessionRevoked || got.RevokeReason != "lost laptop" {
		t.Errorf("revoked session = %+v, want revoked with reason", got)
	}
	if ok, _ := s.TrustSessionActive(ctx, one.ID); ok {
		t.Error("revoked session still active")
	}
	n, err := s.RevokeTrustSessionsByHuman(ctx, "alice", "offboarded")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("RevokeTrustSessionsByHuman(alice) = %d, want 2 (the third was already revoked)", n)
	}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		id     string
		active bool
	}{
		{"alice 2", ctx, alice2.ID, false},
		{"alice 3", ctx, alice3.ID, false},
		{"bob untouched", ctx, bob.ID, true},
		{"other tenant's alice untouched", as("b"), otherTenant.ID, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, _ := s.TrustSessionActive(tc.ctx, tc.id); ok != tc.active {
				t.Errorf("TrustSessionActive = %v, want %v", ok, tc.active)
			}
		})
	}
	if got, _ := s.TrustSession(ctx, one.ID); got.RevokeReason != "lost laptop" {
		t.Errorf("revoke by human overwrote the first revocation: %q", got.RevokeReason)
	}
}

func TestTrustSessionTenantIsolation(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	a, b := as("a"), as("b")
	ts := mustSession(t, s, a, "alice", time.Hour)
	const random = "nxs-00000000-0000-4000-8000-000000000000"
	t.Run("TrustSession", func(t *testing.T) {
		if _, err := s.TrustSession(a, ts.ID); err != nil {
			t.Fatalf("owner: %v", err)
		}
		if _, err := s.TrustSession(b, ts.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B: %v, want ErrNotFound", err)
		}
	})
	t.Run("TrustSessionActive", func(t *testing.T) {
		if ok, _ := s.TrustSessionActive(a, ts.ID); !ok {
			t.Fatal("owner: inactive")
		}
		if ok, _ := s.TrustSessionActive(b, ts.ID); ok {
			t.Error("B sees A's session as active")
		}
	})
	t.Run("TouchTrustSession", func(t *testing.T) {
		if ok, _ := s.TouchTrustSession(b, ts.ID); ok {
			t.Error("B touched A's session")
		}
		if got, _ := s.TrustSession(a, ts.ID); got.WorkflowCount != 0 {
			t.Errorf("workflow count after B's touch = %d, want 0", got.WorkflowCount)
		}
	})
	t.Run("TrustSessions", func(t *testing.T) {
		if got, total, _ := s.TrustSessions(b, TrustSessionFilter{}); total != 0 || len(got) != 0 {
			t.Errorf("B lists %d/%d sessions, want 0", len(got), total)
		}
		if got, total, _ := s.TrustSessions(a, TrustSessionFilter{}); total != 1 || len(got) != 1 {
			t.Errorf("owner lists %d/%d sessions, want 1", len(got), total)
		}
	})
	t.Run("RevokeTrustSession", func(t *testing.T) {
		_, errB := s.RevokeTrustSession(b, ts.ID, "")
		_, errR := s.RevokeTrustSession(b, random, "")
		if !errors.Is(errB, ErrNotFound) || !errors.Is(errR, ErrNotFound) {
			t.Errorf("B: %v, random: %v; want ErrNotFound", errB, errR)
		}
		if ok, _ := s.TrustSessionActive(a, ts.ID); !ok {
			t.Error("A's session inactive after B's revoke attempt")
		}
	})
	t.Run("RevokeTrustSessionsByHuman", func(t *testing.T) {
		if n, _ := s.RevokeTrustSessionsByHuman(b, "alice", ""); n != 0 {
			t.Errorf("B revoked %d of A's sessions", n)
		}
	})
	t.Run("no tenant", func(t *testing.T) {
		if _, err := s.CreateTrustSession(context.Background(), NewTrustSession{TTL: time.Hour}); !errors.Is(err, tenancy.ErrNoTenant) {
			t.Errorf("CreateTrustSession without tenant: %v, want ErrNoTenant", err)
		}
	})
}

func TestListTrustSessions(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	ctx := as("a")
	short := mustSession(t, s, ctx, "alice", time.Minute)
	c.Advance(time.Second)
	revoked := mustSession(t, s, ctx, "alice", time.Hour)
	s.RevokeTrustSession(ctx, revoked.ID, "")
	c.Advance(time.Second)
	live := mustSession(t, s, ctx, "bob", time.Hour)
	c.Advance(2 * time.Minute) // short has expired

	for _, tc := range []struct {
		name      string
		f         TrustSessionFilter
		want      []string
		wantTotal int
	}{
		{"active only", TrustSessionFilter{ActiveOnly: true}, []string{live.ID}, 1},
		{"all newest first", TrustSessionFilter{}, []string{live.ID, revoked.ID, short.ID}, 3},
		{"page", TrustSessionFilter{Limit: 1, Offset: 2}, []string{short.ID}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, total, err := s.TrustSessions(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, ts := range got {
				ids = append(ids, ts.ID)
			}
			if total != tc.wantTotal || len(ids) != len(tc.want) {
				t.Fatalf("TrustSessions(%+v) = %v total %d, want %v total %d", tc.f, ids, total, tc.want, tc.wantTotal)
			}
			for i := range ids {
				if ids[i] != tc.want[i] {
					t.Errorf("TrustSessions(%+v) = %v, want %v", tc.f, ids, tc.want)
				}
			}
		})
	}
}

func TestDeleteExpiredTrustSessions(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	expA := mustSession(t, s, as("a"), "alice", time.Minute)
	expB := mustSession(t, s, as("b"), "bob", time.Minute)
	liveA := mustSession(t, s, as("a"), "alice", time.Hour)
	if n, err := s.DeleteExpiredTrustSessions(context.Background()); err != nil || n != 0 {
		t.Fatalf("cleanup before expiry = %d, %v; want 0", n, err)
	}
	c.Advance(2 * time.Minute)
	n, err := s.DeleteExpiredTrustSessions(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("cleanup = %d, %v; want 2", n, err)
	}
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		id      string
		present bool
	}{
		{"A expired removed", as("a"), expA.ID, false},
		{"B expired removed", as("b"), expB.ID, false},
		{"A live kept", as("a"), liveA.ID, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.TrustSession(tc.ctx, tc.id)
			if got := err == nil; got != tc.present {
				t.Errorf("present = %v (%v), want %v", got, err, tc.present)
			}
		})
	}
}

// TestRevokedSessionRefusedWhenEnforcing runs the trust middleware with the
// store as verifier: a request naming an active session passes, the same
// request after revocation gets 403.
func TestRevokedSessionRefusedWhenEnforcing(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	ctx := as("a")
	for _, id := range []string{"agent-a", "agent-b"} {
		if _, _, err := s.RegisterAgent(ctx, AgentRegistration{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	ts := mustSession(t, s, ctx, "alice", time.Hour)
	h := delegation.Middleware(delegation.MiddlewareConfig{Mode: delegation.ModeEnforcing, Logger: slog.New(slog.DiscardHandler),
		Verifier: delegation.NewVerifier(s, delegation.ChainPolicy{})},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	call := func(session string) int {
		tc := delegation.TrustContext{TraceID: "eatp-mcp-00000000000000aa", AgentID: "agent-b", Chain: []string{"agent-a"},
			Depth: 1, HasDepth: true, TrustSessionID: session}
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil).WithContext(ctx)
		for k, v := range delegation.ToHeaders(tc) {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if got := call(ts.ID); got != http.StatusOK {
		t.Fatalf("active session: status %d, want 200", got)
	}
	if _, err := s.RevokeTrustSession(ctx, ts.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := call(ts.ID); got != http.StatusForbidden {
		t.Errorf("revoked session: status %d, want 403", got)
	}
	if got := call(""); got != http.StatusOK {
		t.Errorf("no session (control): status %d, want 200", got)
	}
}
