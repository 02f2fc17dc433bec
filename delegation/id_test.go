package delegation

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestCheckID(t *testing.T) {
	tests := []struct {
		id   string
		want string
	}{
		{"planner", ""},
		{"plan ner", ""},
		{strings.Repeat("é", 128), ""}, // 256 bytes
		{strings.Repeat("x", MaxIDBytes), ""},
		{"", IDBlank},
		{" \t", IDBlank},
		{strings.Repeat("é", 200), IDTooLong}, // 200 characters, 400 bytes
		{strings.Repeat("x", MaxIDBytes+1), IDTooLong},
		{"bad\xff", IDNotUTF8},
		{"plan\u200bner", IDBadRune},
		{"\u202eevil", IDBadRune},
		{"a\r\nb", IDBadRune},
		{"a\x00b", IDBadRune},
		{" planner", IDPadSpace},
		{"planner\u00a0", IDPadSpace},
	}
	for _, tt := range tests {
		if got := IDReason(tt.id); got != tt.want {
			t.Errorf("IDReason(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
	if !strings.Contains(IDTooLong, strconv.Itoa(MaxIDBytes)) {
		t.Errorf("IDTooLong = %q does not name MaxIDBytes %d", IDTooLong, MaxIDBytes)
	}
}

// TestHeaderIDsFollowCheckID checks that Extract keeps an agent id, and a
// chain entry, exactly when CheckID accepts it (header values are trimmed
// first, which is why CheckID refuses padded ids).
func TestHeaderIDsFollowCheckID(t *testing.T) {
	for _, id := range []string{"planner", "plan ner", strings.Repeat("é", 128),
		"plan\u200bner", strings.Repeat("é", 200), "\u202eevil", "a\x7fb"} {
		want := IDReason(id) == ""
		tc, _ := Extract(http.Header{HeaderAgentID: {id}, HeaderDelegationChain: {`["` + id + `","z"]`}}, nil)
		if got := tc.AgentID == id; got != want {
			t.Errorf("Extract(Agent-ID %q) kept it = %v, want %v", id, got, want)
		}
		if got := len(tc.Chain) == 2 && tc.Chain[0] == id; got != want {
			t.Errorf("Extract(Delegation-Chain [%q]) kept it = %v, want %v", id, got, want)
		}
	}
}
