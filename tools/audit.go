package tools

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Auditing of tool calls. handle asks memory for one audit row per
// state-changing call (memory.WithAudit: the row is written in the
// transaction of the change), and writes a row itself for a refused call
// and for a read-only call made under an EATP trust context (a delegated
// call is a delegation event even when it changes nothing). get_audit_log
// reads the tenant's log.

// AuditStore is the storage of auditing and get_audit_log.
type AuditStore interface {
	Audit(ctx context.Context, e memory.AuditEntry) error
	AuditLog(ctx context.Context, f memory.AuditFilter) ([]memory.AuditRecord, int, error)
	Membership(ctx context.Context, tenantID string, p tenancy.Principal) (string, error)
}

// Audit actions written by the tools layer.
const (
	actionToolDenied    = "tool.denied"
	actionDelegatedRead = "delegated_call"
)

type toolNameKey struct{}

// withToolName records the tool being called in ctx, for audit rows that
// are written below handle.
func withToolName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, toolNameKey{}, name)
}

func toolFromContext(ctx context.Context) string {
	s, _ := ctx.Value(toolNameKey{}).(string)
	return s
}

// isRefusal reports whether err refuses the call for authorization or
// trust reasons (audited as a denial): a missing scope, a tenant mismatch
// in the arguments, a forbidden action, or an EATP refusal other than
// not-found.
func isRefusal(err error) bool {
	var se *ScopeError
	return errors.As(err, &se) || errors.Is(err, errForbiddenMismatch) || errors.Is(err, errAgentMismatch) || errors.Is(err, tenancy.ErrForbidden) ||
		(delegation.IsDenial(err) && !errors.Is(err, delegation.ErrNotFound))
}

// auditRefusal writes the denial row of a refused call. A failure to
// write it is logged: the call is refused either way.
func (h *Handlers) auditRefusal(ctx context.Context, tool, contentHash string, err error) {
	detail := "forbidden"
	var se *ScopeError
	switch {
	case errors.As(err, &se):
		detail = "insufficient scope: " + se.Need.String()
	case errors.Is(err, errForbiddenMismatch):
		detail = "tenant mismatch"
	case errors.Is(err, errAgentMismatch):
		detail = "agent mismatch"
	case delegation.IsDenial(err):
		detail = err.Error() // delegation messages never hold request values
	}
	e := memory.AuditEntry{Tool: tool, Action: actionToolDenied, Outcome: memory.OutcomeDenied, ContentHash: contentHash,
		Detail: detailObject("reason", detail)}
	if aerr := h.store.Audit(ctx, e); aerr != nil {
		h.log.ErrorContext(ctx, "audit of a refused call failed", "tool", tool, "err", aerr)
	}
}

// auditDelegatedRead writes the row of a read-only call made under a trust
// context.
func (h *Handlers) auditDelegatedRead(ctx context.Context, tool, contentHash string, failed bool) {
	outcome := memory.OutcomeOK
	if failed {
		outcome = memory.OutcomeError
	}
	e := memory.AuditEntry{Tool: tool, Action: actionDelegatedRead, Outcome: outcome, ContentHash: contentHash}
	if err := h.store.Audit(ctx, e); err != nil {
		h.log.ErrorContext(ctx, "audit of a delegated call failed", "tool", tool, "err", err)
	}
}

func detailObject(k, v string) string {
	b, err := json.Marshal(map[string]string{k: v})
	if err != nil {
		return ""
	}
	return string(b)
}

// argumentsHash is the content hash of a call's arguments.
func argumentsHash(raw any) string {
	if raw == nil {
		raw = map[string]any{}
	}
	s, err := delegation.HashJSON(raw)
	if err != nil {
		return ""
	}
	return s
}

// ---- get_audit_log ----

type getAuditLogArgs struct {
	Limit  int    `json:"limit,omitempty" jsonschema:"page size (default 50, at most 500)"`
	Offset int    `json:"offset,omitempty" jsonschema:"rows to skip"`
	Since  string `json:"since,omitempty" jsonschema:"only rows at or after this RFC 3339 time" max:"64"`
	Agent  string `json:"agent,omitempty" jsonschema:"only rows of this agent" max:"256"`
}

type auditRowWire struct {
	Seq         int64  `json:"seq"`
	Time        string `json:"time"`
	UserID      string `json:"user_id,omitempty"`
	APIKeyID    string `json:"api_key_id,omitempty"`
	AgentID     string `json:"agent_id,omitempty"`
	TraceID     string `json:"trace_id,omitempty"`
	SessionID   string `json:"session_id,omitempty"` // the trust session
	Tool        string `json:"tool,omitempty"`
	Action      string `json:"action"`
	Outcome     string `json:"outcome"`
	ContentHash string `json:"content_hash,omitempty"`
	Detail      string `json:"detail,omitempty"`
	Hash        string `json:"hash"`
}

type getAuditLogResult struct {
	Rows   []auditRowWire `json:"rows"`
	Total  int            `json:"total"`
	Limit  int            `json:"limit"`
	Offset int            `json:"offset"`
	// NextOffset continues a page that has more rows after it.
	NextOffset *int `json:"nextOffset,omitempty"`
}

func (h *Handlers) getAuditLog() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_audit_log", "Get Audit Log",
			"Read your tenant's tamper-evident audit log, newest first: one row per state change, delegation event and "+
				"refused request. Admin members and local mode only. Returns a page of rows and the total.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[getAuditLogArgs]()),
		Handler: handle(h, h.doGetAuditLog),
	}
}

func (h *Handlers) doGetAuditLog(ctx context.Context, args getAuditLogArgs) (any, error) {
	rc, _ := tenancy.FromContext(ctx)
	admin, err := h.isAdmin(ctx, rc)
	if err != nil {
		return nil, err
	}
	if !admin {
		return nil, errors.Join(errAuditAdminOnly, tenancy.ErrForbidden)
	}
	if err := checkID("agent", args.Agent, false); err != nil {
		return nil, err
	}
	since, err := parseSince("since", args.Since)
	if err != nil {
		return nil, err
	}
	limit, offset, err := page(args.Limit, args.Offset, memory.DefaultAuditLimit, memory.MaxAuditLimit)
	if err != nil {
		return nil, err
	}
	rows, total, err := h.store.AuditLog(ctx, memory.AuditFilter{Since: since, Agent: args.Agent, Limit: limit, Offset: offset})
	if err != nil {
		return nil, err
	}
	out := getAuditLogResult{Rows: make([]auditRowWire, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, r := range rows {
		e := r.Event
		out.Rows = append(out.Rows, auditRowWire{Seq: r.Seq, Time: rfc3339(e.Time), UserID: e.UserID, APIKeyID: e.APIKeyID,
			AgentID: e.AgentID, TraceID: e.TraceID, SessionID: e.SessionID, Tool: e.Tool, Action: e.Action,
			Outcome: e.Outcome, ContentHash: e.ContentHash, Detail: e.Detail, Hash: r.Hash})
	}
	out.NextOffset = nextOffset(offset, len(out.Rows), total)
	return out, nil
}

var errAuditAdminOnly = errors.New("the audit log is for admin members")
