package memory

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

func TestEndAndBeginSession(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	userCtx := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "a", UserID: "u1"})
	mustRegister(t, s, a, AgentRegistration{ID: "alice", Name: "A"})

	t.Run("validation", func(t *testing.T) {
		for _, e := range []EndSession{
			{Agent: "alice", Project: "p"},
			{Agent: "", Project: "p", Summary: "s"},
			{Agent: "alice", Project: "", Summary: "s"},
			{Agent: "alice", Project: "p", Summary: "s", Learnings: []NewLearning{{Context: "c", Lesson: "l", Confidence: 2}}},
		} {
			if _, err := s.EndSession(a, e); !errors.Is(err, ErrInvalid) {
				t.Errorf("EndSession(%+v) = %v, want ErrInvalid", e, err)
			}
		}
	})
	first, err := s.EndSession(userCtx, EndSession{Agent: "alice", Project: "p", Summary: "first"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.EndSession(userCtx, EndSession{Agent: "alice", Project: "p", Summary: "second", OpenItems: []string{"tests"},
		Learnings: []NewLearning{{Context: "c", Lesson: "l", Confidence: 0.5}}})
	if err != nil {
		t.Fatal(err)
	}
	if h.UserID != "u1" || h.Status != "active" || !uuidV4.MatchString(h.ID) || h.ID == first.ID {
		t.Errorf("EndSession = %+v, want active, stamped with user u1, fresh id", h)
	}
	if ag, _ := s.Agent(a, "alice"); ag.Status != "inactive" {
		t.Errorf("agent status after end_session = %q, want inactive", ag.Status)
	}
	send(t, s, a, Send{From: "alice", To: "bob", Content: "for bob"})

	t.Run("tenant isolation", func(t *testing.T) {
		got, err := s.BeginSession(b, "bob", "p")
		if err != nil || got.Handoff != nil || len(got.Messages) != 0 || len(got.Learnings) != 0 {
			t.Errorf("BeginSession(bob, p) as b = %+v, %v; want nothing of a's", got, err)
		}
	})
	t.Run("consumes the latest handoff", func(t *testing.T) {
		got, err := s.BeginSession(a, "bob", "p")
		if err != nil || got.Handoff == nil {
			t.Fatalf("BeginSession(bob, p) = %+v, %v; want the handoff", got, err)
		}
		if got.Handoff.Summary != "second" || got.Handoff.Status != "consumed" || got.Handoff.ConsumedBy != "bob" ||
			!reflect.DeepEqual(got.Handoff.OpenItems, []string{"tests"}) || len(got.Handoff.Learnings) != 1 {
			t.Errorf("handoff = %+v, want the second, consumed by bob", got.Handoff)
		}
		if len(got.Messages) != 1 || got.Messages[0].Content != "for bob" || got.UnreadMessages != 1 {
			t.Errorf("session messages = %+v (%d unread), want bob's message", got.Messages, got.UnreadMessages)
		}
	})
	t.Run("second begin gets nothing", func(t *testing.T) {
		got, err := s.BeginSession(a, "alice", "p")
		if err != nil || got.Handoff != nil {
			t.Errorf("second BeginSession = %+v, %v; want handoff nil", got.Handoff, err)
		}
		if got.LearningsTotal != 1 || got.Learnings[0].Source != "handoff" || got.Learnings[0].ProjectID != "p" {
			t.Errorf("alice's learnings = %+v, want the handoff learning", got.Learnings)
		}
	})
	t.Run("other project untouched", func(t *testing.T) {
		if _, err := s.EndSession(a, EndSession{Agent: "alice", Project: "q", Summary: "q"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.BeginSession(a, "bob", "p"); got.Handoff != nil {
			t.Errorf("BeginSession(p) = %+v, want nil", got.Handoff)
		}
		if got, _ := s.BeginSession(a, "bob", "q"); got.Handoff == nil || got.Handoff.Summary != "q" {
			t.Errorf("BeginSession(q) = %+v, want q's handoff", got.Handoff)
		}
	})
}

// TestBeginSessionExactlyOnce: of N concurrent begin_session calls on one
// project, made through two Stores on one database as through two
// replicas, exactly one receives the handoff. Run with -race.
func TestBeginSessionExactlyOnce(t *testing.T) {
	replicas := newReplicas(t, 2, "")
	s := replicas[0]
	a, b := as("a"), as("b")
	const n = 16
	for round := 0; round < 3; round++ {
		if _, err := s.EndSession(a, EndSession{Agent: "alice", Project: "p", Summary: fmt.Sprint("round ", round)}); err != nil {
			t.Fatal(err)
		}
		// The same project id in tenant b, so a wrong scope would show up as a second winner.
		if _, err := s.EndSession(b, EndSession{Agent: "alice", Project: "p", Summary: "b"}); err != nil {
			t.Fatal(err)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins []string
			errs []error
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := replicas[i%2].BeginSession(a, fmt.Sprint("agent", i), "p")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else if got.Handoff != nil {
					wins = append(wins, got.Handoff.Summary)
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 || len(wins) != 1 || wins[0] != fmt.Sprint("round ", round) {
			t.Errorf("round %d: %d concurrent BeginSession: winners %v errors %v; want exactly one winner", round, n, wins, errs)
		}
		if got, err := s.BeginSession(b, "x", "p"); err != nil || got.Handoff == nil || got.Handoff.Summary != "b" {
			t.Errorf("round %d: tenant b's handoff = %+v, %v; want it untouched", round, got.Handoff, err)
		}
	}
}

func TestAgentContext(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	if _, err := s.SetPreferences(a, "alice", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.RecordLearning(a, "alice", NewLearning{Context: "c", Lesson: fmt.Sprint("l", i), Confidence: 1}); err != nil {
			t.Fatal(err)
		}
		send(t, s, a, Send{From: "bob", To: "alice", Content: fmt.Sprint("m", i)})
	}
	if _, err := s.EndSession(a, EndSession{Agent: "bob", Project: "p", Summary: "s"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.AgentContext(a, "alice", "p", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Preferences["k"] != "v" || len(got.Learnings) != 2 || got.LearningsTotal != 3 || len(got.Unread) != 2 ||
		got.UnreadTotal != 3 || got.Handoff == nil || got.Handoff.Status != "active" {
		t.Errorf("AgentContext = %+v, want prefs, 2 of 3 learnings and messages, the active handoff", got)
	}
	if again, _ := s.BeginSession(a, "alice", "p"); again.Handoff == nil {
		t.Errorf("AgentContext consumed the handoff")
	}
	got, err = s.AgentContext(b, "alice", "p", 2)
	if err != nil || len(got.Preferences) != 0 || len(got.Learnings) != 0 || len(got.Unread) != 0 || got.Handoff != nil {
		t.Errorf("AgentContext as b = %+v, %v; want nothing of a's", got, err)
	}
}

// BenchmarkBeginSession measures begin_session (consume + context) with
// 0 and 10k stored messages.
func BenchmarkBeginSession(b *testing.B) {
	for _, stored := range []int{0, 10000} {
		b.Run(fmt.Sprint("stored=", stored), func(b *testing.B) {
			s := newTestStore(b)
			fillMessages(b, s, stored)
			ctx := as("a")
			for i := 0; i < 20; i++ {
				send(b, s, ctx, Send{From: "alice", To: "bench", Content: "hello"})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if _, err := s.EndSession(ctx, EndSession{Agent: "alice", Project: "p", Summary: "s"}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				got, err := s.BeginSession(ctx, "bench", "p")
				if err != nil || got.Handoff == nil {
					b.Fatalf("BeginSession = %+v, %v", got.Handoff, err)
				}
			}
		})
	}
}
