package httpserver

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// accessEntry is what the layers of one HTTP request tell the access log.
type accessEntry struct {
	mu        sync.Mutex
	tenant    string
	reason    string
	rpcMethod string
}

type accessKey struct{}

// reasonMCPProtocol is the reason of a refusal made by mcp-go itself.
const reasonMCPProtocol = "mcp_protocol"

func entryOf(ctx context.Context) *accessEntry {
	e, _ := ctx.Value(accessKey{}).(*accessEntry)
	return e
}

// noteRPC records the JSON-RPC method of the request, for the access log.
func noteRPC(ctx context.Context, method string) {
	if e := entryOf(ctx); e != nil {
		e.mu.Lock()
		e.rpcMethod = method
		e.mu.Unlock()
	}
}

// accessLog writes one info line per HTTP request when it ends: method,
// path, status, duration, the authenticated tenant, the JSON-RPC method,
// and for a refused request the reason (from the refusal recorder every
// refusing layer reports to; response bodies carry only fixed codes).
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		e := &accessEntry{}
		ctx := context.WithValue(r.Context(), accessKey{}, e)
		ctx = tenancy.WithRefusalRecorder(ctx, func(reason string) {
			e.mu.Lock()
			if e.reason == "" {
				e.reason = reason
			}
			e.mu.Unlock()
		})
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			e.mu.Lock()
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.code(),
				"duration_ms", float64(time.Since(start).Microseconds()) / 1000}
			if e.rpcMethod != "" {
				attrs = append(attrs, "rpc", e.rpcMethod)
			}
			if e.tenant != "" {
				attrs = append(attrs, "tenant", e.tenant)
			}
			switch {
			case e.reason != "":
				attrs = append(attrs, "reason", e.reason)
			case sw.code() >= 400:
				// refused inside mcp-go (unknown session, bad protocol
				// version, malformed JSON-RPC), which reports no reason
				attrs = append(attrs, "reason", reasonMCPProtocol)
			}
			e.mu.Unlock()
			log.Info("http request", attrs...)
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// accessTenant records the authenticated tenant for the access log; it
// runs right after authentication.
func accessTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := entryOf(r.Context()); e != nil {
			if rc, ok := tenancy.FromContext(r.Context()); ok {
				e.mu.Lock()
				e.tenant = rc.TenantID
				e.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})
}

// toolAccessLog writes one info line per tool call, on every transport:
// tool, outcome (ok, tool_error, error), duration and tenant.
