package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// tenantLogKeys are the log attributes that hold a tenant id.
var tenantLogKeys = map[string]bool{"tenant": true, "owner_tenant": true}

// tenantHash is the opaque short form of a tenant id in logs: the same
// tenant always gets the same value, so lines can be correlated without
// writing tenant names into logs (pass --log-tenant-names for names).
func tenantHash(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("nexus-mcp tenant\x00" + id))
	return "t-" + hex.EncodeToString(sum[:6])
}

// newLogger is the process logger on w: --log-level, --log-format (text or
// json) and, unless --log-tenant-names, every tenant attribute replaced by
// its tenantHash.
func newLogger(w io.Writer, g *globalFlags) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: l}
	if !g.logTenantNames {
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if tenantLogKeys[a.Key] && a.Value.Kind() == slog.KindString {
				a.Value = slog.StringValue(tenantHash(a.Value.String()))
			}
			return a
		}
	}
	switch g.logFormat {
	case "text", "": // "": the flag's default when globalFlags is built in code
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q (want text or json)", g.logFormat)
}

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
func toolAccessLog(log *slog.Logger) server.ServerOption {
	return server.WithToolHandlerMiddleware(func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
			start := time.Now()
			outcome := outcomeError // a panic unwinding through here
			defer func() {
				rc, _ := tenancy.FromContext(ctx)
				log.InfoContext(ctx, "tool call", "tool", req.Params.Name, "outcome", outcome,
					"duration_ms", float64(time.Since(start).Microseconds())/1000, "tenant", rc.TenantID)
			}()
			res, err = next(ctx, req)
			outcome = toolOutcome(res, err)
			return res, err
		}
	})
}
