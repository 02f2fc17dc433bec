package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"github.com/nexus-mcp/nexus-mcp/delegation"
)

// The agent registry scopes (Options.AgentScope).
const (
	// AgentScopeGlobal makes agent ids one namespace across tenants: any
	// tenant can look an agent up, only the tenant that registered an id may
	// change it, and endpoint and metadata are shown to that tenant only.
	AgentScopeGlobal = "global"
	// AgentScopeTenant makes the registry private to each tenant.
	AgentScopeTenant = "tenant"
)

// Bounds on registry input, checked here so every caller gets them.
const (
	maxCapabilities = 100
)

// collab is the Store's configuration and caches for the collaboration
// tables (agents, messages, learnings, preferences, handoffs).
type collab struct {
	scope      string
	individual *tenantCache[individualEntry]
	prefs      *tenantCache[string]
}

func newCollab(scope string) (*collab, error) {
	switch scope {
	case "":
		scope = AgentScopeGlobal
	case AgentScopeGlobal, AgentScopeTenant:
	default:
		return nil, invalidf("agent scope %q: want %q or %q", scope, AgentScopeGlobal, AgentScopeTenant)
	}
	return &collab{
		scope:      scope,
		individual: newTenantCache[individualEntry](individualCacheSize),
		prefs:      newTenantCache[string](individualCacheSize),
	}, nil
}

// AgentScope returns the registry scope, AgentScopeGlobal or AgentScopeTenant.
func (s *Store) AgentScope() string { return s.collab.scope }

// Agent is a registered agent as the caller may see it. Endpoint and
// Metadata are set only when Owned (the caller's tenant registered it).
type Agent struct {
	ID           string
	Name         string
	Capabilities []string
	Endpoint     string
	Metadata     map[string]any
	Status       string // "active" or "inactive"
	LastSeen     string
	CreatedAt    string
	UpdatedAt    string
	Owned        bool
}

// AgentRegistration is what RegisterAgent stores.
type AgentRegistration struct {
	ID           string
	Name         string
	Capabilities []string
	Endpoint     string
	Metadata     map[string]any
}

// IdentityChange is a set_agent_identity request. Nil fields keep their
// stored values.
type IdentityChange struct {
	NewID        string
	CurrentID    string // "" or equal to NewID: no rename
	Name         *string
	Capabilities []string
	Metadata     map[string]any
	AutoRegister bool
}

// IdentityResult reports what SetAgentIdentity did.
type IdentityResult struct {
	Agent      Agent
	PreviousID string // the id before a rename, else ""
	Action     string // "registered", "renamed" or "updated"
}

// checkAgentID applies delegation.CheckID, the one id syntax, to the id
// of field f.
func checkAgentID(f Field, id string) error {
	if reason := delegation.IDReason(id); reason != "" {
		e := invalid(CodeBadID, f)
		e.Detail = reason
		return e
	}
	return nil
}

// normCapabilities trims, drops empty and case-insensitive duplicates
// (keeping the first spelling) and bounds the list.
func normCapabilities(caps []string) ([]string, error) {
	out := make([]string, 0, len(caps))
	seen := map[string]bool{}
	for _, c := range caps {
		c = strings.TrimSpace(c)
		k := strings.ToLower(c)
		if c == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, c)
	}
	if len(out) > maxCapabilities {
		return nil, errTooMany(FieldCapabilities, maxCapabilities)
	}
	return out, nil
}

// hasCapabilities reports whether have contains every capability of want,
// case-insensitively.
func hasCapabilities(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if strings.EqualFold(h, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ownedElsewhere reports whether, in global scope, another tenant owns id:
// has registered it, or holds an unrevoked API key bound to it (keys create
// --agent claims the id for the key's tenant, registered or not).
// It is a registry read across tenants, made inside the write transaction
// so that the check and the write that follows are atomic: on SQLite the
// single IMMEDIATE writer serializes them; on PostgreSQL the caller holds
// only its own tenant's lock, so the check first takes id's lock, which
// every tenant claiming id takes too, until its commit. (Write
// transactions are READ COMMITTED there, so the check, run after the lock
// is granted, sees the registration another tenant committed while this
// one waited.) Only the claimed id is locked: releasing one by a rename
// needs no lock, as a concurrent claim then at worst sees it still taken.
func (s *Store) ownedElsewhere(t *txn, tenant, id string) (bool, error) {
	if s.collab.scope != AgentScopeGlobal {
		return false, nil
	}
	if err := t.lock(agentLockKey(id)); err != nil {
		return false, err
	}
	var one int
	err := t.queryRow(`SELECT 1 FROM agents WHERE agent_id = ? AND tenant_id <> ?
		UNION ALL SELECT 1 FROM api_keys WHERE agent_id = ? AND tenant_id <> ? AND revoked_at IS NULL LIMIT 1`,
		id, tenant, id, tenant).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return err == nil, err
}

// agentLockKey is the advisory lock key of claims of an agent id in
// global scope, across tenants.
func agentLockKey(id string) string { return "agent:" + id }

func errOwnedElsewhere(id string) error {
	return &Error{Kind: ErrConflict, Code: CodeOwnedElsewhere, Field: FieldAgent, ID: id}
}

// RegisterAgent registers reg.ID for the caller's tenant, or re-registers it
// (replacing name, capabilities, endpoint and metadata), marking it active.
// In global scope an id registered by another tenant is ErrConflict and
// nothing changes. created reports a new registration.
func (s *Store) RegisterAgent(ctx context.Context, reg AgentRegistration) (a Agent, created bool, err error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Agent{}, false, err
	}
	if err := checkAgentID(FieldAgent, reg.ID); err != nil {
		return Agent{}, false, err
	}
	if strings.TrimSpace(reg.Name) == "" {
		return Agent{}, false, errEmpty(FieldAgentName)
	}
	caps, err := normCapabilities(reg.Capabilities)
	if err != nil {
		return Agent{}, false, err
	}
	capsJSON, _ := json.Marshal(caps)
	meta, err := marshalJSON(reg.Metadata, "{}")
	if err != nil {
		return Agent{}, false, err
	}
	err = s.write(ctx, func(t *txn) error {
		if taken, err := s.ownedElsewhere(t, tenant, reg.ID); err != nil || taken {
			if taken {
				return errOwnedElsewhere(reg.ID)
			}
			return err
		}
		exists, err := ownAgentExists(t, tenant, reg.ID)
		if err != nil {
			return err
		}
		created = !exists
		now := t.now
		if _, err := t.exec(`INSERT INTO agents (tenant_id, agent_id, name, capabilities, endpoint, metadata, status, last_seen, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)
			ON CONFLICT (tenant_id, agent_id) DO UPDATE SET name = excluded.name, capabilities = excluded.capabilities,
				endpoint = excluded.endpoint, metadata = excluded.metadata, status = 'active',
				last_seen = excluded.last_seen, updated_at = excluded.updated_at`,
			tenant, reg.ID, reg.Name, string(capsJSON), reg.Endpoint, meta, now, now, now); err != nil {
			return err
		}
		if err := agentChanged(t, tenant, reg.ID); err != nil {
			return err
		}
		a, err = agentByID(t, tenant, reg.ID, s.collab.scope)
		return err
	})
	s.collab.invalidate(tenant, reg.ID) // error or not: see agentChanged
	if err != nil {
		return Agent{}, false, err
	}
	return a, created, nil
}

// SetAgentIdentity renames, updates or registers an agent of the caller's
// tenant:
//   - CurrentID registered by the caller and different from NewID: rename
//     it to NewID (ErrConflict when NewID is taken), applying the given fields;
//   - else NewID registered by the caller: apply the given fields;
//   - else with AutoRegister: register NewID (name defaults to the id);
//   - else ErrNotFound.
//
// In global scope NewID registered by another tenant is ErrConflict.
func (s *Store) SetAgentIdentity(ctx context.Context, c IdentityChange) (IdentityResult, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return IdentityResult{}, err
	}
	if err := checkAgentID(FieldNewAgent, c.NewID); err != nil {
		return IdentityResult{}, err
	}
	if c.Name != nil && strings.TrimSpace(*c.Name) == "" {
		return IdentityResult{}, errEmpty(FieldNewAgentName)
	}
	var capsJSON *string
	if c.Capabilities != nil {
		caps, err := normCapabilities(c.Capabilities)
		if err != nil {
			return IdentityResult{}, err
		}
		b, _ := json.Marshal(caps)
		capsJSON = ptrTo(string(b))
	}
	var metaJSON *string
	if c.Metadata != nil {
		m, err := marshalJSON(c.Metadata, "{}")
		if err != nil {
			return IdentityResult{}, err
		}
		metaJSON = &m
	}
	var res IdentityResult
	err = s.write(ctx, func(t *txn) error {
		res = IdentityResult{}
		now := t.now
		if taken, err := s.ownedElsewhere(t, tenant, c.NewID); err != nil || taken {
			if taken {
				return errOwnedElsewhere(c.NewID)
			}
			return err
		}
		newExists, err := ownAgentExists(t, tenant, c.NewID)
		if err != nil {
			return err
		}
		curExists := false
		if c.CurrentID != "" && c.CurrentID != c.NewID {
			if curExists, err = ownAgentExists(t, tenant, c.CurrentID); err != nil {
				return err
			}
		}
		switch {
		case curExists:
			if newExists {
				return &Error{Kind: ErrConflict, Code: CodeRenameTaken, Field: FieldNewAgent, ID: c.NewID, Other: c.CurrentID}
			}
			if _, err := t.exec(`UPDATE agents SET agent_id = ?, updated_at = ?, last_seen = ? WHERE tenant_id = ? AND agent_id = ?`,
				c.NewID, now, now, tenant, c.CurrentID); err != nil {
				return err
			}
			res.Action, res.PreviousID = "renamed", c.CurrentID
		case newExists:
			res.Action = "updated"
		case c.AutoRegister:
			name := c.NewID
			if c.Name != nil {
				name = *c.Name
			}
			if _, err := t.exec(`INSERT INTO agents (tenant_id, agent_id, name, status, last_seen, created_at, updated_at)
				VALUES (?, ?, ?, 'active', ?, ?, ?)`, tenant, c.NewID, name, now, now, now); err != nil {
				return err
			}
			res.Action = "registered"
		default:
			return &Error{Kind: ErrNotFound, Code: CodeNotRegistered, Field: FieldNewAgent, ID: c.NewID}
		}
		if _, err := t.exec(`UPDATE agents SET name = coalesce(?, name), capabilities = coalesce(?, capabilities),
			metadata = coalesce(?, metadata), status = 'active', last_seen = ?, updated_at = ?
			WHERE tenant_id = ? AND agent_id = ?`,
			c.Name, capsJSON, metaJSON, now, now, tenant, c.NewID); err != nil {
			return err
		}
		if err := agentChanged(t, tenant, c.NewID); err != nil {
			return err
		}
		if res.PreviousID != "" {
			if err := agentChanged(t, tenant, res.PreviousID); err != nil {
				return err
			}
		}
		res.Agent, err = agentByID(t, tenant, c.NewID, s.collab.scope)
		return err
	})
	s.collab.invalidate(tenant, c.NewID) // error or not: see agentChanged
	if res.PreviousID != "" {
		s.collab.invalidate(tenant, res.PreviousID)
	}
	if err != nil {
		return IdentityResult{}, err
	}
	return res, nil
}

func ptrTo[T any](v T) *T { return &v }

func ownAgentExists(t *txn, tenant, id string) (bool, error) {
	var one int
	err := t.queryRow(`SELECT 1 FROM agents WHERE tenant_id = ? AND agent_id = ?`, tenant, id).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return err == nil, err
}

const agentColumns = `tenant_id, agent_id, name, capabilities, endpoint, metadata, status, last_seen, created_at, updated_at`

// scanAgent reads an agentColumns row, hiding endpoint and metadata unless
// the row belongs to tenant.
func scanAgent(sc scanner, tenant string) (Agent, error) {
	var (
		a               Agent
		owner           string
		caps, meta, end string
	)
	if err := sc.Scan(&owner, &a.ID, &a.Name, &caps, &end, &meta, &a.Status, &a.LastSeen, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return Agent{}, err
	}
	a.Capabilities = []string{}
	if err := json.Unmarshal([]byte(caps), &a.Capabilities); err != nil {
		return Agent{}, err
	}
	a.Owned = owner == tenant
	if a.Owned {
		a.Endpoint = end
		a.Metadata = map[string]any{}
		if err := json.Unmarshal([]byte(meta), &a.Metadata); err != nil {
			return Agent{}, err
		}
	}
	return a, nil
}

// agentByID returns the agent visible to tenant under scope: in global scope
// the caller's own registration if any, else the one other tenant's (ids
// are unique across tenants unless the database was used in tenant scope
// before; then the oldest registration is shown).
func agentByID(t *txn, tenant, id, scope string) (Agent, error) {
	var row *sql.Row
	if scope == AgentScopeGlobal {
		// Global registry read: deliberately not filtered by tenant.
		row = t.queryRow(`SELECT `+agentColumns+` FROM agents WHERE agent_id = ?
			ORDER BY tenant_id = ? DESC, created_at, tenant_id LIMIT 1`, id, tenant)
	} else {
		row = t.queryRow(`SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? AND agent_id = ?`, tenant, id)
	}
	a, err := scanAgent(row, tenant)
	if err == sql.ErrNoRows {
		return Agent{}, errNotRegistered(id)
	}
	return a, err
}

// Agent returns the agent id as visible to the caller (see AgentScope).
// An agent that is not registered, or not visible, is ErrNotFound.
func (s *Store) Agent(ctx context.Context, id string) (Agent, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Agent{}, err
	}
	var a Agent
	err = s.read(ctx, func(t *txn) error {
		a, err = agentByID(t, tenant, id, s.collab.scope)
		return err
	})
	return a, err
}

// Agents lists the agents registered by the caller's tenant, by id, from
// offset, at most limit, with the total. Other tenants' agents are never
// listed, in either scope: the global namespace allows looking an id up,
// not enumerating another tenant's agents.
func (s *Store) Agents(ctx context.Context, offset, limit int) ([]Agent, int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	var (
		out   []Agent
		total int
	)
	err = s.read(ctx, func(t *txn) error {
		out = []Agent{}
		if err := t.queryRow(`SELECT count(*) FROM agents WHERE tenant_id = ?`, tenant).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? ORDER BY agent_id LIMIT ? OFFSET ?`,
			tenant, limit, offset)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanAgent(rows, tenant)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, total, err
}

// AgentVisible reports whether agentID is registered and visible to the
// caller's tenant: registered by any tenant in global scope, by the caller's
// tenant in tenant scope.
func (s *Store) AgentVisible(ctx context.Context, agentID string) (bool, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return false, err
	}
	var ok bool
	err = s.read(ctx, func(t *txn) error {
		var one int
		var err error
		if s.collab.scope == AgentScopeGlobal {
			// Global registry read: deliberately not filtered by tenant.
			err = t.queryRow(`SELECT 1 FROM agents WHERE agent_id = ? LIMIT 1`, agentID).Scan(&one)
		} else {
			err = t.queryRow(`SELECT 1 FROM agents WHERE tenant_id = ? AND agent_id = ?`, tenant, agentID).Scan(&one)
		}
		if err == sql.ErrNoRows {
			return nil
		}
		ok = err == nil
		return err
	})
	return ok, err
}

// AgentEndpoint returns the endpoint of agentID if the caller's tenant
// registered it ("" when none was given); otherwise ErrNotFound, in either
// scope.
func (s *Store) AgentEndpoint(ctx context.Context, agentID string) (string, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return "", err
	}
	var endpoint string
	err = s.read(ctx, func(t *txn) error {
		err := t.queryRow(`SELECT endpoint FROM agents WHERE tenant_id = ? AND agent_id = ?`, tenant, agentID).Scan(&endpoint)
		if err == sql.ErrNoRows {
			return errNotRegistered(agentID)
		}
		return err
	})
	return endpoint, err
}

// touchAgent marks the caller's own registration of id as seen now with
// status; an unregistered id is left alone.
func touchAgent(t *txn, tenant, id, status string) error {
	_, err := t.exec(`UPDATE agents SET last_seen = ?, status = ? WHERE tenant_id = ? AND agent_id = ?`, t.now, status, tenant, id)
	return err
}
