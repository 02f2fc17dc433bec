package memory

import (
	"context"
	"fmt"
)

// Test-only read paths: production code has no use for them, the tests of
// this package do.

// Pragmas reads busy_timeout, journal_mode, foreign_keys and synchronous on
// one connection of each pool; the tests use it to prove the DSN applies them to
// every pooled connection.
func (s *Store) Pragmas(ctx context.Context, reader bool) (map[string]string, error) {
	db := s.w
	if reader {
		db = s.r
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	out := map[string]string{}
	for _, p := range []string{"busy_timeout", "journal_mode", "foreign_keys", "synchronous"} {
		var v string
		if err := conn.QueryRowContext(ctx, "PRAGMA "+p).Scan(&v); err != nil {
			return nil, fmt.Errorf("read pragma %s: %w", p, err)
		}
		out[p] = v
	}
	return out, nil
}

// Preferences returns agent's preferences ({} when none were set), through
// the (tenant, agent) preferences cache.
func (s *Store) Preferences(ctx context.Context, agent string) (map[string]any, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	p, err := cachedRead(ctx, s, s.collab.prefs, cacheKey{tenantID: tenant, agentID: agent}, func(t *txn) (string, error) {
		return preferencesJSON(t, tenant, agent)
	})
	if err != nil {
		return nil, err
	}
	return prefsObject(p)
}

// Migrations lists the applied migrations in order.
func (s *Store) Migrations(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT name FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
