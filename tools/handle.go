package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// handle is the only adapter between mcp-go and a domain function: it
// refuses a call without a tenant, checks the arguments (identity fields,
// then the input schema), binds them, calls fn, maps its error and renders
// the result as structured content plus its compact JSON text.
//
// It also drives the audit (see audit.go): a state-changing tool runs with
// a memory.AuditIntent, so each write transaction it makes appends its
// audit row before committing; a refused call (tenant mismatch, forbidden,
// EATP refusal) gets one denial row; a read-only call under a trust context
// gets one row. A trust session named in X-EATP-Session-ID is touched once
// per call.
func handle[A any](h *Handlers, fn func(ctx context.Context, args A) (any, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		rc, ok := tenancy.FromContext(ctx)
		if !ok || rc.TenantID == "" {
			return nil, h.internal(ctx, "tool", req.Params.Name, tenancy.ErrNoTenant)
		}
		name := req.Params.Name
		ctx = withToolName(ctx, name)
		hash := argumentsHash(req.Params.Arguments)
		if err := h.checkArguments(rc, name, req.Params.Arguments); err != nil {
			if isRefusal(err) {
				h.auditRefusal(ctx, name, hash, err)
			}
			return h.errorResult(ctx, name, err)
		}
		var args A
		if err := req.BindArguments(&args); err != nil {
			return h.errorResult(ctx, name, argErrorf("invalid arguments: %v", err))
		}
		tc, delegated := delegation.FromContext(ctx)
		if delegated && tc.SessionID != "" {
			// Session bookkeeping, not audited: last activity and workflow count.
			if _, err := h.store.TouchTrustSession(ctx, tc.SessionID); err != nil {
				return nil, h.internal(ctx, "tool", name, err)
			}
		}
		readOnly := h.readOnly[name]
		if !readOnly {
			// memory appends the audit row in the transaction of the change.
			ctx = memory.WithAudit(ctx, memory.AuditIntent{Tool: name, ContentHash: hash})
		}
		res, err := fn(ctx, args)
		if readOnly && delegated && tc.Valid() {
			h.auditDelegatedRead(ctx, name, hash, err != nil)
		}
		if err != nil {
			if isRefusal(err) {
				h.auditRefusal(ctx, name, hash, err)
			}
			return h.errorResult(ctx, name, err)
		}
		return h.render(ctx, name, res)
	}
}

// resolveSchemas compiles every tool's input schema once.
func resolveSchemas(tools []server.ServerTool) map[string]*jsonschema.Resolved {
	out := make(map[string]*jsonschema.Resolved, len(tools))
	for _, t := range tools {
		var s jsonschema.Schema
		if err := json.Unmarshal(t.Tool.RawInputSchema, &s); err != nil {
			panic(fmt.Sprintf("tool %s: input schema: %v", t.Tool.Name, err))
		}
		rs, err := s.Resolve(nil)
		if err != nil {
			panic(fmt.Sprintf("tool %s: input schema: %v", t.Tool.Name, err))
		}
		out[t.Tool.Name] = rs
	}
	return out
}

// checkArguments refuses arguments that name a tenant or env other than the
// caller's (anywhere, at any depth) with "forbidden: tenant mismatch", then
// validates them against the tool's input schema. The identity check comes
// first so that a spoofing attempt is reported as such, not as a schema error.
func (h *Handlers) checkArguments(rc tenancy.RequestContext, tool string, raw any) error {
	if raw == nil {
		raw = map[string]any{}
	}
	if err := checkIdentity(rc, raw, 0); err != nil {
		return err
	}
	if hasNUL(raw) {
		// PostgreSQL text cannot hold U+0000; refusing it on both backends
		// keeps one behaviour whatever the deployment stores in.
		return argErrorf("invalid arguments: text must not contain the NUL character (U+0000)")
	}
	if rs := h.schemas[tool]; rs != nil {
		if err := rs.Validate(raw); err != nil {
			return argErrorf("invalid arguments: %v", err)
		}
	}
	return nil
}

// keySeparators are dropped when comparing argument names: tenant_id, tenantId and tenant-id are one name.
var keySeparators = strings.NewReplacer("_", "", "-", "")

// maxArgumentDepth bounds how deep checkIdentity walks into arguments.
const maxArgumentDepth = 64

// checkIdentity returns errForbiddenMismatch when v contains a tenant or
// env field whose value differs from rc, and an argument error when v nests
// deeper than maxArgumentDepth (deeper than any schema needs).
func checkIdentity(rc tenancy.RequestContext, v any, depth int) error {
	if depth > maxArgumentDepth {
		return argErrorf("invalid arguments: nested deeper than %d levels", maxArgumentDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch strings.ToLower(keySeparators.Replace(k)) {
			case "tenant", "tenantid", "org", "orgid":
				if s, ok := val.(string); !ok || s != rc.TenantID {
					return errForbiddenMismatch
				}
			case "env", "environment":
				if s, ok := val.(string); !ok || s != rc.Env {
					return errForbiddenMismatch
				}
			}
			if err := checkIdentity(rc, val, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkIdentity(rc, e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasNUL reports whether any string or key in v contains U+0000. v has
// passed checkIdentity, so its depth is bounded.
func hasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case map[string]any:
		for k, val := range x {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(val) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasNUL(e) {
				return true
			}
		}
	}
	return false
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
