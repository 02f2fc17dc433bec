package memory

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"testing"
	"time"
)

func send(t testing.TB, s *Store, ctx context.Context, m Send) Sent {
	t.Helper()
	if m.Type == "" {
		m.Type = "info"
	}
	if m.Priority == "" {
		m.Priority = "normal"
	}
	out, err := s.SendMessage(ctx, m)
	if err != nil {
		t.Fatalf("SendMessage(%+v): %v", m, err)
	}
	return out
}

func TestSendMessageSelection(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	mustRegister(t, s, a, AgentRegistration{ID: "alice", Name: "A", Capabilities: []string{"Go", "review"}})
	mustRegister(t, s, a, AgentRegistration{ID: "bob", Name: "B", Capabilities: []string{"go"}})
	mustRegister(t, s, a, AgentRegistration{ID: "carol", Name: "C", Capabilities: []string{"sql"}})
	mustRegister(t, s, b, AgentRegistration{ID: "dave", Name: "D", Capabilities: []string{"go"}})
	tests := []struct {
		name     string
		m        Send
		wantMode string
		want     []string
		wantErr  error
	}{
		{"direct", Send{From: "alice", To: "bob", Content: "hi"}, SelectDirect, []string{"bob"}, nil},
		{"direct to unregistered", Send{From: "alice", To: "zed", Content: "hi"}, SelectDirect, []string{"zed"}, nil},
		{"broadcast excludes self", Send{From: "alice", Broadcast: true, ExcludeSelf: true, Content: "all"}, SelectBroadcast, []string{"bob", "carol"}, nil},
		{"broadcast includes self", Send{From: "alice", Broadcast: true, Content: "all"}, SelectBroadcast, []string{"alice", "bob", "carol"}, nil},
		{"capabilities case-insensitive, all required", Send{From: "carol", Capabilities: []string{"GO"}, ExcludeSelf: true, Content: "go?"}, SelectCapabilities, []string{"alice", "bob"}, nil},
		{"capabilities all of", Send{From: "carol", Capabilities: []string{"go", "Review"}, ExcludeSelf: true, Content: "x"}, SelectCapabilities, []string{"alice"}, nil},
		{"no recipients", Send{From: "alice", Capabilities: []string{"cobol"}, Content: "x"}, SelectCapabilities, []string{}, nil},
		{"empty content", Send{From: "alice", To: "bob"}, "", nil, ErrInvalid},
		{"bad type", Send{From: "alice", To: "bob", Content: "x", Type: "gossip"}, "", nil, ErrInvalid},
		{"no to", Send{From: "alice", Content: "x"}, "", nil, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			if m.Type == "" {
				m.Type = "info"
			}
			m.Priority = "normal"
			got, err := s.SendMessage(a, m)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SendMessage(%+v) = %v, want %v", m, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got.Mode != tc.wantMode || !reflect.DeepEqual(got.Recipients, tc.want) || len(got.MessageIDs) != len(tc.want) {
				t.Errorf("SendMessage(%+v) = %+v, want mode %s recipients %v", m, got, tc.wantMode, tc.want)
			}
		})
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestMessageIDsAreRandomUUIDs(t *testing.T) {
	s := newTestStore(t)
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		out := send(t, s, as("a"), Send{From: "x", To: "y", Content: "m"})
		id := out.MessageIDs[0]
		if !uuidV4.MatchString(id) || seen[id] {
			t.Fatalf("message id %q: want a fresh UUIDv4", id)
		}
		seen[id] = true
	}
}

func TestMessages(t *testing.T) {
	s := newTestStore(t)
	s.now = (&testClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), step: time.Second}).Now
	a, b := as("a"), as("b")
	for i := 0; i < 5; i++ {
		typ := "info"
		if i%2 == 1 {
			typ = "task"
		}
		send(t, s, a, Send{From: "alice", To: "bob", Content: fmt.Sprint("m", i), Type: typ})
	}
	send(t, s, b, Send{From: "mallory", To: "bob", Content: "b's"}) // same agent id in tenant b
	tests := []struct {
		name       string
		ctx        context.Context
		q          MessageQuery
		want       []string
		wantTotal  int
		wantUnread int
	}{
		{"newest first", a, MessageQuery{Agent: "bob", Limit: 3}, []string{"m4", "m3", "m2"}, 5, 5},
		{"offset", a, MessageQuery{Agent: "bob", Limit: 3, Offset: 3}, []string{"m1", "m0"}, 5, 5},
		{"type", a, MessageQuery{Agent: "bob", Limit: 10, Type: "task"}, []string{"m3", "m1"}, 2, 5},
		{"since", a, MessageQuery{Agent: "bob", Limit: 10, Since: Stamp(time.Date(2025, 1, 1, 0, 0, 4, 0, time.UTC))}, []string{"m4", "m3"}, 2, 5},
		{"mark page read", a, MessageQuery{Agent: "bob", Limit: 2, MarkAsRead: true}, []string{"m4", "m3"}, 5, 3},
		{"unread only", a, MessageQuery{Agent: "bob", Limit: 10, UnreadOnly: true}, []string{"m2", "m1", "m0"}, 3, 3},
		{"other inbox", a, MessageQuery{Agent: "alice", Limit: 10}, []string{}, 0, 0},
		{"tenant isolation", b, MessageQuery{Agent: "bob", Limit: 10}, []string{"b's"}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Messages(tc.ctx, tc.q)
			if err != nil {
				t.Fatalf("Messages(%+v): %v", tc.q, err)
			}
			got := []string{}
			for _, m := range p.Messages {
				got = append(got, m.Content)
			}
			if !reflect.DeepEqual(got, tc.want) || p.Total != tc.wantTotal || p.Unread != tc.wantUnread {
				t.Errorf("Messages(%+v) = %v total %d unread %d, want %v total %d unread %d",
					tc.q, got, p.Total, p.Unread, tc.want, tc.wantTotal, tc.wantUnread)
			}
		})
	}
}

func TestMarkMessagesRead(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	ids := []string{}
	for i := 0; i < 3; i++ {
		ids = append(ids, send(t, s, a, Send{From: "alice", To: "bob", Content: "x"}).MessageIDs[0])
	}
	send(t, s, b, Send{From: "alice", To: "bob", Content: "b"})
	tests := []struct {
		name string
		ctx  context.Context
		ids  []string
		want int
	}{
		{"other tenant's ids are ignored", b, ids, 0},
		{"other inbox", a, nil, 0},
		{"by id", a, ids[:1], 1},
		{"again is idempotent", a, ids[:1], 0},
		{"empty list marks nothing", a, []string{}, 0},
		{"all", a, nil, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agent := "bob"
			if tc.name == "other inbox" {
				agent = "alice"
			}
			n, err := s.MarkMessagesRead(tc.ctx, agent, tc.ids)
			if err != nil || n != tc.want {
				t.Errorf("MarkMessagesRead(%s, %v) = %d, %v; want %d", agent, tc.ids, n, err, tc.want)
			}
		})
	}
	if p, _ := s.Messages(b, MessageQuery{Agent: "bob", Limit: 10}); p.Unread != 1 {
		t.Errorf("tenant b unread = %d, want 1 (untouched by a)", p.Unread)
	}
}

// fillMessages stores n messages of tenant a spread over 100 inboxes.
func fillMessages(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := as("a")
	err := s.write(ctx, func(t *txn) error {
		for i := 0; i < n; i++ {
			if _, err := t.exec(`INSERT INTO messages (tenant_id, id, from_agent, to_agent, content, message_type, priority, created_at)
				VALUES ('a', ?, 'x', ?, 'filler', 'info', 'normal', ?)`, newUUID(), fmt.Sprint("agent", i%100), t.now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkSendMessage(b *testing.B) {
	for _, stored := range []int{0, 10000} {
		b.Run(fmt.Sprint("stored=", stored), func(b *testing.B) {
			s := newTestStore(b)
			fillMessages(b, s, stored)
			ctx := as("a")
			m := Send{From: "alice", To: "agent1", Content: "hello", Type: "info", Priority: "normal"}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.SendMessage(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGetMessages(b *testing.B) {
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
				if _, err := s.Messages(ctx, MessageQuery{Agent: "bench", Limit: 20}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
