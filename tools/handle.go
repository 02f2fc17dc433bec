package tools

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// handle is the only adapter between mcp-go and a domain function: it binds
// the arguments, refuses a call without a tenant, calls fn, maps its error
// and renders the result as structured content plus its compact JSON text.
func handle[A any](h *Handlers, fn func(ctx context.Context, args A) (any, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if _, err := tenancy.TenantFromContext(ctx); err != nil {
			return nil, h.internal(ctx, "tool", req.Params.Name, err)
		}
		var args A
		if err := req.BindArguments(&args); err != nil {
			return mcp.NewToolResultError("invalid arguments: " + err.Error()), nil
		}
		res, err := fn(ctx, args)
		if err != nil {
			return h.errorResult(ctx, req.Params.Name, err)
		}
		return h.render(ctx, req.Params.Name, res)
	}
}

// render returns res as structured content with its compact JSON as text.
func (h *Handlers) render(ctx context.Context, tool string, res any) (*mcp.CallToolResult, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return nil, h.internal(ctx, "tool", tool, err)
	}
	text := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return &mcp.CallToolResult{
		Content:           []mcp.Content{mcp.NewTextContent(string(text))},
		StructuredContent: res,
	}, nil
}
