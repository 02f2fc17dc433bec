package tools

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// GraphURI is the knowledge-graph resource, as in the reference server.
const GraphURI = "memory://knowledge-graph"

func (h *Handlers) graphResource() server.ServerResource {
	return server.ServerResource{
		Resource: mcp.NewResource(GraphURI, "knowledge-graph",
			mcp.WithResourceDescription("The full knowledge graph with all entities and relations"),
			mcp.WithMIMEType("application/json")),
		Handler: h.readGraphResource,
	}
}

// readGraphResource returns the caller's tenant's graph in the read_graph
// shape (the first page, when it exceeds the size budget).
func (h *Handlers) readGraphResource(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	g, err := h.store.ReadGraph(ctx, memory.Page{MaxBytes: h.budget})
	if err != nil {
		return nil, h.internal(ctx, "resource", GraphURI, err)
	}
	b, err := json.Marshal(graphToWire(g, false))
	if err != nil {
		return nil, h.internal(ctx, "resource", GraphURI, err)
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: GraphURI, MIMEType: "application/json", Text: string(b)}}, nil
}

// subscriptions tracks which sessions subscribed to which resources, and
// under which tenant, so that an update reaches only subscribers of the
// tenant whose data changed.
type subscriptions struct {
	mu       sync.Mutex
	sessions map[string]*subscriber
}

type subscriber struct {
	tenant string
	uris   map[string]bool
}

func newSubscriptions() *subscriptions {
	return &subscriptions{sessions: map[string]*subscriber{}}
}

func (s *subscriptions) install(hooks *server.Hooks) {
	hooks.AddAfterSubscribe(func(ctx context.Context, _ any, msg *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		session := server.ClientSessionFromContext(ctx)
		tenant, err := tenancy.TenantFromContext(ctx)
		if session == nil || err != nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		sub := s.sessions[session.SessionID()]
		if sub == nil || sub.tenant != tenant {
			sub = &subscriber{tenant: tenant, uris: map[string]bool{}}
			s.sessions[session.SessionID()] = sub
		}
		sub.uris[msg.Params.URI] = true
	})
	hooks.AddAfterUnsubscribe(func(ctx context.Context, _ any, msg *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		if session := server.ClientSessionFromContext(ctx); session != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if sub := s.sessions[session.SessionID()]; sub != nil {
				delete(sub.uris, msg.Params.URI)
			}
		}
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, session server.ClientSession) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.sessions, session.SessionID())
	})
}

// subscribers returns the sessions of tenant subscribed to uri.
func (s *subscriptions) subscribers(tenant, uri string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, sub := range s.sessions {
		if sub.tenant == tenant && sub.uris[uri] {
			out = append(out, id)
		}
	}
	return out
}

// graphChanged announces a change of the caller's tenant's graph, when
// changed; notifySubscribers then runs on every replica.
func (h *Handlers) graphChanged(ctx context.Context, changed bool) {
	if !changed {
		return
	}
	if err := h.store.Publish(ctx, memory.ChangeGraph); err != nil {
		h.log.WarnContext(ctx, "resource update not published", "err", err)
	}
}

// notifySubscribers sends notifications/resources/updated for the graph to
// this process's sessions of tenant that subscribed to it.
func (h *Handlers) notifySubscribers(kind, tenant string) {
	if kind != memory.ChangeGraph {
		return
	}
	for _, id := range h.subs.subscribers(tenant, GraphURI) {
		if err := h.srv.SendNotificationToSpecificClient(id, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": GraphURI}); err != nil {
			h.log.Debug("resource update not delivered", "session", id, "err", err)
		}
	}
}
