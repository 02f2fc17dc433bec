package tenancy

import (
	"strings"
)

// Scope is one OAuth scope of nexus-mcp. Every tool needs exactly one
// (the tools package keeps the table); a credential carries a ScopeSet.
type Scope uint8

// The scopes, as they appear in tokens and in `keys create --scopes`.
const (
	ScopeRead     Scope = 1 << iota // nexus:read: tools that only read
	ScopeWrite                      // nexus:write: tools that change the graph, messages, agents, memory
	ScopeDelegate                   // nexus:delegate: EATP delegations and trust sessions
	ScopeAdmin                      // nexus:admin: the tenant's audit log
)

// scopeNames are the wire names, in the order they are listed.
var scopeNames = []struct {
	s    Scope
	name string
}{
	{ScopeRead, "nexus:read"},
	{ScopeWrite, "nexus:write"},
	{ScopeDelegate, "nexus:delegate"},
	{ScopeAdmin, "nexus:admin"},
}

// String is the wire name of s ("" for an unknown value).
func (s Scope) String() string {
	for _, n := range scopeNames {
		if n.s == s {
			return n.name
		}
	}
	return ""
}

// ScopeSet is a set of scopes. Its zero value is the empty set.
type ScopeSet uint8

// AllScopes holds every scope: API keys created without --scopes, the
// legacy key, stdio and JWTs of the --jwt-* mode carry it.
const AllScopes = ScopeSet(ScopeRead | ScopeWrite | ScopeDelegate | ScopeAdmin)

// Has reports whether set holds s.
func (set ScopeSet) Has(s Scope) bool { return s != 0 && ScopeSet(s)&set == ScopeSet(s) }

// Names lists the wire names of set in the canonical order.
func (set ScopeSet) Names() []string {
	var out []string
	for _, n := range scopeNames {
		if set.Has(n.s) {
			out = append(out, n.name)
		}
	}
	return out
}

// String is the space-separated list of set's names (the OAuth "scope"
// syntax of RFC 6749 section 3.3).
func (set ScopeSet) String() string { return strings.Join(set.Names(), " ") }

// ParseScope returns the scope named name.
func ParseScope(name string) (Scope, bool) {
	for _, n := range scopeNames {
		if n.name == name {
			return n.s, true
		}
	}
	return 0, false
}

// ParseScopes reads the scopes of a token's "scope" claim or of
// `keys create --scopes`: names separated by spaces or commas. Names that
// are not nexus-mcp scopes are returned in unknown (a token may carry the
// scopes of other resources; the CLI refuses them).
func ParseScopes(s string) (set ScopeSet, unknown []string) {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		if sc, ok := ParseScope(f); ok {
			set |= ScopeSet(sc)
		} else {
			unknown = append(unknown, f)
		}
	}
	return set, unknown
}
