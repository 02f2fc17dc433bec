package memory

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

func mustRegister(t *testing.T, s *Store, ctx context.Context, reg AgentRegistration) Agent {
	t.Helper()
	a, _, err := s.RegisterAgent(ctx, reg)
	if err != nil {
		t.Fatalf("RegisterAgent(%q): %v", reg.ID, err)
	}
	return a
}

func TestOpenRejectsUnknownAgentScope(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), Options{AgentScope: "planet"})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(AgentScope planet) = %v, want ErrInvalid", err)
	}
	s := openTestStore(t, "", Options{AgentScope: ""}) // positive control: "" is global
	if s.AgentScope() != AgentScopeGlobal {
		t.Errorf("AgentScope() = %q, want %q", s.AgentScope(), AgentScopeGlobal)
	}
}

func TestRegisterAgent(t *testing.T) {
	s := newTestStore(t)
	a := as("a")
	tests := []struct {
		name        string
		reg         AgentRegistration
		wantErr     error
		wantCreated bool
		wantCaps    []string
	}{
		{"new", AgentRegistration{ID: "alice", Name: "Alice", Capabilities: []string{"Go", " review ", "go", ""}, Endpoint: "https://a", Metadata: map[string]any{"k": "v"}}, nil, true, []string{"Go", "review"}},
		{"re-register replaces", AgentRegistration{ID: "alice", Name: "Alice 2", Capabilities: []string{"sql"}}, nil, false, []string{"sql"}},
		{"empty id", AgentRegistration{ID: " ", Name: "x"}, ErrInvalid, false, nil},
		{"empty name", AgentRegistration{ID: "x", Name: ""}, ErrInvalid, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, created, err := s.RegisterAgent(a, tc.reg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("RegisterAgent(%+v) error = %v, want %v", tc.reg, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if created != tc.wantCreated || !reflect.DeepEqual(got.Capabilities, tc.wantCaps) || !got.Owned || got.Status != "active" {
				t.Errorf("RegisterAgent(%+v) = %+v created %v, want caps %v created %v owned active", tc.reg, got, created, tc.wantCaps, tc.wantCreated)
			}
		})
	}
	got, err := s.Agent(a, "alice")
	if err != nil || got.Name != "Alice 2" || got.Endpoint != "" || len(got.Metadata) != 0 {
		t.Errorf("Agent(alice) after re-register = %+v, %v; want name Alice 2, endpoint and metadata replaced", got, err)
	}
}

// TestAgentRegistryGlobalScope: one namespace; the owner alone changes an
// id; other tenants see the public fields only.
func TestAgentRegistryGlobalScope(t *testing.T) {
	s := openTestStore(t, "", Options{AgentScope: AgentScopeGlobal})
	a, b := as("a"), as("b")
	mustRegister(t, s, a, AgentRegistration{ID: "alice", Name: "Alice", Capabilities: []string{"go"}, Endpoint: "https://alice", Metadata: map[string]any{"team": "x"}})

	t.Run("other tenant cannot register the id", func(t *testing.T) {
		_, _, err := s.RegisterAgent(b, AgentRegistration{ID: "alice", Name: "Mallory"})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("RegisterAgent by b = %v, want ErrConflict", err)
		}
		var me *Error
		if !errors.As(err, &me) || me.Code != CodeOwnedElsewhere || me.ID != "alice" {
			t.Errorf("error %v is not a client-safe *Error", err)
		}
	})
	t.Run("other tenant cannot take it by set_agent_identity", func(t *testing.T) {
		_, err := s.SetAgentIdentity(b, IdentityChange{NewID: "alice", AutoRegister: true})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("SetAgentIdentity by b = %v, want ErrConflict", err)
		}
	})
	t.Run("nothing changed", func(t *testing.T) {
		got, err := s.Agent(a, "alice")
		if err != nil || got.Name != "Alice" || got.Endpoint != "https://alice" {
			t.Errorf("Agent(alice) as a = %+v, %v; want unchanged", got, err)
		}
	})
	t.Run("other tenant sees public fields only", func(t *testing.T) {
		got, err := s.Agent(b, "alice")
		if err != nil {
			t.Fatalf("Agent(alice) as b: %v", err)
		}
		if got.Name != "Alice" || !reflect.DeepEqual(got.Capabilities, []string{"go"}) || got.Owned || got.Endpoint != "" || got.Metadata != nil {
			t.Errorf("Agent(alice) as b = %+v, want name and capabilities, no endpoint or metadata", got)
		}
		ok, err := s.AgentVisible(b, "alice")
		if err != nil || !ok {
			t.Errorf("AgentVisible(alice) as b = %v, %v; want true", ok, err)
		}
		if _, err := s.AgentEndpoint(b, "alice"); !errors.Is(err, ErrNotFound) {
			t.Errorf("AgentEndpoint(alice) as b = %v, want ErrNotFound", err)
		}
		if ep, err := s.AgentEndpoint(a, "alice"); err != nil || ep != "https://alice" {
			t.Errorf("AgentEndpoint(alice) as a = %q, %v; want https://alice", ep, err)
		}
	})
	t.Run("listing shows own agents only", func(t *testing.T) {
		mustRegister(t, s, b, AgentRegistration{ID: "bob", Name: "Bob"})
		got, total, err := s.Agents(b, 0, 10)
		if err != nil || total != 1 || len(got) != 1 || got[0].ID != "bob" {
			t.Errorf("Agents as b = %+v total %d, %v; want [bob] 1", got, total, err)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		if ok, err := s.AgentVisible(b, "nobody"); err != nil || ok {
			t.Errorf("AgentVisible(nobody) = %v, %v; want false", ok, err)
		}
		if _, err := s.Agent(b, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Agent(nobody) = %v, want ErrNotFound", err)
		}
	})
}

// TestAgentRegistryTenantScope: the registry is private per tenant.
func TestAgentRegistryTenantScope(t *testing.T) {
	s := openTestStore(t, "", Options{AgentScope: AgentScopeTenant})
	a, b := as("a"), as("b")
	mustRegister(t, s, a, AgentRegistration{ID: "alice", Name: "Alice", Endpoint: "https://alice"})
	if _, err := s.Agent(b, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Agent(alice) as b = %v, want ErrNotFound", err)
	}
	if ok, err := s.AgentVisible(b, "alice"); err != nil || ok {
		t.Errorf("AgentVisible(alice) as b = %v, %v; want false", ok, err)
	}
	if ok, err := s.AgentVisible(a, "alice"); err != nil || !ok {
		t.Errorf("AgentVisible(alice) as a = %v, %v; want true", ok, err)
	}
	// The same id is free for b, and b's registration does not touch a's.
	mine := mustRegister(t, s, b, AgentRegistration{ID: "alice", Name: "B's Alice", Endpoint: "https://b"})
	if !mine.Owned || mine.Endpoint != "https://b" {
		t.Errorf("RegisterAgent(alice) as b = %+v, want owned with its endpoint", mine)
	}
	if got, _ := s.Agent(a, "alice"); got.Name != "Alice" || got.Endpoint != "https://alice" {
		t.Errorf("Agent(alice) as a = %+v, want a's own", got)
	}
}

func TestSetAgentIdentity(t *testing.T) {
	s := newTestStore(t)
	a, b := as("a"), as("b")
	name := "Renamed"
	tests := []struct {
		name       string
		c          IdentityChange
		wantAction string
		wantErr    error
	}{
		{"auto register", IdentityChange{NewID: "one", AutoRegister: true, Capabilities: []string{"x"}}, "registered", nil},
		{"update", IdentityChange{NewID: "one", Name: &name}, "updated", nil},
		{"rename", IdentityChange{NewID: "two", CurrentID: "one"}, "renamed", nil},
		{"unknown without auto register", IdentityChange{NewID: "three"}, "", ErrNotFound},
		{"rename onto existing", IdentityChange{NewID: "two", CurrentID: "two"}, "updated", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.SetAgentIdentity(a, tc.c)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SetAgentIdentity(%+v) = %v, want %v", tc.c, err, tc.wantErr)
			}
			if err == nil && res.Action != tc.wantAction {
				t.Errorf("SetAgentIdentity(%+v) action = %q, want %q", tc.c, res.Action, tc.wantAction)
			}
		})
	}
	got, err := s.Agent(a, "two")
	if err != nil || got.Name != "Renamed" || !reflect.DeepEqual(got.Capabilities, []string{"x"}) {
		t.Errorf("Agent(two) = %+v, %v; want the renamed agent with its name and capabilities", got, err)
	}
	if _, err := s.Agent(a, "one"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Agent(one) after rename = %v, want ErrNotFound", err)
	}
	mustRegister(t, s, a, AgentRegistration{ID: "three", Name: "3"})
	if _, err := s.SetAgentIdentity(a, IdentityChange{NewID: "three", CurrentID: "two"}); !errors.Is(err, ErrConflict) {
		t.Errorf("rename two -> three (taken) = %v, want ErrConflict", err)
	}
	t.Run("tenant isolation", func(t *testing.T) {
		// b cannot rename a's agent: CurrentID is looked up in b's tenant only.
		res, err := s.SetAgentIdentity(b, IdentityChange{NewID: "bee", CurrentID: "two", AutoRegister: true})
		if err != nil || res.Action != "registered" || res.PreviousID != "" {
			t.Errorf("SetAgentIdentity as b = %+v, %v; want a fresh registration", res, err)
		}
		if _, err := s.Agent(a, "two"); err != nil {
			t.Errorf("a's agent two after b's call: %v", err)
		}
	})
}

// TestAgentIDClaimedOnceAcrossTenants: in global scope, tenants a and b
// claiming the same new agent id at once — by register_agent and by
// set_agent_identity with autoRegister, through two Stores on one database
// as two replicas would — leave exactly one owner, and every call of the
// other tenant is ErrConflict. SQLite's single writer serializes the
// claims; on PostgreSQL the two tenants hold different tenant locks, and
// the agent id's lock is what makes the check and the insert atomic.
func TestAgentIDClaimedOnceAcrossTenants(t *testing.T) {
	stores := newReplicas(t, 2, AgentScopeGlobal)
	const rounds, callers = 20, 8
	for round := 0; round < rounds; round++ {
		id := fmt.Sprint("contested-", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [callers]error
		)
		for i := 0; i < callers; i++ {
			tenant := []string{"a", "b"}[i%2]
			s := stores[i/2%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if i/4%2 == 0 {
					_, _, errs[i] = s.RegisterAgent(as(tenant), AgentRegistration{ID: id, Name: tenant})
				} else {
					_, errs[i] = s.SetAgentIdentity(as(tenant), IdentityChange{NewID: id, AutoRegister: true})
				}
			}()
		}
		close(start)
		wg.Wait()

		var owners []string
		rows, err := stores[0].r.Query(stores[0].sqlFor(`SELECT tenant_id FROM agents WHERE agent_id = ?`), id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var o string
			rows.Scan(&o)
			owners = append(owners, o)
		}
		rows.Close()
		if len(owners) != 1 {
			t.Fatalf("round %d: %q is registered by tenants %v, want exactly one", round, id, owners)
		}
		for i, err := range errs {
			tenant := []string{"a", "b"}[i%2]
			switch {
			case tenant == owners[0] && err != nil:
				t.Errorf("round %d: owner %s's claim %d of %q = %v, want success", round, tenant, i, id, err)
			case tenant != owners[0] && !errors.Is(err, ErrConflict):
				t.Errorf("round %d: %s's claim %d of %q (owned by %s) = %v, want ErrConflict", round, tenant, i, id, owners[0], err)
			}
		}
	}
}
