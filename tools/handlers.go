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
	"log/slog"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// Store is the storage the tools need: one small interface per domain,
// each declared beside its tools. memory.Store implements it; the
// PostgreSQL store will too.
type Store interface {
	GraphStore
}

var _ Store = (*memory.Store)(nil)

// DefaultGraphBudget bounds a read_graph or search_nodes answer (8 MiB),
// under the 10 MiB message limit of the standard SDK clients.
const DefaultGraphBudget = 8 << 20

// Deps are everything the handlers use, passed explicitly.
type Deps struct {
	Store  Store
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// GraphBudget bounds read_graph and search_nodes answers in bytes;
	// DefaultGraphBudget when 0.
	GraphBudget int
}

// Handlers hold the dependencies of every tool.
type Handlers struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	budget int
	subs   *subscriptions
	srv    *server.MCPServer
	// schemas are the compiled input schemas, by tool name.
	schemas map[string]*jsonschema.Resolved
}

// New returns the handlers for deps.
func New(deps Deps) *Handlers {
	h := &Handlers{store: deps.Store, log: deps.Logger, now: deps.Now, budget: deps.GraphBudget, subs: newSubscriptions()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.budget <= 0 {
		h.budget = DefaultGraphBudget
	}
	h.schemas = resolveSchemas(h.all())
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

// Register adds every tool and the knowledge-graph resource to s.
func (h *Handlers) Register(s *server.MCPServer) {
	h.srv = s
	s.AddTools(h.all()...)
	s.AddResources(h.graphResource())
}
