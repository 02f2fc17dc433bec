package memory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// State that several nexus-mcp replicas on one database share: the
// bindings of MCP session ids to the principal that created them, and the
// heartbeat that tells each replica how many replicas are live. Both tables
// exist on both backends; the heartbeat is only run on PostgreSQL (a SQLite
// file has one server).

// MCPSession is one streamable HTTP session id bound to the principal that
// created it. Principal is an opaque hash of the verified identity: a
// session is usable only by a request whose principal hashes the same.
type MCPSession struct {
	ID        string
	Principal string
	CreatedAt time.Time
	LastUsed  time.Time
}

// BindMCPSession records session id of the ctx tenant, created by
// principal, now. An id already bound in the tenant is ErrConflict.
func (s *Store) BindMCPSession(ctx context.Context, id, principal string) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return s.write(withoutAudit(ctx), func(t *txn) error {
		res, err := t.exec(`INSERT INTO mcp_sessions (tenant_id, id, principal, created_at, last_used)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, id) DO NOTHING`, tenant, id, principal, t.now, t.now)
		if err != nil {
			return fmt.Errorf("bind MCP session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errExists(FieldMCPSession, "")
		}
		return nil
	})
}

// MCPSession returns session id of the ctx tenant. Another tenant's
// session is ErrNotFound, like an unknown one.
func (s *Store) MCPSession(ctx context.Context, id string) (MCPSession, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return MCPSession{}, err
	}
	var (
		ms            = MCPSession{ID: id}
		created, used sql.NullString
	)
	err = s.read(ctx, func(t *txn) error {
		return t.queryRow(`SELECT principal, created_at, last_used FROM mcp_sessions WHERE tenant_id = ? AND id = ?`,
			tenant, id).Scan(&ms.Principal, &created, &used)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return MCPSession{}, errNotFound(FieldMCPSession, "")
	}
	if err != nil {
		return MCPSession{}, fmt.Errorf("read MCP session: %w", err)
	}
	if ms.CreatedAt, err = parseStoredTime(created); err != nil {
		return MCPSession{}, err
	}
	if ms.LastUsed, err = parseStoredTime(used); err != nil {
		return MCPSession{}, err
	}
	return ms, nil
}

// TouchMCPSession records a use of session id of the ctx tenant by
// principal now, unless the session is unknown, another principal's, or
// unused for longer than idle (all ErrNotFound): an expired session is
// never revived. It returns the stored last use, which never goes back.
func (s *Store) TouchMCPSession(ctx context.Context, id, principal string, idle time.Duration) (time.Time, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var used sql.NullString
	err = s.write(withoutAudit(ctx), func(t *txn) error {
		cutoff := Stamp(txnTime(t).Add(-idle))
		return t.queryRow(`UPDATE mcp_sessions SET last_used = CASE WHEN last_used < ? THEN ? ELSE last_used END
			WHERE tenant_id = ? AND id = ? AND principal = ? AND last_used >= ? RETURNING last_used`,
			t.now, t.now, tenant, id, principal, cutoff).Scan(&used)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, errNotFound(FieldMCPSession, "")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("touch MCP session: %w", err)
	}
	return parseStoredTime(used)
}

// DeleteMCPSession removes session id of the ctx tenant; an unknown id is
// not an error.
func (s *Store) DeleteMCPSession(ctx context.Context, id string) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return s.write(withoutAudit(ctx), func(t *txn) error {
		if _, err := t.exec(`DELETE FROM mcp_sessions WHERE tenant_id = ? AND id = ?`, tenant, id); err != nil {
			return fmt.Errorf("delete MCP session: %w", err)
		}
		return nil
	})
}

// DeleteIdleMCPSessions removes the sessions of every tenant unused for
// longer than idle, in one transaction, and returns how many. It is the
// sweep of the HTTP server, run by every replica (deleting twice is
// harmless); it needs no tenant in ctx.
func (s *Store) DeleteIdleMCPSessions(ctx context.Context, idle time.Duration) (int, error) {
	total := 0
	err := s.write(withoutAudit(ctx), func(t *txn) error {
		rows, err := t.query(`SELECT id FROM tenants ORDER BY id`)
		tenants, err := collect(rows, err, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return fmt.Errorf("list tenants: %w", err)
		}
		cutoff := Stamp(txnTime(t).Add(-idle))
		for _, tenant := range tenants {
			res, err := t.exec(`DELETE FROM mcp_sessions WHERE tenant_id = ? AND last_used < ?`, tenant, cutoff)
			if err != nil {
				return fmt.Errorf("delete idle MCP sessions of %q: %w", tenant, err)
			}
			n, _ := res.RowsAffected()
			total += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

// replicaForget is how long a replica's heartbeat row outlives its last
// beat; older rows (replicas killed without leaving) are deleted.
const replicaForget = time.Minute

// ReplicaHeartbeat records that replica id is alive now and returns the
// number of replicas (itself included) whose last beat is within window.
// Times are the replicas' clocks: they are assumed synchronized to well
// under window.
func (s *Store) ReplicaHeartbeat(ctx context.Context, id string, window time.Duration) (int, error) {
	var n int
	err := s.write(withoutAudit(ctx), func(t *txn) error {
		now := txnTime(t)
		if _, err := t.exec(`INSERT INTO replicas (id, seen_at) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`, id, t.now); err != nil {
			return fmt.Errorf("replica heartbeat: %w", err)
		}
		if _, err := t.exec(`DELETE FROM replicas WHERE seen_at < ?`, Stamp(now.Add(-max(window, replicaForget)))); err != nil {
			return fmt.Errorf("forget replicas: %w", err)
		}
		return t.queryRow(`SELECT count(*) FROM replicas WHERE seen_at >= ?`, Stamp(now.Add(-window))).Scan(&n)
	})
	if err != nil {
		return 0, err
	}
	return max(n, 1), nil
}

// RemoveReplica deletes replica id's heartbeat, so that the others stop
// counting it at their next beat (a replica shutting down calls it).
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	return s.write(withoutAudit(ctx), func(t *txn) error {
		_, err := t.exec(`DELETE FROM replicas WHERE id = ?`, id)
		return err
	})
}
