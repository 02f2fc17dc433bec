package tenancy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"time"
)

// APIKeyPrefix starts every key nexus-mcp issues.
const APIKeyPrefix = "nxk_"

// apiKeySecretBytes is the number of random bytes in a key.
const apiKeySecretBytes = 32

// NewAPIKey returns a fresh key: APIKeyPrefix followed by 32 random bytes,
// base64url without padding. The key is shown once; only HashAPIKey(key) is stored.
func NewAPIKey() (string, error) {
	b := make([]byte, apiKeySecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashAPIKey returns the SHA-256 of key, the only form in which keys are stored.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// LooksLikeAPIKey reports whether s has the shape of a key nexus-mcp issues.
// It is a cheap pre-check; it proves nothing about validity.
func LooksLikeAPIKey(s string) bool {
	const n = len(APIKeyPrefix) + 43 // base64url of 32 bytes without padding
	return len(s) == n && strings.HasPrefix(s, APIKeyPrefix)
}

// StoredKey is what storage knows about one API key.
type StoredKey struct {
	ID        string
	TenantID  string
	UserID    string
	AgentID   string
	Env       string
	Hash      []byte
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: not revoked
	// Scopes are what the key may do (`keys create --scopes`; AllScopes
	// unless created with fewer).
	Scopes ScopeSet
	// Tenant is the status of the key's tenant, read with the key, so
	// that a request on the key's own tenant needs no second read.
	Tenant TenantStatus
}

// KeyLookup finds a stored key by the SHA-256 hash of the presented key.
// It returns an error wrapping ErrUnauthenticated when none matches.
type KeyLookup interface {
	APIKeyByHash(ctx context.Context, hash []byte) (StoredKey, error)
}

// VerifyAPIKey checks key against storage: hash lookup, constant-time compare
// of the stored hash, revocation, expiry and the tenant's kill switch, and
// returns the identity with the status of its tenant. Every failure that
// is the caller's fault returns ErrUnauthenticated (a disabled tenant
// returns ErrForbidden) without saying which check failed.
func VerifyAPIKey(ctx context.Context, keys KeyLookup, key string, now time.Time) (RequestContext, TenantStatus, error) {
	if !LooksLikeAPIKey(key) {
		return RequestContext{}, TenantStatus{}, ErrUnauthenticated
	}
	hash := HashAPIKey(key)
	sk, err := keys.APIKeyByHash(ctx, hash)
	if err != nil {
		return RequestContext{}, TenantStatus{}, err
	}
	if subtle.ConstantTimeCompare(sk.Hash, hash) != 1 {
		return RequestContext{}, TenantStatus{}, ErrUnauthenticated
	}
	if !sk.RevokedAt.IsZero() || (!sk.ExpiresAt.IsZero() && !now.Before(sk.ExpiresAt)) {
		return RequestContext{}, TenantStatus{}, ErrUnauthenticated
	}
	if sk.Tenant.Disabled {
		return RequestContext{}, TenantStatus{}, ErrForbidden
	}
	return RequestContext{
		TenantID:   sk.TenantID,
		UserID:     sk.UserID,
		APIKeyID:   sk.ID,
		AgentID:    sk.AgentID,
		Env:        sk.Env,
		AuthMethod: AuthAPIKey,
		Scopes:     sk.Scopes,
	}, sk.Tenant, nil
}

// Recheck verifies again the credential of a long-lived connection whose
// identity rc was established once (stdio): with key, the key must still
// be valid (not revoked, not expired) and still be rc's key, and its tenant
// enabled; without key (local mode), rc's tenant must not be disabled.
// It returns an error wrapping ErrUnauthenticated or ErrForbidden, or a
// storage error.
func Recheck(ctx context.Context, keys KeyLookup, tenants TenantLookup, key string, rc RequestContext, now time.Time) error {
	if key == "" {
		st, err := tenants.TenantStatus(ctx, rc.TenantID)
		if err != nil {
			return err
		}
		if st.Disabled {
			return ErrForbidden
		}
		return nil
	}
	got, _, err := VerifyAPIKey(ctx, keys, key, now)
	if err != nil {
		return err
	}
	if got.APIKeyID != rc.APIKeyID || got.TenantID != rc.TenantID {
		return ErrUnauthenticated
	}
	return nil
}
