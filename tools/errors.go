package tools

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// argError is a problem with the arguments a client sent; its message is
// meant for the model to act on.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func argErrorf(format string, a ...any) error { return &argError{msg: fmt.Sprintf(format, a...)} }

// errForbiddenMismatch is returned when arguments name another tenant or env.
var errForbiddenMismatch = errors.New("forbidden: tenant mismatch")

// errorResult is the one mapping from an error to what the client gets:
// argument, validation, not-found and conflict errors become an isError
// result with a message the model can act on; anything else is logged with
// a reference and answered as "internal error (ref <id>)", a JSON-RPC
// internal error that carries no SQL, stack or key text.
func (h *Handlers) errorResult(ctx context.Context, tool string, err error) (*mcp.CallToolResult, error) {
	var (
		ae *argError
		me *memory.Error
		se *ScopeError
	)
	switch {
	case errors.As(err, &se):
		return mcp.NewToolResultError(se.Error()), nil
	case errors.As(err, &ae):
		return mcp.NewToolResultError(ae.msg), nil
	case errors.As(err, &me):
		return mcp.NewToolResultError(memoryMessage(me)), nil
	case errors.Is(err, errForbiddenMismatch):
		return mcp.NewToolResultError(errForbiddenMismatch.Error()), nil
	case errors.Is(err, errAgentMismatch):
		return mcp.NewToolResultError(errAgentMismatch.Error()), nil
	case errors.Is(err, tenancy.ErrForbidden):
		return mcp.NewToolResultError("forbidden"), nil
	case isRefusal(err):
		// An EATP refusal: its message names the rule, never request values.
		return mcp.NewToolResultError(err.Error()), nil
	}
	return nil, h.internal(ctx, "tool", tool, err)
}

// memoryArgs is the argument a client sends for each memory.Field it can
// get wrong. A field not listed here is named by its memory.Field text.
var memoryArgs = map[memory.Field]string{
	memory.FieldAgent:        "agentId",
	memory.FieldNewAgent:     "newAgentId",
	memory.FieldProject:      "projectId",
	memory.FieldSender:       "from",
	memory.FieldRecipient:    "to",
	memory.FieldAgentName:    "name",
	memory.FieldNewAgentName: "newName",
	memory.FieldCapabilities: "capabilities",
	memory.FieldSummary:      "summary",
	memory.FieldOpenItems:    "openItems",
	memory.FieldHandoffLearn: "learnings",
	memory.FieldContext:      "context",
	memory.FieldLesson:       "lesson",
	memory.FieldLearningText: "context and lesson",
	memory.FieldConfidence:   "confidence",
	memory.FieldPreferences:  "preferences",
	memory.FieldMetadata:     "metadata",
	memory.FieldContent:      "content",
	memory.FieldMessageType:  "messageType",
	memory.FieldPriority:     "priority",
	memory.FieldSearchMode:   "searchType",
	memory.FieldQuery:        "query",
}

// msgNoEmbedder answers a semantic search on a server without an embedder.
const msgNoEmbedder = `searchType "semantic" needs an embedder, and this server has none: start it with --embedder-url and --embedder-model, or use searchType "hybrid" (word ranking)`

// memoryMessage writes the words a model reads for a memory failure: the
// argument to fix, or the tool to call first.
func memoryMessage(e *memory.Error) string {
	arg, ok := memoryArgs[e.Field]
	if !ok {
		arg = string(e.Field)
	}
	switch e.Code {
	case memory.CodeEmpty:
		return arg + " must not be empty"
	case memory.CodeTooLong:
		if e.Field == memory.FieldLearningText {
			return fmt.Sprintf("%s are limited to %d bytes", arg, e.Limit)
		}
		return fmt.Sprintf("%s is limited to %d bytes", arg, e.Limit)
	case memory.CodeTooMany:
		if e.Field == memory.FieldCapabilities {
			return fmt.Sprintf("at most %d %s per agent", e.Limit, arg)
		}
		return fmt.Sprintf("at most %d %s", e.Limit, arg)
	case memory.CodeNotOneOf:
		return fmt.Sprintf("%s must be one of %s", arg, strings.Join(e.Allowed, ", "))
	case memory.CodeBadID:
		return arg + " " + e.Detail
	case memory.CodeBadPage:
		return "limit must be positive and offset not negative"
	case memory.CodeTooBroad:
		return fmt.Sprintf("the selection matches more than %d agents; narrow it with toCapabilities", e.Limit)
	case memory.CodeNoEmbedder:
		return msgNoEmbedder
	case memory.CodeNotFound:
		if e.Field == memory.FieldEntity {
			// The words of the reference memory server, which clients know.
			return fmt.Sprintf("Entity with name %s not found", e.ID)
		}
	case memory.CodeNotRegistered:
		if e.Field == memory.FieldNewAgent {
			return fmt.Sprintf("agent %q is not registered; register it with register_agent or set autoRegister", e.ID)
		}
		return fmt.Sprintf("agent %q is not registered", e.ID)
	case memory.CodeOwnedElsewhere:
		return fmt.Sprintf("agent id %q is registered by another tenant or bound to its API key; only that tenant can use it — choose another agent id", e.ID)
	case memory.CodeRenameTaken:
		return fmt.Sprintf("agent id %q is already registered; cannot rename %q to it", e.ID, e.Other)
	case memory.CodeBadValue:
		if e.Field != "" {
			return arg + " " + e.Detail
		}
	}
	// The rest name no argument (a delegation or trust session not found);
	// memory's own words say it.
	return e.Error()
}

// internal logs err under a fresh reference and returns the error the
// client sees.
func (h *Handlers) internal(ctx context.Context, kind, name string, err error) error {
	ref := newRef()
	rc, _ := tenancy.FromContext(ctx)
	h.log.ErrorContext(ctx, "internal error", "ref", ref, kind, name, "tenant", rc.TenantID, "err", err)
	return fmt.Errorf("internal error (ref %s)", ref)
}

func newRef() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// recoverMiddleware turns a panicking handler into the sanitized internal
// error and logs the panic; mcp-go's WithRecovery would send the panic text.
func (h *Handlers) recoverMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		defer func() {
			if p := recover(); p != nil {
				res, err = nil, h.internal(ctx, "tool", req.Params.Name, fmt.Errorf("panic: %v", p))
			}
		}()
		return next(ctx, req)
	}
}

// The words of a refused Recheck.
const (
	msgCredentialRevoked = "unauthenticated: this server's API key was revoked or has expired; nothing was done. Restart the server with a valid key"
	msgTenantDisabled    = "forbidden: the tenant is disabled; nothing was done"
)

// recheckCredential runs Deps.Recheck. A refusal comes back as the words
// that say why (the caller answers with them, nothing done); a storage
// failure as the internal error.
func (h *Handlers) recheckCredential(ctx context.Context, kind, name string) (refusal string, err error) {
	if h.recheck == nil {
		return "", nil
	}
	cerr := h.recheck(ctx)
	switch {
	case cerr == nil:
		return "", nil
	case errors.Is(cerr, tenancy.ErrUnauthenticated):
		h.log.WarnContext(ctx, "call refused: credential revoked or expired", kind, name)
		return msgCredentialRevoked, nil
	case errors.Is(cerr, tenancy.ErrForbidden):
		h.log.WarnContext(ctx, "call refused: tenant disabled", kind, name)
		return msgTenantDisabled, nil
	}
	return "", h.internal(ctx, kind, name, cerr)
}
