package delegation

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{name: "sorted keys, no spaces", in: map[string]any{"b": 1, "a": []any{true, nil}}, want: `{"a":[true,null],"b":1}`},
		{name: "raw JSON text reordered", in: json.RawMessage(`{ "z" : 1.50, "a" : { "y":2, "x":1 } }`), want: `{"a":{"x":1,"y":2},"z":1.50}`},
		{name: "numbers keep their text", in: json.RawMessage(`[12345678901234567890, 1e3, 0.1]`), want: `[12345678901234567890,1e3,0.1]`},
		{name: "no HTML escaping", in: map[string]string{"k": "<a&b>"}, want: `{"k":"<a&b>"}`},
		{name: "struct", in: struct {
			B string `json:"b"`
			A int    `json:"a"`
		}{"x", 1}, want: `{"a":1,"b":"x"}`},
		{name: "scalar", in: "s", want: `"s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON(tt.in)
			if err != nil || string(got) != tt.want {
				t.Errorf("CanonicalJSON(%v) = %s, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
	if _, err := CanonicalJSON(make(chan int)); err == nil {
		t.Errorf("CanonicalJSON(chan) = nil error")
	}
	h1, _ := HashJSON(json.RawMessage(`{"a":1,"b":[1,2]}`))
	h2, _ := HashJSON(map[string]any{"b": []int{1, 2}, "a": 1})
	h3, _ := HashJSON(map[string]any{"b": []int{2, 1}, "a": 1})
	if h1 != h2 || h1 == h3 || len(h1) != 64 {
		t.Errorf("HashJSON: equal values %s vs %s, different %s", h1, h2, h3)
	}
}

func auditChain(n int) []ChainedEvent {
	events := make([]ChainedEvent, n)
	prev := GenesisHash
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	for i := range events {
		ev := AuditEvent{Time: base.Add(time.Duration(i) * time.Second), TenantID: "A", UserID: "u1", APIKeyID: "k1",
			AgentID: "ag", TraceID: "t", Tool: "create_entities", Action: "tool_call", Outcome: "ok",
			ContentHash: fmt.Sprintf("%064d", i), Detail: fmt.Sprintf("row %d", i)}
		events[i] = ChainedEvent{Seq: int64(i + 1), Event: ev, PrevHash: prev, Hash: ChainHash(prev, ev)}
		prev = events[i].Hash
	}
	return events
}

// firstBroken applies CheckLink along events and returns the index of
// the first row it refuses, or -1.
func firstBroken(events []ChainedEvent) int {
	for i := range events {
		var prev *ChainedEvent
		if i > 0 {
			prev = &events[i-1]
		}
		if CheckLink(prev, events[i]) != "" {
			return i
		}
	}
	return -1
}

func TestCheckLink(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(ev []ChainedEvent)
		want   int // first broken index; -1 intact
	}{
		{name: "intact", want: -1},
		{name: "detail changed", tamper: func(ev []ChainedEvent) { ev[3].Event.Detail = "edited" }, want: 3},
		{name: "outcome changed", tamper: func(ev []ChainedEvent) { ev[0].Event.Outcome = "denied" }, want: 0},
		{name: "time changed by 1ns", tamper: func(ev []ChainedEvent) { ev[2].Event.Time = ev[2].Event.Time.Add(1) }, want: 2},
		{name: "time in another zone is the same instant", tamper: func(ev []ChainedEvent) {
			ev[2].Event.Time = ev[2].Event.Time.In(time.FixedZone("X", 3600))
		}, want: -1},
		{name: "row rehashed but next row not", tamper: func(ev []ChainedEvent) {
			ev[1].Event.Tool = "delete_entities"
			ev[1].Hash = ChainHash(ev[1].PrevHash, ev[1].Event)
		}, want: 2},
		{name: "row deleted", tamper: func(ev []ChainedEvent) { copy(ev[2:], ev[3:]) }, want: 2},
		{name: "rows swapped", tamper: func(ev []ChainedEvent) { ev[1], ev[2] = ev[2], ev[1] }, want: 1},
		{name: "seq not increasing", tamper: func(ev []ChainedEvent) { ev[4].Seq = ev[3].Seq }, want: 4},
		{name: "seq gap", tamper: func(ev []ChainedEvent) { ev[4].Seq++; ev[5].Seq++ }, want: 4},
		{name: "first row not from genesis", tamper: func(ev []ChainedEvent) {
			ev[0].PrevHash = ev[5].Hash
			ev[0].Hash = ChainHash(ev[0].PrevHash, ev[0].Event)
		}, want: 0},
		{name: "first row not seq 1", tamper: func(ev []ChainedEvent) { ev[0].Seq = 0 }, want: 0},
		{name: "time missing", tamper: func(ev []ChainedEvent) {
			ev[3].Event.Time = time.Time{}
			ev[3].Hash = ChainHash(ev[3].PrevHash, ev[3].Event)
		}, want: 3},
	}
	detected := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := auditChain(6)
			if tt.tamper != nil {
				tt.tamper(ev)
			}
			if tt.name == "row deleted" {
				ev = ev[:5]
			}
			got := firstBroken(ev)
			if got != tt.want {
				t.Errorf("first row CheckLink refuses = %d; want %d", got, tt.want)
			}
			if got != -1 {
				detected++
			}
		})
	}
	t.Logf("metric audit_tamper_detected=%d", detected)
}

func TestChainHashCoversEveryField(t *testing.T) {
	ev := auditChain(1)[0].Event
	base := ChainHash(GenesisHash, ev)
	if ChainHash("", ev) == base {
		t.Errorf("ChainHash ignores prevHash")
	}
	mutations := map[string]func(*AuditEvent){
		"TenantID": func(e *AuditEvent) { e.TenantID += "x" }, "UserID": func(e *AuditEvent) { e.UserID += "x" },
		"APIKeyID": func(e *AuditEvent) { e.APIKeyID += "x" }, "AgentID": func(e *AuditEvent) { e.AgentID += "x" },
		"TraceID": func(e *AuditEvent) { e.TraceID += "x" }, "SessionID": func(e *AuditEvent) { e.SessionID += "x" },
		"Tool": func(e *AuditEvent) { e.Tool += "x" }, "Action": func(e *AuditEvent) { e.Action += "x" },
		"Outcome": func(e *AuditEvent) { e.Outcome += "x" }, "ContentHash": func(e *AuditEvent) { e.ContentHash += "x" },
		"Detail": func(e *AuditEvent) { e.Detail += "x" }, "Time": func(e *AuditEvent) { e.Time = e.Time.Add(time.Second) },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			e := ev
			mutate(&e)
			if ChainHash(GenesisHash, e) == base {
				t.Errorf("ChainHash ignores %s", name)
			}
		})
	}
	// Field boundaries cannot be shifted: moving text between fields changes the hash.
	a, b := ev, ev
	a.UserID, a.APIKeyID = "ab", "c"
	b.UserID, b.APIKeyID = "a", "bc"
	if ChainHash(GenesisHash, a) == ChainHash(GenesisHash, b) {
		t.Errorf("ChainHash is ambiguous across fields")
	}
}
