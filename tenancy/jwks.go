package tenancy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Defaults of the JWKS cache.
const (
	DefaultJWKSMinRefresh = 10 * time.Second
	DefaultJWKSCacheTTL   = time.Hour
	DefaultJWKSTimeout    = 5 * time.Second
	DefaultJWKSMaxBytes   = 1 << 20
	maxJWKSKeys           = 100
)

// jwksCache holds the keys of one JWKS URL. Lookups of an unknown kid or
// of a stale set refetch it, at most once per minRefresh.
type jwksCache struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	ttl        time.Duration
	timeout    time.Duration
	maxBytes   int64
	algs       []string // allow-list; keys pinned to other algorithms are dropped

	fetchMu sync.Mutex // serialises fetches
	mu      sync.RWMutex
	keys    map[string]namedKey
	fetched time.Time // last successful fetch
	tried   time.Time // last attempt (guarded by fetchMu)
}

func newJWKSCache(cfg JWTConfig) (*jwksCache, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil {
		return nil, fmt.Errorf("jwt config: JWKS URL: %w", err)
	}
	if u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
		return nil, errors.New("jwt config: JWKS URL must be https (http only to a loopback host)")
	}
	c := &jwksCache{
		url:        u.String(),
		client:     cfg.HTTPClient,
		minRefresh: cfg.JWKSMinRefresh,
		ttl:        cfg.JWKSCacheTTL,
		timeout:    cfg.JWKSTimeout,
		maxBytes:   cfg.JWKSMaxBytes,
		algs:       cfg.Algorithms,
	}
	if c.client == nil {
		c.client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.minRefresh <= 0 {
		c.minRefresh = DefaultJWKSMinRefresh
	}
	if c.ttl <= 0 {
		c.ttl = DefaultJWKSCacheTTL
	}
	if c.timeout <= 0 {
		c.timeout = DefaultJWKSTimeout
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultJWKSMaxBytes
	}
	return c, nil
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// lookup returns the key named kid, refetching the set when kid is unknown
// or the set is older than ttl (subject to the refresh bound). When a fetch
// fails the previous set stays in use.
func (c *jwksCache) lookup(ctx context.Context, kid string, now time.Time) (namedKey, error) {
	c.mu.RLock()
	k, ok := c.keys[kid]
	stale := c.fetched.IsZero() || now.Sub(c.fetched) > c.ttl
	c.mu.RUnlock()
	if ok && !stale {
		return k, nil
	}
	refreshErr := c.refresh(ctx, now, false)
	c.mu.RLock()
	k, ok = c.keys[kid]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}
	if refreshErr != nil {
		return namedKey{}, fmt.Errorf("unknown kid (JWKS refresh failed: %v)", refreshErr)
	}
	return namedKey{}, errors.New("unknown kid")
}

// refresh fetches the set unless one was attempted less than minRefresh
// before now (force skips that bound). Concurrent callers wait for one fetch.
func (c *jwksCache) refresh(ctx context.Context, now time.Time, force bool) error {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if !force && !c.tried.IsZero() && now.Sub(c.tried) < c.minRefresh {
		return nil
	}
	c.tried = now
	keys, err := c.fetch(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.keys = keys
	c.fetched = now
	c.mu.Unlock()
	return nil
}

// jwkSet is the JSON form of a JWKS (RFC 7517).
type jwkSet struct {
	Keys []json.RawMessage `json:"keys"`
}

// jwk holds the members of a JWK we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// fetch downloads and parses the set. Keys that are unusable (no kid, not
// for signatures, unsupported type, too weak, pinned to a disallowed
// algorithm) are skipped; a set with no usable key is an error.
func (c *jwksCache) fetch(ctx context.Context) (map[string]namedKey, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: read body: %w", err)
	}
	if int64(len(body)) > c.maxBytes {
		return nil, fmt.Errorf("fetch JWKS: response exceeds %d bytes", c.maxBytes)
	}
	return parseJWKS(body, c.algs)
}

// parseJWKS parses a JWKS document into keys by kid.
func parseJWKS(body []byte, algs []string) (map[string]namedKey, error) {
	var set jwkSet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("parse JWKS: %d keys, at most %d", len(set.Keys), maxJWKSKeys)
	}
	keys := make(map[string]namedKey, len(set.Keys))
	for _, raw := range set.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			continue
		}
		if j.Kid == "" || (j.Use != "" && j.Use != "sig") {
			continue
		}
		if _, dup := keys[j.Kid]; dup {
			// Two keys under one kid: ambiguous, use neither.
			keys[j.Kid] = namedKey{}
			continue
		}
		k, err := j.publicKey()
		if err != nil || checkPublicKey(k) != nil {
			continue
		}
		if j.Alg != "" && (!keyFitsAlg(k, j.Alg) || (len(algs) > 0 && !slices.Contains(algs, j.Alg))) {
			continue
		}
		keys[j.Kid] = namedKey{kid: j.Kid, alg: j.Alg, key: k}
	}
	for kid, k := range keys {
		if k.key == nil {
			delete(keys, kid)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("parse JWKS: no usable signing key")
	}
	return keys, nil
}

// publicKey builds the public key of an RSA, EC or OKP (Ed25519) JWK.
func (j jwk) publicKey() (any, error) {
	switch j.Kty {
	case "RSA":
		n, err := b64Int(j.N)
		if err != nil {
			return nil, err
		}
		e, err := b64Int(j.E)
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported EC curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil {
			return nil, err
		}
		y, err := base64.RawURLEncoding.DecodeString(j.Y)
		if err != nil {
			return nil, err
		}
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinate size")
		}
		point := slices.Concat([]byte{4}, x, y)
		return ecdsa.ParseUncompressedPublicKey(curve, point) // checks the point is on the curve
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, errors.New("unsupported OKP curve")
		}
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key size")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported kty %q", j.Kty)
}

// b64Int decodes a base64url big-endian unsigned integer.
func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty integer")
	}
	return new(big.Int).SetBytes(b), nil
}
