package tools

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
)

// verify_agent_response, and verify, the step call_agent_tool shares with
// it: record a target agent's response to a delegation.

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
