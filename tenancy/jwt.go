package tenancy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of JWTConfig.
const (
	DefaultJWTLeeway      = 30 * time.Second
	DefaultTenantClaim    = "tenant_id"
	FallbackTenantClaim   = "org_id"
	DefaultMaxTokenBytes  = 8 << 10
	DefaultJWTMaxTTL      = 24 * time.Hour
	MinHMACSecretBytes    = 32
	minRSAKeyBits         = 2048
	maxIdentityValueBytes = 256
)

// hmacAlgs, rsaAlgs, ... are the algorithms each key kind can verify.
var (
	hmacAlgs = []string{"HS256", "HS384", "HS512"}
	rsaAlgs  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecAlgs   = []string{"ES256", "ES384", "ES512"}
	edAlgs   = []string{"EdDSA"}
)

// JWTConfig configures a JWTVerifier. Exactly one key source must be set:
// HMACSecret, PublicKeysPEM or JWKSURL. Keys are never taken from a token
// header (jku, x5u, jwk and x5c are ignored).
type JWTConfig struct {
	// Algorithms is the explicit allow-list of "alg" values. Empty means
	// every algorithm the configured keys can verify (HS256/384/512 for a
	// secret; RS*, PS*, ES* by curve and EdDSA by key type for PEM keys; all
	// asymmetric algorithms for JWKS). "none" is never allowed, and an
	// algorithm the key source cannot verify is a configuration error.
	Algorithms []string
	// HMACSecret enables HS256/384/512. It must be at least 32 bytes.
	HMACSecret []byte
	// PublicKeysPEM holds PEM-encoded RSA (>= 2048 bits), ECDSA (P-256,
	// P-384, P-521) or Ed25519 public keys ("PUBLIC KEY" PKIX, "RSA PUBLIC
	// KEY" PKCS#1 or "CERTIFICATE"); one entry may hold several blocks.
	PublicKeysPEM [][]byte
	// PublicKeyIDs optionally names the kid of every key in the entry of
	// PublicKeysPEM with the same index ("" or missing: no kid). When any key
	// has a kid, a token whose kid matches no configured kid is rejected;
	// a token without kid is tried against every key of its algorithm.
	PublicKeyIDs []string
	// JWKSURL is fetched (https, or http to a loopback host) and cached.
	// Tokens must carry a kid. An unknown kid triggers a refresh, at most
	// once per JWKSMinRefresh; the set is also refreshed when older than
	// JWKSCacheTTL. On fetch failure the previous keys stay in use.
	JWKSURL string
	// HTTPClient fetches JWKSURL; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// JWKSMinRefresh bounds refetches (default 10 s); JWKSCacheTTL is the
	// age after which the set is refetched (default 1 h); JWKSTimeout bounds
	// one fetch (default 5 s); JWKSMaxBytes bounds the response (default 1 MiB).
	JWKSMinRefresh time.Duration
	JWKSCacheTTL   time.Duration
	JWKSTimeout    time.Duration
	JWKSMaxBytes   int64
	// Issuer, when set, is required in "iss" and must match exactly.
	Issuer string
	// Audience, when set, is required in "aud" (a string or an array
	// containing it).
	Audience string
	// Leeway is the clock skew allowed for exp, nbf and iat (default 30 s;
	// negative means none).
	Leeway time.Duration
	// TenantClaim names the claim carrying the tenant (default "tenant_id");
	// "org_id" is accepted when it is absent.
	TenantClaim string
	// MaxTokenBytes rejects longer tokens before parsing (default 8 KiB).
	MaxTokenBytes int
	// MaxTTL rejects tokens whose exp lies further than MaxTTL (+ Leeway) in
	// the future (default 24 h; negative disables the check).
	MaxTTL time.Duration
	// OAuth makes the verifier an OAuth resource server's (ResourceServer):
	// Issuer and Audience are required, the user is (issuer, sub) and the
	// scopes come from the token's "scope" claim (else "scp", a string or
	// an array). Without it every verified token carries AllScopes.
	OAuth bool
}

// JWTVerifier verifies bearer JWTs and turns them into a RequestContext.
// It is safe for concurrent use.
type JWTVerifier struct {
	algs        []string
	hmacSecret  []byte
	pemKeys     []namedKey
	pemHaveKIDs bool
	jwks        *jwksCache
	issuer      string
	audience    string
	leeway      time.Duration
	tenantClaim string
	maxBytes    int
	maxTTL      time.Duration
	oauth       bool
}

// namedKey is one verification key with its optional kid and, for JWKs,
// the algorithm it is pinned to.
type namedKey struct {
	kid string
	alg string // "" unless the JWK names one
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// NewJWTVerifier checks cfg and returns a verifier. Any weakness (short
// secret, small RSA key, unknown or mismatched algorithm, several key
// sources) is an error: the server must refuse to start.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	v := &JWTVerifier{
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		leeway:      cfg.Leeway,
		tenantClaim: cfg.TenantClaim,
		maxBytes:    cfg.MaxTokenBytes,
		maxTTL:      cfg.MaxTTL,
		oauth:       cfg.OAuth,
	}
	if v.oauth && (v.issuer == "" || v.audience == "") {
		return nil, errors.New("jwt config: an OAuth verifier needs an issuer and an audience")
	}
	if v.leeway == 0 {
		v.leeway = DefaultJWTLeeway
	} else if v.leeway < 0 {
		v.leeway = 0
	}
	if v.tenantClaim == "" {
		v.tenantClaim = DefaultTenantClaim
	}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}
	if v.maxTTL == 0 {
		v.maxTTL = DefaultJWTMaxTTL
	}

	sources := 0
	for _, set := range []bool{len(cfg.HMACSecret) > 0, len(cfg.PublicKeysPEM) > 0, cfg.JWKSURL != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, errors.New("jwt config: exactly one of HMAC secret, PEM public keys or JWKS URL must be set")
	}

	var possible []string // algorithms the key source can verify
	switch {
	case len(cfg.HMACSecret) > 0:
		if len(cfg.HMACSecret) < MinHMACSecretBytes {
			return nil, fmt.Errorf("jwt config: HMAC secret is %d bytes, need at least %d", len(cfg.HMACSecret), MinHMACSecretBytes)
		}
		v.hmacSecret = slices.Clone(cfg.HMACSecret)
		possible = hmacAlgs
	case len(cfg.PublicKeysPEM) > 0:
		if len(cfg.PublicKeyIDs) > len(cfg.PublicKeysPEM) {
			return nil, errors.New("jwt config: more key IDs than PEM entries")
		}
		for i, data := range cfg.PublicKeysPEM {
			kid := ""
			if i < len(cfg.PublicKeyIDs) {
				kid = cfg.PublicKeyIDs[i]
			}
			keys, err := parsePEMKeys(data)
			if err != nil {
				return nil, fmt.Errorf("jwt config: PEM entry %d: %w", i, err)
			}
			for _, k := range keys {
				v.pemKeys = append(v.pemKeys, namedKey{kid: kid, key: k})
				possible = appendNew(possible, algsForKey(k)...)
			}
			if kid != "" {
				v.pemHaveKIDs = true
			}
		}
	default:
		c, err := newJWKSCache(cfg)
		if err != nil {
			return nil, err
		}
		v.jwks = c
		possible = slices.Concat(rsaAlgs, ecAlgs, edAlgs)
	}

	if len(cfg.Algorithms) == 0 {
		v.algs = slices.Clone(possible)
	} else {
		for _, a := range cfg.Algorithms {
			if !slices.Contains(possible, a) {
				return nil, fmt.Errorf("jwt config: algorithm %q is not allowed with the configured keys (allowed: %s)", a, strings.Join(possible, ", "))
			}
			v.algs = appendNew(v.algs, a)
		}
	}
	return v, nil
}

// Algorithms returns the allow-list in use.
func (v *JWTVerifier) Algorithms() []string { return slices.Clone(v.algs) }

// Refresh fetches the JWKS now, regardless of the refresh rate bound; the
// composition root may call it at start-up to fail fast. Without a JWKS
// URL it does nothing.
func (v *JWTVerifier) Refresh(ctx context.Context) error {
	if v.jwks == nil {
		return nil
	}
	return v.jwks.refresh(ctx, time.Now(), true)
}

// Verify checks token at time now and returns its identity: tenant from the
// tenant claim (else "org_id"), user from "sub" (required), AuthMethod
// AuthJWT. Every failure wraps ErrUnauthenticated; the message carries the
// cause for logs and must not be sent to clients.
func (v *JWTVerifier) Verify(ctx context.Context, token string, now time.Time) (RequestContext, error) {
	if token == "" {
		return RequestContext{}, fmt.Errorf("verify jwt: empty token: %w", ErrUnauthenticated)
	}
	if len(token) > v.maxBytes {
		return RequestContext{}, fmt.Errorf("verify jwt: token of %d bytes exceeds %d: %w", len(token), v.maxBytes, ErrUnauthenticated)
	}
	if !LooksLikeJWT(token) {
		return RequestContext{}, fmt.Errorf("verify jwt: malformed token: %w", ErrUnauthenticated)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithStrictDecoding(),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		return v.key(ctx, t, now)
	})
	if err != nil {
		return RequestContext{}, fmt.Errorf("verify jwt: %w: %w", err, ErrUnauthenticated)
	}
	if !tok.Valid {
		return RequestContext{}, fmt.Errorf("verify jwt: token not valid: %w", ErrUnauthenticated)
	}
	if _, ok := tok.Header["crit"]; ok {
		// RFC 7515 4.1.11: we understand no extensions, so we must reject.
		return RequestContext{}, fmt.Errorf("verify jwt: crit header not supported: %w", ErrUnauthenticated)
	}
	if v.maxTTL > 0 {
		exp, err := claims.GetExpirationTime()
		if err != nil || exp == nil {
			return RequestContext{}, fmt.Errorf("verify jwt: bad exp: %w", ErrUnauthenticated)
		}
		if exp.Sub(now) > v.maxTTL+v.leeway {
			return RequestContext{}, fmt.Errorf("verify jwt: exp %s beyond max TTL %s: %w", exp.UTC().Format(time.RFC3339), v.maxTTL, ErrUnauthenticated)
		}
	}
	tenant, err := v.tenant(claims)
	if err != nil {
		return RequestContext{}, err
	}
	sub, err := claims.GetSubject()
	if err != nil || !validIdentityValue(sub) {
		return RequestContext{}, fmt.Errorf("verify jwt: missing or invalid sub: %w", ErrUnauthenticated)
	}
	// The issuer names where sub comes from (memberships name (issuer,
	// sub)); a token without a usable iss has no principal to be a member.
	iss, err := claims.GetIssuer()
	if err != nil || !validIdentityValue(iss) {
		iss = ""
	}
	if !v.oauth {
		return RequestContext{TenantID: tenant, UserID: sub, AuthMethod: AuthJWT, Issuer: iss, Scopes: AllScopes}, nil
	}
	user := OAuthUserID(v.issuer, sub)
	if !validIdentityValue(user) {
		return RequestContext{}, fmt.Errorf("verify jwt: sub too long: %w", ErrUnauthenticated)
	}
	scopes, err := tokenScopes(claims)
	if err != nil {
		return RequestContext{}, err
	}
	return RequestContext{TenantID: tenant, UserID: user, Issuer: v.issuer, AuthMethod: AuthJWT, Scopes: scopes}, nil
}

// OAuthUserID is the user of an OAuth access token: its sub qualified by
// its issuer ("sub@host/path", the issuer without scheme and final "/"),
// so that the same sub at two authorization servers is two users.
func OAuthUserID(issuer, sub string) string {
	_, rest, ok := strings.Cut(issuer, "://")
	if !ok {
		rest = issuer
	}
	return sub + "@" + strings.TrimSuffix(rest, "/")
}

// tokenScopes reads the nexus scopes of an access token: "scope", a
// space-separated string (RFC 8693, RFC 9068), else "scp" as a string or
// an array of strings (Entra ID, Okta). Other resources' scopes are
// ignored; a token with none of ours has the empty set (every tool call
// is then refused for scope, not for authentication). A claim of another
// type is an error.
func tokenScopes(claims jwt.MapClaims) (ScopeSet, error) {
	raw, ok := claims["scope"]
	if !ok {
		raw, ok = claims["scp"]
	}
	if !ok {
		return 0, nil
	}
	switch x := raw.(type) {
	case string:
		var set ScopeSet
		for _, f := range strings.Fields(x) {
			if sc, ok := ParseScope(f); ok {
				set |= ScopeSet(sc)
			}
		}
		return set, nil
	case []any:
		var set ScopeSet
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return 0, fmt.Errorf("verify jwt: scp holds a non-string: %w", ErrUnauthenticated)
			}
			if sc, ok := ParseScope(s); ok {
				set |= ScopeSet(sc)
			}
		}
		return set, nil
	}
	return 0, fmt.Errorf("verify jwt: scope claim is not a string: %w", ErrUnauthenticated)
}

// tenant reads the tenant claim, falling back to org_id when it is absent.
// A present claim that is not a valid non-empty string is an error, with no
// fallback.
func (v *JWTVerifier) tenant(claims jwt.MapClaims) (string, error) {
	for _, name := range []string{v.tenantClaim, FallbackTenantClaim} {
		raw, ok := claims[name]
		if !ok {
			continue
		}
		s, ok := raw.(string)
		if !ok || !validIdentityValue(s) {
			return "", fmt.Errorf("verify jwt: claim %q is not a valid tenant: %w", name, ErrUnauthenticated)
		}
		return s, nil
	}
	return "", fmt.Errorf("verify jwt: no tenant claim: %w", ErrUnauthenticated)
}

// key is the jwt.Keyfunc: it returns the key (or set of keys) that may
// verify t. The parser has already checked t's alg against the allow-list.
func (v *JWTVerifier) key(ctx context.Context, t *jwt.Token, now time.Time) (any, error) {
	alg, _ := t.Header["alg"].(string)
	if !slices.Contains(v.algs, alg) { // defence in depth; the parser checked it
		return nil, fmt.Errorf("algorithm %q not allowed", alg)
	}
	rawKID, hasKID := t.Header["kid"]
	kid, ok := rawKID.(string)
	if hasKID && (!ok || kid == "") {
		return nil, errors.New("kid is not a non-empty string")
	}
	switch {
	case v.hmacSecret != nil:
		return v.hmacSecret, nil
	case v.jwks != nil:
		if !hasKID {
			return nil, errors.New("token has no kid")
		}
		k, err := v.jwks.lookup(ctx, kid, now)
		if err != nil {
			return nil, err
		}
		if (k.alg != "" && k.alg != alg) || !keyFitsAlg(k.key, alg) {
			return nil, errors.New("kid does not fit the token's algorithm")
		}
		return k.key, nil
	default:
		var set jwt.VerificationKeySet
		for _, k := range v.pemKeys {
			if hasKID && v.pemHaveKIDs && k.kid != kid {
				continue // an unknown kid never falls back to other keys
			}
			if keyFitsAlg(k.key, alg) {
				set.Keys = append(set.Keys, k.key)
			}
		}
		if len(set.Keys) == 0 {
			return nil, errors.New("no configured key for this kid and algorithm")
		}
		return set, nil
	}
}

// LooksLikeJWT reports whether s is three non-empty dot-separated base64url
// segments (no padding). It is a shape check only.
func LooksLikeJWT(s string) bool {
	segs := 0
	n := 0 // length of the current segment
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if n == 0 {
				return false
			}
			segs++
			n = 0
			if segs > 2 {
				return false
			}
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			n++
		default:
			return false
		}
	}
	return segs == 2 && n > 0
}

// validIdentityValue reports whether s can serve as a tenant or user ID:
// 1..256 bytes of valid UTF-8 without control or space characters.
func validIdentityValue(s string) bool {
	if s == "" || len(s) > maxIdentityValueBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// parsePEMKeys returns every public key in data. Private keys and unknown
// block types are errors, so a misplaced private key is not silently used.
func parsePEMKeys(data []byte) ([]any, error) {
	var keys []any
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(block.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("unsupported PEM block %q (want a public key)", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		if err := checkPublicKey(k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// checkPublicKey accepts RSA >= 2048 bits, ECDSA on P-256/384/521 and Ed25519.
func checkPublicKey(k any) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSAKeyBits {
			return fmt.Errorf("RSA key of %d bits, need at least %d", k.N.BitLen(), minRSAKeyBits)
		}
	case *ecdsa.PublicKey:
		if ecAlgForCurve(k.Curve) == "" {
			return errors.New("unsupported ECDSA curve")
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("bad Ed25519 key size")
		}
	default:
		return fmt.Errorf("unsupported public key type %T", k)
	}
	return nil
}

// algsForKey lists the algorithms k can verify.
func algsForKey(k any) []string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return rsaAlgs
	case *ecdsa.PublicKey:
		return []string{ecAlgForCurve(k.Curve)}
	case ed25519.PublicKey:
		return edAlgs
	}
	return nil
}

// keyFitsAlg reports whether k can verify alg (curve-exact for ECDSA).
func keyFitsAlg(k any, alg string) bool {
	return slices.Contains(algsForKey(k), alg)
}

func ecAlgForCurve(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// appendNew appends the elements of add not yet in s.
func appendNew(s []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(s, a) {
			s = append(s, a)
		}
	}
	return s
}
