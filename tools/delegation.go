package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The EATP delegation tools: prepare a delegated agent-to-agent call,
// verify the response, list and revoke delegations, and call_agent_tool,
// which does the whole round trip itself.

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

// ---- prepare_agent_call ----

// prepareAgentCallArgs are the arguments of prepare_agent_call.
type prepareAgentCallArgs struct {
	CallingAgent string         `json:"calling_agent" jsonschema:"the agent making the call; it must be registered by your tenant" max:"256"`
	TargetAgent  string         `json:"target_agent" jsonschema:"the agent that will run the tool" max:"256"`
	ToolName     string         `json:"tool_name" jsonschema:"the one tool the target may run under this delegation" max:"256"`
	MCPSessionID string         `json:"mcp_session_id,omitempty" jsonschema:"MCP session to record (default: the current one)" max:"256"`
	TraceID      string         `json:"trace_id,omitempty" jsonschema:"trace id to use (default: a new eatp-mcp-<16 hex>)" max:"256"`
	Constraints  map[string]any `json:"constraints,omitempty" jsonschema:"constraints for the call; they may only narrow those inherited from your own trust context"`
	HumanOrigin  map[string]any `json:"human_origin,omitempty" jsonschema:"the human on whose behalf the call is made (user_id defaults to you; naming another user needs admin)"`
	TTLSeconds   int            `json:"ttl_seconds,omitempty" jsonschema:"how long the delegation is usable, 1 to 86400 seconds (default 3600)"`
}

// prepareAgentCallResult is the result of prepare_agent_call.
type prepareAgentCallResult struct {
	MCPSessionID          string            `json:"mcp_session_id"`
	TraceID               string            `json:"eatp_trace_id"`
	AgentID               string            `json:"agent_id"`
	TargetAgentID         string            `json:"target_agent_id"`
	HumanOrigin           map[string]any    `json:"human_origin"`
	DelegatedCapabilities []string          `json:"delegated_capabilities"`
	Constraints           map[string]any    `json:"constraints"`
	DelegationID          string            `json:"delegation_id"`
	CreatedAt             string            `json:"created_at"`
	ExpiresAt             string            `json:"expires_at"`
	Headers               map[string]string `json:"headers"`
}

func (h *Handlers) prepareAgentCall() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("prepare_agent_call", "Prepare Agent Call",
			"Prepare a delegated call from one of your agents to another agent's tool: records a delegation "+
				"(constraints can only narrow what you inherited) and returns its id, trace id and the X-EATP-* headers "+
				"to forward with the call. Verify the target's answer with verify_agent_response.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[prepareAgentCallArgs]()),
		Handler: handle(h, h.doPrepareAgentCall),
	}
}

func (h *Handlers) doPrepareAgentCall(ctx context.Context, args prepareAgentCallArgs) (any, error) {
	p, err := h.prepare(ctx, prepareInput(args))
	if err != nil {
		return nil, err
	}
	headers := p.headers
	// Sign for the target's endpoint when both a key and the endpoint are
	// known: streamable HTTP POSTs to one path, so one signature serves
	// every POST of the call.
	if p.key != nil && p.endpoint != nil {
		if sig, err := delegation.Sign(*p.key, http.MethodPost, p.endpoint.Path, headers); err == nil {
			headers.Set(delegation.HeaderSignature, sig)
		}
	}
	out := prepareAgentCallResult{MCPSessionID: p.rec.MCPSessionID, TraceID: p.rec.TraceID, AgentID: p.rec.CallingAgent,
		TargetAgentID: p.rec.TargetAgent, HumanOrigin: nonNilMap(p.rec.HumanOrigin),
		DelegatedCapabilities: []string{p.rec.ToolName}, Constraints: nonNilMap(p.rec.Constraints),
		DelegationID: p.rec.ID, CreatedAt: rfc3339(p.rec.CreatedAt), ExpiresAt: rfc3339(p.rec.ExpiresAt),
		Headers: map[string]string{}}
	for k := range headers {
		out.Headers[canonicalEATPName(k)] = headers.Get(k)
	}
	return out, nil
}

// canonicalEATPName returns the spelling of the EATP header constants
// ("X-EATP-Trace-ID") for a canonical key ("X-Eatp-Trace-Id").
func canonicalEATPName(k string) string {
	for _, n := range []string{delegation.HeaderTraceID, delegation.HeaderAgentID, delegation.HeaderHumanOrigin,
		delegation.HeaderDelegationChain, delegation.HeaderDelegationDepth, delegation.HeaderConstraints,
		delegation.HeaderSessionID, delegation.HeaderSignature} {
		if strings.EqualFold(n, k) {
			return n
		}
	}
	return k
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// prepareInput is what prepare needs from either tool.
type prepareInput struct {
	CallingAgent, TargetAgent, ToolName, MCPSessionID, TraceID string
	Constraints, HumanOrigin                                   map[string]any
	TTLSeconds                                                 int
}

// prepared is a stored delegation with the trust context to forward.
type prepared struct {
	rec      memory.DelegationRecord
	headers  http.Header          // the EATP headers, unsigned
	key      *delegation.TrustKey // the tenant's trust key, if any
	endpoint *url.URL             // the target's endpoint, when the tenant registered one
}

// prepare validates a delegated call and records it. Inheritance: when
// the request carries a trust context, calling_agent must be its agent;
// a delegation its trace names (granted to calling_agent) becomes the
// parent, whose constraints, human origin, chain and expiry bound the new
// one; the request's own constraints narrow them further; the requested
// constraints may only narrow the result (delegation.Tighten).
func (h *Handlers) prepare(ctx context.Context, in prepareInput) (prepared, error) {
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"calling_agent", in.CallingAgent, true}, {"target_agent", in.TargetAgent, true}, {"tool_name", in.ToolName, true},
		{"mcp_session_id", in.MCPSessionID, false}, {"trace_id", in.TraceID, false}} {
		if err := checkID(f.name, f.v, f.required); err != nil {
			return prepared{}, err
		}
	}
	if err := delegation.CheckSelfCall(in.CallingAgent, in.TargetAgent); err != nil {
		return prepared{}, err
	}
	ttl := defaultDelegationTTL
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
		if in.TTLSeconds < 0 || ttl > maxDelegationTTL {
			return prepared{}, argErrorf("ttl_seconds must be between 1 and %d", int(maxDelegationTTL/time.Second))
		}
	}
	if _, err := h.store.AgentEndpoint(ctx, in.CallingAgent); err != nil {
		if errors.Is(err, memory.ErrNotFound) {
			return prepared{}, argErrorf("calling_agent %q is not an agent registered by your tenant", in.CallingAgent)
		}
		return prepared{}, err
	}
	rc, _ := tenancy.FromContext(ctx)
	tc, hasTC := delegation.FromContext(ctx)
	if hasTC && tc.AgentID != "" && tc.AgentID != in.CallingAgent {
		return prepared{}, refusef(delegation.ErrUntrusted, "calling_agent must be the agent of your request's trust context (X-EATP-Agent-ID)")
	}

	// The parent: the delegation this request acts under.
	var parent *memory.DelegationRecord
	if hasTC && tc.TraceID != "" {
		d, err := h.store.DelegationRecordByTrace(ctx, tc.TraceID)
		switch {
		case err == nil && d.TargetAgent == in.CallingAgent:
			if err := d.Usable(h.now()); err != nil {
				return prepared{}, fmt.Errorf("the delegation you act under is not usable: %w", err)
			}
			parent = &d
		case err != nil && !errors.Is(err, delegation.ErrNotFound):
			return prepared{}, err
		}
	}
	base := map[string]any{}
	var inheritedOrigin map[string]any
	var chain []string
	if parent != nil {
		base, inheritedOrigin, chain = parent.Constraints, parent.HumanOrigin, parent.Chain
	}
	if hasTC && tc.Valid() {
		if tc.Constraints != nil {
			narrowed, err := delegation.Tighten(base, tc.Constraints)
			if err != nil {
				return prepared{}, fmt.Errorf("your request's X-EATP-Constraints: %w", err)
			}
			base = narrowed
		}
		if len(inheritedOrigin) == 0 && len(tc.HumanOrigin) > 0 {
			// From X-EATP-Human-Origin: the edge checked it already (and
			// dropped or refused a failing one); check again here so that
			// no path stores an origin the argument rule would refuse.
			if _, err := h.checkOrigin(ctx, tc.HumanOrigin); err != nil {
				return prepared{}, fmt.Errorf("your request's X-EATP-Human-Origin: %w", err)
			}
			inheritedOrigin = tc.HumanOrigin
		}
		if parent == nil {
			chain = tc.Chain
		}
	}
	constraints, err := delegation.Tighten(base, in.Constraints)
	if err != nil {
		return prepared{}, err
	}

	origin := inheritedOrigin
	switch {
	case len(in.HumanOrigin) > 0 && len(inheritedOrigin) > 0:
		a, _ := delegation.CanonicalJSON(in.HumanOrigin)
		b, _ := delegation.CanonicalJSON(inheritedOrigin)
		if string(a) != string(b) {
			return prepared{}, refusef(delegation.ErrUntrusted, "human_origin cannot differ from the one you act under")
		}
	case len(in.HumanOrigin) > 0:
		if _, err := h.checkOrigin(ctx, in.HumanOrigin); err != nil {
			return prepared{}, err
		}
		origin = in.HumanOrigin
	case len(origin) == 0 && rc.UserID != "":
		origin = map[string]any{"user_id": rc.UserID}
	}

	newChain := append(append([]string{}, chain...), in.CallingAgent)
	out := delegation.TrustContext{AgentID: in.TargetAgent, Chain: newChain, Depth: len(newChain), HasDepth: true,
		HumanOrigin: origin, SessionID: tc.SessionID}
	if len(constraints) > 0 {
		out.Constraints = constraints
	}
	if err := delegation.CheckChain(out, delegation.ChainPolicy{MaxDepth: h.maxDepth}); err != nil {
		return prepared{}, err
	}
	traceID := in.TraceID
	if traceID == "" {
		if traceID, err = delegation.NewTraceID(); err != nil {
			return prepared{}, err
		}
	}
	out.TraceID = traceID
	mcpSession := in.MCPSessionID
	if mcpSession == "" {
		if cs := server.ClientSessionFromContext(ctx); cs != nil {
			mcpSession = cs.SessionID()
		}
	}
	nd := memory.NewDelegation{TraceID: traceID, CallingAgent: in.CallingAgent, TargetAgent: in.TargetAgent,
		ToolName: in.ToolName, MCPSessionID: mcpSession, TrustSessionID: tc.SessionID, Chain: newChain,
		Constraints: constraints, HumanOrigin: origin, TTL: ttl}
	if parent != nil {
		nd.ParentID = parent.ID
	}
	rec, err := h.store.PrepareDelegation(ctx, nd)
	if err != nil {
		return prepared{}, err
	}
	p := prepared{rec: rec, headers: delegation.ToHeaders(out)}
	key, hasKey, err := h.store.TenantTrustKey(ctx)
	if err != nil {
		return prepared{}, err
	}
	if hasKey {
		p.key = &key
	}
	if ep, err := h.store.AgentEndpoint(ctx, in.TargetAgent); err == nil && ep != "" {
		if u, err := url.Parse(ep); err == nil {
			p.endpoint = u
		}
	}
	return p, nil
}

// ---- verify_agent_response ----

// verifyAgentResponseArgs are the arguments of verify_agent_response.
type verifyAgentResponseArgs struct {
	DelegationID string `json:"delegation_id" jsonschema:"the delegation_id prepare_agent_call returned" max:"256"`
	Response     any    `json:"response" jsonschema:"the target agent's response (any JSON value, usually its tools/call result)"`
}

type verifyAgentResponseResult struct {
	Valid        bool     `json:"valid"`
	Reasons      []string `json:"reasons"`
	DelegationID string   `json:"delegation_id"`
	Status       string   `json:"status,omitempty"`
}

func (h *Handlers) verifyAgentResponse() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("verify_agent_response", "Verify Agent Response",
			"Verify and record a target agent's response to a delegation: invalid when the delegation is unknown, "+
				"expired, revoked or already completed, or when the response is an error. Returns valid and the reasons.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[verifyAgentResponseArgs]()),
		Handler: handle(h, h.doVerifyAgentResponse),
	}
}

func (h *Handlers) doVerifyAgentResponse(ctx context.Context, args verifyAgentResponseArgs) (any, error) {
	if err := checkID("delegation_id", args.DelegationID, true); err != nil {
		return nil, err
	}
	sum, err := delegation.SummarizeResponse(args.Response)
	if err != nil {
		return nil, argErrorf("response is not valid JSON")
	}
	return h.verify(ctx, args.DelegationID, sum)
}

// verify records a response; an unknown delegation is an invalid answer
// (and an audit row), the same for another tenant's id as for a random one.
func (h *Handlers) verify(ctx context.Context, id string, sum delegation.ResponseSummary) (verifyAgentResponseResult, error) {
	v, err := h.store.CompleteDelegation(ctx, id, sum)
	if errors.Is(err, memory.ErrNotFound) {
		if aerr := h.store.Audit(ctx, memory.AuditEntry{Tool: toolFromContext(ctx), Action: "delegation.verify",
			Outcome: memory.OutcomeRejected, ContentHash: sum.Hash, Detail: `{"reason":"unknown delegation"}`}); aerr != nil {
			return verifyAgentResponseResult{}, aerr
		}
		return verifyAgentResponseResult{Reasons: []string{"delegation not found"}, DelegationID: id}, nil
	}
	if err != nil {
		return verifyAgentResponseResult{}, err
	}
	out := verifyAgentResponseResult{Valid: v.Valid, Reasons: v.Reasons, DelegationID: id, Status: v.Record.StatusAt(h.now())}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	return out, nil
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

// ---- call_agent_tool ----

type callAgentToolArgs struct {
	CallingAgent string         `json:"calling_agent" jsonschema:"your agent making the call; it must be registered by your tenant" max:"256"`
	TargetAgent  string         `json:"target_agent" jsonschema:"the agent to call; your tenant must have registered it with an endpoint" max:"256"`
	ToolName     string         `json:"tool_name" jsonschema:"the target's tool to run" max:"256"`
	Arguments    map[string]any `json:"arguments" jsonschema:"the tool's arguments ({} for none)"`
	Constraints  map[string]any `json:"constraints,omitempty" jsonschema:"constraints for the call; they may only narrow those you inherited"`
}

type callAgentToolResult struct {
	DelegationID string   `json:"delegation_id"`
	TraceID      string   `json:"eatp_trace_id"`
	TargetAgent  string   `json:"target_agent_id"`
	ToolName     string   `json:"tool_name"`
	Valid        bool     `json:"valid"`
	Reasons      []string `json:"reasons"`
	// Result is the target's tools/call result, as it sent it.
	Result any `json:"result"`
}

func (h *Handlers) callAgentTool() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("call_agent_tool", "Call Agent Tool",
			"Call another agent's MCP tool in one step: prepares a delegation, sends tools/call to the target's registered "+
				"endpoint with signed X-EATP-* headers, verifies and records the response, and returns the target's result.",
			annotations{readOnly: false, destructive: false, idempotent: false, openWorld: true},
			inputSchema[callAgentToolArgs]()),
		Handler: handle(h, h.doCallAgentTool),
	}
}

// errHostNotAllowed is the refusal of an endpoint outside --a2a-allow-hosts.
var errHostNotAllowed = refusef(delegation.ErrUntrusted, "the target agent's endpoint host is not allowed for outbound calls (--a2a-allow-hosts)")

// hostAllowed reports whether u may be called: http or https, no user
// info, and its host (or host:port) in the allow-list.
func (h *Handlers) hostAllowed(u *url.URL) bool {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Host == "" {
		return false
	}
	return h.a2aHosts[strings.ToLower(u.Hostname())] || h.a2aHosts[strings.ToLower(u.Host)]
}

func (h *Handlers) doCallAgentTool(ctx context.Context, args callAgentToolArgs) (any, error) {
	for _, f := range []struct{ name, v string }{{"calling_agent", args.CallingAgent}, {"target_agent", args.TargetAgent}, {"tool_name", args.ToolName}} {
		if err := checkID(f.name, f.v, true); err != nil {
			return nil, err
		}
	}
	endpoint, err := h.store.AgentEndpoint(ctx, args.TargetAgent)
	if err != nil {
		return nil, err
	}
	if endpoint == "" {
		return nil, argErrorf("target agent %q has no endpoint; register it with one", args.TargetAgent)
	}
	u, err := url.Parse(endpoint)
	if err != nil || !h.hostAllowed(u) {
		return nil, errHostNotAllowed // refused before any delegation or connection
	}
	p, err := h.prepare(ctx, prepareInput{CallingAgent: args.CallingAgent, TargetAgent: args.TargetAgent,
		ToolName: args.ToolName, Constraints: args.Constraints})
	if err != nil {
		return nil, err
	}
	// From here on the delegation exists and must end, whatever happens to
	// the call: its outcome is recorded under a context the caller's
	// cancellation does not reach, bounded by delegationEndTimeout.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), delegationEndTimeout)
	defer cancel()
	ended := false
	defer func() {
		if !ended { // a panic between prepare and the end
			h.failDelegation(endCtx, p.rec, memory.EndInternal, errors.New("call_agent_tool did not finish"))
		}
	}()
	response, failure, callErr := h.callTarget(ctx, u, p, args)
	if failure != "" {
		ended = true
		if err := h.failDelegation(endCtx, p.rec, failure, callErr); err != nil {
			return nil, err
		}
		return nil, argErrorf("the call to the target agent failed (%s); delegation %s recorded as failed", failureWords[failure], p.rec.ID)
	}
	sum, err := delegation.SummarizeResponse(response)
	if err != nil {
		ended = true
		if ferr := h.failDelegation(endCtx, p.rec, memory.EndInternal, err); ferr != nil {
			return nil, ferr
		}
		return nil, err
	}
	v, err := h.verify(endCtx, p.rec.ID, sum)
	ended = true
	if err != nil {
		return nil, err
	}
	return callAgentToolResult{DelegationID: p.rec.ID, TraceID: p.rec.TraceID, TargetAgent: p.rec.TargetAgent,
		ToolName: p.rec.ToolName, Valid: v.Valid, Reasons: v.Reasons, Result: response}, nil
}

// delegationEndTimeout bounds recording how a delegated call ended.
const delegationEndTimeout = 10 * time.Second

// failureWords are the client-facing words of memory's End reasons.
var failureWords = map[string]string{
	memory.EndCancelled:   "the call was cancelled",
	memory.EndTimeout:     "the target agent did not answer in time",
	memory.EndUnreachable: "the target agent could not be reached or refused the call",
	memory.EndInternal:    "an internal error",
}

// callTarget relays the call and returns the target's response as JSON, or
// why there is none (a memory.End* reason) with the cause.
func (h *Handlers) callTarget(ctx context.Context, u *url.URL, p prepared, args callAgentToolArgs) (any, string, error) {
	cred, _, err := h.store.AgentCredential(ctx, args.TargetAgent)
	if err != nil {
		if ctx.Err() != nil {
			return nil, memory.EndCancelled, err
		}
		return nil, memory.EndInternal, err
	}
	res, err := h.relay(ctx, u, p, cred, args.ToolName, args.Arguments)
	switch {
	case err == nil:
	case ctx.Err() != nil: // the caller's own context: cancelled (or its deadline passed)
		return nil, memory.EndCancelled, err
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return nil, memory.EndTimeout, err
	default:
		return nil, memory.EndUnreachable, err
	}
	response, err := toJSONValue(res)
	if err != nil {
		return nil, memory.EndInternal, err
	}
	return response, "", nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// failDelegation ends a delegation whose call produced no response and
// logs the cause (never sent to the client).
func (h *Handlers) failDelegation(ctx context.Context, rec memory.DelegationRecord, reason string, cause error) error {
	h.log.WarnContext(ctx, "call_agent_tool failed", "delegation_id", rec.ID, "trace_id", rec.TraceID, "reason", reason, "err", cause)
	if _, err := h.store.FailDelegation(ctx, rec.ID, reason); err != nil {
		return err
	}
	return nil
}

func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// relay sends one tools/call to the target's endpoint over streamable
// HTTP with the delegation's EATP headers, signed per request when the
// tenant has a trust key, and cred as a bearer token. Every request is
// checked against the allow-list again, redirects are refused, no proxy
// is used, and the whole exchange is bounded by the A2A timeout.
func (h *Handlers) relay(ctx context.Context, u *url.URL, p prepared, cred, tool string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(ctx, h.a2aTimeout)
	defer cancel()
	base := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: h.a2aTimeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
	}
	defer base.CloseIdleConnections()
	hc := &http.Client{
		Transport:     &eatpTransport{base: base, headers: p.headers, key: p.key, credential: cred, allowed: h.hostAllowed},
		Timeout:       h.a2aTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tr, err := transport.NewStreamableHTTP(u.String(), transport.WithHTTPBasicClient(hc), transport.WithHTTPLogger(h.log))
	if err != nil {
		return nil, err
	}
	c := client.NewClient(tr)
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	initReq := mcp.InitializeRequest{}
	initReq.Params.ClientInfo = mcp.Implementation{Name: "nexus-mcp", Version: "call_agent_tool"}
	if _, err := c.Initialize(ctx, initReq); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	if args != nil {
		req.Params.Arguments = args
	}
	return c.CallTool(ctx, req)
}

// eatpTransport adds the EATP headers, the signature and the outbound
// credential to every request of one call_agent_tool exchange.
type eatpTransport struct {
	base       http.RoundTripper
	headers    http.Header
	key        *delegation.TrustKey
	credential string
	allowed    func(*url.URL) bool
}

func (t *eatpTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.allowed(req.URL) {
		return nil, errHostNotAllowed
	}
	r := req.Clone(req.Context())
	for k, v := range t.headers {
		r.Header[k] = append([]string(nil), v...)
	}
	if t.key != nil {
		sig, err := delegation.Sign(*t.key, r.Method, r.URL.Path, r.Header)
		if err != nil {
			return nil, err
		}
		r.Header.Set(delegation.HeaderSignature, sig)
	}
	if t.credential != "" {
		r.Header.Set("Authorization", "Bearer "+t.credential)
	}
	resp, err := t.base.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = &limitedBody{rc: resp.Body, left: maxA2AResponseBytes}
	}
	return resp, err
}

// limitedBody fails a response body that exceeds its limit.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("response from the target agent is too large")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
