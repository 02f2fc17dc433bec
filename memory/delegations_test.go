package memory

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

func newDelegation(caller, target string) NewDelegation {
	return NewDelegation{TraceID: "eatp-mcp-0123456789abcdef", CallingAgent: caller, TargetAgent: target,
		ToolName: "create_entities", TTL: time.Hour, Constraints: map[string]any{"max_cost": 10},
		HumanOrigin: map[string]any{"user_id": "alice"}, Chain: []string{caller}}
}

func mustPrepare(t *testing.T, s *Store, ctx context.Context, nd NewDelegation) DelegationRecord {
	t.Helper()
	d, err := s.PrepareDelegation(ctx, nd)
	if err != nil {
		t.Fatalf("PrepareDelegation(%+v): %v", nd, err)
	}
	return d
}

func TestPrepareDelegation(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	tests := []struct {
		name    string
		ctx     context.Context
		mutate  func(*NewDelegation)
		wantErr error
	}{
		{name: "valid", ctx: as("a")},
		{name: "blank calling agent", ctx: as("a"), mutate: func(n *NewDelegation) { n.CallingAgent = " " }, wantErr: ErrInvalid},
		{name: "blank target agent", ctx: as("a"), mutate: func(n *NewDelegation) { n.TargetAgent = "" }, wantErr: ErrInvalid},
		{name: "blank tool", ctx: as("a"), mutate: func(n *NewDelegation) { n.ToolName = "" }, wantErr: ErrInvalid},
		{name: "self-call", ctx: as("a"), mutate: func(n *NewDelegation) { n.TargetAgent = n.CallingAgent }, wantErr: delegation.ErrSelfCall},
		{name: "zero ttl", ctx: as("a"), mutate: func(n *NewDelegation) { n.TTL = 0 }, wantErr: ErrInvalid},
		{name: "no tenant", ctx: context.Background(), wantErr: tenancy.ErrNoTenant},
		{name: "unknown parent", ctx: as("a"), mutate: func(n *NewDelegation) { n.ParentID = "dlg_nope" }, wantErr: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nd := newDelegation("agent-a", "agent-b")
			if tc.mutate != nil {
				tc.mutate(&nd)
			}
			d, err := s.PrepareDelegation(tc.ctx, nd)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("PrepareDelegation err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PrepareDelegation: %v", err)
			}
			if d.Status != delegation.StatusPrepared || d.CallingAgent != "agent-a" || d.TargetAgent != "agent-b" ||
				d.ToolName != "create_entities" || d.TraceID != nd.TraceID {
				t.Errorf("PrepareDelegation = %+v, want the prepared delegation", d)
			}
			if got := d.ExpiresAt.Sub(d.CreatedAt); got != time.Hour {
				t.Errorf("expires - created = %v, want 1h", got)
			}
			if len(d.ID) < 36 {
				t.Errorf("id %q is too short to be random", d.ID)
			}
			if d.Constraints["max_cost"] != any(json.Number("10")) {
				t.Errorf("constraints = %v, want max_cost 10", d.Constraints)
			}
		})
	}
}

func TestPrepareUnderParent(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	ctx := as("a")
	parent := mustPrepare(t, s, ctx, newDelegation("agent-a", "agent-b"))

	t.Run("child never outlives its parent", func(t *testing.T) {
		nd := newDelegation("agent-b", "agent-c")
		nd.ParentID, nd.TTL = parent.ID, 24*time.Hour
		child := mustPrepare(t, s, ctx, nd)
		if !child.ExpiresAt.Equal(parent.ExpiresAt) || child.ParentID != parent.ID {
			t.Errorf("child expires %v parent %q, want %v under %q", child.ExpiresAt, child.ParentID, parent.ExpiresAt, parent.ID)
		}
	})
	t.Run("revoked parent refuses", func(t *testing.T) {
		p2 := mustPrepare(t, s, ctx, newDelegation("agent-a", "agent-b"))
		if _, err := s.RevokeDelegation(ctx, p2.ID, "test"); err != nil {
			t.Fatal(err)
		}
		nd := newDelegation("agent-b", "agent-c")
		nd.ParentID = p2.ID
		if _, err := s.PrepareDelegation(ctx, nd); !errors.Is(err, delegation.ErrRevoked) {
			t.Errorf("PrepareDelegation under revoked parent err = %v, want ErrRevoked", err)
		}
	})
	t.Run("expired parent refuses", func(t *testing.T) {
		c.Advance(2 * time.Hour)
		nd := newDelegation("agent-b", "agent-c")
		nd.ParentID = parent.ID
		if _, err := s.PrepareDelegation(ctx, nd); !errors.Is(err, delegation.ErrExpired) {
			t.Errorf("PrepareDelegation under expired parent err = %v, want ErrExpired", err)
		}
	})
	t.Run("other tenant's parent is not found", func(t *testing.T) {
		nd := newDelegation("agent-b", "agent-c")
		nd.ParentID = parent.ID
		if _, err := s.PrepareDelegation(as("b"), nd); !errors.Is(err, ErrNotFound) {
			t.Errorf("PrepareDelegation under A's parent as B err = %v, want ErrNotFound", err)
		}
	})
}

func TestCompleteDelegation(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	ctx := as("a")
	okResp := map[string]any{"content": []any{}, "isError": false}
	errResp := map[string]any{"content": []any{}, "isError": true}
	summary := func(v any) delegation.ResponseSummary {
		sum, err := delegation.SummarizeResponse(v)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	tests := []struct {
		name       string
		setup      func(id string)
		resp       any
		wantValid  bool
		wantStatus string
	}{
		{name: "success", resp: okResp, wantValid: true, wantStatus: delegation.StatusCompleted},
		{name: "error response", resp: errResp, wantStatus: delegation.StatusFailed},
		{name: "error member", resp: map[string]any{"error": map[string]any{"code": 1}}, wantStatus: delegation.StatusFailed},
		{name: "revoked", setup: func(id string) { s.RevokeDelegation(ctx, id, "") }, resp: okResp, wantStatus: delegation.StatusRevoked},
		{name: "already completed", setup: func(id string) { s.CompleteDelegation(ctx, id, summary(okResp)) }, resp: okResp, wantStatus: delegation.StatusCompleted},
		{name: "expired", setup: func(string) { c.Advance(2 * time.Hour) }, resp: okResp, wantStatus: delegation.StatusPrepared},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := mustPrepare(t, s, ctx, newDelegation("agent-a", "agent-b"))
			if tc.setup != nil {
				tc.setup(d.ID)
			}
			v, err := s.CompleteDelegation(ctx, d.ID, summary(tc.resp))
			if err != nil {
				t.Fatalf("CompleteDelegation: %v", err)
			}
			if v.Valid != tc.wantValid || (!v.Valid && len(v.Reasons) == 0) {
				t.Errorf("CompleteDelegation valid = %v reasons %v, want valid %v with reasons when invalid", v.Valid, v.Reasons, tc.wantValid)
			}
			got, err := s.Delegation(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.wantStatus {
				t.Errorf("stored status = %q, want %q", got.Status, tc.wantStatus)
			}
			if tc.wantStatus == delegation.StatusFailed && (!got.HasError || got.ResponseHash == "" || len(got.ResponseKeys) == 0) {
				t.Errorf("failed delegation recorded %+v, want has_error, keys and hash", got)
			}
		})
	}
	t.Run("records keys and hash", func(t *testing.T) {
		d := mustPrepare(t, s, ctx, newDelegation("agent-a", "agent-b"))
		sum := summary(okResp)
		if _, err := s.CompleteDelegation(ctx, d.ID, sum); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Delegation(ctx, d.ID)
		if got.ResponseHash != sum.Hash || len(got.ResponseKeys) != 2 || got.HasError || got.CompletedAt.IsZero() {
			t.Errorf("completed delegation = %+v, want hash %s, keys [content isError]", got, sum.Hash)
		}
	})
}

func TestRevokeDelegationCascades(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	ctx := as("a")
	root := mustPrepare(t, s, ctx, newDelegation("agent-a", "agent-b"))
	under := func(parent DelegationRecord, caller, target string) DelegationRecord {
		nd := newDelegation(caller, target)
		nd.ParentID = parent.ID
		return mustPrepare(t, s, ctx, nd)
	}
	child := under(root, "agent-b", "agent-c")
	grandchild := under(child, "agent-c", "agent-d")
	completed := under(root, "agent-b", "agent-e")
	if _, err := s.CompleteDelegation(ctx, completed.ID, delegation.ResponseSummary{Hash: "x"}); err != nil {
		t.Fatal(err)
	}
	sibling := mustPrepare(t, s, ctx, newDelegation("agent-a", "agent-c"))

	// B cannot revoke A's delegation: same answer as an unknown id.
	_, errB := s.RevokeDelegation(as("b"), root.ID, "")
	_, errRandom := s.RevokeDelegation(as("b"), "dlg_00000000000000000000000000000000", "")
	if !errors.Is(errB, ErrNotFound) || !errors.Is(errRandom, ErrNotFound) {
		t.Fatalf("RevokeDelegation as B = %v / random %v, want ErrNotFound for both", errB, errRandom)
	}

	n, err := s.RevokeDelegation(ctx, root.ID, "compromised")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("RevokeDelegation revoked %d, want 3 (root, child, grandchild)", n)
	}
	for _, tc := range []struct {
		name string
		id   string
		want string
	}{
		{"root", root.ID, delegation.StatusRevoked},
		{"child", child.ID, delegation.StatusRevoked},
		{"grandchild", grandchild.ID, delegation.StatusRevoked},
		{"completed child", completed.ID, delegation.StatusCompleted},
		{"unrelated sibling", sibling.ID, delegation.StatusPrepared},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Delegation(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != tc.want {
				t.Errorf("status = %q, want %q", d.Status, tc.want)
			}
			if tc.want == delegation.StatusRevoked && (d.RevokedAt.IsZero() || d.RevokeReason != "compromised") {
				t.Errorf("revoked delegation = %+v, want revoked_at and reason", d)
			}
		})
	}
	if n, _ := s.RevokeDelegation(ctx, root.ID, "again"); n != 0 {
		t.Errorf("second RevokeDelegation revoked %d, want 0", n)
	}
}

func TestDelegationTenantIsolation(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	a, b := as("a"), as("b")
	d := mustPrepare(t, s, a, newDelegation("agent-a", "agent-b"))
	const random = "dlg_ffffffffffffffffffffffffffffffff"

	t.Run("Delegation", func(t *testing.T) {
		if _, err := s.Delegation(a, d.ID); err != nil {
			t.Fatalf("owner: %v", err)
		}
		_, errB := s.Delegation(b, d.ID)
		_, errR := s.Delegation(b, random)
		if !errors.Is(errB, ErrNotFound) || !errors.Is(errR, ErrNotFound) {
			t.Fatalf("B: %v, random: %v; want ErrNotFound", errB, errR)
		}
		if got, want := errB.Error(), errR.Error(); got != strings.ReplaceAll(want, random, d.ID) {
			t.Errorf("B's error %q differs from a random id's %q beyond the id", got, want)
		}
	})
	t.Run("DelegationByTrace", func(t *testing.T) {
		if _, err := s.DelegationByTrace(a, d.TraceID); err != nil {
			t.Fatalf("owner: %v", err)
		}
		if _, err := s.DelegationByTrace(b, d.TraceID); !errors.Is(err, delegation.ErrNotFound) {
			t.Errorf("B: %v, want delegation.ErrNotFound", err)
		}
	})
	t.Run("DelegationHistory", func(t *testing.T) {
		if got, total, _ := s.DelegationHistory(a, DelegationFilter{}); total != 1 || len(got) != 1 {
			t.Fatalf("owner history = %d/%d, want 1", len(got), total)
		}
		if got, total, _ := s.DelegationHistory(b, DelegationFilter{}); total != 0 || len(got) != 0 {
			t.Errorf("B history = %d/%d, want 0", len(got), total)
		}
	})
	t.Run("CompleteDelegation", func(t *testing.T) {
		if _, err := s.CompleteDelegation(b, d.ID, delegation.ResponseSummary{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("B: %v, want ErrNotFound", err)
		}
		if got, _ := s.Delegation(a, d.ID); got.Status != delegation.StatusPrepared {
			t.Errorf("after B's attempt status = %q, want prepared", got.Status)
		}
	})
}

func TestDelegationHistory(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	ctx := as("a")
	var ids []string
	for i, p := range []struct{ caller, target, tool string }{
		{"agent-a", "agent-b", "create_entities"},
		{"agent-a", "agent-c", "read_graph"},
		{"agent-b", "agent-c", "create_entities"},
	} {
		nd := newDelegation(p.caller, p.target)
		nd.ToolName, nd.TraceID = p.tool, "eatp-mcp-000000000000000"+string(rune('0'+i))
		nd.TTL = time.Duration(i+1) * time.Hour
		ids = append(ids, mustPrepare(t, s, ctx, nd).ID)
		c.Advance(time.Minute)
	}
	start := newTestClock().Now()
	tests := []struct {
		name      string
		f         DelegationFilter
		want      []string
		wantTotal int
	}{
		{name: "all newest first", want: []string{ids[2], ids[1], ids[0]}, wantTotal: 3},
		{name: "by caller", f: DelegationFilter{CallingAgent: "agent-a"}, want: []string{ids[1], ids[0]}, wantTotal: 2},
		{name: "by target", f: DelegationFilter{TargetAgent: "agent-c"}, want: []string{ids[2], ids[1]}, wantTotal: 2},
		{name: "by tool", f: DelegationFilter{ToolName: "read_graph"}, want: []string{ids[1]}, wantTotal: 1},
		{name: "by trace", f: DelegationFilter{TraceID: "eatp-mcp-0000000000000002"}, want: []string{ids[2]}, wantTotal: 1},
		{name: "since", f: DelegationFilter{Since: start.Add(30 * time.Second)}, want: []string{ids[2], ids[1]}, wantTotal: 2},
		{name: "page", f: DelegationFilter{Limit: 1, Offset: 1}, want: []string{ids[1]}, wantTotal: 3},
		{name: "no match", f: DelegationFilter{CallingAgent: "nobody"}, want: nil, wantTotal: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, total, err := s.DelegationHistory(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, d := range got {
				gotIDs = append(gotIDs, d.ID)
			}
			if total != tc.wantTotal || len(gotIDs) != len(tc.want) {
				t.Fatalf("DelegationHistory(%+v) = %v (total %d), want %v (total %d)", tc.f, gotIDs, total, tc.want, tc.wantTotal)
			}
			for i := range gotIDs {
				if gotIDs[i] != tc.want[i] {
					t.Errorf("DelegationHistory(%+v) = %v, want %v", tc.f, gotIDs, tc.want)
					break
				}
			}
		})
	}
	t.Run("expired status", func(t *testing.T) {
		c.Advance(90 * time.Minute) // the first (1h TTL) has expired, the others not
		got, _, _ := s.DelegationHistory(ctx, DelegationFilter{})
		now := c.Now()
		want := []string{delegation.StatusPrepared, delegation.StatusPrepared, delegation.StatusExpired}
		for i, d := range got {
			if d.StatusAt(now) != want[i] {
				t.Errorf("row %d StatusAt = %q, want %q", i, d.StatusAt(now), want[i])
			}
		}
	})
}

func TestDelegationsPersistAcrossReopen(t *testing.T) {
	path := memtest.DSN(t)
	c := newTestClock()
	s := openTestStore(t, path, Options{Now: c.Now})
	d := mustPrepare(t, s, as("a"), newDelegation("agent-a", "agent-b"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, path, Options{Now: c.Now})
	got, err := s2.Delegation(as("a"), d.ID)
	if err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	if got.TraceID != d.TraceID || !got.CreatedAt.Equal(d.CreatedAt) || !got.ExpiresAt.Equal(d.ExpiresAt) ||
		got.HumanOrigin["user_id"] != "alice" || len(got.Chain) != 1 {
		t.Errorf("after reopen = %+v, want %+v", got, d)
	}
	if _, err := s2.DelegationByTrace(as("a"), d.TraceID); err != nil {
		t.Errorf("DelegationByTrace after reopen: %v", err)
	}
}

// TestFailDelegation checks that a delegation whose call produced no
// response ends failed with its audit row in the same write, that a
// revoked one keeps its status (the row is written all the same), and
// that another tenant's id is not found and changes nothing.
func TestFailDelegation(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	a := mustPrepare(t, s, as("a"), newDelegation("agent-a", "agent-b"))
	revoked := mustPrepare(t, s, as("a"), newDelegation("agent-a", "agent-c"))
	if _, err := s.RevokeDelegation(as("a"), revoked.ID, "test"); err != nil {
		t.Fatal(err)
	}

	if _, err := s.FailDelegation(auditCtx("b", "call_agent_tool"), a.ID, EndCancelled); !errors.Is(err, ErrNotFound) {
		t.Errorf("FailDelegation(b, a's id) err = %v, want ErrNotFound", err)
	}
	if d, _ := s.Delegation(as("a"), a.ID); d.Status != delegation.StatusPrepared {
		t.Errorf("after b's attempt a's delegation is %q, want prepared", d.Status)
	}

	d, err := s.FailDelegation(auditCtx("a", "call_agent_tool"), a.ID, EndCancelled)
	if err != nil || d.Status != delegation.StatusFailed || d.CompletedAt.IsZero() || !d.HasError {
		t.Errorf("FailDelegation(a) = %+v, %v; want failed, completed, has_error", d, err)
	}
	d, err = s.FailDelegation(auditCtx("a", "call_agent_tool"), revoked.ID, EndTimeout)
	if err != nil || d.Status != delegation.StatusRevoked {
		t.Errorf("FailDelegation(revoked) = %+v, %v; want it still revoked", d, err)
	}
	rows, _, err := s.AuditLog(as("a"), AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ends []string
	for _, r := range rows {
		if r.Event.Action == "delegation.end" {
			ends = append(ends, r.Event.Outcome+" "+r.Event.Detail)
		}
	}
	want := []string{
		`error {"delegation_id":"` + revoked.ID + `","reason":"timeout","status":"revoked"}`,
		`error {"delegation_id":"` + a.ID + `","reason":"cancelled","status":"failed"}`,
	}
	if strings.Join(ends, "\n") != strings.Join(want, "\n") {
		t.Errorf("delegation.end rows of a =\n%s\nwant\n%s", strings.Join(ends, "\n"), strings.Join(want, "\n"))
	}
	if rows, _, _ := s.AuditLog(as("b"), AuditFilter{}); len(rows) != 0 {
		t.Errorf("b's audit holds %d rows, want 0 (its attempt wrote nothing)", len(rows))
	}
}
