package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The agent registry. In the default global scope agent ids are one
// namespace: any tenant can look an agent up, only the tenant that
// registered it can change it, and endpoint and metadata are shown to that
// tenant only. With --agent-scope tenant the registry is private per tenant.

// AgentStore is the storage of the agent registry tools.
type AgentStore interface {
	RegisterAgent(ctx context.Context, reg memory.AgentRegistration) (memory.Agent, bool, error)
	SetAgentIdentity(ctx context.Context, c memory.IdentityChange) (memory.IdentityResult, error)
	Agent(ctx context.Context, id string) (memory.Agent, error)
	Agents(ctx context.Context, offset, limit int) ([]memory.Agent, int, error)
}

const (
	defaultAgents = 50
	maxAgents     = 200
)

// agentOrDefault returns id, or else the agent named by the caller's
// credential, or else an argument error naming arg.
func agentOrDefault(ctx context.Context, id, arg string) (string, error) {
	if id != "" {
		return id, checkID(arg, id, true)
	}
	if rc, ok := tenancy.FromContext(ctx); ok && rc.AgentID != "" {
		return rc.AgentID, nil
	}
	return "", argErrorf("%s is required: your credential names no agent", arg)
}

// agentWire is an agent as tools return it; endpoint and metadata only to
// the owner tenant.
type agentWire struct {
	AgentID      string         `json:"agentId"`
	Name         string         `json:"name"`
	Capabilities []string       `json:"capabilities"`
	Status       string         `json:"status"`
	LastSeen     string         `json:"lastSeen"`
	CreatedAt    string         `json:"createdAt"`
	UpdatedAt    string         `json:"updatedAt"`
	Owned        bool           `json:"owned"`
	Endpoint     string         `json:"endpoint,omitempty"`
	Metadata     map[string]any `json:"metadata,omitempty"`
}

func agentToWire(a memory.Agent) agentWire {
	caps := a.Capabilities
	if caps == nil {
		caps = []string{}
	}
	return agentWire{AgentID: a.ID, Name: a.Name, Capabilities: caps, Status: a.Status, LastSeen: a.LastSeen,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, Owned: a.Owned, Endpoint: a.Endpoint, Metadata: a.Metadata}
}

func (h *Handlers) scopeNote() string {
	if h.agentScope == memory.AgentScopeTenant {
		return " Agents are private to your tenant."
	}
	return " Agent ids are shared across tenants: an id registered by another tenant cannot be taken."
}

// registerAgentArgs are the arguments of register_agent.
type registerAgentArgs struct {
	AgentID      string         `json:"agentId" jsonschema:"the agent's ID" max:"256"`
	Name         string         `json:"name" jsonschema:"display name" max:"512"`
	Capabilities []string       `json:"capabilities" jsonschema:"what the agent can do, e.g. code-review; used by send_ai_message toCapabilities" max:"100"`
	Endpoint     string         `json:"endpoint,omitempty" jsonschema:"optional URL where the agent can be reached (shown only to your tenant)" max:"2048"`
	Metadata     map[string]any `json:"metadata,omitempty" jsonschema:"optional free-form data (shown only to your tenant)"`
}

type registerAgentResult struct {
	Status string    `json:"status"`
	Agent  agentWire `json:"agent"`
}

func (h *Handlers) registerAgent() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("register_agent", "Register Agent",
			"Register an agent (or re-register it, replacing name, capabilities, endpoint and metadata) so others can "+
				"find and message it. Returns status registered or updated and the agent."+h.scopeNote(),
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[registerAgentArgs]()),
		Handler: handle(h, h.doRegisterAgent),
	}
}

func (h *Handlers) doRegisterAgent(ctx context.Context, args registerAgentArgs) (any, error) {
	a, created, err := h.store.RegisterAgent(ctx, memory.AgentRegistration{ID: args.AgentID, Name: args.Name,
		Capabilities: args.Capabilities, Endpoint: args.Endpoint, Metadata: args.Metadata})
	if err != nil {
		return nil, err
	}
	status := "updated"
	if created {
		status = "registered"
	}
	return registerAgentResult{Status: status, Agent: agentToWire(a)}, nil
}

// setIdentityArgs are the arguments of set_agent_identity.
type setIdentityArgs struct {
	NewAgentID     string         `json:"newAgentId" jsonschema:"the agent ID to use from now on" max:"256"`
	CurrentAgentID string         `json:"currentAgentId,omitempty" jsonschema:"the agent's current ID, to rename it (default: the agent named by your credential, if any)" max:"256"`
	NewName        string         `json:"newName,omitempty" jsonschema:"new display name" max:"512"`
	Capabilities   []string       `json:"capabilities,omitempty" jsonschema:"replace the capabilities" max:"100"`
	Metadata       map[string]any `json:"metadata,omitempty" jsonschema:"replace the metadata"`
	AutoRegister   *bool          `json:"autoRegister,omitempty" jsonschema:"register newAgentId if neither ID is registered (default true)"`
}

type setIdentityResult struct {
	Status          string    `json:"status"`
	AgentID         string    `json:"agentId"`
	PreviousAgentID string    `json:"previousAgentId,omitempty"`
	Agent           agentWire `json:"agent"`
}

func (h *Handlers) setAgentIdentity() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("set_agent_identity", "Set Agent Identity",
			"Set an agent's identity: rename currentAgentId to newAgentId, or update newAgentId's name, capabilities and "+
				"metadata, registering it when needed (autoRegister). Returns status renamed, updated or registered and the agent."+
				h.scopeNote(),
			annotations{readOnly: false, destructive: true, idempotent: false},
			inputSchemaWith[setIdentityArgs](map[string]prop{"autoRegister": {def: true}})),
		Handler: handle(h, h.doSetAgentIdentity),
	}
}

func (h *Handlers) doSetAgentIdentity(ctx context.Context, args setIdentityArgs) (any, error) {
	if err := checkID("currentAgentId", args.CurrentAgentID, false); err != nil {
		return nil, err
	}
	c := memory.IdentityChange{NewID: args.NewAgentID, CurrentID: args.CurrentAgentID, Capabilities: args.Capabilities,
		Metadata: args.Metadata, AutoRegister: args.AutoRegister == nil || *args.AutoRegister}
	if c.CurrentID == "" {
		c.CurrentID, _ = agentOrDefault(ctx, "", "currentAgentId") // none: no rename
	}
	if args.NewName != "" {
		c.Name = &args.NewName
	}
	res, err := h.store.SetAgentIdentity(ctx, c)
	if err != nil {
		return nil, err
	}
	return setIdentityResult{Status: res.Action, AgentID: res.Agent.ID, PreviousAgentID: res.PreviousID, Agent: agentToWire(res.Agent)}, nil
}

// agentStatusArgs are the arguments of get_agent_status.
type agentStatusArgs struct {
	AgentID string `json:"agentId,omitempty" jsonschema:"one agent to look up (default: list your tenant's agents)" max:"256"`
	Limit   int    `json:"limit,omitempty" jsonschema:"when listing: at most this many agents (default 50, at most 200)"`
	Offset  int    `json:"offset,omitempty" jsonschema:"when listing: skip this many agents"`
}

type agentStatusOne struct {
	Agent agentWire `json:"agent"`
}

type agentStatusList struct {
	Agents     []agentWire `json:"agents"`
	Total      int         `json:"total"`
	Offset     int         `json:"offset"`
	Limit      int         `json:"limit"`
	NextOffset *int        `json:"nextOffset,omitempty"`
}

func (h *Handlers) getAgentStatus() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_agent_status", "Get Agent Status",
			"Look up one agent by agentId (name, capabilities, status, lastSeen), or list the agents your tenant "+
				"registered, by ID, with total and nextOffset."+h.scopeNote(),
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchemaWith[agentStatusArgs](map[string]prop{"limit": {def: defaultAgents}})),
		Handler: handle(h, h.doGetAgentStatus),
	}
}

func (h *Handlers) doGetAgentStatus(ctx context.Context, args agentStatusArgs) (any, error) {
	if err := checkID("agentId", args.AgentID, false); err != nil {
		return nil, err
	}
	if args.AgentID != "" {
		a, err := h.store.Agent(ctx, args.AgentID)
		if err != nil {
			return nil, err
		}
		return agentStatusOne{Agent: agentToWire(a)}, nil
	}
	limit, offset, err := page(args.Limit, args.Offset, defaultAgents, maxAgents)
	if err != nil {
		return nil, err
	}
	as, total, err := h.store.Agents(ctx, offset, limit)
	if err != nil {
		return nil, err
	}
	out := agentStatusList{Agents: make([]agentWire, len(as)), Total: total, Offset: offset, Limit: limit}
	for i, a := range as {
		out.Agents[i] = agentToWire(a)
	}
	if next := offset + len(as); next < total {
		out.NextOffset = &next
	}
	return out, nil
}
