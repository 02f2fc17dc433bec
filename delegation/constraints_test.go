package delegation

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestTighten(t *testing.T) {
	parent := map[string]any{
		"max_cost":     100,
		"min_score":    0.5,
		"tools":        []any{"search_nodes", "read_graph", "send_message"},
		"scope":        "department:finance",
		"can_write":    false,
		"can_delete":   true,
		"expires_at":   "2026-06-01T00:00:00Z",
		"review_at":    "2026-05-01T00:00:00+02:00",
		"limits":       map[string]any{"rate": 10, "regions": []any{"eu", "us"}},
		"label":        "x",
		"unrestricted": nil,
	}
	tests := []struct {
		name      string
		requested map[string]any
		wantKey   string         // offending key; "" means accepted
		want      map[string]any // subset of the result to check when accepted
	}{
		{name: "nil request inherits everything", requested: nil, want: map[string]any{"max_cost": json.Number("100"), "scope": "department:finance"}},
		{name: "number lowered", requested: map[string]any{"max_cost": 50}, want: map[string]any{"max_cost": json.Number("50")}},
		{name: "number equal", requested: map[string]any{"max_cost": 100.0}},
		{name: "number raised", requested: map[string]any{"max_cost": 101}, wantKey: "max_cost"},
		{name: "number raised by a fraction", requested: map[string]any{"max_cost": json.Number("100.0000001")}, wantKey: "max_cost"},
		{name: "lower bound raised", requested: map[string]any{"min_score": 0.9}},
		{name: "lower bound lowered", requested: map[string]any{"min_score": 0.1}, wantKey: "min_score"},
		{name: "array subset", requested: map[string]any{"tools": []any{"read_graph"}}, want: map[string]any{"tools": []any{"read_graph"}}},
		{name: "array empty", requested: map[string]any{"tools": []string{}}},
		{name: "array superset", requested: map[string]any{"tools": []any{"read_graph", "delete_entities"}}, wantKey: "tools"},
		{name: "string scope narrower", requested: map[string]any{"scope": "department:finance:payroll"}},
		{name: "string scope equal", requested: map[string]any{"scope": "department:finance"}},
		{name: "string scope wider", requested: map[string]any{"scope": "department"}, wantKey: "scope"},
		{name: "string scope sibling", requested: map[string]any{"scope": "department:hr"}, wantKey: "scope"},
		{name: "string scope prefix without colon", requested: map[string]any{"scope": "department:financeX"}, wantKey: "scope"},
		{name: "false stays false", requested: map[string]any{"can_write": false}},
		{name: "false to true", requested: map[string]any{"can_write": true}, wantKey: "can_write"},
		{name: "true to false", requested: map[string]any{"can_delete": false}, want: map[string]any{"can_delete": false}},
		{name: "drop inherited key with null", requested: map[string]any{"scope": nil}, wantKey: "scope"},
		{name: "expiry earlier", requested: map[string]any{"expires_at": "2026-05-01T00:00:00Z"}},
		{name: "expiry later", requested: map[string]any{"expires_at": "2026-07-01T00:00:00Z"}, wantKey: "expires_at"},
		{name: "expiry later in another zone", requested: map[string]any{"review_at": "2026-04-30T23:00:00Z"}, wantKey: "review_at"},
		{name: "expiry same instant in another zone", requested: map[string]any{"review_at": "2026-04-30T22:00:00Z"}},
		{name: "expiry not a time", requested: map[string]any{"expires_at": "never"}, wantKey: "expires_at"},
		{name: "nested narrowed", requested: map[string]any{"limits": map[string]any{"rate": 5, "regions": []any{"eu"}}},
			want: map[string]any{"limits": map[string]any{"rate": json.Number("5"), "regions": []any{"eu"}}}},
		{name: "nested inherits missing keys", requested: map[string]any{"limits": map[string]any{"rate": 5}},
			want: map[string]any{"limits": map[string]any{"rate": json.Number("5"), "regions": []any{"eu", "us"}}}},
		{name: "nested widened", requested: map[string]any{"limits": map[string]any{"rate": 11}}, wantKey: "limits.rate"},
		{name: "nested array widened", requested: map[string]any{"limits": map[string]any{"regions": []any{"apac"}}}, wantKey: "limits.regions"},
		{name: "nested new key", requested: map[string]any{"limits": map[string]any{"burst": 3}}},
		{name: "type change number to string", requested: map[string]any{"max_cost": "100"}, wantKey: "max_cost"},
		{name: "type change object to scalar", requested: map[string]any{"limits": 1}, wantKey: "limits"},
		{name: "type change array to string", requested: map[string]any{"tools": "search_nodes"}, wantKey: "tools"},
		{name: "new key is a new restriction", requested: map[string]any{"max_tokens": 1000}, want: map[string]any{"max_tokens": json.Number("1000")}},
		{name: "unrestricted parent key takes the request", requested: map[string]any{"unrestricted": "any"}, want: map[string]any{"unrestricted": "any"}},
		{name: "huge exponent is refused cheaply", requested: map[string]any{"max_cost": json.Number("1e999999999")}, wantKey: "max_cost"},
		{name: "tiny exponent accepted cheaply", requested: map[string]any{"max_cost": json.Number("1e-999999999")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Tighten(parent, tt.requested)
			if tt.wantKey != "" {
				var we *WideningError
				if !errors.As(err, &we) || !errors.Is(err, ErrWidening) {
					t.Fatalf("Tighten() = %v, %v; want *WideningError", got, err)
				}
				if we.Key != tt.wantKey {
					t.Errorf("Tighten() refused key %q, want %q (%v)", we.Key, tt.wantKey, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Tighten() = %v, want nil", err)
			}
			for k := range parent {
				if _, ok := got[k]; !ok {
					t.Errorf("Tighten() dropped inherited key %q", k)
				}
			}
			for k, want := range tt.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("Tighten()[%q] = %#v, want %#v", k, got[k], want)
				}
			}
			// The result is at least as tight as the parent: tightening
			// the parent with the result again must succeed.
			if _, err := Tighten(parent, got); err != nil {
				t.Errorf("Tighten(parent, result) = %v, want nil", err)
			}
		})
	}
}

func TestTightenDoesNotModifyInputs(t *testing.T) {
	parent := map[string]any{"a": []any{"x", "y"}, "n": 3}
	requested := map[string]any{"a": []any{"x"}}
	got, err := Tighten(parent, requested)
	if err != nil {
		t.Fatal(err)
	}
	got["a"].([]any)[0] = "changed"
	if parent["a"].([]any)[0] != "x" || requested["a"].([]any)[0] != "x" {
		t.Errorf("Tighten() result aliases its inputs")
	}
	if _, err := Tighten(map[string]any{"bad": make(chan int)}, nil); err == nil || errors.Is(err, ErrWidening) {
		t.Errorf("Tighten(unmarshalable) = %v, want a non-widening error", err)
	}
}
