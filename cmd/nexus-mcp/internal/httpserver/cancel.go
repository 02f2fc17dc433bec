package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
)

// errCancelledByClient is the cause of a request context that its own
// principal cancelled with notifications/cancelled.
var errCancelledByClient = errors.New("cancelled by the client (notifications/cancelled)")

// inflightKey names one in-flight request the way its caller can name it:
// the principal that sent it, the legacy session it was sent in ("" for a
// 2026-07-28 request, which has no session), and its JSON-RPC id.
type inflightKey struct {
	owner   principal
	session string
	id      string
}

// inflightRequests confines notifications/cancelled to the caller's own
// requests. mcp-go keys its in-flight requests by session id and JSON-RPC
// id, and every 2026-07-28 request has the empty session id, so a cancel
// that reaches mcp-go cancels whichever request of any tenant holds that
// id. The session guard therefore never passes notifications/cancelled to
// mcp-go: it registers every request here, under its principal, and
// cancels only the requests of the principal that sent the notification.
// Requests are local to this process: a cancel that reaches another
// replica than its request does not cancel it (as with mcp-go alone).
type inflightRequests struct {
	mu sync.Mutex
	m  map[inflightKey][]*inflightEntry
}

type inflightEntry struct{ cancel context.CancelCauseFunc }

func newInflightRequests() *inflightRequests {
	return &inflightRequests{m: make(map[inflightKey][]*inflightEntry)}
}

// track registers the request k and returns its context, cancelled by a
// matching cancel, and the function that unregisters it.
func (f *inflightRequests) track(ctx context.Context, k inflightKey) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	e := &inflightEntry{cancel: cancel}
	f.mu.Lock()
	f.m[k] = append(f.m[k], e)
	f.mu.Unlock()
	return ctx, func() {
		f.mu.Lock()
		list := slices.DeleteFunc(f.m[k], func(x *inflightEntry) bool { return x == e })
		if len(list) == 0 {
			delete(f.m, k)
		} else {
			f.m[k] = list
		}
		f.mu.Unlock()
		cancel(nil)
	}
}

// cancel cancels the requests registered under k (normally one; a client
// that reuses an id in flight gets all of its own) and reports how many.
func (f *inflightRequests) cancel(k inflightKey) int {
	f.mu.Lock()
	list := f.m[k]
	delete(f.m, k)
	f.mu.Unlock()
	for _, e := range list {
		e.cancel(errCancelledByClient)
	}
	return len(list)
}

// rpcEnvelope is what the session guard reads of a POSTed JSON-RPC
// message, decoded as mcp-go decodes it.
type rpcEnvelope struct {
	ID     json.RawMessage `json:"id"`
	Method mcp.MCPMethod   `json:"method"`
	Params struct {
		RequestID json.RawMessage `json:"requestId"`
		Meta      *mcp.Meta       `json:"_meta"`
	} `json:"params"`
}

// parseEnvelope decodes body; ok is false when it is not a JSON object
// (mcp-go answers that itself).
func parseEnvelope(body []byte) (env rpcEnvelope, ok bool) {
	if json.Unmarshal(body, &env) != nil {
		return rpcEnvelope{}, false
	}
	return env, true
}

// modern reports whether mcp-go serves the message in the 2026-07-28 era
// (no session; the Mcp-Session-Id header is ignored): the same test as
// mcp-go's, on the header and the body's _meta.
func (env rpcEnvelope) modern(h http.Header) bool {
	return mcp.IsModernProtocol(h.Get(mcp.HeaderProtocolVersion)) || mcp.IsModernProtocol(env.Params.Meta.ProtocolVersion())
}

// requestIDKey is the canonical form of a JSON-RPC id, as mcp-go matches
// ids (mcp.RequestId: 7 and 7.0 are one id, "7" another), or "" when there
// is none (absent or null: a notification) or it is not a valid id.
func requestIDKey(raw json.RawMessage) string {
	var id mcp.RequestId
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil || id.IsNil() {
		return ""
	}
	return id.String()
}

// serveRPC serves one POSTed JSON-RPC message of principal p, sent in the
// legacy session session ("" for none): a notifications/cancelled
// cancels p's own matching requests and stops here; a request runs
// registered as in flight; anything else goes to mcp-go as it is.
func (g *sessionGuard) serveRPC(w http.ResponseWriter, r *http.Request, p principal, session string, env rpcEnvelope) {
	if env.modern(r.Header) {
		session = "" // mcp-go ignores Mcp-Session-Id on 2026-07-28 messages
	}
	id := requestIDKey(env.ID)
	switch {
	case id == "" && env.Method == mcp.MethodNotificationCancelled:
		if target := requestIDKey(env.Params.RequestID); target != "" {
			n := g.inflight.cancel(inflightKey{owner: p, session: session, id: target})
			g.log.Debug("notifications/cancelled", "tenant", p.tenant, "cancelled", n)
		}
		w.WriteHeader(http.StatusAccepted)
	case id != "" && env.Method != "":
		ctx, done := g.inflight.track(r.Context(), inflightKey{owner: p, session: session, id: id})
		defer done()
		g.next.ServeHTTP(w, r.WithContext(ctx))
	default:
		g.next.ServeHTTP(w, r)
	}
}
