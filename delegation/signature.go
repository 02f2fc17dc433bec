package delegation

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// Trust key algorithms.
const (
	AlgHMACSHA256 = "hmac-sha256"
	AlgEd25519    = "ed25519"
)

// MinHMACSecretBytes is the shortest HMAC secret Sign and VerifySignature accept.
const MinHMACSecretBytes = 32

// TrustKey is a tenant's key for X-EATP-Signature. HMAC keys use Secret;
// Ed25519 keys use PrivateKey to sign and PublicKey (or the public half of
// PrivateKey) to verify. String, GoString and LogValue omit the key
// material, so a TrustKey can be printed or logged safely.
type TrustKey struct {
	ID         string
	Algorithm  string // AlgHMACSHA256 or AlgEd25519
	Secret     []byte
	PublicKey  ed25519.PublicKey
	PrivateKey ed25519.PrivateKey
}

// String returns the key's id and algorithm, never its material.
func (k TrustKey) String() string { return "TrustKey(" + k.ID + ", " + k.Algorithm + ")" }

// GoString is String, so %#v does not print key material either.
func (k TrustKey) GoString() string { return k.String() }

// LogValue logs the key's id and algorithm only.
func (k TrustKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("algorithm", k.Algorithm))
}

// NewTrustKey generates a key for alg (AlgHMACSHA256: 32 random bytes;
// AlgEd25519: a fresh key pair) with a random id "tk-<16 hex>".
func NewTrustKey(alg string) (TrustKey, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return TrustKey{}, fmt.Errorf("new trust key: %w", err)
	}
	k := TrustKey{ID: "tk-" + hex.EncodeToString(id[:]), Algorithm: alg}
	switch alg {
	case AlgHMACSHA256:
		k.Secret = make([]byte, MinHMACSecretBytes)
		if _, err := rand.Read(k.Secret); err != nil {
			return TrustKey{}, fmt.Errorf("new trust key: %w", err)
		}
	case AlgEd25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return TrustKey{}, fmt.Errorf("new trust key: %w", err)
		}
		k.PublicKey, k.PrivateKey = pub, priv
	default:
		return TrustKey{}, fmt.Errorf("new trust key: unknown algorithm %q", alg)
	}
	return k, nil
}

// SigningString returns the string X-EATP-Signature signs. It is these
// lines joined by "\n", with no trailing newline:
//
//  1. the method, upper-cased ("POST");
//  2. the request path without query (r.URL.Path on the server, e.g. "/mcp");
//  3. one line "name:value" per X-EATP-* header other than X-EATP-Signature,
//     name lower-cased, lines sorted by name, value the header's single
//     value with surrounding spaces and tabs removed.
//
// Header names are matched case-insensitively and their order does not
// matter. It fails when an EATP header has more than one value, when a
// value, the method or the path holds a control character, or when the
// method is empty.
func SigningString(method, path string, h http.Header) (string, error) {
	if method == "" || strings.IndexFunc(method, isControlByte) >= 0 || strings.ContainsAny(method, " :") {
		return "", errors.New("signing string: bad method")
	}
	if strings.IndexFunc(path, isControlByte) >= 0 {
		return "", errors.New("signing string: control character in path")
	}
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('\n')
	b.WriteString(path)
	for _, e := range eatpHeaders(h) {
		if e.name == "x-eatp-signature" {
			continue
		}
		if e.count != 1 {
			return "", fmt.Errorf("signing string: header %s repeated", headerName(e.name))
		}
		v := strings.Trim(e.value, " \t")
		if strings.IndexFunc(v, isControlByte) >= 0 {
			return "", fmt.Errorf("signing string: control character in header %s", headerName(e.name))
		}
		b.WriteByte('\n')
		b.WriteString(e.name)
		b.WriteByte(':')
		b.WriteString(v)
	}
	return b.String(), nil
}

// headerName returns the canonical form of an EATP header name for
// messages; names that are not one of the eight are reported generically.
func headerName(lower string) string {
	for _, n := range []string{HeaderTraceID, HeaderAgentID, HeaderHumanOrigin, HeaderDelegationChain,
		HeaderDelegationDepth, HeaderConstraints, HeaderSessionID, HeaderSignature} {
		if strings.EqualFold(n, lower) {
			return n
		}
	}
	return "X-EATP-*"
}

func isControlByte(r rune) bool { return r < 0x20 || r == 0x7f }

// Sign returns the X-EATP-Signature value for a request with method, path
// and headers h: the signature of SigningString in base64url without padding.
func Sign(key TrustKey, method, path string, h http.Header) (string, error) {
	s, err := SigningString(method, path, h)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	switch key.Algorithm {
	case AlgHMACSHA256:
		if len(key.Secret) < MinHMACSecretBytes {
			return "", errors.New("sign: HMAC secret shorter than 32 bytes")
		}
		return base64.RawURLEncoding.EncodeToString(hmacSHA256(key.Secret, s)), nil
	case AlgEd25519:
		if len(key.PrivateKey) != ed25519.PrivateKeySize {
			return "", errors.New("sign: no Ed25519 private key")
		}
		return base64.RawURLEncoding.EncodeToString(ed25519.Sign(key.PrivateKey, []byte(s))), nil
	}
	return "", fmt.Errorf("sign: unknown algorithm %q", key.Algorithm)
}

// VerifySignature checks sig (an X-EATP-Signature value) against the
// request's method, path and headers h. Any failure, including an empty
// signature, an unusable key and an unbuildable signing string, returns an
// error wrapping ErrBadSignature. HMAC comparison is constant-time.
func VerifySignature(key TrustKey, method, path string, h http.Header, sig string) error {
	bad := func(reason string) error { return fmt.Errorf("%w: %s", ErrBadSignature, reason) }
	if sig == "" {
		return bad("missing")
	}
	if len(sig) > maxSignatureBytes {
		return bad("malformed")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil {
		return bad("malformed")
	}
	s, err := SigningString(method, path, h)
	if err != nil {
		return bad("unsignable request")
	}
	switch key.Algorithm {
	case AlgHMACSHA256:
		if len(key.Secret) < MinHMACSecretBytes {
			return bad("unusable key")
		}
		if !hmac.Equal(raw, hmacSHA256(key.Secret, s)) {
			return bad("mismatch")
		}
		return nil
	case AlgEd25519:
		pub := key.PublicKey
		if len(pub) == 0 && len(key.PrivateKey) == ed25519.PrivateKeySize {
			pub, _ = key.PrivateKey.Public().(ed25519.PublicKey)
		}
		if len(pub) != ed25519.PublicKeySize {
			return bad("unusable key")
		}
		if !ed25519.Verify(pub, []byte(s), raw) {
			return bad("mismatch")
		}
		return nil
	}
	return bad("unusable key")
}

func hmacSHA256(secret []byte, s string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// headerFromRaw rebuilds request headers from TrustContext.Raw.
func headerFromRaw(raw map[string]string) http.Header {
	h := make(http.Header, len(raw))
	for k, v := range raw {
		h[http.CanonicalHeaderKey(k)] = []string{v}
	}
	return h
}
