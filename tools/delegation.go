package tools

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The EATP delegation tools: prepare a delegated agent-to-agent call
// (delegation_prepare.go), verify the response (delegation_verify.go),
// list and revoke delegations (here), and call_agent_tool, which does the
// whole round trip itself (delegation_call.go). This file holds what they
// share: the store they need, their limits and the checks of a caller.

// DelegationStore is the storage of the delegation tools.
type DelegationStore interface {
	AgentEndpoint(ctx context.Context, agentID string) (string, error)
	AgentCredential(ctx context.Context, agentID string) (string, bool, error)
	TenantTrustKey(ctx context.Context) (delegation.TrustKey, bool, error)
	PrepareDelegation(ctx context.Context, nd memory.NewDelegation) (memory.DelegationRecord, error)
	DelegationRecordByTrace(ctx context.Context, traceID string) (memory.DelegationRecord, error)
	CompleteDelegation(ctx context.Context, id string, sum delegation.ResponseSummary) (memory.Verification, error)
	FailDelegation(ctx context.Context, id, reason string) (memory.DelegationRecord, error)
	DelegationHistory(ctx context.Context, f memory.DelegationFilter) ([]memory.DelegationRecord, int, error)
	RevokeDelegation(ctx context.Context, id, reason string) (int, error)
}

// Delegation limits.
const (
	defaultDelegationTTL = time.Hour
	maxDelegationTTL     = 24 * time.Hour
	// DefaultA2ATimeout bounds one call_agent_tool round trip.
	DefaultA2ATimeout = 30 * time.Second
	// maxA2AResponseBytes bounds what call_agent_tool reads from a target.
	maxA2AResponseBytes = 8 << 20
)

// refusef returns a trust refusal: it wraps sentinel (so handle audits it
// as a denial) and its message is meant for the model.
func refusef(sentinel error, format string, a ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, a...))
}

// parseSince parses an optional RFC 3339 time argument.
func parseSince(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, argErrorf("%s must be an RFC 3339 time such as 2025-01-02T15:04:05Z", field)
	}
	return t, nil
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// isAdmin reports whether the caller may act for other users of its
// tenant (tenancy.IsAdmin).
func (h *Handlers) isAdmin(ctx context.Context, rc tenancy.RequestContext) (bool, error) {
	return tenancy.IsAdmin(ctx, rc, h.store)
}

// errOtherUser refuses naming a user other than the caller's own.
var errOtherUser = fmt.Errorf("naming another user needs an admin membership: %w", tenancy.ErrForbidden)

// requireUser refuses naming a user other than the caller's own, unless
// the caller is an admin.
func (h *Handlers) requireUser(ctx context.Context, user string) error {
	rc, _ := tenancy.FromContext(ctx)
	if user == "" || user == rc.UserID {
		return nil
	}
	admin, err := h.isAdmin(ctx, rc)
	if err != nil {
		return err
	}
	if !admin {
		return errOtherUser
	}
	return nil
}

// checkOrigin applies delegation.CheckHumanOrigin, the rule a human origin
// gets whether it came as the human_origin argument or in
// X-EATP-Human-Origin, and returns the user it names. Its refusals read as
// the argument's: a tenant mismatch, naming another user, a malformed user.
func (h *Handlers) checkOrigin(ctx context.Context, origin map[string]any) (string, error) {
	user, err := delegation.CheckHumanOrigin(ctx, origin, h.store)
	switch {
	case errors.Is(err, delegation.ErrOriginTenant):
		return "", errForbiddenMismatch
	case errors.Is(err, delegation.ErrOriginUser):
		return "", errOtherUser
	case errors.Is(err, delegation.ErrOriginShape):
		return "", argErrorf("human_origin.user_id and human_origin.human_id must be strings naming one user")
	}
	return user, err
}

// ---- get_delegation_history ----

type delegationHistoryArgs struct {
	CallingAgent string `json:"calling_agent,omitempty" jsonschema:"only delegations from this agent" max:"256"`
	TargetAgent  string `json:"target_agent,omitempty" jsonschema:"only delegations to this agent" max:"256"`
	ToolName     string `json:"tool_name,omitempty" jsonschema:"only delegations of this tool" max:"256"`
	TraceID      string `json:"trace_id,omitempty" jsonschema:"only delegations with this trace id" max:"256"`
	Since        string `json:"since,omitempty" jsonschema:"only delegations created at or after this RFC 3339 time" max:"64"`
	Limit        int    `json:"limit,omitempty" jsonschema:"page size (default 50, at most 500)"`
	Offset       int    `json:"offset,omitempty" jsonschema:"rows to skip"`
}

type delegationWire struct {
	DelegationID string `json:"delegation_id"`
	TraceID      string `json:"trace_id"`
	CallingAgent string `json:"calling_agent"`
	TargetAgent  string `json:"target_agent"`
	ToolName     string `json:"tool_name"`
	Timestamp    string `json:"timestamp"`
	ExpiresAt    string `json:"expires_at"`
	Status       string `json:"status"`
	HasError     bool   `json:"has_error"`
	ParentID     string `json:"parent_id,omitempty"`
}

type delegationHistoryResult struct {
	Delegations []delegationWire `json:"delegations"`
	Total       int              `json:"total"`
	Limit       int              `json:"limit"`
	Offset      int              `json:"offset"`
	// NextOffset continues a page that has more rows after it.
	NextOffset *int `json:"nextOffset,omitempty"`
}

func (h *Handlers) getDelegationHistory() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_delegation_history", "Get Delegation History",
			"List your tenant's agent-to-agent delegations, newest first, optionally filtered by calling agent, target "+
				"agent, tool, trace id or time. Returns rows with status (prepared, completed, failed, expired, revoked) and the total.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[delegationHistoryArgs]()),
		Handler: handle(h, h.doGetDelegationHistory),
	}
}

func (h *Handlers) doGetDelegationHistory(ctx context.Context, args delegationHistoryArgs) (any, error) {
	if err := checkOptionalIDs(idArg{"calling_agent", args.CallingAgent}, idArg{"target_agent", args.TargetAgent},
		idArg{"tool_name", args.ToolName}, idArg{"trace_id", args.TraceID}); err != nil {
		return nil, err
	}
	since, err := parseSince("since", args.Since)
	if err != nil {
		return nil, err
	}
	limit, offset, err := page(args.Limit, args.Offset, memory.DefaultDelegationLimit, memory.MaxDelegationLimit)
	if err != nil {
		return nil, err
	}
	rows, total, err := h.store.DelegationHistory(ctx, memory.DelegationFilter{CallingAgent: args.CallingAgent,
		TargetAgent: args.TargetAgent, ToolName: args.ToolName, TraceID: args.TraceID, Since: since, Limit: limit, Offset: offset})
	if err != nil {
		return nil, err
	}
	now := h.now()
	out := delegationHistoryResult{Delegations: make([]delegationWire, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, d := range rows {
		out.Delegations = append(out.Delegations, delegationWire{DelegationID: d.ID, TraceID: d.TraceID,
			CallingAgent: d.CallingAgent, TargetAgent: d.TargetAgent, ToolName: d.ToolName, Timestamp: rfc3339(d.CreatedAt),
			ExpiresAt: rfc3339(d.ExpiresAt), Status: d.StatusAt(now), HasError: d.HasError, ParentID: d.ParentID})
	}
	out.NextOffset = nextOffset(offset, len(out.Delegations), total)
	return out, nil
}

// ---- revoke_delegation ----

type revokeDelegationArgs struct {
	DelegationID string `json:"delegation_id" jsonschema:"the delegation to revoke" max:"256"`
	Reason       string `json:"reason,omitempty" jsonschema:"why, for the record" max:"1024"`
}

type revokeDelegationResult struct {
	DelegationID string `json:"delegation_id"`
	Revoked      int    `json:"revoked"`
}

func (h *Handlers) revokeDelegation() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("revoke_delegation", "Revoke Delegation",
			"Revoke a delegation and every delegation prepared under it that is still pending; their calls are then "+
				"refused. Returns how many delegations were revoked.",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[revokeDelegationArgs]()),
		Handler: handle(h, h.doRevokeDelegation),
	}
}

func (h *Handlers) doRevokeDelegation(ctx context.Context, args revokeDelegationArgs) (any, error) {
	if err := checkID("delegation_id", args.DelegationID, true); err != nil {
		return nil, err
	}
	n, err := h.store.RevokeDelegation(ctx, args.DelegationID, args.Reason)
	if err != nil {
		return nil, err
	}
	return revokeDelegationResult{DelegationID: args.DelegationID, Revoked: n}, nil
}
