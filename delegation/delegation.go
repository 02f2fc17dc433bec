// Package delegation owns the EATP (agent trust) rules of nexus-mcp: parsing
// and emitting the X-EATP-* headers, delegation chain checks, constraint
// tightening, request signatures, the trust middleware of the HTTP edge and
// the helpers of the tamper-evident audit chain.
//
// The package is pure: it imports only tenancy and the standard library. The
// storage it needs is declared here as the small Store interface, which
// memory implements; it never imports memory, tools, mcp-go or database/sql.
package delegation

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Sentinel errors callers check with errors.Is. Every refusal this package
// returns wraps one of them; IsDenial reports whether an error is a refusal
// (as opposed to an internal failure such as a storage error).
var (
	// ErrInvalidChain means the delegation chain or depth breaks a chain rule.
	ErrInvalidChain = errors.New("invalid delegation chain")
	// ErrSelfCall means an agent tried to delegate to itself.
	ErrSelfCall = errors.New("an agent cannot call itself")
	// ErrWidening means requested constraints are wider than the parent's.
	ErrWidening = errors.New("constraints widen the parent")
	// ErrBadSignature means X-EATP-Signature is missing or does not verify.
	ErrBadSignature = errors.New("bad EATP signature")
	// ErrNotFound means the named delegation (or trust object) does not
	// exist for the tenant. Another tenant's object is ErrNotFound too.
	ErrNotFound = errors.New("not found")
	// ErrExpired means a delegation or trust session has expired.
	ErrExpired = errors.New("expired")
	// ErrRevoked means a delegation or trust session was revoked.
	ErrRevoked = errors.New("revoked")
	// ErrUntrusted means the trust context failed verification for any other
	// reason (unknown agent, inactive session, foreign human origin, ...).
	ErrUntrusted = errors.New("untrusted")
)

// IsDenial reports whether err is a trust refusal (it wraps one of the
// package's sentinels) rather than an internal failure. The middleware maps
// refusals to 403 and everything else to 503.
func IsDenial(err error) bool {
	for _, s := range []error{ErrInvalidChain, ErrSelfCall, ErrWidening, ErrBadSignature,
		ErrNotFound, ErrExpired, ErrRevoked, ErrUntrusted} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Delegation statuses as stored and reported by get_delegation_history.
const (
	StatusPrepared  = "prepared"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusExpired   = "expired"
	StatusRevoked   = "revoked"
)

// Delegation is one persisted agent-to-agent delegation: CallingAgent lets
// TargetAgent run ToolName under Constraints, on behalf of HumanOrigin,
// until ExpiresAt. ParentID names the delegation it was prepared under.
type Delegation struct {
	ID           string
	TraceID      string
	CallingAgent string
	TargetAgent  string
	ToolName     string
	Constraints  map[string]any
	HumanOrigin  map[string]any
	CreatedAt    time.Time
	ExpiresAt    time.Time // zero: never
	RevokedAt    time.Time // zero: not revoked
	Status       string
	ParentID     string
}

// Usable returns nil when d may still be acted on at now: not revoked, not
// expired and not already completed or failed. Otherwise it returns an error
// wrapping ErrRevoked, ErrExpired or ErrUntrusted.
func (d Delegation) Usable(now time.Time) error {
	switch {
	case !d.RevokedAt.IsZero() || d.Status == StatusRevoked:
		return fmt.Errorf("delegation: %w", ErrRevoked)
	case d.Status == StatusExpired || (!d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt)):
		return fmt.Errorf("delegation: %w", ErrExpired)
	case d.Status == StatusCompleted || d.Status == StatusFailed:
		return fmt.Errorf("delegation already completed: %w", ErrUntrusted)
	}
	return nil
}

// NewTraceID returns a fresh trace id of the form eatp-mcp-<16 hex digits>.
func NewTraceID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new trace id: %w", err)
	}
	return "eatp-mcp-" + hex.EncodeToString(b[:]), nil
}

// ResponseSummary is what verify_agent_response records about a response.
type ResponseSummary struct {
	// HasError is true when the response has an "error" member or
	// "isError": true.
	HasError bool
	// Keys are the response's top-level keys, sorted; nil when the response
	// is not a JSON object.
	Keys []string
	// Hash is the hex SHA-256 of the response's canonical JSON.
	Hash string
}

// SummarizeResponse inspects a target agent's response (any JSON value).
func SummarizeResponse(resp any) (ResponseSummary, error) {
	canon, err := CanonicalJSON(resp)
	if err != nil {
		return ResponseSummary{}, fmt.Errorf("summarize response: %w", err)
	}
	s := ResponseSummary{Hash: sha256Hex(canon)}
	v, err := decodeUseNumber(canon)
	if err != nil {
		return ResponseSummary{}, fmt.Errorf("summarize response: %w", err)
	}
	if m, ok := v.(map[string]any); ok {
		s.Keys = make([]string, 0, len(m))
		for k := range m {
			s.Keys = append(s.Keys, k)
		}
		sort.Strings(s.Keys)
		if e, ok := m["error"]; ok && e != nil {
			s.HasError = true
		}
		if b, ok := m["isError"].(bool); ok && b {
			s.HasError = true
		}
	}
	return s, nil
}
