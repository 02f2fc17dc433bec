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
// refuses a call without a tenant or without the tool's scope, checks the
// arguments (identity fields, then the input schema), binds them, calls fn, maps its error and renders
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
		if refusal, err := h.recheckCredential(ctx, "tool", name); refusal != "" {
			return mcp.NewToolResultError(refusal), nil
		} else if err != nil {
			return nil, err
		}
		ctx = withToolName(ctx, name)
		hash := argumentsHash(req.Params.Arguments)
		if err := checkScope(ctx, name); err != nil {
			if isRefusal(err) {
				h.auditRefusal(ctx, name, hash, err)
			}
			return h.errorResult(ctx, name, err)
		}
		raw, err := h.checkArguments(rc, name, req.Params.Arguments)
		if err != nil {
			if isRefusal(err) {
				h.auditRefusal(ctx, name, hash, err)
			}
			return h.errorResult(ctx, name, err)
		}
		req.Params.Arguments = raw
		var args A
		if err := req.BindArguments(&args); err != nil {
			return h.errorResult(ctx, name, argErrorf("invalid arguments: %v", err))
		}
		tc, delegated := delegation.FromContext(ctx)
		if delegated && tc.TrustSessionID != "" {
			// Session bookkeeping, not audited: last activity and workflow count.
			if _, err := h.store.TouchTrustSession(ctx, tc.TrustSessionID); err != nil {
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
// caller's (anywhere, at any depth) with "forbidden: tenant mismatch" and,
// for an agent-bound credential, an acting agent other than its own with
// "forbidden: agent mismatch" (filling in omitted ones, see
// actAsBoundAgent), then validates them against the tool's input schema.
// The identity checks come first so that a spoofing attempt is reported as
// such, not as a schema error. It returns the arguments to bind.
func (h *Handlers) checkArguments(rc tenancy.RequestContext, tool string, raw any) (any, error) {
	if raw == nil {
		raw = map[string]any{}
	}
	if err := checkIdentity(rc, raw, 0); err != nil {
		return nil, err
	}
	raw, err := actAsBoundAgent(rc, tool, raw)
	if err != nil {
		return nil, err
	}
	if hasNUL(raw) {
		// PostgreSQL text cannot hold U+0000; refusing it on both backends
		// keeps one behaviour whatever the deployment stores in.
		return nil, argErrorf("invalid arguments: text must not contain the NUL character (U+0000)")
	}
	if rs := h.schemas[tool]; rs != nil {
		if err := rs.Validate(raw); err != nil {
			return nil, argErrorf("invalid arguments: %v", err)
		}
	}
	if !h.readOnly[tool] { // after the schema, whose errors name the field
		if err := checkWriteSize(raw); err != nil {
			return nil, err
		}
	}
	return raw, nil
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
// An answer whose wire size exceeds the budget is cut to its longest
// prefix that fits, when res is a page (see pageable), naming where to
// continue; otherwise, or when not even one item fits, the call gets an
// error result saying so, never an answer the client would refuse.
func (h *Handlers) render(ctx context.Context, tool string, res any) (*mcp.CallToolResult, error) {
	r, size, err := h.renderOnce(res)
	if err != nil {
		return nil, h.internal(ctx, "tool", tool, err)
	}
	if size <= h.budget {
		return r, nil
	}
	if p, ok := res.(pageable); ok && p.pageLen() > 1 {
		// The longest prefix that fits, by bisection: a prefix of k+1
		// items is never smaller than one of k.
		lo, hi := 0, p.pageLen()-1 // prefix lo fits (or is 0), prefix hi+1 does not
		var best *mcp.CallToolResult
		for lo < hi {
			mid := (lo + hi + 1) / 2
			rm, sm, err := h.renderOnce(p.firstN(mid))
			if err != nil {
				return nil, h.internal(ctx, "tool", tool, err)
			}
			if sm <= h.budget {
				lo, best = mid, rm
			} else {
				hi = mid - 1
			}
		}
		if best != nil {
			return best, nil
		}
	}
	if !h.readOnly[tool] {
		return mcp.NewToolResultError(fmt.Sprintf("%s succeeded, but its answer (%d bytes) exceeds the %d-byte answer "+
			"limit and is not shown; send less per call", tool, size, h.budget)), nil
	}
	return mcp.NewToolResultError(fmt.Sprintf("the answer (%d bytes) exceeds the %d-byte answer limit; "+
		"ask for less (a smaller limit, fewer names or a narrower query)", size, h.budget)), nil
}

// answerReserve is what a store-side size estimate leaves of the budget
// for the fields around the items (at most an eighth of it).
const answerReserve = 64 << 10

// itemBudget is the budget a store-side size estimate of the items of an
// answer may use.
func (h *Handlers) itemBudget() int { return h.budget - min(answerReserve, h.budget/8) }

// renderOnce builds the result for res and returns its size on the wire.
func (h *Handlers) renderOnce(res any) (*mcp.CallToolResult, int, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return nil, 0, err
	}
	text := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	// RawStructuredContent is what goes on the wire, so res is encoded
	// once; StructuredContent keeps the value for in-process readers.
	r := &mcp.CallToolResult{
		Content:              []mcp.Content{mcp.NewTextContent(string(text))},
		StructuredContent:    res,
		RawStructuredContent: text,
	}
	wire, err := json.Marshal(r)
	if err != nil {
		return nil, 0, err
	}
	return r, len(wire) + envelopeBytes, nil
}

// envelopeBytes bounds the JSON-RPC envelope around a result
// ({"jsonrpc":"2.0","id":...,"result":...} with an id of up to 200 bytes).
const envelopeBytes = 256

// pageable is a paged answer that can be cut to its first items.
type pageable interface {
	// pageLen is the number of items in the page.
	pageLen() int
	// firstN returns the answer with only the first n items, its
	// continuation (nextOffset, truncated) set to the item after them.
	firstN(n int) any
}
