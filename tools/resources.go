package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// GraphURI is the knowledge-graph resource, as in the reference server.
const GraphURI = "memory://knowledge-graph"

// GraphPageTemplate is the resource template of the graph's later pages:
// a truncated read of GraphURI names its next page's URI in nextUri.
const GraphPageTemplate = GraphURI + "{?cursor}"

func (h *Handlers) graphResource() server.ServerResource {
	return server.ServerResource{
		Resource: mcp.NewResource(GraphURI, "knowledge-graph",
			mcp.WithResourceDescription("The full knowledge graph with all entities and relations"),
			mcp.WithMIMEType("application/json")),
		Handler: h.readGraphResource,
	}
}

func (h *Handlers) graphPageResource() server.ServerResourceTemplate {
	return server.ServerResourceTemplate{
		Template: mcp.NewResourceTemplate(GraphPageTemplate, "knowledge-graph-page",
			mcp.WithTemplateDescription("A page of the knowledge graph: a graph too large for one message comes back "+
				"truncated, with nextUri naming the next page"),
			mcp.WithTemplateMIMEType("application/json")),
		Handler: h.readGraphResource,
	}
}

// graphPageWire is a page of the graph resource: the read_graph shape,
// plus the URI of the next page when truncated.
type graphPageWire struct {
	graphWire
	NextURI string `json:"nextUri,omitempty"`
}

// readGraphResource returns a page of the caller's tenant's graph in the
// read_graph shape: the whole graph when it fits the answer budget, else
// the page at the URI's cursor (the offset of its first entity).
func (h *Handlers) readGraphResource(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	if refusal, err := h.recheckCredential(ctx, "resource", GraphURI); refusal != "" {
		return nil, errors.New(refusal)
	} else if err != nil {
		return nil, err
	}
	if rc, _ := tenancy.FromContext(ctx); !rc.Scopes.Has(ResourceScope) {
		return nil, &ScopeError{Need: ResourceScope}
	}
	uri := req.Params.URI
	offset, err := graphCursor(uri)
	if err != nil {
		return nil, err
	}
	g, err := h.store.ReadGraph(ctx, memory.Page{Offset: offset, MaxBytes: h.itemBudget()})
	if err != nil {
		return nil, h.internal(ctx, "resource", GraphURI, err)
	}
	if g.Truncated && len(g.Entities) == 0 {
		return nil, fmt.Errorf("the entity at cursor %d, with its relations, is larger than the %d-byte answer limit", offset, h.budget)
	}
	page := graphPageWire{graphWire: graphToWire(g, offset > 0)}
	if g.Truncated {
		page.NextURI = GraphURI + "?cursor=" + strconv.Itoa(g.NextOffset)
	}
	b, err := json.Marshal(page)
	if err != nil {
		return nil, h.internal(ctx, "resource", GraphURI, err)
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
}

// graphCursor returns the offset named by a graph resource URI: 0 for
// GraphURI, the cursor of GraphURI?cursor=N.
func graphCursor(uri string) (int, error) {
	if uri == GraphURI {
		return 0, nil
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != GraphURI {
		return 0, fmt.Errorf("unknown resource %q", uri)
	}
	c := u.Query().Get("cursor")
	n, err := strconv.Atoi(c)
	if err != nil || n < 0 || len(u.Query()) != 1 {
		return 0, fmt.Errorf("invalid cursor %q in %s: use the nextUri of a truncated page", c, GraphURI)
	}
	return n, nil
}

// subscriptions tracks which MCP sessions subscribed to which resources
// (every session in this file is an MCP session), and under which tenant,
// so that an update reaches only subscribers of the tenant whose data
// changed. Two protocols subscribe: sessions (up to
// 2025-11-25) call resources/subscribe; from 2026-07-28 a client holds a
// subscriptions/listen stream, served by a session of its own that mcp-go
// never registers; the stream's filter holds the URIs.
type subscriptions struct {
	mu       sync.Mutex
	sessions map[string]*subscriber
	// listens maps each open subscriptions/listen stream to its tenant.
	listens map[server.ClientSession]string
	// watch, when set, is called when the first subscriber appears, and
	// the stop it returns when the last one goes (the store then looks
	// for other processes' changes only while someone listens).
	watch     func() (stop func())
	stopWatch func()
}

type subscriber struct {
	tenant string
	uris   map[string]bool
}

func newSubscriptions() *subscriptions {
	return &subscriptions{sessions: map[string]*subscriber{}, listens: map[server.ClientSession]string{}}
}

// sessionTenant returns the MCP session and the authenticated tenant of a
// request; ok is false when either is missing.
func sessionTenant(ctx context.Context) (session server.ClientSession, tenant string, ok bool) {
	session = server.ClientSessionFromContext(ctx)
	tenant, err := tenancy.TenantFromContext(ctx)
	return session, tenant, session != nil && err == nil
}

// rewatch turns the store's watch on or off after the subscribers
// changed. Call it with s.mu held.
func (s *subscriptions) rewatch() {
	if s.watch == nil {
		return
	}
	active := len(s.listens) > 0
	for _, sub := range s.sessions {
		active = active || len(sub.uris) > 0
	}
	switch {
	case active && s.stopWatch == nil:
		s.stopWatch = s.watch()
	case !active && s.stopWatch != nil:
		s.stopWatch()
		s.stopWatch = nil
	}
}

func (s *subscriptions) install(hooks *server.Hooks) {
	hooks.AddAfterSubscribe(func(ctx context.Context, _ any, msg *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		session, tenant, ok := sessionTenant(ctx)
		if !ok {
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
		s.rewatch()
	})
	hooks.AddAfterUnsubscribe(func(ctx context.Context, _ any, msg *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		if session := server.ClientSessionFromContext(ctx); session != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if sub := s.sessions[session.SessionID()]; sub != nil {
				delete(sub.uris, msg.Params.URI)
			}
			s.rewatch()
		}
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, session server.ClientSession) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.sessions, session.SessionID())
		s.rewatch()
	})
	// A listen stream is tracked from before its handler records the
	// filter until the handler returns, with a result or an error.
	hooks.AddBeforeSubscriptionsListen(func(ctx context.Context, _ any, _ *mcp.SubscriptionsListenRequest) {
		session, tenant, ok := sessionTenant(ctx)
		if !ok {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.listens[session] = tenant
		s.rewatch()
	})
	endListen := func(ctx context.Context) {
		if session := server.ClientSessionFromContext(ctx); session != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.listens, session)
			s.rewatch()
		}
	}
	hooks.AddAfterSubscriptionsListen(func(ctx context.Context, _ any, _ *mcp.SubscriptionsListenRequest, _ *mcp.SubscriptionsListenResult) {
		endListen(ctx)
	})
	hooks.AddOnError(func(ctx context.Context, _ any, method mcp.MCPMethod, _ any, _ error) {
		if method == mcp.MethodSubscriptionsListen {
			endListen(ctx)
		}
	})
}

// subscribers returns the sessions of tenant subscribed to uri: the ids
// of subscribed sessions, and the listen streams.
func (s *subscriptions) subscribers(tenant, uri string) (ids []string, listens []server.ClientSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sub := range s.sessions {
		if sub.tenant == tenant && sub.uris[uri] {
			ids = append(ids, id)
		}
	}
	for session, t := range s.listens {
		if t == tenant && listensTo(session, uri) {
			listens = append(listens, session)
		}
	}
	return ids, listens
}

// listensTo reports whether a listen stream's session opted in to updates
// of uri: the filter mcp-go records for the stream (and itself consults
// before sending), or, for a session without one, its resource
// subscriptions.
func listensTo(session server.ClientSession, uri string) bool {
	if f, ok := session.(server.SessionWithSubscriptionFilter); ok {
		filter, active := f.SubscriptionFilter()
		return active && slices.Contains(filter.ResourceSubscriptions, uri)
	}
	if r, ok := session.(server.SessionWithResourceSubscriptions); ok {
		return r.IsSubscribedToResource(uri)
	}
	return false
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
	params := map[string]any{"uri": GraphURI}
	ids, listens := h.subs.subscribers(tenant, GraphURI)
	for _, id := range ids {
		if err := h.srv.SendNotificationToSpecificClient(id, mcp.MethodNotificationResourceUpdated, params); err != nil {
			h.log.Debug("resource update not delivered", "session", id, "err", err)
		}
	}
	// mcp-go offers no call that sends to one unregistered session; its
	// notification channel is what its own sends write to (never closed;
	// the stream's writer tags each notification with the subscription).
	n := mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{
		Method: mcp.MethodNotificationResourceUpdated, Params: mcp.NotificationParams{AdditionalFields: params}}}
	for _, session := range listens {
		select {
		case session.NotificationChannel() <- n:
		default:
			h.log.Debug("resource update not delivered: listen stream full")
		}
	}
}
