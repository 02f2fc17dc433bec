package delegation

import (
	"errors"
	"testing"
)

func TestCheckChain(t *testing.T) {
	tests := []struct {
		name     string
		tc       TrustContext
		policy   ChainPolicy
		wantErr  bool
		selfCall bool
	}{
		{name: "no chain, no depth", tc: TrustContext{AgentID: "b"}},
		{name: "depth equals chain length", tc: TrustContext{AgentID: "c", Chain: []string{"a", "b"}, Depth: 2, HasDepth: true}},
		{name: "chain without depth", tc: TrustContext{AgentID: "c", Chain: []string{"a", "b"}}},
		{name: "depth without chain", tc: TrustContext{AgentID: "c", Depth: 3, HasDepth: true}},
		{name: "depth zero, empty chain", tc: TrustContext{AgentID: "a", Chain: []string{}, HasDepth: true}},
		{name: "depth != chain length", tc: TrustContext{AgentID: "c", Chain: []string{"a", "b"}, Depth: 1, HasDepth: true}, wantErr: true},
		{name: "depth given, empty chain given", tc: TrustContext{AgentID: "c", Chain: []string{}, Depth: 1, HasDepth: true}, wantErr: true},
		{name: "negative depth", tc: TrustContext{AgentID: "c", Depth: -1, HasDepth: true}, wantErr: true},
		{name: "depth at default max (8)", tc: TrustContext{AgentID: "z", Depth: 8, HasDepth: true}},
		{name: "depth over default max", tc: TrustContext{AgentID: "z", Depth: 9, HasDepth: true}, wantErr: true},
		{name: "depth over configured max", tc: TrustContext{AgentID: "z", Depth: 3, HasDepth: true}, policy: ChainPolicy{MaxDepth: 2}, wantErr: true},
		{name: "depth within configured max", tc: TrustContext{AgentID: "z", Depth: 12, HasDepth: true}, policy: ChainPolicy{MaxDepth: 12}},
		{name: "chain longer than max", tc: TrustContext{AgentID: "z", Chain: []string{"a", "b", "c"}}, policy: ChainPolicy{MaxDepth: 2}, wantErr: true},
		{name: "agent twice in chain", tc: TrustContext{AgentID: "c", Chain: []string{"a", "b", "a"}}, wantErr: true},
		{name: "loop A->B->A", tc: TrustContext{AgentID: "a", Chain: []string{"a", "b"}, Depth: 2, HasDepth: true}, wantErr: true},
		{name: "self-call", tc: TrustContext{AgentID: "b", Chain: []string{"a", "b"}}, wantErr: true, selfCall: true},
		{name: "self-call single", tc: TrustContext{AgentID: "a", Chain: []string{"a"}}, wantErr: true, selfCall: true},
		{name: "empty chain entry", tc: TrustContext{AgentID: "c", Chain: []string{"a", ""}}, wantErr: true},
	}
	violationsAccepted := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckChain(tt.tc, tt.policy)
			if (err != nil) != tt.wantErr {
				if tt.wantErr {
					violationsAccepted++
				}
				t.Fatalf("CheckChain(%+v) = %v, want error %v", tt.tc, err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInvalidChain) || !IsDenial(err) {
				t.Errorf("CheckChain() = %v, want ErrInvalidChain", err)
			}
			if got := errors.Is(err, ErrSelfCall); got != tt.selfCall {
				t.Errorf("errors.Is(%v, ErrSelfCall) = %v, want %v", err, got, tt.selfCall)
			}
		})
	}
	t.Logf("metric chain_rule_violations_accepted=%d", violationsAccepted)
}

func TestCheckSelfCall(t *testing.T) {
	tests := []struct {
		caller, target string
		want           error
	}{
		{"a", "b", nil},
		{"a", "a", ErrSelfCall},
		{"", "", nil},
		{"a", "", nil},
		{"A", "a", nil},
	}
	for _, tt := range tests {
		t.Run(tt.caller+"->"+tt.target, func(t *testing.T) {
			if got := CheckSelfCall(tt.caller, tt.target); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("CheckSelfCall(%q, %q) = %v, want %v", tt.caller, tt.target, got, tt.want)
			}
		})
	}
	if ErrSelfCall.Error() != "an agent cannot call itself" {
		t.Errorf("ErrSelfCall = %q", ErrSelfCall)
	}
}
