package delegation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"
)

// WideningError is the refusal of a constraint that would widen what the
// parent allows. Key is the dotted path of the offending constraint.
type WideningError struct {
	Key    string
	Reason string
}

// Error names the key and why it widens; the key is quoted, never raw.
func (e *WideningError) Error() string {
	return fmt.Sprintf("constraint %q widens the parent: %s", e.Key, e.Reason)
}

// Unwrap makes a WideningError match ErrWidening.
func (e *WideningError) Unwrap() error { return ErrWidening }

// Tighten returns the constraints a delegated call may use: parent's
// constraints narrowed by requested. It refuses, with a *WideningError
// naming the key, any requested value wider than the parent's:
//
//   - a key of parent absent from requested is inherited unchanged; an
//     explicit null for it is refused (an inherited key cannot be dropped);
//   - numbers must not grow; keys that name a lower bound (min_*, *_min,
//     minimum*) must not shrink instead;
//   - an array must be a subset of the parent's array;
//   - a string is a scope: equal, or the parent followed by ":" and more
//     ("department:finance" → "department:finance:payroll");
//   - an expiry (key "expires_at", "expiry", or ending in "_at" or
//     "_expiry"; RFC 3339) must not move later;
//   - false stays false (true may become false);
//   - objects recurse; a change of JSON type is refused.
//
// Keys absent from parent are new restrictions and accepted as given. A key
// whose parent value is null is unrestricted and takes the requested value.
// Inputs are normalized through JSON; numbers in the result are
// json.Number. Neither input is modified.
func Tighten(parent, requested map[string]any) (map[string]any, error) {
	p, err := normalizeObject(parent)
	if err != nil {
		return nil, fmt.Errorf("parent constraints: %w", err)
	}
	r, err := normalizeObject(requested)
	if err != nil {
		return nil, fmt.Errorf("requested constraints: %w", err)
	}
	return tightenObject("", p, r)
}

// normalizeObject round-trips m through JSON so values have JSON types
// (map[string]any, []any, string, json.Number, bool, nil).
func normalizeObject(m map[string]any) (map[string]any, error) {
	if m == nil {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	v, err := decodeUseNumber(b)
	if err != nil {
		return nil, err
	}
	out, _ := v.(map[string]any)
	return out, nil
}

func decodeUseNumber(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func tightenObject(prefix string, parent, requested map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(parent)+len(requested))
	keys := make([]string, 0, len(parent)+len(requested))
	for k := range parent {
		keys = append(keys, k)
	}
	for k := range requested {
		if _, ok := parent[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // deterministic: the first offending key is reported
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		pv, inParent := parent[k]
		rv, inRequested := requested[k]
		switch {
		case !inParent || pv == nil:
			out[k] = rv // a new restriction, or an unrestricted parent key
		case !inRequested:
			out[k] = pv // inherited
		default:
			v, err := tightenValue(path, k, pv, rv)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
	}
	return out, nil
}

func tightenValue(path, key string, pv, rv any) (any, error) {
	widen := func(format string, args ...any) error {
		return &WideningError{Key: path, Reason: fmt.Sprintf(format, args...)}
	}
	if rv == nil {
		return nil, widen("an inherited constraint cannot be dropped")
	}
	if jsonType(pv) != jsonType(rv) {
		return nil, widen("type changes from %s to %s", jsonType(pv), jsonType(rv))
	}
	switch p := pv.(type) {
	case map[string]any:
		return tightenObject(path, p, rv.(map[string]any))
	case []any:
		r := rv.([]any)
		for _, e := range r {
			if !containsValue(p, e) {
				return nil, widen("array is not a subset of the parent's")
			}
		}
		return r, nil
	case bool:
		if !p && rv.(bool) {
			return nil, widen("false cannot become true")
		}
		return rv, nil
	case json.Number:
		c, ok := compareNumbers(rv.(json.Number), p)
		if !ok {
			return nil, widen("not a number")
		}
		if isLowerBound(key) {
			if c < 0 {
				return nil, widen("lower bound cannot decrease")
			}
		} else if c > 0 {
			return nil, widen("number cannot grow")
		}
		return rv, nil
	case string:
		r := rv.(string)
		if isExpiryKey(key) {
			pt, perr := time.Parse(time.RFC3339, p)
			if perr == nil {
				rt, rerr := time.Parse(time.RFC3339, r)
				if rerr != nil {
					return nil, widen("expiry is not an RFC 3339 time")
				}
				if rt.After(pt) {
					return nil, widen("expiry cannot move later")
				}
				return r, nil
			}
			// A parent expiry that is not a time is compared as a scope.
		}
		if r != p && !strings.HasPrefix(r, p+":") {
			return nil, widen("scope is not equal to or narrower than the parent's")
		}
		return r, nil
	}
	return nil, widen("unsupported value")
}

// jsonType names the JSON type of a normalized value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return fmt.Sprintf("%T", v)
}

// isExpiryKey reports whether a constraint key names an expiry.
func isExpiryKey(k string) bool {
	k = strings.ToLower(k)
	return k == "expires_at" || k == "expiry" || strings.HasSuffix(k, "_at") || strings.HasSuffix(k, "_expiry")
}

// isLowerBound reports whether a numeric constraint key names a minimum,
// which narrows by growing.
func isLowerBound(k string) bool {
	k = strings.ToLower(k)
	return strings.HasPrefix(k, "min_") || strings.HasSuffix(k, "_min") || strings.HasPrefix(k, "minimum")
}

func containsValue(list []any, v any) bool {
	for _, e := range list {
		if equalValues(e, v) {
			return true
		}
	}
	return false
}

// equalValues compares normalized JSON values; numbers compare by value.
func equalValues(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		c, ok := compareNumbers(x, y)
		return ok && c == 0
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equalValues(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValues(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// compareNumbers compares two JSON numbers with 256-bit precision. big.Float
// is used rather than big.Rat so that a huge exponent ("1e999999999") costs
// no more than a small one.
func compareNumbers(a, b json.Number) (int, bool) {
	x, _, err1 := big.ParseFloat(a.String(), 10, 256, big.ToNearestEven)
	y, _, err2 := big.ParseFloat(b.String(), 10, 256, big.ToNearestEven)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return x.Cmp(y), true
}
