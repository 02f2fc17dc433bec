package tools

import (
	"context"
	"errors"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// listenSession stands for the session mcp-go serves one
// subscriptions/listen stream with: it records the stream's filter.
type listenSession struct {
	id     string
	filter mcp.SubscriptionFilter
}

func (l *listenSession) Initialize()                                         {}
func (l *listenSession) Initialized() bool                                   { return true }
func (l *listenSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return nil }
func (l *listenSession) SessionID() string                                   { return l.id }
func (l *listenSession) SetSubscriptionFilter(f mcp.SubscriptionFilter)      { l.filter = f }
func (l *listenSession) SubscriptionFilter() (mcp.SubscriptionFilter, bool) {
	return l.filter, !l.filter.IsEmpty()
}

// TestListenSubscribersByTenant: listen streams are tracked under the
// tenant of the request that opened them, selected by tenant and URI, and
// forgotten when the stream ends (result or error).
func TestListenSubscribersByTenant(t *testing.T) {
	srv := server.NewMCPServer("test", "1")
	hooks := &server.Hooks{}
	subs := newSubscriptions()
	subs.install(hooks)
	ctxOf := func(tenant string, s server.ClientSession) context.Context {
		return srv.WithContext(tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: tenant, Scopes: tenancy.AllScopes}), s)
	}
	open := func(tenant string, s *listenSession, uris ...string) {
		for _, h := range hooks.OnBeforeSubscriptionsListen {
			h(ctxOf(tenant, s), 1, &mcp.SubscriptionsListenRequest{})
		}
		s.SetSubscriptionFilter(mcp.SubscriptionFilter{ResourceSubscriptions: uris}) // as mcp-go's handler does
	}
	a, a2, b, aErr := &listenSession{id: "a"}, &listenSession{id: "a2"}, &listenSession{id: "b"}, &listenSession{id: "a-err"}
	open("a", a, GraphURI)
	open("a", a2, "memory://other")
	open("b", b, GraphURI)
	open("a", aErr, GraphURI)
	// An unauthenticated context tracks nothing.
	for _, h := range hooks.OnBeforeSubscriptionsListen {
		h(srv.WithContext(context.Background(), &listenSession{id: "anon"}), 1, &mcp.SubscriptionsListenRequest{})
	}
	ids := func(tenant string) map[string]bool {
		_, ls := subs.subscribers(tenant, GraphURI)
		out := map[string]bool{}
		for _, s := range ls {
			out[s.SessionID()] = true
		}
		return out
	}
	if got := ids("a"); len(got) != 2 || !got["a"] || !got["a-err"] {
		t.Errorf("graph listeners of a = %v; want a and a-err (not a2, another URI; not b)", got)
	}
	if got := ids("b"); len(got) != 1 || !got["b"] {
		t.Errorf("graph listeners of b = %v; want b only", got)
	}

	// The streams end: a with a result, a-err with an error; an error of
	// another method on b's context ends nothing.
	for _, h := range hooks.OnAfterSubscriptionsListen {
		h(ctxOf("a", a), 1, &mcp.SubscriptionsListenRequest{}, &mcp.SubscriptionsListenResult{})
	}
	for _, h := range hooks.OnError {
		h(ctxOf("a", aErr), 1, mcp.MethodSubscriptionsListen, nil, errors.New("stream failed"))
		h(ctxOf("b", b), 2, mcp.MethodToolsCall, nil, errors.New("tool failed"))
	}
	if got := ids("a"); len(got) != 0 {
		t.Errorf("graph listeners of a after their streams ended = %v; want none", got)
	}
	if got := ids("b"); len(got) != 1 || !got["b"] {
		t.Errorf("graph listeners of b after another method failed = %v; want b", got)
	}
	subs.mu.Lock()
	defer subs.mu.Unlock()
	if len(subs.listens) != 2 { // b and a2 are still open
		t.Errorf("%d listen streams tracked; want 2 (b, a2)", len(subs.listens))
	}
}
