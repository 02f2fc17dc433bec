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
)

// call_agent_tool: prepare a delegation, relay one tools/call to the
// target agent's endpoint with the signed EATP headers, and verify and
// record the response, ending the delegation whatever happens.

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
