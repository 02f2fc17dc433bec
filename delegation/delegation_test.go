package delegation

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"testing"
	"time"
)

func TestDelegationUsable(t *testing.T) {
	now := testNow
	tests := []struct {
		name string
		d    Delegation
		want error
	}{
		{name: "prepared", d: Delegation{Status: StatusPrepared, ExpiresAt: now.Add(time.Second)}},
		{name: "no expiry", d: Delegation{Status: StatusPrepared}},
		{name: "expires now", d: Delegation{Status: StatusPrepared, ExpiresAt: now}, want: ErrExpired},
		{name: "status expired", d: Delegation{Status: StatusExpired}, want: ErrExpired},
		{name: "revoked at", d: Delegation{Status: StatusPrepared, RevokedAt: now.Add(-time.Hour)}, want: ErrRevoked},
		{name: "status revoked", d: Delegation{Status: StatusRevoked}, want: ErrRevoked},
		{name: "completed", d: Delegation{Status: StatusCompleted}, want: ErrUntrusted},
		{name: "failed", d: Delegation{Status: StatusFailed}, want: ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Usable(now)
			if (err == nil) != (tt.want == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Usable() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewTraceID(t *testing.T) {
	re := regexp.MustCompile(`^eatp-mcp-[0-9a-f]{16}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := NewTraceID()
		if err != nil || !re.MatchString(id) || seen[id] {
			t.Fatalf("NewTraceID() = %q, %v", id, err)
		}
		seen[id] = true
	}
}

func TestSummarizeResponse(t *testing.T) {
	tests := []struct {
		name     string
		resp     any
		hasError bool
		keys     []string
	}{
		{name: "result", resp: json.RawMessage(`{"content":[{"type":"text","text":"ok"}],"isError":false}`), keys: []string{"content", "isError"}},
		{name: "isError true", resp: map[string]any{"content": []any{}, "isError": true}, hasError: true, keys: []string{"content", "isError"}},
		{name: "error member", resp: map[string]any{"error": map[string]any{"code": -32603}}, hasError: true, keys: []string{"error"}},
		{name: "null error member", resp: map[string]any{"error": nil, "result": 1}, keys: []string{"error", "result"}},
		{name: "not an object", resp: []int{1}, keys: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := SummarizeResponse(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := HashJSON(tt.resp)
			if s.HasError != tt.hasError || !reflect.DeepEqual(s.Keys, tt.keys) || s.Hash != want {
				t.Errorf("SummarizeResponse() = %+v, want error=%v keys=%v hash=%s", s, tt.hasError, tt.keys, want)
			}
		})
	}
}

func TestIsDenial(t *testing.T) {
	for _, err := range []error{ErrInvalidChain, ErrSelfCall, ErrWidening, ErrBadSignature, ErrNotFound,
		ErrExpired, ErrRevoked, ErrUntrusted, &WideningError{Key: "k"}, fmt.Errorf("x: %w", ErrRevoked)} {
		if !IsDenial(err) {
			t.Errorf("IsDenial(%v) = false", err)
		}
	}
	for _, err := range []error{nil, errors.New("database is locked"), fmt.Errorf("wrapped: %w", errors.New("io"))} {
		if IsDenial(err) {
			t.Errorf("IsDenial(%v) = true", err)
		}
	}
}
