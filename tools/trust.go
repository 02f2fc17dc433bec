package tools

import (
	"context"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The trust session tools: a human starts a session that requests name in
// X-EATP-Session-ID; it lasts until its TTL or a revocation.

// TrustSessionStore is the storage of the trust session tools.
type TrustSessionStore interface {
	CreateTrustSession(ctx context.Context, n memory.NewTrustSession) (memory.TrustSession, error)
	TrustSession(ctx context.Context, id string) (memory.TrustSession, error)
	TrustSessions(ctx context.Context, f memory.TrustSessionFilter) ([]memory.TrustSession, int, error)
	TouchTrustSession(ctx context.Context, id string) (bool, error)
	RevokeTrustSession(ctx context.Context, id, reason string) (memory.TrustSession, error)
	RevokeTrustSessionsByHuman(ctx context.Context, userID, reason string) (int, error)
}

// Trust session TTLs.
const (
	defaultSessionTTLHours = 8
	maxSessionTTLHours     = 24 * 30
)

// trustSessionWire is a trust session as the tools return it.
type trustSessionWire struct {
	SessionID      string         `json:"session_id"`
	Active         bool           `json:"active"`
	InactiveReason string         `json:"inactive_reason,omitempty"`
	HumanOrigin    map[string]any `json:"human_origin"`
	AgentID        string         `json:"agent_id,omitempty"`
	Constraints    map[string]any `json:"constraints"`
	CreatedAt      string         `json:"created_at"`
	ExpiresAt      string         `json:"expires_at"`
	LastActivityAt string         `json:"last_activity_at"`
	WorkflowCount  int64          `json:"workflow_count"`
	RevokedAt      string         `json:"revoked_at,omitempty"`
	RevokeReason   string         `json:"revoke_reason,omitempty"`
}

func (h *Handlers) sessionToWire(ts memory.TrustSession) trustSessionWire {
	reason := ts.InactiveReason(h.now())
	return trustSessionWire{SessionID: ts.ID, Active: reason == "", InactiveReason: reason,
		HumanOrigin: nonNilMap(ts.HumanOrigin), AgentID: ts.AgentID, Constraints: nonNilMap(ts.Constraints),
		CreatedAt: rfc3339(ts.CreatedAt), ExpiresAt: rfc3339(ts.ExpiresAt), LastActivityAt: rfc3339(ts.LastActivityAt),
		WorkflowCount: ts.WorkflowCount, RevokedAt: rfc3339(ts.RevokedAt), RevokeReason: ts.RevokeReason}
}

// ---- create_trust_session ----

type createTrustSessionArgs struct {
	HumanOrigin map[string]any `json:"human_origin" jsonschema:"the human the session acts for, e.g. {\"user_id\":\"alice\",\"display_name\":\"Alice\"}; user_id defaults to you, naming another user needs admin"`
	AgentID     string         `json:"agent_id,omitempty" jsonschema:"the agent the session is for, if one" max:"256"`
	Constraints map[string]any `json:"constraints,omitempty" jsonschema:"constraints that apply to work done in the session"`
	TTLHours    float64        `json:"ttl_hours,omitempty" jsonschema:"lifetime in hours (default 8, at most 720)"`
}

func (h *Handlers) createTrustSession() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("create_trust_session", "Create Trust Session",
			"Start a trust session on behalf of a human: requests that send its id in X-EATP-Session-ID act for that "+
				"human until it expires or is revoked. Returns the session (id nxs-<uuid>) with expires_at.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[createTrustSessionArgs]()),
		Handler: handle(h, h.doCreateTrustSession),
	}
}

func (h *Handlers) doCreateTrustSession(ctx context.Context, args createTrustSessionArgs) (any, error) {
	if err := checkID("agent_id", args.AgentID, false); err != nil {
		return nil, err
	}
	hours := args.TTLHours
	if hours == 0 {
		hours = defaultSessionTTLHours
	}
	if hours < 0 || hours > maxSessionTTLHours {
		return nil, argErrorf("ttl_hours must be between 0 and %d", maxSessionTTLHours)
	}
	rc, _ := tenancy.FromContext(ctx)
	user, err := h.checkOrigin(ctx, args.HumanOrigin)
	if err != nil {
		return nil, err
	}
	origin := map[string]any{}
	for k, v := range args.HumanOrigin {
		origin[k] = v
	}
	if user == "" {
		user = rc.UserID
		if user != "" {
			origin["user_id"] = user
		}
	}
	ts, err := h.store.CreateTrustSession(ctx, memory.NewTrustSession{HumanUserID: user, HumanOrigin: origin,
		AgentID: args.AgentID, Constraints: args.Constraints, CreatedBy: rc.UserID,
		TTL: time.Duration(hours * float64(time.Hour))})
	if err != nil {
		return nil, err
	}
	return h.sessionToWire(ts), nil
}

// ---- get_trust_session ----

type trustSessionIDArgs struct {
	SessionID string `json:"session_id" jsonschema:"the trust session id (nxs-...)" max:"256"`
}

func (h *Handlers) getTrustSession() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_trust_session", "Get Trust Session",
			"Get one trust session of your tenant. Returns it with active, and inactive_reason (expired or revoked) when it is not.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[trustSessionIDArgs]()),
		Handler: handle(h, h.doGetTrustSession),
	}
}

func (h *Handlers) doGetTrustSession(ctx context.Context, args trustSessionIDArgs) (any, error) {
	if err := checkID("session_id", args.SessionID, true); err != nil {
		return nil, err
	}
	ts, err := h.store.TrustSession(ctx, args.SessionID)
	if err != nil {
		return nil, err
	}
	return h.sessionToWire(ts), nil
}

// ---- list_trust_sessions ----

type listTrustSessionsArgs struct {
	ActiveOnly *bool `json:"active_only,omitempty" jsonschema:"only sessions that are neither expired nor revoked (default true)"`
	Limit      int   `json:"limit,omitempty" jsonschema:"page size (default 50, at most 500)"`
	Offset     int   `json:"offset,omitempty" jsonschema:"rows to skip"`
}

type listTrustSessionsResult struct {
	Sessions []trustSessionWire `json:"sessions"`
	Total    int                `json:"total"`
	Limit    int                `json:"limit"`
	Offset   int                `json:"offset"`
	// NextOffset continues a page that has more rows after it.
	NextOffset *int `json:"nextOffset,omitempty"`
}

func (h *Handlers) listTrustSessions() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("list_trust_sessions", "List Trust Sessions",
			"List your tenant's trust sessions, newest first (only active ones unless active_only is false). Returns a page and the total.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[listTrustSessionsArgs]()),
		Handler: handle(h, h.doListTrustSessions),
	}
}

func (h *Handlers) doListTrustSessions(ctx context.Context, args listTrustSessionsArgs) (any, error) {
	limit, offset, err := page(args.Limit, args.Offset, memory.DefaultTrustSessionLimit, memory.MaxTrustSessionLimit)
	if err != nil {
		return nil, err
	}
	activeOnly := args.ActiveOnly == nil || *args.ActiveOnly
	rows, total, err := h.store.TrustSessions(ctx, memory.TrustSessionFilter{ActiveOnly: activeOnly, Limit: limit, Offset: offset})
	if err != nil {
		return nil, err
	}
	out := listTrustSessionsResult{Sessions: make([]trustSessionWire, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, ts := range rows {
		out.Sessions = append(out.Sessions, h.sessionToWire(ts))
	}
	out.NextOffset = nextOffset(offset, len(out.Sessions), total)
	return out, nil
}

// ---- revoke_trust_session ----

type revokeTrustSessionArgs struct {
	SessionID string `json:"session_id" jsonschema:"the trust session to revoke" max:"256"`
	Reason    string `json:"reason,omitempty" jsonschema:"why, for the record" max:"1024"`
}

func (h *Handlers) revokeTrustSession() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("revoke_trust_session", "Revoke Trust Session",
			"Revoke a trust session: requests naming it are refused from now on. Your own sessions, or any with an "+
				"admin membership. Returns the revoked session.",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[revokeTrustSessionArgs]()),
		Handler: handle(h, h.doRevokeTrustSession),
	}
}

func (h *Handlers) doRevokeTrustSession(ctx context.Context, args revokeTrustSessionArgs) (any, error) {
	if err := checkID("session_id", args.SessionID, true); err != nil {
		return nil, err
	}
	ts, err := h.store.TrustSession(ctx, args.SessionID)
	if err != nil {
		return nil, err
	}
	if err := h.requireUser(ctx, ts.HumanUserID); err != nil {
		return nil, err
	}
	ts, err = h.store.RevokeTrustSession(ctx, args.SessionID, args.Reason)
	if err != nil {
		return nil, err
	}
	return h.sessionToWire(ts), nil
}

// ---- revoke_trust_sessions_by_human ----

type revokeByHumanArgs struct {
	UserID string `json:"user_id" jsonschema:"the human whose sessions to revoke (another user than you needs admin)" max:"256"`
	Reason string `json:"reason,omitempty" jsonschema:"why, for the record" max:"1024"`
}

type revokeByHumanResult struct {
	UserID  string `json:"user_id"`
	Revoked int    `json:"revoked"`
}

func (h *Handlers) revokeTrustSessionsByHuman() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("revoke_trust_sessions_by_human", "Revoke Trust Sessions By Human",
			"Revoke every trust session of one human in your tenant (yourself, or anyone with an admin membership). "+
				"Returns how many were revoked.",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[revokeByHumanArgs]()),
		Handler: handle(h, h.doRevokeTrustSessionsByHuman),
	}
}

func (h *Handlers) doRevokeTrustSessionsByHuman(ctx context.Context, args revokeByHumanArgs) (any, error) {
	if err := checkID("user_id", args.UserID, true); err != nil {
		return nil, err
	}
	if err := h.requireUser(ctx, args.UserID); err != nil {
		return nil, err
	}
	n, err := h.store.RevokeTrustSessionsByHuman(ctx, args.UserID, args.Reason)
	if err != nil {
		return nil, err
	}
	return revokeByHumanResult{UserID: args.UserID, Revoked: n}, nil
}
