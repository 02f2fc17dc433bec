package delegation

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestSigningString(t *testing.T) {
	h := hdr("X-Eatp-Trace-Id", "t1", "x-eatp-agent-id", " ag1 ", "X-EATP-Signature", "ignored",
		"Authorization", "Bearer secret", "X-Eatp-Delegation-Depth", "1")
	got, err := SigningString("post", "/mcp", h)
	if err != nil {
		t.Fatalf("SigningString() = %v", err)
	}
	want := "POST\n/mcp\nx-eatp-agent-id:ag1\nx-eatp-delegation-depth:1\nx-eatp-trace-id:t1"
	if got != want {
		t.Errorf("SigningString() = %q, want %q", got, want)
	}
	if got, _ := SigningString("GET", "/", http.Header{}); got != "GET\n/" {
		t.Errorf("SigningString(no headers) = %q", got)
	}
	for name, h := range map[string]http.Header{
		"repeated header": hdr(HeaderTraceID, "a", HeaderTraceID, "b"),
		"CR/LF in value":  hdr(HeaderTraceID, "a\r\nx-eatp-agent-id:evil"),
	} {
		if _, err := SigningString("POST", "/mcp", h); err == nil {
			t.Errorf("SigningString(%s) = nil error, want error", name)
		}
	}
	if _, err := SigningString("", "/mcp", nil); err == nil {
		t.Errorf("SigningString(empty method) = nil error")
	}
	if _, err := SigningString("POST", "/mcp\n", nil); err == nil {
		t.Errorf("SigningString(path with LF) = nil error")
	}
}

func TestSignVerify(t *testing.T) {
	for _, alg := range []string{AlgHMACSHA256, AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			key := mustKey(t, alg)
			other := mustKey(t, alg)
			base := ToHeaders(validTC())
			sig, err := Sign(key, "POST", "/mcp", base)
			if err != nil {
				t.Fatalf("Sign() = %v", err)
			}
			if strings.ContainsAny(sig, "+/=") {
				t.Errorf("Sign() = %q, want base64url without padding", sig)
			}
			tests := []struct {
				name   string
				method string
				path   string
				h      func() http.Header
				sig    string
				ok     bool
			}{
				{name: "good", ok: true},
				{name: "signature header itself is not signed", h: func() http.Header {
					h := base.Clone()
					h.Set(HeaderSignature, sig)
					return h
				}, ok: true},
				{name: "header names in other case", h: func() http.Header {
					h := http.Header{}
					for k, v := range base {
						h[strings.ToLower(k)] = v
					}
					return h
				}, ok: true},
				{name: "lower-case method", method: "post", ok: true},
				{name: "non-EATP header added", h: func() http.Header {
					h := base.Clone()
					h.Set("Content-Length", "999")
					return h
				}, ok: true},
				{name: "missing", sig: "-", ok: false},
				{name: "garbage", sig: "not!base64", ok: false},
				{name: "truncated", sig: sig[:len(sig)-2], ok: false},
				{name: "padded", sig: sig + "=", ok: false},
				{name: "other key", sig: func() string { s, _ := Sign(other, "POST", "/mcp", base); return s }(), ok: false},
				{name: "other method", method: "GET", ok: false},
				{name: "other path", path: "/mcp/x", ok: false},
				{name: "constraints tampered", h: func() http.Header {
					h := base.Clone()
					h.Set(HeaderConstraints, b64(`{"max_cost":500}`))
					return h
				}, ok: false},
				{name: "agent tampered", h: func() http.Header {
					h := base.Clone()
					h.Set(HeaderAgentID, "helper")
					return h
				}, ok: false},
				{name: "EATP header removed", h: func() http.Header {
					h := base.Clone()
					h.Del(HeaderSessionID)
					return h
				}, ok: false},
				{name: "EATP header added", h: func() http.Header {
					h := base.Clone()
					h.Set("X-Eatp-Extra", "1")
					return h
				}, ok: false},
				{name: "header repeated", h: func() http.Header {
					h := base.Clone()
					h.Add(HeaderTraceID, "t2")
					return h
				}, ok: false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					method, path, h, s := "POST", "/mcp", base, sig
					if tt.method != "" {
						method = tt.method
					}
					if tt.path != "" {
						path = tt.path
					}
					if tt.h != nil {
						h = tt.h()
					}
					switch tt.sig {
					case "":
					case "-":
						s = ""
					default:
						s = tt.sig
					}
					err := VerifySignature(key, method, path, h, s)
					if tt.ok && err != nil {
						t.Errorf("VerifySignature() = %v, want nil", err)
					}
					if !tt.ok && !errors.Is(err, ErrBadSignature) {
						t.Errorf("VerifySignature() = %v, want ErrBadSignature", err)
					}
				})
			}
		})
	}
}

func TestTrustKeys(t *testing.T) {
	if _, err := NewTrustKey("rsa"); err == nil {
		t.Errorf("NewTrustKey(rsa) = nil error")
	}
	h := ToHeaders(validTC())
	short := TrustKey{ID: "k", Algorithm: AlgHMACSHA256, Secret: []byte("short")}
	if _, err := Sign(short, "POST", "/", h); err == nil {
		t.Errorf("Sign(short secret) = nil error")
	}
	if err := VerifySignature(short, "POST", "/", h, "AAAA"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("VerifySignature(short secret) = %v", err)
	}
	// An Ed25519 key with only the private half verifies (public derived).
	ed := mustKey(t, AlgEd25519)
	sig, err := Sign(ed, "POST", "/", h)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(TrustKey{Algorithm: AlgEd25519, PrivateKey: ed.PrivateKey}, "POST", "/", h, sig); err != nil {
		t.Errorf("VerifySignature(private only) = %v", err)
	}
	if err := VerifySignature(TrustKey{Algorithm: AlgEd25519, PublicKey: ed.PublicKey}, "POST", "/", h, sig); err != nil {
		t.Errorf("VerifySignature(public only) = %v", err)
	}
	if _, err := Sign(TrustKey{Algorithm: AlgEd25519, PublicKey: ed.PublicKey}, "POST", "/", h); err == nil {
		t.Errorf("Sign(public only) = nil error")
	}
	// Key material never appears when a key is printed or logged.
	hk := mustKey(t, AlgHMACSHA256)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "key", hk, "ed", ed)
	printed := fmt.Sprintf("%v %+v %#v %s", hk, hk, hk, ed) + logs.String()
	for _, secret := range [][]byte{hk.Secret, ed.PrivateKey, ed.PrivateKey.Seed()} {
		for _, enc := range []string{string(secret), fmt.Sprint(secret), fmt.Sprintf("%x", secret), b64(string(secret))} {
			if strings.Contains(printed, enc) {
				t.Fatalf("key material printed: %s", printed)
			}
		}
	}
	if !strings.Contains(printed, hk.ID) {
		t.Errorf("printed key lacks its id: %s", printed)
	}
}
