package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The audit log (table audit_log) is append-only and hash-chained per
// tenant. Rows are written three ways:
//
//   - a state-changing tool call: tools put an AuditIntent into ctx
//     (WithAudit) and write() appends the row inside the transaction of the
//     change, so a change and its row commit (or vanish) together;
//   - Audit: one row for an event without a change of its own (a refused
//     tool call, a delegated read-only call), tenant and identity from ctx;
//   - AuditDenial: a request refused at the HTTP edge, with whatever
//     identity was established. Without an existing tenant it is chained
//     under UnauthenticatedTenant.

// UnauthenticatedTenant is the reserved audit chain of requests refused
// before a tenant was established (401s, credentials naming an unknown
// tenant). tenancy.ValidTenantID never accepts it, so no real tenant can own it.
const UnauthenticatedTenant = "_unauthenticated"

// Audit outcomes.
const (
	OutcomeOK       = "ok"
	OutcomeDenied   = "denied"
	OutcomeRejected = "rejected"
	OutcomeError    = "error"
)

// Audit actions written by memory itself; tools and the edge name others.
const (
	ActionToolCall = "tool_call"
)

// txnTime is the transaction's time as a time.Time.
func txnTime(t *txn) time.Time {
	tm, err := time.Parse(time.RFC3339Nano, t.now)
	if err != nil {
		panic(fmt.Sprintf("memory: transaction time %q: %v", t.now, err)) // t.now is always RFC 3339
	}
	return tm.UTC()
}

// parseStoredTime parses a stored time ("" or NULL is the zero time).
func parseStoredTime(v sql.NullString) (time.Time, error) {
	if !v.Valid || v.String == "" {
		return time.Time{}, nil
	}
	tm, err := time.Parse(time.RFC3339Nano, v.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", v.String, err)
	}
	return tm.UTC(), nil
}

// AuditIntent asks for an audit row for the state changes made with a
// context: every write transaction run with it appends one row (tool,
// content hash, identity from ctx) before it commits.
type AuditIntent struct {
	// Tool is the MCP tool (or CLI command) making the change.
	Tool string
	// ContentHash is the hex SHA-256 of the call's canonical arguments.
	ContentHash string
}

type auditKey struct{}

// WithAudit returns a copy of ctx carrying intent.
func WithAudit(ctx context.Context, intent AuditIntent) context.Context {
	return context.WithValue(ctx, auditKey{}, &intent)
}

// withoutAudit returns ctx without an audit intent.
func withoutAudit(ctx context.Context) context.Context {
	if ctx.Value(auditKey{}) == nil {
		return ctx
	}
	return context.WithValue(ctx, auditKey{}, (*AuditIntent)(nil))
}

// auditNote is the row a write transaction will append. Methods refine it
// with set; TraceID, AgentID and TrustSessionID, when set, override the
// request's.
type auditNote struct {
	AuditEntry
	TraceID        string
	AgentID        string
	TrustSessionID string
}

// noteFromContext returns a fresh note for ctx's intent, or nil.
func noteFromContext(ctx context.Context) *auditNote {
	in, _ := ctx.Value(auditKey{}).(*AuditIntent)
	if in == nil {
		return nil
	}
	return &auditNote{AuditEntry: AuditEntry{Tool: in.Tool, Action: ActionToolCall, Outcome: OutcomeOK, ContentHash: in.ContentHash}}
}

// set refines the transaction's audit row, when there is one (n may be
// nil). Empty arguments keep the current values.
func (n *auditNote) set(action, outcome, detail string) {
	if n == nil {
		return
	}
	if action != "" {
		n.Action = action
	}
	if outcome != "" {
		n.Outcome = outcome
	}
	if detail != "" {
		n.Detail = detail
	}
}

// AuditEntry is the part of an audit row its writer supplies; time,
// tenant and identity come from the transaction and the context.
type AuditEntry struct {
	Tool        string
	Action      string
	Outcome     string
	ContentHash string
	// Detail is a short JSON object or text without secrets, tokens or
	// request payloads.
	Detail string
}

// AuditRecord is one stored audit row.
type AuditRecord struct {
	delegation.ChainedEvent
}

// identityEvent fills an event's identity from rc and its trust context.
func identityEvent(ev *delegation.AuditEvent, rc tenancy.RequestContext) {
	ev.UserID, ev.APIKeyID, ev.AgentID = rc.UserID, rc.APIKeyID, rc.AgentID
	if tc, ok := delegation.Of(rc); ok {
		if tc.AgentID != "" {
			ev.AgentID = tc.AgentID
		}
		ev.TraceID, ev.SessionID = tc.TraceID, tc.TrustSessionID
	}
}

// chainDetail adds the request's delegation chain to a row without detail.
func chainDetail(rc tenancy.RequestContext, detail string) string {
	tc, ok := delegation.Of(rc)
	if detail != "" || !ok || len(tc.Chain) == 0 {
		return detail
	}
	b, _ := json.Marshal(map[string]any{"chain": tc.Chain})
	return string(b)
}

// detailJSON renders an audit detail object (keys sorted).
func detailJSON(fields map[string]any) string {
	b, err := json.Marshal(fields)
	if err != nil {
		return ""
	}
	return string(b)
}

// appendAudit appends the note's row to the tenant of t's context.
func appendAudit(t *txn, n auditNote) error {
	tenant, err := tenantOf(t.ctx)
	if err != nil {
		return err
	}
	rc, _ := tenancy.FromContext(t.ctx)
	ev := delegation.AuditEvent{TenantID: tenant, Tool: n.Tool, Action: n.Action, Outcome: n.Outcome,
		ContentHash: n.ContentHash, Detail: chainDetail(rc, n.Detail)}
	identityEvent(&ev, rc)
	if n.TraceID != "" {
		ev.TraceID = n.TraceID
	}
	if n.AgentID != "" {
		ev.AgentID = n.AgentID
	}
	if n.TrustSessionID != "" {
		ev.SessionID = n.TrustSessionID
	}
	return insertAudit(t, ev)
}

// insertAudit sets ev.Time to the transaction's time and appends ev to
// its tenant's chain.
//
// Reading the chain's last row and inserting its successor must not
// interleave with another append to the same chain. On SQLite the single
// writer ensures it. On PostgreSQL the transaction takes the chain
// tenant's advisory lock (re-entrant: write() already holds it when the
// chain is ctx's tenant; AuditDenial may append to another chain), so
// appends on every replica line up; each statement of a write transaction
// (READ COMMITTED) then sees the previous append once it has committed.
func insertAudit(t *txn, ev delegation.AuditEvent) error {
	if err := t.lock(tenantLockKey(ev.TenantID)); err != nil {
		return fmt.Errorf("lock audit chain: %w", err)
	}
	ev.Time = txnTime(t)
	var (
		seq  int64
		prev = delegation.GenesisHash
	)
	err := t.queryRow(`SELECT seq, hash FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1`, ev.TenantID).Scan(&seq, &prev)
	if err != nil && err != sql.ErrNoRows {
		return err
	}
	hash := delegation.ChainHash(prev, ev)
	_, err = t.exec(`INSERT INTO audit_log (tenant_id, seq, time, user_id, api_key_id, agent_id, trace_id, session_id,
		tool, action, outcome, content_hash, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.TenantID, seq+1, Stamp(ev.Time), ev.UserID, ev.APIKeyID, ev.AgentID, ev.TraceID, ev.SessionID,
		ev.Tool, ev.Action, ev.Outcome, ev.ContentHash, ev.Detail, prev, hash)
	return err
}

// Audit appends one row for an event that changes nothing else (a refused
// tool call, a delegated read-only call). Tenant and identity come from
// ctx; an AuditIntent in ctx is ignored.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	ctx = withoutAudit(ctx)
	if _, err := tenantOf(ctx); err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		return appendAudit(t, auditNote{AuditEntry: e})
	})
}

// AuditDenial appends one row for a request refused at the HTTP edge
// (401, 403, 429, trust refusals). rc is whatever identity was established
// before the refusal; when it names no tenant, or one that does not exist,
// the row goes to the UnauthenticatedTenant chain (the claimed tenant is
// then not recorded, since it was never verified to exist).
func (s *Store) AuditDenial(ctx context.Context, rc tenancy.RequestContext, e AuditEntry) error {
	ctx = withoutAudit(ctx)
	return s.write(ctx, func(t *txn) error {
		tenant := UnauthenticatedTenant
		if rc.TenantID != "" {
			var n int
			if err := t.queryRow(`SELECT count(*) FROM tenants WHERE id = ?`, rc.TenantID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				tenant = rc.TenantID
			}
		}
		ev := delegation.AuditEvent{TenantID: tenant, Tool: e.Tool, Action: e.Action, Outcome: e.Outcome,
			ContentHash: e.ContentHash, Detail: chainDetail(rc, e.Detail)}
		if tenant != UnauthenticatedTenant {
			identityEvent(&ev, rc)
		}
		return insertAudit(t, ev)
	})
}

// AuditFilter selects audit rows.
type AuditFilter struct {
	Since  time.Time // zero: from the start
	Agent  string    // "": any agent
	Limit  int       // 0: DefaultAuditLimit; capped at MaxAuditLimit
	Offset int
}

// Audit log page sizes.
const (
	DefaultAuditLimit = 50
	MaxAuditLimit     = 500
)

// AuditLog returns the caller's tenant's audit rows matching f, newest
// first, and how many match in all.
func (s *Store) AuditLog(ctx context.Context, f AuditFilter) ([]AuditRecord, int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	f.Limit, f.Offset = clampPage(f.Limit, f.Offset, DefaultAuditLimit, MaxAuditLimit)
	since := stampOrEmpty(f.Since)
	var (
		out   []AuditRecord
		total int
	)
	err = s.read(ctx, func(t *txn) error {
		out, total = nil, 0
		const where = ` FROM audit_log WHERE tenant_id = ? AND (? = '' OR time >= ?) AND (? = '' OR agent_id = ?)`
		if err := t.queryRow(`SELECT count(*)`+where, tenant, since, since, f.Agent, f.Agent).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+auditColumns+where+` ORDER BY seq DESC LIMIT ? OFFSET ?`,
			tenant, since, since, f.Agent, f.Agent, f.Limit, f.Offset)
		out, err = collect(rows, err, scanAudit)
		return err
	})
	return out, total, err
}

const auditColumns = `tenant_id, seq, time, user_id, api_key_id, agent_id, trace_id, session_id,
	tool, action, outcome, content_hash, detail, prev_hash, hash`

// scanAudit reads one row selected with auditColumns. A time that does not
// parse is kept as the zero time (verification then reports the row).
func scanAudit(rows scanner) (AuditRecord, error) {
	var (
		r  AuditRecord
		tm string
		e  = &r.Event
	)
	if err := rows.Scan(&e.TenantID, &r.Seq, &tm, &e.UserID, &e.APIKeyID, &e.AgentID, &e.TraceID, &e.SessionID,
		&e.Tool, &e.Action, &e.Outcome, &e.ContentHash, &e.Detail, &r.PrevHash, &r.Hash); err != nil {
		return AuditRecord{}, err
	}
	if parsed, err := time.Parse(time.RFC3339Nano, tm); err == nil {
		e.Time = parsed.UTC()
	}
	return r, nil
}

// AuditCheck is the result of verifying one tenant's audit chain.
type AuditCheck struct {
	TenantID string
	Rows     int // rows checked (up to and including the first broken one)
	OK       bool
	// BrokenSeq is the seq of the first broken row when !OK, and Reason
	// says what is wrong with it.
	BrokenSeq int64
	Reason    string
}

// auditBatch is how many rows VerifyAudit reads per query.
const auditBatch = 1000

// VerifyAudit recomputes tenantID's audit chain from its first row with
// delegation.CheckLink (seq 1, 2, 3, ... from the genesis hash, each row
// hashing its content and the previous row's hash) and reports the first
// row that breaks it. It is an administrative call: the tenant is an
// argument.
func (s *Store) VerifyAudit(ctx context.Context, tenantID string) (AuditCheck, error) {
	res := AuditCheck{TenantID: tenantID, OK: true}
	var prev *AuditRecord
	for {
		var batch []AuditRecord
		after := int64(0)
		if prev != nil {
			after = prev.Seq
		}
		err := s.read(ctx, func(t *txn) error {
			rows, err := t.query(`SELECT `+auditColumns+` FROM audit_log WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
				tenantID, after, auditBatch)
			batch, err = collect(rows, err, scanAudit)
			return err
		})
		if err != nil {
			return AuditCheck{}, fmt.Errorf("verify audit of %q: %w", tenantID, err)
		}
		for i := range batch {
			r := batch[i]
			res.Rows++
			var prevEv *delegation.ChainedEvent
			if prev != nil {
				prevEv = &prev.ChainedEvent
			}
			reason := delegation.CheckLink(prevEv, r.ChainedEvent)
			if reason != "" {
				res.OK, res.BrokenSeq, res.Reason = false, r.Seq, reason
				return res, nil
			}
			prev = &batch[i]
		}
		if len(batch) < auditBatch {
			return res, nil
		}
	}
}

// AuditTenants lists the tenants whose audit chains exist or may exist:
// every tenant, plus UnauthenticatedTenant when it has rows.
func (s *Store) AuditTenants(ctx context.Context) ([]string, error) {
	ts, err := s.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ts)+1)
	for _, t := range ts {
		out = append(out, t.ID)
	}
	var n int
	err = s.read(ctx, func(t *txn) error {
		return t.queryRow(`SELECT count(*) FROM audit_log WHERE tenant_id = ?`, UnauthenticatedTenant).Scan(&n)
	})
	if err != nil {
		return nil, err
	}
	if n > 0 {
		out = append(out, UnauthenticatedTenant)
	}
	return out, nil
}

// cleanDetail removes control characters from s and bounds it to n
// bytes, so a hostile value cannot forge log or audit content.
func cleanDetail(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// DenialTallyDetail renders the detail of one row that counts the edge
// refusals of one source, reason and status seen between first and last
// (requests refused before any tenant was established are recorded this
// way, not one row each).
func DenialTallyDetail(reason string, status int, source string, count int64, first, last time.Time) string {
	b, err := json.Marshal(struct {
		Reason string `json:"reason"`
		Status int    `json:"status"`
		Source string `json:"source"`
		Count  int64  `json:"count"`
		First  string `json:"first"`
		Last   string `json:"last"`
	}{cleanDetail(reason, 200), status, cleanDetail(source, 64), count, Stamp(first), Stamp(last)})
	if err != nil {
		return ""
	}
	return string(b)
}

// DenialDetail renders the detail of an edge denial: the reason and status
// with the request's method and path, control characters removed and
// bounded, so a hostile path cannot forge log or audit content.
func DenialDetail(reason string, status int, method, path string) string {
	clean := cleanDetail
	b, err := json.Marshal(struct {
		Reason string `json:"reason"`
		Status int    `json:"status"`
		Method string `json:"method,omitempty"`
		Path   string `json:"path,omitempty"`
	}{clean(reason, 200), status, clean(method, 16), clean(path, 256)})
	if err != nil {
		return ""
	}
	return string(b)
}
