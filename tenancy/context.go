// Package tenancy owns identity: the RequestContext every handler receives,
// the context helpers that carry it, credential verification (API keys, JWT)
// and the HTTP middleware and stdio context func that put it into ctx.
//
// tenancy imports only golang-jwt, golang.org/x/time/rate and the standard
// library; it never imports memory, tools or mcp-go. Storage it needs is
// declared here as small interfaces that memory implements.
package tenancy

import (
	"context"
	"errors"
	"regexp"
)

// Sentinel errors callers check with errors.Is.
var (
	// ErrUnauthenticated means no valid credential was presented.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the credential is valid but may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrNoTenant means a context carries no RequestContext with a tenant.
	ErrNoTenant = errors.New("no tenant in context")
)

// AuthMethod names how a RequestContext was established.
type AuthMethod string

// The ways a request can be authenticated.
const (
	AuthLocal     AuthMethod = "local"      // stdio without a key: single-user local mode
	AuthAPIKey    AuthMethod = "api_key"    // a stored API key (stdio env or HTTP)
	AuthJWT       AuthMethod = "jwt"        // a verified JWT bearer token
	AuthLegacyKey AuthMethod = "legacy_key" // the single legacy deployment key
)

// DefaultTenant is the tenant of local single-user mode and of the legacy key.
const DefaultTenant = "default"

// RequestContext is the verified identity of one request. It is built only
// at the edge (HTTP auth middleware, stdio start-up) from the authenticated
// transport; nothing a client sends in tool arguments can change it.
type RequestContext struct {
	TenantID   string
	UserID     string // empty when the credential names no user
	APIKeyID   string // empty unless AuthMethod is AuthAPIKey
	AgentID    string // the agent named by the credential, if any
	AuthMethod AuthMethod
	Env        string // the credential's environment, if bound to one
	Timezone   string // informational only (X-User-Timezone); never used for access
	Role       string // membership role in TenantID ("member", "admin"), or "" for the credential's own tenant
	// Scopes are what the credential may do (see Scope); the zero value
	// allows nothing. Tools check it on every call.
	Scopes ScopeSet
	// DevOverride is true when UserID came from the X-User-Id dev header.
	DevOverride bool
	// HomeTenant is the credential's own tenant when X-Tenant-Id switched
	// TenantID to another; "" means TenantID is the credential's tenant.
	HomeTenant string
	// Issuer is the "iss" claim of a JWT credential, the authorization
	// server of an OAuth access token (whose UserID also names it, see
	// OAuthUserID), and "" for other kinds. A JWT membership names
	// (Issuer, UserID).
	Issuer string
	// Trust is the EATP trust context of the request (a
	// delegation.TrustContext), when one was presented; set it with
	// delegation.NewContext and read it with delegation.Of, never by a type
	// assertion of one's own.
	Trust any
}

type ctxKey struct{}

var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidTenantID reports whether id is an acceptable tenant id: 1–64
// characters of letters, digits, '.', '_' and '-', starting alphanumeric.
func ValidTenantID(id string) bool { return tenantIDPattern.MatchString(id) }

// NewContext returns a copy of ctx carrying rc.
func NewContext(ctx context.Context, rc RequestContext) context.Context {
	return context.WithValue(ctx, ctxKey{}, rc)
}

// FromContext returns the RequestContext in ctx, if any.
func FromContext(ctx context.Context) (RequestContext, bool) {
	rc, ok := ctx.Value(ctxKey{}).(RequestContext)
	return rc, ok
}

// TenantFromContext returns the tenant of ctx, or ErrNoTenant when ctx
// carries no RequestContext or an empty tenant. Storage calls it on every
// operation and fails closed on the error.
func TenantFromContext(ctx context.Context) (string, error) {
	rc, ok := FromContext(ctx)
	if !ok || rc.TenantID == "" {
		return "", ErrNoTenant
	}
	return rc.TenantID, nil
}

// Principal kinds: where a user id comes from.
const (
	PrincipalTenant = "tenant" // an API-key user, named by the key's tenant
	PrincipalIssuer = "issuer" // a JWT user, named by the token's issuer
)

// Principal is a user id with its origin: (home tenant, user) for an
// API-key user, (issuer, sub) for a JWT user. Memberships name principals,
// so the same user id coming from elsewhere is someone else.
type Principal struct {
	Kind   string // PrincipalTenant or PrincipalIssuer
	Source string // the tenant id or the issuer
	UserID string
}

// String renders p as kind:source/user.
func (p Principal) String() string { return p.Kind + ":" + p.Source + "/" + p.UserID }

// Valid reports whether p names a user and its origin.
func (p Principal) Valid() bool {
	return p.UserID != "" && p.Source != "" && (p.Kind == PrincipalTenant || p.Kind == PrincipalIssuer)
}

// Principal returns the principal rc's credential authenticates, or a
// zero (invalid) Principal when it names no user or no origin (legacy key,
// local mode, a JWT without "iss").
func (rc RequestContext) Principal() Principal {
	if rc.UserID == "" {
		return Principal{}
	}
	switch rc.AuthMethod {
	case AuthJWT:
		if rc.Issuer == "" {
			return Principal{}
		}
		return Principal{Kind: PrincipalIssuer, Source: rc.Issuer, UserID: rc.UserID}
	case AuthAPIKey:
		home := rc.HomeTenant
		if home == "" {
			home = rc.TenantID
		}
		return Principal{Kind: PrincipalTenant, Source: home, UserID: rc.UserID}
	}
	return Principal{}
}
