package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nexus-mcp/nexus-mcp/delegation"
)

// DelegationRecord is a persisted delegation with what nexus-mcp recorded
// about it.
type DelegationRecord struct {
	delegation.Delegation
	// MCPSessionID is the MCP session the delegation was prepared in.
	MCPSessionID string
	// TrustSessionID is the trust session forwarded with the call, if any.
	TrustSessionID string
	// Chain is the X-EATP-Delegation-Chain of the delegated call: the agents
	// that delegated, oldest first, ending with CallingAgent.
	Chain        []string
	CompletedAt  time.Time // zero until verified
	HasError     bool
	ResponseKeys []string
	ResponseHash string
	RevokeReason string
}

// StatusAt is the status as reported at now: a prepared delegation past
// its expiry is expired.
func (d DelegationRecord) StatusAt(now time.Time) string {
	if d.Status == delegation.StatusPrepared && !d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt) {
		return delegation.StatusExpired
	}
	return d.Status
}

// NewDelegation describes a delegation to prepare. Constraints must
// already be tightened against the parent's (delegation.Tighten).
type NewDelegation struct {
	TraceID        string
	CallingAgent   string
	TargetAgent    string
	ToolName       string
	MCPSessionID   string
	TrustSessionID string
	Chain          []string
	Constraints    map[string]any
	HumanOrigin    map[string]any
	// TTL is how long the delegation stays usable; it never outlives the
	// parent's expiry.
	TTL time.Duration
	// ParentID is the delegation this one is prepared under, if any; it
	// must still be usable.
	ParentID string
}

const delegationColumns = `id, trace_id, calling_agent, target_agent, tool_name, mcp_session_id, trust_session_id,
	chain, constraints, human_origin, coalesce(parent_id, ''), status, created_at, expires_at, completed_at,
	has_error, response_keys, response_hash, revoked_at, revoke_reason`

func scanDelegation(sc scanner) (DelegationRecord, error) {
	var (
		d                                    DelegationRecord
		chain, constraints, origin, keys     string
		created, expires, completed, revoked sql.NullString
	)
	if err := sc.Scan(&d.ID, &d.TraceID, &d.CallingAgent, &d.TargetAgent, &d.ToolName, &d.MCPSessionID, &d.TrustSessionID,
		&chain, &constraints, &origin, &d.ParentID, &d.Status, &created, &expires, &completed,
		&d.HasError, &keys, &d.ResponseHash, &revoked, &d.RevokeReason); err != nil {
		return DelegationRecord{}, err
	}
	var err error
	for _, f := range []struct {
		dst *time.Time
		src sql.NullString
	}{{&d.CreatedAt, created}, {&d.ExpiresAt, expires}, {&d.CompletedAt, completed}, {&d.RevokedAt, revoked}} {
		if *f.dst, err = parseStoredTime(f.src); err != nil {
			return DelegationRecord{}, err
		}
	}
	if err := json.Unmarshal([]byte(chain), &d.Chain); err != nil {
		return DelegationRecord{}, fmt.Errorf("stored chain: %w", err)
	}
	if d.Constraints, err = decodeObject(constraints); err != nil {
		return DelegationRecord{}, fmt.Errorf("stored constraints: %w", err)
	}
	if d.HumanOrigin, err = decodeObject(origin); err != nil {
		return DelegationRecord{}, fmt.Errorf("stored human origin: %w", err)
	}
	if err := json.Unmarshal([]byte(keys), &d.ResponseKeys); err != nil {
		return DelegationRecord{}, fmt.Errorf("stored response keys: %w", err)
	}
	return d, nil
}

// decodeObject decodes a stored JSON object keeping numbers as
// json.Number, as delegation.Tighten expects.
func decodeObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func encodeObject(m map[string]any) (string, error) {
	if m == nil {
		return "{}", nil
	}
	return marshalJSON(m, "{}")
}

func delegationNotFound(id string) error { return errNotFound(FieldDelegation, id) }

// PrepareDelegation stores a new delegation in the caller's tenant with a
// random id, status prepared, expiring TTL from now (or at the parent's
// expiry, if earlier). A parent that is not usable refuses it with an
// error wrapping delegation.ErrRevoked, ErrExpired or ErrUntrusted.
func (s *Store) PrepareDelegation(ctx context.Context, nd NewDelegation) (DelegationRecord, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return DelegationRecord{}, err
	}
	switch {
	case strings.TrimSpace(nd.CallingAgent) == "", strings.TrimSpace(nd.TargetAgent) == "",
		strings.TrimSpace(nd.ToolName) == "", strings.TrimSpace(nd.TraceID) == "":
		return DelegationRecord{}, invalidf("calling agent, target agent, tool name and trace id must not be empty")
	case nd.TTL <= 0:
		return DelegationRecord{}, invalidf("delegation TTL must be positive")
	}
	if err := delegation.CheckSelfCall(nd.CallingAgent, nd.TargetAgent); err != nil {
		return DelegationRecord{}, fmt.Errorf("prepare delegation: %w", err)
	}
	constraints, err := encodeObject(nd.Constraints)
	if err != nil {
		return DelegationRecord{}, err
	}
	origin, err := encodeObject(nd.HumanOrigin)
	if err != nil {
		return DelegationRecord{}, err
	}
	chain := nd.Chain
	if chain == nil {
		chain = []string{}
	}
	chainJSON, _ := json.Marshal(chain)
	var rec DelegationRecord
	err = s.write(ctx, func(t *txn) error {
		now := txnTime(t)
		expires := now.Add(nd.TTL)
		var parent any
		if nd.ParentID != "" {
			p, err := delegationByID(t, tenant, nd.ParentID)
			if err != nil {
				return err
			}
			if err := p.Usable(now); err != nil {
				return fmt.Errorf("parent %w", err)
			}
			if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(expires) {
				expires = p.ExpiresAt
			}
			parent = p.ID
		}
		id := NewID("dlg_")
		t.audit.set("delegation.prepare", "", detailJSON(map[string]any{"delegation_id": id, "calling_agent": nd.CallingAgent,
			"target_agent": nd.TargetAgent, "tool_name": nd.ToolName, "parent_id": nd.ParentID}))
		if t.audit != nil {
			t.audit.TraceID, t.audit.AgentID = nd.TraceID, nd.CallingAgent
		}
		if _, err := t.exec(`INSERT INTO delegations (tenant_id, id, trace_id, calling_agent, target_agent, tool_name,
			mcp_session_id, trust_session_id, chain, constraints, human_origin, parent_id, status, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'prepared', ?, ?)`,
			tenant, id, nd.TraceID, nd.CallingAgent, nd.TargetAgent, nd.ToolName, nd.MCPSessionID, nd.TrustSessionID,
			string(chainJSON), constraints, origin, parent, Stamp(now), Stamp(expires)); err != nil {
			return err
		}
		var err error
		rec, err = delegationByID(t, tenant, id)
		return err
	})
	if err != nil {
		return DelegationRecord{}, err
	}
	return rec, nil
}

func delegationByID(t *txn, tenant, id string) (DelegationRecord, error) {
	d, err := scanDelegation(t.queryRow(`SELECT `+delegationColumns+` FROM delegations WHERE tenant_id = ? AND id = ?`, tenant, id))
	if err == sql.ErrNoRows {
		return DelegationRecord{}, delegationNotFound(id)
	}
	return d, err
}

// Delegation returns one delegation of the caller's tenant; another
// tenant's id is ErrNotFound, exactly like an unknown one.
func (s *Store) Delegation(ctx context.Context, id string) (DelegationRecord, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return DelegationRecord{}, err
	}
	var d DelegationRecord
	err = s.read(ctx, func(t *txn) error {
		var err error
		d, err = delegationByID(t, tenant, id)
		return err
	})
	return d, err
}

// DelegationByTrace implements delegation.Store: the newest delegation of
// the caller's tenant with traceID, or an error wrapping
// delegation.ErrNotFound.
func (s *Store) DelegationByTrace(ctx context.Context, traceID string) (delegation.Delegation, error) {
	rec, err := s.DelegationRecordByTrace(ctx, traceID)
	if err != nil {
		return delegation.Delegation{}, err
	}
	return rec.Delegation, nil
}

// DelegationRecordByTrace is DelegationByTrace with the full record.
func (s *Store) DelegationRecordByTrace(ctx context.Context, traceID string) (DelegationRecord, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return DelegationRecord{}, err
	}
	var d DelegationRecord
	err = s.read(ctx, func(t *txn) error {
		var err error
		d, err = scanDelegation(t.queryRow(`SELECT `+delegationColumns+` FROM delegations
			WHERE tenant_id = ? AND trace_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1`, tenant, traceID))
		if err == sql.ErrNoRows {
			return fmt.Errorf("delegation for trace: %w", delegation.ErrNotFound)
		}
		return err
	})
	return d, err
}

// Verification is the outcome of CompleteDelegation.
type Verification struct {
	Valid   bool
	Reasons []string
	Record  DelegationRecord
}

// CompleteDelegation verifies a target agent's response to a delegation
// and records it. The response is invalid when the delegation is revoked,
// expired or already completed (nothing is recorded then), or when the
// response is an error (the delegation becomes failed); otherwise the
// delegation becomes completed. The summary's error flag, keys and hash
// are stored. An unknown id (or another tenant's) is ErrNotFound.
func (s *Store) CompleteDelegation(ctx context.Context, id string, sum delegation.ResponseSummary) (Verification, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Verification{}, err
	}
	var v Verification
	err = s.write(ctx, func(t *txn) error {
		now := txnTime(t)
		d, err := delegationByID(t, tenant, id)
		if err != nil {
			return err
		}
		v = Verification{Record: d}
		if t.audit != nil {
			t.audit.TraceID, t.audit.AgentID = d.TraceID, d.TargetAgent
		}
		detail := map[string]any{"delegation_id": d.ID, "response_hash": sum.Hash}
		if err := d.Usable(now); err != nil {
			v.Reasons = []string{unusableReason(d, now)}
			detail["reason"] = v.Reasons[0]
			t.audit.set("delegation.verify", OutcomeRejected, detailJSON(detail))
			return nil
		}
		status, outcome := delegation.StatusCompleted, OutcomeOK
		if sum.HasError {
			status, outcome = delegation.StatusFailed, OutcomeError
			v.Reasons = []string{"the response is an error"}
			detail["reason"] = EndTargetError
		}
		v.Valid = !sum.HasError
		keys := sum.Keys
		if keys == nil {
			keys = []string{}
		}
		keysJSON, _ := json.Marshal(keys)
		hasError := 0 // an integer column on both engines; PostgreSQL does not take a Go bool for it
		if sum.HasError {
			hasError = 1
		}
		if _, err := t.exec(`UPDATE delegations SET status = ?, completed_at = ?, has_error = ?, response_keys = ?, response_hash = ?
			WHERE tenant_id = ? AND id = ?`, status, Stamp(now), hasError, string(keysJSON), sum.Hash, tenant, id); err != nil {
			return err
		}
		detail["status"] = status
		t.audit.set("delegation.verify", outcome, detailJSON(detail))
		v.Record, err = delegationByID(t, tenant, id)
		return err
	})
	if err != nil {
		return Verification{}, err
	}
	return v, nil
}

// Why a relayed delegated call ended without a valid response, as
// recorded in the end row's detail.
const (
	EndTargetError = "target error" // the target answered with an error
	EndCancelled   = "cancelled"    // the caller went away mid-relay
	EndTimeout     = "timeout"      // the relay exceeded its time bound
	EndUnreachable = "unreachable"  // connection, protocol or transport failure
	EndInternal    = "internal"     // nexus-mcp failed around the relay
)

// FailDelegation ends a delegation whose relayed call produced no response
// (reason: EndCancelled, EndTimeout, EndUnreachable, EndInternal). In one
// transaction a delegation still prepared (expired or not) becomes failed,
// and the call's audit row records the reason (action delegation.end,
// outcome error). A delegation revoked or completed meanwhile keeps its
// status; the row records the reason all the same. Call it with a context
// that outlives the caller's cancellation.
func (s *Store) FailDelegation(ctx context.Context, id, reason string) (DelegationRecord, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return DelegationRecord{}, err
	}
	var d DelegationRecord
	err = s.write(ctx, func(t *txn) error {
		var err error
		if d, err = delegationByID(t, tenant, id); err != nil {
			return err
		}
		if t.audit != nil {
			t.audit.TraceID, t.audit.AgentID = d.TraceID, d.TargetAgent
		}
		if d.Status == delegation.StatusPrepared {
			if _, err := t.exec(`UPDATE delegations SET status = ?, completed_at = ?, has_error = 1, response_keys = '[]'
				WHERE tenant_id = ? AND id = ? AND status = ?`, delegation.StatusFailed, Stamp(txnTime(t)), tenant, id, delegation.StatusPrepared); err != nil {
				return err
			}
			if d, err = delegationByID(t, tenant, id); err != nil {
				return err
			}
		}
		t.audit.set("delegation.end", OutcomeError, detailJSON(map[string]any{"delegation_id": d.ID, "status": d.Status, "reason": reason}))
		return nil
	})
	if err != nil {
		return DelegationRecord{}, fmt.Errorf("end delegation %q: %w", id, err)
	}
	return d, nil
}

func unusableReason(d DelegationRecord, now time.Time) string {
	switch d.StatusAt(now) {
	case delegation.StatusRevoked:
		return "the delegation was revoked"
	case delegation.StatusExpired:
		return "the delegation has expired"
	}
	return "the delegation was already completed"
}

// DelegationFilter selects delegations for DelegationHistory; empty fields
// match everything.
type DelegationFilter struct {
	CallingAgent string
	TargetAgent  string
	ToolName     string
	TraceID      string
	Since        time.Time
	Limit        int // 0: DefaultDelegationLimit; capped at MaxDelegationLimit
	Offset       int
}

// Delegation history page sizes.
const (
	DefaultDelegationLimit = 50
	MaxDelegationLimit     = 500
)

// DelegationHistory returns the caller's tenant's delegations matching f,
// newest first, and how many match in all.
func (s *Store) DelegationHistory(ctx context.Context, f DelegationFilter) ([]DelegationRecord, int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	f.Limit, f.Offset = clampPage(f.Limit, f.Offset, DefaultDelegationLimit, MaxDelegationLimit)
	since := stampOrEmpty(f.Since)
	const where = ` FROM delegations WHERE tenant_id = ? AND (? = '' OR calling_agent = ?) AND (? = '' OR target_agent = ?)
		AND (? = '' OR tool_name = ?) AND (? = '' OR trace_id = ?) AND (? = '' OR created_at >= ?)`
	args := []any{tenant, f.CallingAgent, f.CallingAgent, f.TargetAgent, f.TargetAgent, f.ToolName, f.ToolName,
		f.TraceID, f.TraceID, since, since}
	var (
		out   []DelegationRecord
		total int
	)
	err = s.read(ctx, func(t *txn) error {
		out = nil
		if err := t.queryRow(`SELECT count(*)`+where, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+delegationColumns+where+` ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`,
			append(args, f.Limit, f.Offset)...)
		out, err = collect(rows, err, scanDelegation)
		return err
	})
	return out, total, err
}

// RevokeDelegation revokes a delegation of the caller's tenant and every
// delegation prepared under it (transitively) that is still prepared, and
// returns how many it revoked. An unknown id is ErrNotFound.
func (s *Store) RevokeDelegation(ctx context.Context, id, reason string) (int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.write(ctx, func(t *txn) error {
		d, err := delegationByID(t, tenant, id)
		if err != nil {
			return err
		}
		now := Stamp(txnTime(t))
		res, err := t.exec(`WITH RECURSIVE sub(id) AS (
				SELECT id FROM delegations WHERE tenant_id = ? AND id = ?
				UNION
				SELECT d.id FROM delegations d JOIN sub ON d.parent_id = sub.id WHERE d.tenant_id = ?
			)
			UPDATE delegations SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE tenant_id = ? AND status = 'prepared' AND id IN (SELECT id FROM sub)`,
			tenant, id, tenant, now, reason, tenant)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		if t.audit != nil {
			t.audit.TraceID = d.TraceID
		}
		t.audit.set("delegation.revoke", "", detailJSON(map[string]any{"delegation_id": id, "revoked": n}))
		return nil
	})
	return int(n), err
}
