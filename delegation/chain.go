package delegation

import (
	"fmt"
	"time"
)

// DefaultMaxDepth is the delegation depth allowed when ChainPolicy.MaxDepth
// is not set (--eatp-max-depth).
const DefaultMaxDepth = 8

// ChainPolicy holds the limits of delegation chains and the clock of
// verification.
type ChainPolicy struct {
	// MaxDepth bounds the depth and the chain length; 0 means DefaultMaxDepth.
	MaxDepth int
	// Now is the clock used for expiry checks; nil means time.Now.
	Now func() time.Time
}

func (p ChainPolicy) maxDepth() int {
	if p.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return p.MaxDepth
}

func (p ChainPolicy) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// CheckChain applies the chain rules to tc and returns an error wrapping
// ErrInvalidChain (and also ErrSelfCall for a self-call) naming the rule:
//
//   - the depth is not negative and at most MaxDepth;
//   - the chain has at most MaxDepth entries, none empty;
//   - the depth equals the chain length when both are given;
//   - no agent appears twice in the chain;
//   - the acting agent (tc.AgentID) is not in the chain: as its last entry
//     (the immediate caller) that is a self-call, elsewhere a loop.
//
// Error messages never contain ids.
func CheckChain(tc TrustContext, policy ChainPolicy) error {
	limit := policy.maxDepth()
	invalid := func(reason string) error {
		return fmt.Errorf("%w: %s", ErrInvalidChain, reason)
	}
	if tc.HasDepth {
		if tc.Depth < 0 {
			return invalid("negative depth")
		}
		if tc.Depth > limit {
			return invalid("depth exceeds the maximum")
		}
	}
	if len(tc.Chain) > limit {
		return invalid("chain longer than the maximum depth")
	}
	if tc.HasDepth && tc.Chain != nil && tc.Depth != len(tc.Chain) {
		return invalid("depth does not match the chain length")
	}
	seen := make(map[string]bool, len(tc.Chain))
	for _, a := range tc.Chain {
		if a == "" {
			return invalid("empty chain entry")
		}
		if seen[a] {
			return invalid("an agent appears twice in the chain")
		}
		seen[a] = true
	}
	if n := len(tc.Chain); n > 0 && tc.AgentID != "" {
		if err := CheckSelfCall(tc.Chain[n-1], tc.AgentID); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidChain, err)
		}
		if seen[tc.AgentID] {
			return invalid("the acting agent already appears in the chain (loop)")
		}
	}
	return nil
}

// CheckSelfCall returns ErrSelfCall when caller and target are both known
// and the same agent.
func CheckSelfCall(caller, target string) error {
	if caller != "" && caller == target {
		return ErrSelfCall
	}
	return nil
}
