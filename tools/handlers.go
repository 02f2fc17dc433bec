// Package tools owns the MCP surface of nexus-mcp: tool definitions,
// argument and result wire types, handlers, registration, the
// knowledge-graph resource and its subscriptions, and the single mapping
// from errors to MCP results.
//
// Identity comes only from the RequestContext in ctx (tenancy); no tool
// argument is ever used as a tenant or user. tools imports memory,
// delegation, tenancy and mcp-go; nothing imports tools but the
// composition root.
package tools

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// Store is the storage the tools need: one small interface per domain,
// each declared beside its tools. memory.Store implements it on both
// backends.
type Store interface {
	GraphStore
	// agent collaboration
	SearchStore
	MessageStore
	AgentStore
	LearningStore
	PreferenceStore
	HandoffStore
	// EATP trust and audit
	DelegationStore
	TrustSessionStore
	AuditStore
}

var _ Store = (*memory.Store)(nil)

// DefaultGraphBudget bounds every tool answer on the wire (8 MiB), under
// the 10 MiB message limit of the TypeScript SDK stdio client.
const DefaultGraphBudget = 8 << 20

// Deps are everything the handlers use, passed explicitly.
type Deps struct {
	Store  Store
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// GraphBudget bounds every tool answer and graph resource page in
	// bytes, as sent (see render); DefaultGraphBudget when 0.
	GraphBudget int
	// AgentScope is the agent registry scope the store was opened with
	// (memory.AgentScopeGlobal when ""); the registry tools describe it.
	AgentScope string
	// MaxDepth bounds delegation chains (--eatp-max-depth);
	// delegation.DefaultMaxDepth when 0.
	MaxDepth int
	// A2AAllowHosts are the hosts ("host" or "host:port") call_agent_tool
	// may connect to (--a2a-allow-hosts); none when empty.
	A2AAllowHosts []string
	// A2ATimeout bounds one call_agent_tool exchange; DefaultA2ATimeout when 0.
	A2ATimeout time.Duration
	// Toolsets are the names of the exposed toolsets (see Toolsets,
	// ParseToolsets); every toolset when empty.
	Toolsets []string
	// ReadOnly exposes only the tools whose read-only hint is true.
	ReadOnly bool
	// Embedder embeds search_entities queries for semantic and hybrid
	// search (--embedder-url); nil when none is configured.
	Embedder QueryEmbedder
	// EmbedTimeout bounds embedding one query; DefaultEmbedTimeout when 0.
	EmbedTimeout time.Duration
	// Recheck, when set, runs before every tool call and resource read and
	// refuses it when it returns an error: an error wrapping
	// tenancy.ErrUnauthenticated means the credential was revoked or has
	// expired, one wrapping tenancy.ErrForbidden that the tenant is
	// disabled. stdio sets it (its credential is verified once at start-up);
	// HTTP verifies every request in its middleware and leaves it nil.
	Recheck func(ctx context.Context) error
}

// Handlers hold the dependencies of every tool.
type Handlers struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	budget int
	// agentScope is memory.AgentScopeGlobal or memory.AgentScopeTenant.
	agentScope string
	subs       *subscriptions
	srv        *server.MCPServer
	// schemas are the compiled input schemas, by tool name.
	schemas map[string]*jsonschema.Resolved
	// readOnly holds the tools whose read-only hint is true (no audit row).
	readOnly map[string]bool
	// maxDepth, a2aHosts and a2aTimeout configure delegations and
	// call_agent_tool.
	maxDepth   int
	a2aHosts   map[string]bool
	a2aTimeout time.Duration
	// toolsets and readOnlyMode select what Register exposes.
	toolsets     []string
	readOnlyMode bool
	// embedder and embedTimeout serve semantic search (nil: none).
	embedder     QueryEmbedder
	embedTimeout time.Duration
	// recheck is Deps.Recheck.
	recheck func(ctx context.Context) error
}

// New returns the handlers for deps.
func New(deps Deps) *Handlers {
	h := &Handlers{store: deps.Store, log: deps.Logger, now: deps.Now, budget: deps.GraphBudget, subs: newSubscriptions(),
		agentScope: deps.AgentScope, recheck: deps.Recheck}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.budget <= 0 {
		h.budget = DefaultGraphBudget
	}
	h.maxDepth, h.a2aTimeout = deps.MaxDepth, deps.A2ATimeout
	h.toolsets, h.readOnlyMode = deps.Toolsets, deps.ReadOnly
	if len(h.toolsets) == 0 {
		h.toolsets = ToolsetNames()
	}
	if h.a2aTimeout <= 0 {
		h.a2aTimeout = DefaultA2ATimeout
	}
	h.embedder, h.embedTimeout = deps.Embedder, deps.EmbedTimeout
	if h.embedTimeout <= 0 {
		h.embedTimeout = DefaultEmbedTimeout
	}
	h.a2aHosts = make(map[string]bool, len(deps.A2AAllowHosts))
	for _, host := range deps.A2AAllowHosts {
		if host = strings.ToLower(strings.TrimSpace(host)); host != "" {
			h.a2aHosts[host] = true
		}
	}
	h.schemas = resolveSchemas(h.all())
	h.readOnly = map[string]bool{}
	for _, t := range h.all() {
		if ro := t.Tool.Annotations.ReadOnlyHint; ro != nil && *ro {
			h.readOnly[t.Tool.Name] = true
		}
	}
	return h
}

// all is the one list of tools, grouped by domain.
func (h *Handlers) all() []server.ServerTool {
	return []server.ServerTool{
		// knowledge graph (the reference server's nine tools)
		h.createEntities(),
		h.createRelations(),
		h.addObservations(),
		h.deleteEntities(),
		h.deleteObservations(),
		h.deleteRelations(),
		h.readGraph(),
		h.searchNodes(),
		h.openNodes(),
		// ranked search (nexus-mcp)
		h.searchEntities(),
		// messages
		h.sendAIMessage(),
		h.getAIMessages(),
		h.markMessagesRead(),
		// agent registry
		h.registerAgent(),
		h.setAgentIdentity(),
		h.getAgentStatus(),
		// individual memory
		h.recordLearning(),
		h.setPreferences(),
		h.getIndividualMemory(),
		// session handoffs and context
		h.endSession(),
		h.beginSession(),
		h.getAgentContext(),
		h.translatePath(),
		// EATP delegations
		h.prepareAgentCall(),
		h.verifyAgentResponse(),
		h.getDelegationHistory(),
		h.revokeDelegation(),
		h.callAgentTool(),
		// trust sessions
		h.createTrustSession(),
		h.getTrustSession(),
		h.listTrustSessions(),
		h.revokeTrustSession(),
		h.revokeTrustSessionsByHuman(),
		// audit
		h.getAuditLog(),
	}
}

// ServerOptions are the mcp-go options the handlers need: strict schemas,
// the recovery middleware, resource subscriptions and the hooks that track
// them. Input validation is done by handle (not WithInputSchemaValidation),
// because the identity check must run before the schema check.
func (h *Handlers) ServerOptions() []server.ServerOption {
	hooks := &server.Hooks{}
	h.subs.install(hooks)
	return []server.ServerOption{
		server.WithStrictInputSchemaDefault(),
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(true, false),
		server.WithToolHandlerMiddleware(h.recoverMiddleware),
		server.WithHooks(hooks),
	}
}

// Register adds the tools of the enabled toolsets to s, and the
// knowledge-graph resource when the graph toolset is enabled. A tool not
// added is unknown to s: calling it is an error.
func (h *Handlers) Register(s *server.MCPServer) {
	h.srv = s
	h.store.OnChange(h.notifySubscribers)
	h.subs.mu.Lock()
	h.subs.watch = h.store.WatchOtherProcesses
	h.subs.mu.Unlock()
	s.AddTools(h.exposed()...)
	if slices.Contains(h.toolsets, "graph") {
		s.AddResources(h.graphResource())
		s.AddResourceTemplates(h.graphPageResource())
	}
}
