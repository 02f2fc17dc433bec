package memory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Administrative operations (tenants, keys, membership). They are called by
// the CLI and by the authentication layer, before any RequestContext exists,
// so they take the tenant as an argument instead of from ctx.

var _ tenancy.KeyLookup = (*Store)(nil)

// Tenant is one tenant's row.
type Tenant struct {
	ID        string
	Name      string
	Disabled  bool
	RateRPS   float64
	RateBurst int
	CreatedAt string
}

// APIKey is a stored key's metadata; the key itself is never stored.
type APIKey struct {
	ID        string
	TenantID  string
	UserID    string
	AgentID   string
	Env       string
	Name      string
	CreatedAt string
	ExpiresAt string // "" never
	RevokedAt string // "" not revoked
	// Scopes are the key's scopes (tenancy.AllScopes unless created with fewer).
	Scopes tenancy.ScopeSet
}

// NewKey describes a key to create.
type NewKey struct {
	TenantID string
	UserID   string
	AgentID  string
	Env      string
	Name     string
	TTL      time.Duration // 0: never expires
	// Scopes limits the key; 0 or tenancy.AllScopes: every scope.
	Scopes tenancy.ScopeSet
}

// storedScopes is the scopes column of set: "" for every scope (so that a
// scope added later is granted to such keys too), else the names.
func storedScopes(set tenancy.ScopeSet) string {
	if set == 0 || set == tenancy.AllScopes {
		return ""
	}
	return set.String()
}

// loadScopes reads the scopes column. A name this binary does not know is
// not granted.
func loadScopes(col string) tenancy.ScopeSet {
	if col == "" {
		return tenancy.AllScopes
	}
	set, _ := tenancy.ParseScopes(col)
	return set
}

// NewID returns a random 128-bit identifier in hex with a prefix.
func NewID(prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never happens on supported platforms
	}
	return prefix + hex.EncodeToString(b)
}

// CreateTenant creates a tenant; an existing id is ErrConflict.
func (s *Store) CreateTenant(ctx context.Context, id, name string) error {
	if !tenancy.ValidTenantID(id) {
		return invalidf("invalid tenant id %q: use 1-64 letters, digits, '.', '_' or '-'", id)
	}
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(`INSERT INTO tenants (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, id, name, t.now, t.now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errExists(FieldTenant, id)
		}
		return nil
	})
}

// EnsureTenant creates the tenant if it does not exist.
func (s *Store) EnsureTenant(ctx context.Context, id string) error {
	err := s.CreateTenant(ctx, id, "")
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// Tenants lists every tenant.
func (s *Store) Tenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT id, name, disabled, rate_rps, rate_burst, created_at FROM tenants ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tn Tenant
			if err := rows.Scan(&tn.ID, &tn.Name, &tn.Disabled, &tn.RateRPS, &tn.RateBurst, &tn.CreatedAt); err != nil {
				return err
			}
			out = append(out, tn)
		}
		return rows.Err()
	})
	return out, err
}

// Tenant returns one tenant, or ErrNotFound.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	var tn Tenant
	err := s.read(ctx, func(t *txn) error {
		err := t.queryRow(`SELECT id, name, disabled, rate_rps, rate_burst, created_at FROM tenants WHERE id = ?`, id).
			Scan(&tn.ID, &tn.Name, &tn.Disabled, &tn.RateRPS, &tn.RateBurst, &tn.CreatedAt)
		if err == sql.ErrNoRows {
			return errNotFound(FieldTenant, id)
		}
		return err
	})
	return tn, err
}

// SetTenantDisabled switches a tenant's kill switch.
func (s *Store) SetTenantDisabled(ctx context.Context, id string, disabled bool) error {
	flag := 0 // stored as an integer on both engines; PostgreSQL will not take a bool for it
	if disabled {
		flag = 1
	}
	return s.updateTenant(ctx, id, `UPDATE tenants SET disabled = ?, updated_at = ? WHERE id = ?`, flag)
}

// SetTenantRateLimit sets a tenant's request rate (per second) and burst; 0 uses the server default.
func (s *Store) SetTenantRateLimit(ctx context.Context, id string, rps float64, burst int) error {
	if rps < 0 || burst < 0 {
		return invalidf("rate and burst must not be negative")
	}
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(`UPDATE tenants SET rate_rps = ?, rate_burst = ?, updated_at = ? WHERE id = ?`, rps, burst, t.now, id)
		return tenantUpdated(res, err, id)
	})
}

func (s *Store) updateTenant(ctx context.Context, id, query string, v any) error {
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(query, v, t.now, id)
		return tenantUpdated(res, err, id)
	})
}

func tenantUpdated(res sql.Result, err error, id string) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound(FieldTenant, id)
	}
	return nil
}

// CreateAPIKey creates a key for an existing tenant and returns the key (to
// show once) and its stored metadata. Only the key's SHA-256 is stored.
// A key bound to an agent id claims that id for the tenant in the global
// agent scope: ErrConflict when another tenant has registered it or holds
// an unrevoked key bound to it.
func (s *Store) CreateAPIKey(ctx context.Context, nk NewKey) (string, APIKey, error) {
	if nk.AgentID != "" {
		if err := checkAgentID(FieldAgent, nk.AgentID); err != nil {
			return "", APIKey{}, err
		}
	}
	key, err := tenancy.NewAPIKey()
	if err != nil {
		return "", APIKey{}, err
	}
	k := APIKey{ID: NewID("key_"), TenantID: nk.TenantID, UserID: nk.UserID, AgentID: nk.AgentID, Env: nk.Env, Name: nk.Name,
		Scopes: loadScopes(storedScopes(nk.Scopes))}
	err = s.write(ctx, func(t *txn) error {
		var exists int
		if err := t.queryRow(`SELECT count(*) FROM tenants WHERE id = ?`, nk.TenantID).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return errNotFound(FieldTenant, nk.TenantID)
		}
		// A key bound to an agent claims the id for its tenant (global
		// scope): refused when another tenant owns it.
		if nk.AgentID != "" {
			taken, err := s.ownedElsewhere(t, nk.TenantID, nk.AgentID)
			if err != nil {
				return err
			}
			if taken {
				return errOwnedElsewhere(nk.AgentID)
			}
		}
		k.CreatedAt = t.now
		var expires any
		if nk.TTL > 0 {
			k.ExpiresAt = Stamp(s.now().Add(nk.TTL))
			expires = k.ExpiresAt
		}
		_, err := t.exec(`INSERT INTO api_keys (id, tenant_id, user_id, agent_id, env, name, key_hash, created_at, updated_at, expires_at, scopes)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.TenantID, k.UserID, k.AgentID, k.Env, k.Name, tenancy.HashAPIKey(key), t.now, t.now, expires, storedScopes(nk.Scopes))
		return err
	})
	if err != nil {
		return "", APIKey{}, err
	}
	return key, k, nil
}

// APIKeys lists a tenant's keys (never the keys themselves).
func (s *Store) APIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	var out []APIKey
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT id, tenant_id, user_id, agent_id, env, name, created_at,
			coalesce(expires_at, ''), coalesce(revoked_at, ''), scopes FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id`, tenantID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k      APIKey
				scopes string
			)
			if err := rows.Scan(&k.ID, &k.TenantID, &k.UserID, &k.AgentID, &k.Env, &k.Name, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &scopes); err != nil {
				return err
			}
			k.Scopes = loadScopes(scopes)
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, err
}

// RevokeAPIKey revokes a key by id; it takes effect on the next request.
func (s *Store) RevokeAPIKey(ctx context.Context, id string) error {
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(`UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?), updated_at = ? WHERE id = ?`, t.now, t.now, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNotFound(FieldKey, id)
		}
		return nil
	})
}

// APIKeyByHash implements tenancy.KeyLookup. An unknown hash returns an
// error wrapping tenancy.ErrUnauthenticated.
func (s *Store) APIKeyByHash(ctx context.Context, hash []byte) (tenancy.StoredKey, error) {
	var (
		k                tenancy.StoredKey
		expires, revoked sql.NullString
		scopes           string
	)
	err := s.read(ctx, func(t *txn) error {
		return t.queryRow(`SELECT k.id, k.tenant_id, k.user_id, k.agent_id, k.env, k.key_hash, k.expires_at, k.revoked_at, k.scopes,
				tn.disabled, tn.rate_rps, tn.rate_burst
			FROM api_keys k JOIN tenants tn ON tn.id = k.tenant_id WHERE k.key_hash = ?`, hash).
			Scan(&k.ID, &k.TenantID, &k.UserID, &k.AgentID, &k.Env, &k.Hash, &expires, &revoked, &scopes,
				&k.Tenant.Disabled, &k.Tenant.RPS, &k.Tenant.Burst)
	})
	if err == sql.ErrNoRows {
		return tenancy.StoredKey{}, tenancy.ErrUnauthenticated
	}
	if err != nil {
		return tenancy.StoredKey{}, err
	}
	k.Tenant.Exists = true // the join found it
	k.Scopes = loadScopes(scopes)
	if k.ExpiresAt, err = parseStoredTime(expires); err != nil {
		return tenancy.StoredKey{}, err
	}
	if k.RevokedAt, err = parseStoredTime(revoked); err != nil {
		return tenancy.StoredKey{}, err
	}
	return k, nil
}

// PrincipalUnresolved is the kind of a membership migrated from a bare
// user id whose origin could not be determined: it admits no one.
const PrincipalUnresolved = "unresolved"

// checkPrincipal refuses a principal without its origin.
func checkPrincipal(p tenancy.Principal) error {
	switch {
	case p.UserID == "":
		return invalidf("user must not be empty")
	case p.Kind != tenancy.PrincipalTenant && p.Kind != tenancy.PrincipalIssuer:
		return invalidf("say where the user comes from: the tenant of its API keys, or the issuer of its JWTs")
	case p.Source == "":
		return invalidf("the %s the user comes from must not be empty", p.Kind)
	case p.Kind == tenancy.PrincipalTenant && !tenancy.ValidTenantID(p.Source):
		return invalidf("invalid tenant id %q", p.Source)
	}
	return nil
}

// SetMember admits principal p to tenant with role ("member" or "admin"),
// or changes its role. p names where its user comes from: the tenant of
// its API keys or the issuer of its JWTs; the same user id from anywhere
// else is not admitted.
func (s *Store) SetMember(ctx context.Context, tenantID string, p tenancy.Principal, role string) error {
	if role != "member" && role != "admin" {
		return invalidf("role must be member or admin, not %q", role)
	}
	if err := checkPrincipal(p); err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		var exists int
		if err := t.queryRow(`SELECT count(*) FROM tenants WHERE id = ?`, tenantID).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return errNotFound(FieldTenant, tenantID)
		}
		_, err := t.exec(`INSERT INTO members (tenant_id, principal_kind, principal_source, user_id, role, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, principal_kind, principal_source, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at`,
			tenantID, p.Kind, p.Source, p.UserID, role, t.now, t.now)
		return err
	})
}

// RemoveMember removes principal p from tenant; absent is ErrNotFound. A
// migrated row of unknown origin is removed with Kind PrincipalUnresolved
// and an empty Source.
func (s *Store) RemoveMember(ctx context.Context, tenantID string, p tenancy.Principal) error {
	return s.write(ctx, func(t *txn) error {
		res, err := t.exec(`DELETE FROM members WHERE tenant_id = ? AND principal_kind = ? AND principal_source = ? AND user_id = ?`,
			tenantID, p.Kind, p.Source, p.UserID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return &Error{Kind: ErrNotFound, Code: CodeNotMember, ID: fmt.Sprint(p), Other: tenantID}
		}
		return nil
	})
}

// Member is one membership row. Kind is tenancy.PrincipalTenant,
// tenancy.PrincipalIssuer or PrincipalUnresolved.
type Member struct {
	TenantID, Kind, Source, UserID, Role, CreatedAt string
}

// Members lists a tenant's members.
func (s *Store) Members(ctx context.Context, tenantID string) ([]Member, error) {
	var out []Member
	err := s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT tenant_id, principal_kind, principal_source, user_id, role, created_at
			FROM members WHERE tenant_id = ? ORDER BY user_id, principal_kind, principal_source`, tenantID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m Member
			if err := rows.Scan(&m.TenantID, &m.Kind, &m.Source, &m.UserID, &m.Role, &m.CreatedAt); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, err
}

// Membership returns principal p's role in tenant, or "" when not a
// member (an invalid principal is never one).
func (s *Store) Membership(ctx context.Context, tenantID string, p tenancy.Principal) (string, error) {
	if !p.Valid() {
		return "", nil
	}
	var role string
	err := s.read(ctx, func(t *txn) error {
		err := t.queryRow(`SELECT role FROM members WHERE tenant_id = ? AND principal_kind = ? AND principal_source = ? AND user_id = ?`,
			tenantID, p.Kind, p.Source, p.UserID).Scan(&role)
		if err == sql.ErrNoRows {
			role = ""
			return nil
		}
		return err
	})
	return role, err
}
