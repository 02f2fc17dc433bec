package memory

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"strings"

	"github.com/nexus-mcp/nexus-mcp/delegation"
)

// Trust keys sign and verify X-EATP-Signature (one key per tenant), and
// agent credentials are what call_agent_tool presents to an agent's
// endpoint. Both are secrets: they are stored as given (encryption at rest
// is out of scope) and never returned by a tool or printed by the CLI,
// except a trust key's material once, at creation, for installing it on
// the peer that must verify or sign with it.

var _ delegation.Store = (*Store)(nil)

// TenantTrustKey implements delegation.Store: the caller's tenant's trust
// key, and false when it has none.
func (s *Store) TenantTrustKey(ctx context.Context) (delegation.TrustKey, bool, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return delegation.TrustKey{}, false, err
	}
	var (
		k                 delegation.TrustKey
		secret, pub, priv []byte
		found             bool
	)
	err = s.read(ctx, func(t *txn) error {
		err := t.queryRow(`SELECT id, algorithm, secret, public_key, private_key FROM trust_keys WHERE tenant_id = ?`, tenant).
			Scan(&k.ID, &k.Algorithm, &secret, &pub, &priv)
		if err == sql.ErrNoRows {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return delegation.TrustKey{}, false, err
	}
	k.Secret = secret
	if len(pub) > 0 {
		k.PublicKey = ed25519.PublicKey(pub)
	}
	if len(priv) > 0 {
		k.PrivateKey = ed25519.PrivateKey(priv)
	}
	return k, true, nil
}

// CreateTrustKey generates a key for tenantID with alg
// (delegation.AlgHMACSHA256 or AlgEd25519) and stores it, replacing the
// tenant's previous key. It returns the key, material included, so the
// caller can show it once.
func (s *Store) CreateTrustKey(ctx context.Context, tenantID, alg string) (delegation.TrustKey, error) {
	alg = strings.ToLower(strings.TrimSpace(alg))
	if alg != delegation.AlgHMACSHA256 && alg != delegation.AlgEd25519 {
		return delegation.TrustKey{}, invalidf("unknown trust key algorithm %q: use %s or %s", alg, delegation.AlgHMACSHA256, delegation.AlgEd25519)
	}
	k, err := delegation.NewTrustKey(alg)
	if err != nil {
		return delegation.TrustKey{}, err
	}
	if err := s.ImportTrustKey(ctx, tenantID, k); err != nil {
		return delegation.TrustKey{}, err
	}
	return k, nil
}

// ImportTrustKey stores k as tenantID's trust key, replacing any previous
// one: an HMAC key needs a secret of at least 32 bytes; an Ed25519 key a
// private key (to sign and verify) or a public key (to verify only).
func (s *Store) ImportTrustKey(ctx context.Context, tenantID string, k delegation.TrustKey) error {
	var secret, pub, priv []byte
	switch k.Algorithm {
	case delegation.AlgHMACSHA256:
		if len(k.Secret) < delegation.MinHMACSecretBytes {
			return invalidf("HMAC trust key must have at least %d bytes", delegation.MinHMACSecretBytes)
		}
		secret = k.Secret
	case delegation.AlgEd25519:
		switch {
		case len(k.PrivateKey) == ed25519.PrivateKeySize:
			priv = k.PrivateKey
			pub = k.PrivateKey.Public().(ed25519.PublicKey)
		case len(k.PublicKey) == ed25519.PublicKeySize:
			pub = k.PublicKey
		default:
			return invalidf("Ed25519 trust key needs a 64-byte private key or a 32-byte public key")
		}
	default:
		return invalidf("unknown trust key algorithm %q", k.Algorithm)
	}
	if k.ID == "" {
		k.ID = NewID("tk-")
	}
	return s.write(ctx, func(t *txn) error {
		if err := tenantMustExist(t, tenantID); err != nil {
			return err
		}
		t.audit.set("trust_key.set", "", detailJSON(map[string]any{"key_id": k.ID, "algorithm": k.Algorithm}))
		_, err := t.exec(`INSERT INTO trust_keys (tenant_id, id, algorithm, secret, public_key, private_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id) DO UPDATE SET id = excluded.id, algorithm = excluded.algorithm, secret = excluded.secret,
				public_key = excluded.public_key, private_key = excluded.private_key, created_at = excluded.created_at`,
			tenantID, k.ID, k.Algorithm, secret, pub, priv, t.now)
		return err
	})
}

// SetAgentCredential stores the credential call_agent_tool presents (as a
// bearer token) when tenantID calls agentID's endpoint, replacing any
// previous one. The credential is never returned by a tool or logged.
func (s *Store) SetAgentCredential(ctx context.Context, tenantID, agentID, credential string) error {
	if strings.TrimSpace(agentID) == "" {
		return invalidf("agent must not be empty")
	}
	if credential == "" || strings.ContainsAny(credential, "\r\n\x00") {
		return invalidf("credential must be one non-empty line")
	}
	return s.write(ctx, func(t *txn) error {
		if err := tenantMustExist(t, tenantID); err != nil {
			return err
		}
		t.audit.set("agent_credential.set", "", detailJSON(map[string]any{"agent_id": agentID}))
		_, err := t.exec(`INSERT INTO agent_credentials (tenant_id, agent_id, credential, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, agent_id) DO UPDATE SET credential = excluded.credential, updated_at = excluded.updated_at`,
			tenantID, agentID, credential, t.now, t.now)
		return err
	})
}

// AgentCredential returns the credential stored for calling agentID from
// the caller's tenant, and false when there is none.
func (s *Store) AgentCredential(ctx context.Context, agentID string) (string, bool, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return "", false, err
	}
	var cred string
	err = s.read(ctx, func(t *txn) error {
		return t.queryRow(`SELECT credential FROM agent_credentials WHERE tenant_id = ? AND agent_id = ?`, tenant, agentID).Scan(&cred)
	})
	if err == sql.ErrNoRows {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return cred, true, nil
}

func tenantMustExist(t *txn, tenantID string) error {
	var n int
	if err := t.queryRow(`SELECT count(*) FROM tenants WHERE id = ?`, tenantID).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return errNotFound(FieldTenant, tenantID)
	}
	return nil
}
