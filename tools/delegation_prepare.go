package tools

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// prepare_agent_call, and prepare, the step call_agent_tool shares with
// it: validate a delegated call, work out what it inherits, record it and
// return the trust context to forward.

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
	ttl, err := checkPrepareInput(in)
	if err != nil {
		return prepared{}, err
	}
	tc, hasTC := delegation.FromContext(ctx)
	if err := h.checkCallingAgent(ctx, in.CallingAgent, tc, hasTC); err != nil {
		return prepared{}, err
	}
	parent, err := h.parentDelegation(ctx, in.CallingAgent, tc, hasTC)
	if err != nil {
		return prepared{}, err
	}
	inh, err := h.inherit(ctx, parent, tc, hasTC)
	if err != nil {
		return prepared{}, err
	}
	constraints, err := delegation.Tighten(inh.constraints, in.Constraints)
	if err != nil {
		return prepared{}, err
	}
	origin, err := h.delegatedOrigin(ctx, in.HumanOrigin, inh.origin)
	if err != nil {
		return prepared{}, err
	}
	out, err := h.forwardedContext(in, inh.chain, constraints, origin, tc.TrustSessionID)
	if err != nil {
		return prepared{}, err
	}
	nd := memory.NewDelegation{TraceID: out.TraceID, CallingAgent: in.CallingAgent, TargetAgent: in.TargetAgent,
		ToolName: in.ToolName, MCPSessionID: mcpSessionID(ctx, in.MCPSessionID), TrustSessionID: tc.TrustSessionID,
		Chain: out.Chain, Constraints: constraints, HumanOrigin: origin, TTL: ttl}
	if parent != nil {
		nd.ParentID = parent.ID
	}
	rec, err := h.store.PrepareDelegation(ctx, nd)
	if err != nil {
		return prepared{}, err
	}
	return h.forwarding(ctx, rec, out)
}

// checkPrepareInput checks the arguments' syntax and returns the
// delegation's lifetime.
func checkPrepareInput(in prepareInput) (time.Duration, error) {
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"calling_agent", in.CallingAgent, true}, {"target_agent", in.TargetAgent, true}, {"tool_name", in.ToolName, true},
		{"mcp_session_id", in.MCPSessionID, false}, {"trace_id", in.TraceID, false}} {
		if err := checkID(f.name, f.v, f.required); err != nil {
			return 0, err
		}
	}
	if err := delegation.CheckSelfCall(in.CallingAgent, in.TargetAgent); err != nil {
		return 0, err
	}
	ttl := defaultDelegationTTL
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
		if in.TTLSeconds < 0 || ttl > maxDelegationTTL {
			return 0, argErrorf("ttl_seconds must be between 1 and %d", int(maxDelegationTTL/time.Second))
		}
	}
	return ttl, nil
}

// checkCallingAgent refuses a calling agent the tenant has not registered,
// or one other than the agent of the request's trust context.
func (h *Handlers) checkCallingAgent(ctx context.Context, agent string, tc delegation.TrustContext, hasTC bool) error {
	if _, err := h.store.AgentEndpoint(ctx, agent); err != nil {
		if errors.Is(err, memory.ErrNotFound) {
			return argErrorf("calling_agent %q is not an agent registered by your tenant", agent)
		}
		return err
	}
	if hasTC && tc.AgentID != "" && tc.AgentID != agent {
		return refusef(delegation.ErrUntrusted, "calling_agent must be the agent of your request's trust context (X-EATP-Agent-ID)")
	}
	return nil
}

// parentDelegation returns the delegation the request acts under: the one
// its trace id names, when it was granted to the calling agent. It is nil
// when there is none; an unusable one (expired, revoked, ended) refuses.
func (h *Handlers) parentDelegation(ctx context.Context, callingAgent string, tc delegation.TrustContext, hasTC bool) (*memory.DelegationRecord, error) {
	if !hasTC || tc.TraceID == "" {
		return nil, nil
	}
	d, err := h.store.DelegationRecordByTrace(ctx, tc.TraceID)
	switch {
	case err == nil && d.TargetAgent == callingAgent:
		if err := d.Usable(h.now()); err != nil {
			return nil, fmt.Errorf("the delegation you act under is not usable: %w", err)
		}
		return &d, nil
	case err != nil && !errors.Is(err, delegation.ErrNotFound):
		return nil, err
	}
	return nil, nil
}

// inheritance is what a new delegation inherits and may only narrow.
type inheritance struct {
	constraints map[string]any
	origin      map[string]any
	chain       []string
}

// inherit collects the parent's constraints, human origin and chain,
// narrowed by the request's own trust context; without a parent the
// request's chain and human origin are the inherited ones.
func (h *Handlers) inherit(ctx context.Context, parent *memory.DelegationRecord, tc delegation.TrustContext, hasTC bool) (inheritance, error) {
	inh := inheritance{constraints: map[string]any{}}
	if parent != nil {
		inh = inheritance{constraints: parent.Constraints, origin: parent.HumanOrigin, chain: parent.Chain}
	}
	if !hasTC || !tc.Valid() {
		return inh, nil
	}
	if tc.Constraints != nil {
		narrowed, err := delegation.Tighten(inh.constraints, tc.Constraints)
		if err != nil {
			return inheritance{}, fmt.Errorf("your request's X-EATP-Constraints: %w", err)
		}
		inh.constraints = narrowed
	}
	if len(inh.origin) == 0 && len(tc.HumanOrigin) > 0 {
		// From X-EATP-Human-Origin: the edge checked it already (and
		// dropped or refused a failing one); check again here so that
		// no path stores an origin the argument rule would refuse.
		if _, err := h.checkOrigin(ctx, tc.HumanOrigin); err != nil {
			return inheritance{}, fmt.Errorf("your request's X-EATP-Human-Origin: %w", err)
		}
		inh.origin = tc.HumanOrigin
	}
	if parent == nil {
		inh.chain = tc.Chain
	}
	return inh, nil
}

// delegatedOrigin returns the human origin of the new delegation: the
// inherited one, which the human_origin argument may repeat but not
// change; else the argument, checked; else the caller's own user.
func (h *Handlers) delegatedOrigin(ctx context.Context, requested, inherited map[string]any) (map[string]any, error) {
	switch {
	case len(requested) > 0 && len(inherited) > 0:
		a, _ := delegation.CanonicalJSON(requested)
		b, _ := delegation.CanonicalJSON(inherited)
		if string(a) != string(b) {
			return nil, refusef(delegation.ErrUntrusted, "human_origin cannot differ from the one you act under")
		}
	case len(requested) > 0:
		if _, err := h.checkOrigin(ctx, requested); err != nil {
			return nil, err
		}
		return requested, nil
	case len(inherited) == 0:
		if rc, _ := tenancy.FromContext(ctx); rc.UserID != "" {
			return map[string]any{"user_id": rc.UserID}, nil
		}
	}
	return inherited, nil
}

// forwardedContext builds the trust context the target receives: the
// chain extended by the calling agent (checked against the depth limit)
// and the trace id, a new one unless the arguments name one.
func (h *Handlers) forwardedContext(in prepareInput, chain []string, constraints, origin map[string]any, trustSessionID string) (delegation.TrustContext, error) {
	newChain := append(append([]string{}, chain...), in.CallingAgent)
	out := delegation.TrustContext{AgentID: in.TargetAgent, Chain: newChain, Depth: len(newChain), HasDepth: true,
		HumanOrigin: origin, TrustSessionID: trustSessionID}
	if len(constraints) > 0 {
		out.Constraints = constraints
	}
	if err := delegation.CheckChain(out, delegation.ChainPolicy{MaxDepth: h.maxDepth}); err != nil {
		return delegation.TrustContext{}, err
	}
	out.TraceID = in.TraceID
	if out.TraceID == "" {
		id, err := delegation.NewTraceID()
		if err != nil {
			return delegation.TrustContext{}, err
		}
		out.TraceID = id
	}
	return out, nil
}

// mcpSessionID returns the MCP session to record: the argument, else the
// session of the current request, if any.
func mcpSessionID(ctx context.Context, arg string) string {
	if arg != "" {
		return arg
	}
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		return cs.SessionID()
	}
	return ""
}

// forwarding returns the stored delegation with what forwarding tc to its
// agent needs: the EATP headers, the tenant's trust key to sign them, if
// any, and the agent's endpoint, when the tenant registered a parseable one.
func (h *Handlers) forwarding(ctx context.Context, rec memory.DelegationRecord, tc delegation.TrustContext) (prepared, error) {
	p := prepared{rec: rec, headers: delegation.ToHeaders(tc)}
	key, hasKey, err := h.store.TenantTrustKey(ctx)
	if err != nil {
		return prepared{}, err
	}
	if hasKey {
		p.key = &key
	}
	if ep, err := h.store.AgentEndpoint(ctx, tc.AgentID); err == nil && ep != "" {
		if u, err := url.Parse(ep); err == nil {
			p.endpoint = u
		}
	}
	return p, nil
}
