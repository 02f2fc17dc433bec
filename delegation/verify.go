package delegation

import (
	"context"
	"errors"
	"fmt"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Store is the storage trust verification needs. Every method is scoped to
// the tenant of the RequestContext in ctx and fails closed without one;
// another tenant's objects do not exist. memory implements it.
type Store interface {
	// AgentVisible reports whether agentID is a registered agent of the tenant.
	AgentVisible(ctx context.Context, agentID string) (bool, error)
	// DelegationByTrace returns the delegation traceID names (the newest
	// when several share it), or an error wrapping ErrNotFound.
	DelegationByTrace(ctx context.Context, traceID string) (Delegation, error)
	// TrustSessionActive reports whether sessionID is a trust session of the
	// tenant that is neither expired nor revoked.
	TrustSessionActive(ctx context.Context, sessionID string) (bool, error)
	// TenantTrustKey returns the tenant's trust key, and false when the
	// tenant has none (then requests need no signature).
	TenantTrustKey(ctx context.Context) (TrustKey, bool, error)
	// Membership (for CheckHumanOrigin) is a user's role in a tenant.
	tenancy.MembershipLookup
}

// Verifier checks a request's trust context for the middleware. It returns
// nil to accept, an error for which IsDenial is true to refuse (403), and
// any other error for an internal failure (503).
type Verifier func(ctx context.Context, tc TrustContext, method, path string) error

// NewVerifier returns the Verifier that runs Verify against store. The tool
// name is not known at the HTTP edge; tools can call Verify with it.
func NewVerifier(store Store, policy ChainPolicy) Verifier {
	return func(ctx context.Context, tc TrustContext, method, path string) error {
		return Verify(ctx, store, tc, policy, method, path, "")
	}
}

// Verify checks tc for the tenant in ctx, in this order:
//
//  1. trace id and agent id are present (ErrUntrusted);
//  2. CheckChain with policy (ErrInvalidChain, ErrSelfCall);
//  3. a human origin passes CheckHumanOrigin: it names no other tenant,
//     and no other user unless the caller is an admin (ErrUntrusted);
//  4. when the tenant has a trust key, tc.Signature verifies over method,
//     path and tc.Raw (ErrBadSignature);
//  5. the agent and every chain entry are registered agents visible to the
//     tenant (ErrUntrusted);
//  6. a session id names an active trust session (ErrUntrusted);
//  7. a trace id that names a delegation matches it: its target is
//     tc.AgentID, its caller is the last chain entry when a chain is given,
//     its tool is toolName when both are known, and it is Usable at
//     policy's now (ErrUntrusted, ErrExpired, ErrRevoked).
//
// Refusals wrap the sentinels above (IsDenial); storage failures and a ctx
// without tenant are returned wrapped and are not denials. Messages never
// contain values from the request.
func Verify(ctx context.Context, store Store, tc TrustContext, policy ChainPolicy, method, path, toolName string) error {
	untrusted := func(reason string) error { return fmt.Errorf("%w: %s", ErrUntrusted, reason) }
	if _, err := tenancy.TenantFromContext(ctx); err != nil {
		return fmt.Errorf("verify trust: %w", err)
	}
	if !tc.Valid() {
		return untrusted("trace id and agent id are required")
	}
	if err := CheckChain(tc, policy); err != nil {
		return err
	}
	if len(tc.HumanOrigin) > 0 {
		if _, err := CheckHumanOrigin(ctx, tc.HumanOrigin, store); err != nil {
			return err
		}
	}

	key, hasKey, err := store.TenantTrustKey(ctx)
	if err != nil {
		return fmt.Errorf("verify trust: trust key: %w", err)
	}
	if hasKey {
		if err := VerifySignature(key, method, path, headerFromRaw(tc.Raw), tc.Signature); err != nil {
			return err
		}
	}

	agents := append([]string{tc.AgentID}, tc.Chain...)
	for i, a := range agents {
		ok, err := store.AgentVisible(ctx, a)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("verify trust: agent: %w", err)
		}
		if !ok || err != nil {
			if i == 0 {
				return untrusted("agent is not registered")
			}
			return untrusted("chain names an agent that is not registered")
		}
	}

	if tc.TrustSessionID != "" {
		ok, err := store.TrustSessionActive(ctx, tc.TrustSessionID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("verify trust: session: %w", err)
		}
		if !ok || err != nil {
			return untrusted("trust session is not active")
		}
	}

	d, err := store.DelegationByTrace(ctx, tc.TraceID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil // the trace names no delegation
	case err != nil:
		return fmt.Errorf("verify trust: delegation: %w", err)
	}
	if d.TargetAgent != tc.AgentID {
		return untrusted("delegation was granted to another agent")
	}
	if n := len(tc.Chain); n > 0 && tc.Chain[n-1] != d.CallingAgent {
		return untrusted("delegation was granted by another agent")
	}
	if toolName != "" && d.ToolName != "" && toolName != d.ToolName {
		return untrusted("delegation does not cover this tool")
	}
	return d.Usable(policy.now())
}
