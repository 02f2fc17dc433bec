package memory

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// TrustSession is a human-originated trust session (EATP's trust context
// propagator): requests naming it in X-EATP-Session-ID act on its human's
// behalf until it expires or is revoked.
type TrustSession struct {
	ID             string
	HumanUserID    string
	HumanOrigin    map[string]any
	AgentID        string
	Constraints    map[string]any
	CreatedBy      string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	LastActivityAt time.Time
	WorkflowCount  int64
	RevokedAt      time.Time // zero: not revoked
	RevokeReason   string
}

// Reasons a trust session is inactive.
const (
	TrustSessionExpired = "expired"
	TrustSessionRevoked = "revoked"
)

// InactiveReason is "" for a session active at now, TrustSessionRevoked or
// TrustSessionExpired otherwise.
func (ts TrustSession) InactiveReason(now time.Time) string {
	switch {
	case !ts.RevokedAt.IsZero():
		return TrustSessionRevoked
	case !now.Before(ts.ExpiresAt):
		return TrustSessionExpired
	}
	return ""
}

// NewTrustSession describes a trust session to create.
type NewTrustSession struct {
	HumanUserID string
	HumanOrigin map[string]any
	AgentID     string
	Constraints map[string]any
	CreatedBy   string
	TTL         time.Duration
}

// newTrustSessionID returns "nxs-" and a random (version 4) UUID.
func newTrustSessionID() string { return "nxs-" + newUUID() }

const sessionColumns = `id, human_user_id, human_origin, agent_id, constraints, created_by, created_at, expires_at,
	last_activity_at, workflow_count, revoked_at, revoke_reason`

func scanSession(sc scanner) (TrustSession, error) {
	var (
		ts                                    TrustSession
		origin, constraints                   string
		created, expires, activity, revokedAt sql.NullString
	)
	if err := sc.Scan(&ts.ID, &ts.HumanUserID, &origin, &ts.AgentID, &constraints, &ts.CreatedBy, &created, &expires,
		&activity, &ts.WorkflowCount, &revokedAt, &ts.RevokeReason); err != nil {
		return TrustSession{}, err
	}
	var err error
	for _, f := range []struct {
		dst *time.Time
		src sql.NullString
	}{{&ts.CreatedAt, created}, {&ts.ExpiresAt, expires}, {&ts.LastActivityAt, activity}, {&ts.RevokedAt, revokedAt}} {
		if *f.dst, err = parseStoredTime(f.src); err != nil {
			return TrustSession{}, err
		}
	}
	if ts.HumanOrigin, err = decodeObject(origin); err != nil {
		return TrustSession{}, fmt.Errorf("stored human origin: %w", err)
	}
	if ts.Constraints, err = decodeObject(constraints); err != nil {
		return TrustSession{}, fmt.Errorf("stored constraints: %w", err)
	}
	return ts, nil
}

func trustSessionNotFound(id string) error { return errNotFound(FieldTrustSession, id) }

// CreateTrustSession creates a trust session in the caller's tenant with
// id "nxs-<uuid>", expiring TTL from now.
func (s *Store) CreateTrustSession(ctx context.Context, n NewTrustSession) (TrustSession, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return TrustSession{}, err
	}
	if n.TTL <= 0 {
		return TrustSession{}, invalidf("trust session TTL must be positive")
	}
	origin, err := encodeObject(n.HumanOrigin)
	if err != nil {
		return TrustSession{}, err
	}
	constraints, err := encodeObject(n.Constraints)
	if err != nil {
		return TrustSession{}, err
	}
	var ts TrustSession
	err = s.write(ctx, func(t *txn) error {
		now := txnTime(t)
		id := newTrustSessionID()
		if t.audit != nil {
			t.audit.TrustSessionID = id
		}
		t.audit.set("trust_session.create", "", detailJSON(map[string]any{"session_id": id, "human_user_id": n.HumanUserID}))
		if _, err := t.exec(`INSERT INTO trust_sessions (tenant_id, id, human_user_id, human_origin, agent_id, constraints,
			created_by, created_at, expires_at, last_activity_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			tenant, id, n.HumanUserID, origin, n.AgentID, constraints, n.CreatedBy,
			Stamp(now), Stamp(now.Add(n.TTL)), Stamp(now)); err != nil {
			return err
		}
		var err error
		ts, err = trustSessionByID(t, tenant, id)
		return err
	})
	return ts, err
}

func trustSessionByID(t *txn, tenant, id string) (TrustSession, error) {
	ts, err := scanSession(t.queryRow(`SELECT `+sessionColumns+` FROM trust_sessions WHERE tenant_id = ? AND id = ?`, tenant, id))
	if err == sql.ErrNoRows {
		return TrustSession{}, trustSessionNotFound(id)
	}
	return ts, err
}

// TrustSession returns one trust session of the caller's tenant, active or
// not; an unknown id or another tenant's is ErrNotFound.
func (s *Store) TrustSession(ctx context.Context, id string) (TrustSession, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return TrustSession{}, err
	}
	var ts TrustSession
	err = s.read(ctx, func(t *txn) error {
		var err error
		ts, err = trustSessionByID(t, tenant, id)
		return err
	})
	return ts, err
}

// TrustSessionActive implements delegation.Store.
func (s *Store) TrustSessionActive(ctx context.Context, id string) (bool, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return false, err
	}
	var n int
	err = s.read(ctx, func(t *txn) error {
		return t.queryRow(`SELECT count(*) FROM trust_sessions WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL AND expires_at > ?`,
			tenant, id, Stamp(txnTime(t))).Scan(&n)
	})
	return n > 0, err
}

// TouchTrustSession records one tool call in an active trust session of the
// caller's tenant: its last activity becomes now and its workflow count
// grows by one. It reports whether the session was active.
func (s *Store) TouchTrustSession(ctx context.Context, id string) (bool, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return false, err
	}
	var n int64
	err = s.write(withoutAudit(ctx), func(t *txn) error {
		now := Stamp(txnTime(t))
		res, err := t.exec(`UPDATE trust_sessions SET last_activity_at = ?, workflow_count = workflow_count + 1
			WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL AND expires_at > ?`, now, tenant, id, now)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n > 0, err
}

// TrustSessionFilter selects trust sessions for TrustSessions.
type TrustSessionFilter struct {
	ActiveOnly bool
	Limit      int // 0: DefaultTrustSessionLimit; capped at MaxTrustSessionLimit
	Offset     int
}

// Trust session page sizes.
const (
	DefaultTrustSessionLimit = 50
	MaxTrustSessionLimit     = 500
)

// TrustSessions lists the caller's tenant's trust sessions, newest first,
// and how many match in all.
func (s *Store) TrustSessions(ctx context.Context, f TrustSessionFilter) ([]TrustSession, int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	f.Limit, f.Offset = clampPage(f.Limit, f.Offset, DefaultTrustSessionLimit, MaxTrustSessionLimit)
	activeOnly := 0 // compared with an integer in SQL, which PostgreSQL does not do for a Go bool
	if f.ActiveOnly {
		activeOnly = 1
	}
	var (
		out   []TrustSession
		total int
	)
	err = s.read(ctx, func(t *txn) error {
		out = nil
		now := Stamp(txnTime(t))
		const where = ` FROM trust_sessions WHERE tenant_id = ? AND (? = 0 OR (revoked_at IS NULL AND expires_at > ?))`
		if err := t.queryRow(`SELECT count(*)`+where, tenant, activeOnly, now).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+sessionColumns+where+` ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`,
			tenant, activeOnly, now, f.Limit, f.Offset)
		out, err = collect(rows, err, scanSession)
		return err
	})
	return out, total, err
}

// RevokeTrustSession revokes one trust session of the caller's tenant
// (revoking a revoked session keeps the first revocation). An unknown id
// is ErrNotFound.
func (s *Store) RevokeTrustSession(ctx context.Context, id, reason string) (TrustSession, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return TrustSession{}, err
	}
	var ts TrustSession
	err = s.write(ctx, func(t *txn) error {
		if _, err := trustSessionByID(t, tenant, id); err != nil {
			return err
		}
		if t.audit != nil {
			t.audit.TrustSessionID = id
		}
		t.audit.set("trust_session.revoke", "", detailJSON(map[string]any{"session_id": id}))
		if _, err := t.exec(`UPDATE trust_sessions SET revoked_at = ?, revoke_reason = ?
			WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL`, Stamp(txnTime(t)), reason, tenant, id); err != nil {
			return err
		}
		var err error
		ts, err = trustSessionByID(t, tenant, id)
		return err
	})
	return ts, err
}

// RevokeTrustSessionsByHuman revokes every unrevoked trust session of the
// caller's tenant whose human is userID and returns how many.
func (s *Store) RevokeTrustSessionsByHuman(ctx context.Context, userID, reason string) (int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.write(ctx, func(t *txn) error {
		res, err := t.exec(`UPDATE trust_sessions SET revoked_at = ?, revoke_reason = ?
			WHERE tenant_id = ? AND human_user_id = ? AND revoked_at IS NULL`, Stamp(txnTime(t)), reason, tenant, userID)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		t.audit.set("trust_session.revoke_by_human", "", detailJSON(map[string]any{"human_user_id": userID, "revoked": n}))
		return nil
	})
	return int(n), err
}

// DeleteExpiredTrustSessions removes the trust sessions of every tenant
// that expired before now, one transaction per tenant, and returns how
// many it removed. It is an administrative call (the sweep and
// `nexus-mcp trust cleanup`), so it takes no tenant from ctx.
func (s *Store) DeleteExpiredTrustSessions(ctx context.Context) (int, error) {
	tenants, err := s.Tenants(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, tn := range tenants {
		var n int64
		err := s.write(withoutAudit(ctx), func(t *txn) error {
			res, err := t.exec(`DELETE FROM trust_sessions WHERE tenant_id = ? AND expires_at <= ?`, tn.ID, Stamp(txnTime(t)))
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("delete expired trust sessions of %q: %w", tn.ID, err)
		}
		total += int(n)
	}
	return total, nil
}
