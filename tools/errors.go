package tools

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

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
		return mcp.NewToolResultError(me.Msg), nil
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
