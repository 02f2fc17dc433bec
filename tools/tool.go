package tools

import "github.com/mark3labs/mcp-go/mcp"

// annotations are the behaviour hints of a tool. Every tool states all four
// (a test checks it); a zero field is an explicit false.
type annotations struct {
	readOnly, destructive, idempotent, openWorld bool
}

// newTool is the one tool builder: name, title and description, the
// hints, then the schemas (input, and output where the tool declares one).
func newTool(name, title, description string, a annotations, schemas ...mcp.ToolOption) mcp.Tool {
	opts := append([]mcp.ToolOption{
		mcp.WithToolTitle(title),
		mcp.WithDescription(description),
		mcp.WithReadOnlyHintAnnotation(a.readOnly),
		mcp.WithDestructiveHintAnnotation(a.destructive),
		mcp.WithIdempotentHintAnnotation(a.idempotent),
		mcp.WithOpenWorldHintAnnotation(a.openWorld),
	}, schemas...)
	return mcp.NewTool(name, opts...)
}

// page checks limit and offset and applies the default and the cap.
func page(limit, offset, def, maxLimit int) (int, int, error) {
	if limit < 0 || offset < 0 {
		return 0, 0, argErrorf("limit and offset must not be negative")
	}
	if limit == 0 {
		limit = def
	}
	return min(limit, maxLimit), offset, nil
}
