package memory

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMCPSessions(t *testing.T) {
	clk := newTestClock()
	s := openTestStore(t, "", Options{Now: clk.Now})
	const idle = 10 * time.Minute
	if err := s.BindMCPSession(as("a"), "sid-1", "p1"); err != nil {
		t.Fatalf("BindMCPSession: %v", err)
	}
	if err := s.BindMCPSession(as("a"), "sid-1", "p2"); !errors.Is(err, ErrConflict) {
		t.Errorf("BindMCPSession(bound id) = %v, want ErrConflict", err)
	}
	got, err := s.MCPSession(as("a"), "sid-1")
	if err != nil || got.Principal != "p1" || !got.LastUsed.Equal(clk.Now()) {
		t.Fatalf("MCPSession = %+v, %v; want principal p1 last used now", got, err)
	}

	t.Run("tenant isolation", func(t *testing.T) {
		if _, err := s.MCPSession(as("b"), "sid-1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("MCPSession as b = %v, want ErrNotFound", err)
		}
		if _, err := s.TouchMCPSession(as("b"), "sid-1", "p1", idle); !errors.Is(err, ErrNotFound) {
			t.Errorf("TouchMCPSession as b = %v, want ErrNotFound", err)
		}
		if err := s.DeleteMCPSession(as("b"), "sid-1"); err != nil {
			t.Errorf("DeleteMCPSession as b: %v", err)
		}
		if _, err := s.MCPSession(as("a"), "sid-1"); err != nil {
			t.Errorf("a's session after b's delete: %v, want present", err)
		}
		// b may bind the same id in its own tenant without touching a's.
		if err := s.BindMCPSession(as("b"), "sid-1", "pb"); err != nil {
			t.Errorf("BindMCPSession as b: %v", err)
		}
		if got, _ := s.MCPSession(as("a"), "sid-1"); got.Principal != "p1" {
			t.Errorf("a's principal after b's bind = %q, want p1", got.Principal)
		}
	})

	t.Run("touch", func(t *testing.T) {
		clk.Advance(time.Minute)
		if _, err := s.TouchMCPSession(as("a"), "sid-1", "p-other", idle); !errors.Is(err, ErrNotFound) {
			t.Errorf("TouchMCPSession by another principal = %v, want ErrNotFound", err)
		}
		used, err := s.TouchMCPSession(as("a"), "sid-1", "p1", idle)
		if err != nil || !used.Equal(clk.Now()) {
			t.Errorf("TouchMCPSession = %v, %v; want %v", used, err, clk.Now())
		}
	})

	t.Run("expiry", func(t *testing.T) {
		if err := s.BindMCPSession(as("a"), "sid-2", "p1"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(idle + time.Second)
		if _, err := s.TouchMCPSession(as("a"), "sid-2", "p1", idle); !errors.Is(err, ErrNotFound) {
			t.Errorf("TouchMCPSession of an expired session = %v, want ErrNotFound", err)
		}
		if err := s.BindMCPSession(as("a"), "sid-3", "p1"); err != nil { // fresh: control
			t.Fatal(err)
		}
		n, err := s.DeleteIdleMCPSessions(context.Background(), idle)
		if err != nil {
			t.Fatal(err)
		}
		// sid-1 and sid-2 of a and sid-1 of b are idle; sid-3 is fresh.
		if n != 3 {
			t.Errorf("DeleteIdleMCPSessions = %d, want 3", n)
		}
		if _, err := s.MCPSession(as("a"), "sid-3"); err != nil {
			t.Errorf("fresh session after the sweep: %v", err)
		}
		if _, err := s.MCPSession(as("a"), "sid-2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("idle session after the sweep: %v, want ErrNotFound", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := s.DeleteMCPSession(as("a"), "sid-3"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MCPSession(as("a"), "sid-3"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted session: %v, want ErrNotFound", err)
		}
	})

	t.Run("no tenant", func(t *testing.T) {
		if err := s.BindMCPSession(context.Background(), "sid-x", "p"); err == nil {
			t.Error("BindMCPSession without a tenant succeeded")
		}
		if _, err := s.MCPSession(context.Background(), "sid-x"); err == nil {
			t.Error("MCPSession without a tenant succeeded")
		}
	})
}

func TestReplicaHeartbeat(t *testing.T) {
	clk := newTestClock()
	s := openTestStore(t, "", Options{Now: clk.Now})
	ctx := context.Background()
	const window = 3 * time.Second
	beat := func(id string, want int) {
		t.Helper()
		n, err := s.ReplicaHeartbeat(ctx, id, window)
		if err != nil || n != want {
			t.Errorf("ReplicaHeartbeat(%s) = %d, %v; want %d", id, n, err, want)
		}
	}
	beat("r1", 1)
	beat("r2", 2)
	beat("r3", 3)
	clk.Advance(2 * time.Second)
	beat("r1", 3)
	beat("r2", 3)
	clk.Advance(2 * time.Second) // r3 last beat 4 s ago
	beat("r1", 2)
	if err := s.RemoveReplica(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	beat("r1", 1)
	clk.Advance(2 * replicaForget)
	beat("r1", 1)
	var rows int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM replicas").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("%d heartbeat rows after a minute, want 1 (stale rows forgotten)", rows)
	}
}
