package tools

import (
	"context"
	"log/slog"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Outcomes of a tool call as the client sees it, for logs and metrics.
const (
	OutcomeOK        = "ok"         // a result
	OutcomeToolError = "tool_error" // a result with isError (bad arguments, not found, forbidden...)
	OutcomeError     = "error"      // a JSON-RPC error (internal error, panic)
)

// CallOutcome classifies a finished tool call: OutcomeOK, OutcomeToolError
// (an isError result) or OutcomeError (a JSON-RPC error).
func CallOutcome(res *mcp.CallToolResult, err error) string {
	switch {
	case err != nil:
		return OutcomeError
	case res != nil && res.IsError:
		return OutcomeToolError
	}
	return OutcomeOK
}

// CallLog writes one info line per tool call, on every transport: tool,
// outcome, duration and tenant. A panic unwinding through it is logged as
// OutcomeError.
func CallLog(log *slog.Logger) server.ServerOption {
	return server.WithToolHandlerMiddleware(func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
			start := time.Now()
			outcome := OutcomeError // a panic unwinding through here
			defer func() {
				rc, _ := tenancy.FromContext(ctx)
				log.InfoContext(ctx, "tool call", "tool", req.Params.Name, "outcome", outcome,
					"duration_ms", float64(time.Since(start).Microseconds())/1000, "tenant", rc.TenantID)
			}()
			res, err = next(ctx, req)
			outcome = CallOutcome(res, err)
			return res, err
		}
	})
}
