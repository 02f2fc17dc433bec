package memory

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/delegation"
)

func TestTrustKeys(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	ctx := context.Background()
	h := http.Header{}
	h.Set(delegation.HeaderTraceID, "eatp-mcp-0000000000000001")
	h.Set(delegation.HeaderAgentID, "agent-b")

	for _, alg := range []string{delegation.AlgHMACSHA256, delegation.AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			created, err := s.CreateTrustKey(ctx, "a", alg)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := s.TenantTrustKey(as("a"))
			if err != nil || !ok || got.ID != created.ID || got.Algorithm != alg {
				t.Fatalf("TenantTrustKey(a) = %v, %v, %v; want %v", got, ok, err, created)
			}
			sig, err := delegation.Sign(got, "POST", "/mcp", h)
			if err != nil {
				t.Fatal(err)
			}
			if err := delegation.VerifySignature(created, "POST", "/mcp", h, sig); err != nil {
				t.Errorf("signature by the stored key does not verify with the created one: %v", err)
			}
			if _, ok, _ := s.TenantTrustKey(as("b")); ok {
				t.Error("tenant b sees a's trust key")
			}
		})
	}
	t.Run("public-only Ed25519 verifies", func(t *testing.T) {
		k, err := delegation.NewTrustKey(delegation.AlgEd25519)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ImportTrustKey(ctx, "b", delegation.TrustKey{ID: k.ID, Algorithm: k.Algorithm, PublicKey: k.PublicKey}); err != nil {
			t.Fatal(err)
		}
		stored, _, _ := s.TenantTrustKey(as("b"))
		sig, _ := delegation.Sign(k, "POST", "/mcp", h)
		if err := delegation.VerifySignature(stored, "POST", "/mcp", h, sig); err != nil {
			t.Errorf("VerifySignature with the imported public key: %v", err)
		}
		if _, err := delegation.Sign(stored, "POST", "/mcp", h); err == nil {
			t.Error("a public-only key signed")
		}
	})
	for _, tc := range []struct {
		name   string
		tenant string
		k      delegation.TrustKey
		want   error
	}{
		{"short HMAC secret", "a", delegation.TrustKey{Algorithm: delegation.AlgHMACSHA256, Secret: []byte("short")}, ErrInvalid},
		{"unknown algorithm", "a", delegation.TrustKey{Algorithm: "rsa"}, ErrInvalid},
		{"unknown tenant", "ghost", delegation.TrustKey{Algorithm: delegation.AlgHMACSHA256, Secret: make([]byte, 32)}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.ImportTrustKey(ctx, tc.tenant, tc.k); !errors.Is(err, tc.want) {
				t.Errorf("ImportTrustKey = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAgentCredentials(t *testing.T) {
	s := openTestStore(t, "", Options{Now: newTestClock().Now})
	ctx := context.Background()
	if err := s.SetAgentCredential(ctx, "a", "agent-b", "nxk_secret_1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAgentCredential(ctx, "a", "agent-b", "nxk_secret_2"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tenant string
		agent  string
		want   string
		ok     bool
	}{
		{"owner, replaced", "a", "agent-b", "nxk_secret_2", true},
		{"other tenant", "b", "agent-b", "", false},
		{"other agent", "a", "agent-c", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := s.AgentCredential(as(tc.tenant), tc.agent)
			if err != nil || ok != tc.ok || got != tc.want {
				t.Errorf("AgentCredential = %q, %v, %v; want %q, %v", got, ok, err, tc.want, tc.ok)
			}
		})
	}
	for _, bad := range []string{"", "two\nlines"} {
		if err := s.SetAgentCredential(ctx, "a", "agent-b", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetAgentCredential(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
