package memory

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// auditCtx acts as tenant with a user, key and trust context, carrying an
// audit intent for tool.
func auditCtx(tenant, tool string) context.Context {
	rc := tenancy.RequestContext{TenantID: tenant, UserID: "alice", APIKeyID: "key_1", AuthMethod: tenancy.AuthAPIKey,
		Trust: delegation.TrustContext{TraceID: "eatp-mcp-1111111111111111", AgentID: "agent-b", Chain: []string{"agent-a"},
			TrustSessionID: "nxs-s"}}
	return WithAudit(tenancy.NewContext(context.Background(), rc), AuditIntent{Tool: tool, ContentHash: "c0ffee"})
}

func auditRows(t *testing.T, s *Store, tenant string) []AuditRecord {
	t.Helper()
	rows, _, err := s.AuditLog(as(tenant), AuditFilter{Limit: MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestAuditOneRowPerStateChange(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	tests := []struct {
		name     string
		call     func(ctx context.Context) error
		wantRows int
		action   string
	}{
		{name: "create entities", call: func(ctx context.Context) error {
			_, err := s.CreateEntities(ctx, []Entity{{Name: "x", EntityType: "t"}, {Name: "y", EntityType: "t"}})
			return err
		}, wantRows: 1, action: ActionToolCall},
		{name: "prepare delegation", call: func(ctx context.Context) error {
			_, err := s.PrepareDelegation(ctx, newDelegation("agent-a", "agent-b"))
			return err
		}, wantRows: 1, action: "delegation.prepare"},
		{name: "create trust session", call: func(ctx context.Context) error {
			_, err := s.CreateTrustSession(ctx, NewTrustSession{TTL: time.Hour})
			return err
		}, wantRows: 1, action: "trust_session.create"},
		{name: "failed write leaves no row", call: func(ctx context.Context) error {
			_, err := s.CreateRelations(ctx, []Relation{{From: "nope", To: "x", RelationType: "r"}})
			if err == nil {
				t.Fatal("CreateRelations with a missing endpoint succeeded")
			}
			return nil
		}, wantRows: 0},
		{name: "read leaves no row", call: func(ctx context.Context) error {
			_, err := s.ReadGraph(ctx, Page{})
			return err
		}, wantRows: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(auditRows(t, s, "a"))
			if err := tc.call(auditCtx("a", "tool_x")); err != nil {
				t.Fatal(err)
			}
			rows := auditRows(t, s, "a")
			if got := len(rows) - before; got != tc.wantRows {
				t.Fatalf("audit rows added = %d, want %d", got, tc.wantRows)
			}
			if tc.wantRows == 0 {
				return
			}
			e := rows[0].Event
			if e.TenantID != "a" || e.UserID != "alice" || e.APIKeyID != "key_1" || e.Tool != "tool_x" ||
				e.Action != tc.action || e.Outcome != OutcomeOK || e.ContentHash != "c0ffee" || e.SessionID == "" || e.TraceID == "" {
				t.Errorf("audit row = %+v, want tenant a, alice, key_1, tool_x, %s, ok, c0ffee, trace and session", e, tc.action)
			}
		})
	}
	t.Run("no intent no row", func(t *testing.T) {
		before := len(auditRows(t, s, "a"))
		if _, err := s.CreateEntities(as("a"), []Entity{{Name: "z", EntityType: "t"}}); err != nil {
			t.Fatal(err)
		}
		if got := len(auditRows(t, s, "a")) - before; got != 0 {
			t.Errorf("rows added without an intent = %d, want 0", got)
		}
	})
}

func TestAuditDenials(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	ctx := context.Background()
	entry := AuditEntry{Action: "auth.denied", Outcome: OutcomeDenied, Detail: DenialDetail("invalid_key", 401, "POST", "/mcp\r\nX: y")}
	tests := []struct {
		name       string
		rc         tenancy.RequestContext
		wantTenant string
		wantUser   string
	}{
		{name: "no identity", rc: tenancy.RequestContext{}, wantTenant: UnauthenticatedTenant},
		{name: "unknown tenant", rc: tenancy.RequestContext{TenantID: "ghost", UserID: "mallory"}, wantTenant: UnauthenticatedTenant},
		{name: "known tenant", rc: tenancy.RequestContext{TenantID: "b", UserID: "bob"}, wantTenant: "b", wantUser: "bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(auditRows(t, s, tc.wantTenant))
			if err := s.AuditDenial(ctx, tc.rc, entry); err != nil {
				t.Fatal(err)
			}
			rows := auditRows(t, s, tc.wantTenant)
			if len(rows) != before+1 {
				t.Fatalf("rows in %s = %d, want %d", tc.wantTenant, len(rows), before+1)
			}
			e := rows[0].Event
			if e.Outcome != OutcomeDenied || e.UserID != tc.wantUser || strings.ContainsAny(e.Detail, "\r\n") {
				t.Errorf("denial row = %+v, want outcome denied, user %q, no CR/LF in detail", e, tc.wantUser)
			}
		})
	}
	t.Run("Audit from ctx", func(t *testing.T) {
		before := len(auditRows(t, s, "a"))
		// An intent in ctx must not add a second row.
		if err := s.Audit(auditCtx("a", "t"), AuditEntry{Tool: "create_entities", Action: "tool.denied", Outcome: OutcomeDenied}); err != nil {
			t.Fatal(err)
		}
		rows := auditRows(t, s, "a")
		if len(rows) != before+1 || rows[0].Event.Tool != "create_entities" || rows[0].Event.Outcome != OutcomeDenied {
			t.Errorf("after Audit: %d rows (was %d), newest %+v", len(rows), before, rows[0].Event)
		}
	})
	t.Run("tenants see only their own", func(t *testing.T) {
		for _, r := range auditRows(t, s, "a") {
			if r.Event.TenantID != "a" {
				t.Errorf("tenant a's log holds a row of %q", r.Event.TenantID)
			}
		}
	})
	t.Run("AuditTenants includes the unauthenticated chain", func(t *testing.T) {
		ts, err := s.AuditTenants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ts, ",") != "a,b,"+UnauthenticatedTenant {
			t.Errorf("AuditTenants = %v", ts)
		}
	})
}

func TestAuditAppendOnly(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	if err := s.Audit(as("a"), AuditEntry{Action: "x", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sql string }{
		{"update", `UPDATE audit_log SET outcome = 'forged' WHERE tenant_id = 'a'`},
		{"delete", `DELETE FROM audit_log WHERE tenant_id = 'a'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.w.Exec(tc.sql)
			if err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: err = %v, want the append-only abort", tc.sql, err)
			}
		})
	}
	rows := auditRows(t, s, "a")
	if len(rows) != 1 || rows[0].Event.Outcome != OutcomeOK {
		t.Errorf("rows after refused mutations = %+v, want the one original row", rows)
	}
	// positive control: inserts still work
	if err := s.Audit(as("a"), AuditEntry{Action: "y"}); err != nil {
		t.Errorf("append after refused mutations: %v", err)
	}
}

func TestVerifyAudit(t *testing.T) {
	path := memtest.DSN(t)
	c := newTestClock()
	s := openTestStore(t, path, Options{Now: c.Now})
	for i := 0; i < 5; i++ {
		for _, tn := range []string{"a", "b"} {
			if _, err := s.CreateEntities(auditCtx(tn, "create_entities"), []Entity{{Name: "e" + string(rune('0'+i)), EntityType: "t"}}); err != nil {
				t.Fatal(err)
			}
		}
		c.Advance(1234567 * time.Nanosecond) // sub-second times must survive storage
	}
	check := func(tenant string) AuditCheck {
		t.Helper()
		res, err := s.VerifyAudit(context.Background(), tenant)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tn := range []string{"a", "b"} {
		if res := check(tn); !res.OK || res.Rows != 5 {
			t.Fatalf("VerifyAudit(%s) before tampering = %+v, want 5 rows OK", tn, res)
		}
	}
	rows := auditRows(t, s, "a")
	if rows[0].Seq != 5 || rows[4].Seq != 1 || rows[4].PrevHash != delegation.GenesisHash || rows[0].PrevHash != rows[1].Hash {
		t.Fatalf("chain of a = seqs %d..%d, want 5..1 linked from genesis", rows[0].Seq, rows[4].Seq)
	}

	// Tamper behind the trigger's back: drop (SQLite) or disable
	// (PostgreSQL) it, update, restore it.
	off, on := `DROP TRIGGER audit_log_no_update`,
		`CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END`
	if s.pg != nil {
		off, on = `ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update`, `ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update`
	}
	tamper := func(stmt string) {
		t.Helper()
		for _, q := range []string{off, stmt, on} {
			if _, err := s.w.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if _, err := s.w.Exec(`UPDATE audit_log SET outcome = 'x' WHERE tenant_id = 'a'`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("UPDATE after restoring the trigger: err = %v, want the append-only abort", err)
		}
	}
	tamper(`UPDATE audit_log SET outcome = 'denied' WHERE tenant_id = 'a' AND seq = 3`)
	res := check("a")
	if res.OK || res.BrokenSeq != 3 || !strings.Contains(res.Reason, "hash") {
		t.Errorf("VerifyAudit(a) after altering seq 3 = %+v, want broken at 3", res)
	}
	if res := check("b"); !res.OK {
		t.Errorf("VerifyAudit(b) (control, untouched) = %+v, want OK", res)
	}

	// Recomputing the altered row's own hash moves the break to the next row.
	tamper(`UPDATE audit_log SET hash = 'f00' WHERE tenant_id = 'b' AND seq = 2`)
	if res := check("b"); res.OK || res.BrokenSeq != 2 {
		t.Errorf("VerifyAudit(b) after replacing hash of seq 2 = %+v, want broken at 2", res)
	}

	// Persistence: the chain verifies after reopening.
	s.Close()
	s2 := openTestStore(t, path, Options{Now: c.Now})
	if res, err := s2.VerifyAudit(context.Background(), "a"); err != nil || res.OK {
		t.Errorf("after reopen VerifyAudit(a) = %+v, %v; want still broken", res, err)
	}
}

func TestAuditLogFilters(t *testing.T) {
	c := newTestClock()
	s := openTestStore(t, "", Options{Now: c.Now})
	start := c.Now()
	for i, agent := range []string{"agent-x", "agent-y", "agent-x"} {
		rc := tenancy.RequestContext{TenantID: "a", AgentID: agent}
		if err := s.Audit(tenancy.NewContext(context.Background(), rc), AuditEntry{Action: "n" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Minute)
	}
	for _, tc := range []struct {
		name      string
		f         AuditFilter
		want      string
		wantTotal int
	}{
		{"all newest first", AuditFilter{}, "n2,n1,n0", 3},
		{"by agent", AuditFilter{Agent: "agent-x"}, "n2,n0", 2},
		{"since", AuditFilter{Since: start.Add(30 * time.Second)}, "n2,n1", 2},
		{"page", AuditFilter{Limit: 1, Offset: 1}, "n1", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, total, err := s.AuditLog(as("a"), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rows {
				got = append(got, r.Event.Action)
			}
			if strings.Join(got, ",") != tc.want || total != tc.wantTotal {
				t.Errorf("AuditLog(%+v) = %v total %d, want %s total %d", tc.f, got, total, tc.want, tc.wantTotal)
			}
		})
	}
	if rows, total, _ := s.AuditLog(as("b"), AuditFilter{}); len(rows) != 0 || total != 0 {
		t.Errorf("tenant b reads %d/%d of a's rows", len(rows), total)
	}
}

// TestAuditChainConcurrentReplicas appends to one tenant's chain from many
// goroutines through two stores on one database, standing for two
// replicas. Half the appends come from AuditDenial with no tenant in ctx,
// so only the chain tenant's lock orders them against the others. The
// chain must come out gapless: seq 1..n, each row linked to its
// predecessor, no append failing on a duplicate seq.
func TestAuditChainConcurrentReplicas(t *testing.T) {
	dsn := memtest.DSN(t)
	c := newTestClock()
	replicas := []*Store{openTestStore(t, dsn, Options{Now: c.Now}), openTestStore(t, dsn, Options{Now: c.Now})}
	const (
		workers = 8 // per replica
		appends = 25
	)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for r, s := range replicas {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < appends; i++ {
					detail := fmt.Sprintf("replica %d worker %d append %d", r, w, i)
					var err error
					if i%2 == 0 {
						err = s.Audit(as("a"), AuditEntry{Action: "concurrent", Outcome: OutcomeOK, Detail: detail})
					} else {
						err = s.AuditDenial(context.Background(), tenancy.RequestContext{TenantID: "a", UserID: "u"},
							AuditEntry{Action: "concurrent.denied", Outcome: OutcomeDenied, Detail: detail})
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("%s: %w", detail, err))
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, err := range errs {
		t.Errorf("append: %v", err)
	}
	want := len(replicas) * workers * appends
	for i, s := range replicas {
		res, err := s.VerifyAudit(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK || res.Rows != want {
			t.Errorf("VerifyAudit(a) on replica %d = %+v, want %d rows OK", i, res, want)
		}
	}
	rows, total, err := replicas[0].AuditLog(as("a"), AuditFilter{Limit: MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	if total != want || len(rows) != want || rows[0].Seq != int64(want) || rows[len(rows)-1].Seq != 1 {
		t.Errorf("AuditLog(a) = %d rows (total %d), seqs %d..%d; want %d rows, seqs %d..1",
			len(rows), total, rows[0].Seq, rows[len(rows)-1].Seq, want, want)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.Event.Detail] {
			t.Errorf("detail %q appended twice", r.Event.Detail)
		}
		seen[r.Event.Detail] = true
	}
	if res, err := replicas[1].VerifyAudit(context.Background(), "b"); err != nil || !res.OK || res.Rows != 0 {
		t.Errorf("VerifyAudit(b) (control, no appends) = %+v, %v; want 0 rows OK", res, err)
	}
}
