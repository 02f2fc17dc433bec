package delegation

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The eight EATP headers. Names are matched case-insensitively.
const (
	HeaderTraceID         = "X-EATP-Trace-ID"
	HeaderAgentID         = "X-EATP-Agent-ID"
	HeaderHumanOrigin     = "X-EATP-Human-Origin"
	HeaderDelegationChain = "X-EATP-Delegation-Chain"
	HeaderDelegationDepth = "X-EATP-Delegation-Depth"
	HeaderConstraints     = "X-EATP-Constraints"
	HeaderSessionID       = "X-EATP-Session-ID"
	HeaderSignature       = "X-EATP-Signature"
)

// headerPrefix is the lower-cased prefix shared by all EATP headers.
const headerPrefix = "x-eatp-"

// Bounds of extraction. A value beyond a bound makes that field malformed.
const (
	// MaxHeaderBytes is the largest accepted value of one EATP header.
	MaxHeaderBytes = 8 << 10
	// MaxChainEntries is the largest accepted delegation chain.
	MaxChainEntries = 16
	// MaxDepthValue bounds the absolute value of X-EATP-Delegation-Depth.
	// Negative depths within the bound are kept so CheckChain refuses them.
	MaxDepthValue = 1024
	// maxRawHeaders bounds how many distinct X-EATP-* names are kept in Raw.
	maxRawHeaders = 32
	// maxJSONNesting bounds the nesting of human origin and constraints.
	maxJSONNesting = 32
	// maxJSONContainers and maxJSONElements bound the objects/arrays and
	// the members/elements of human origin and constraints, which bounds
	// what decoding a 8 KiB header allocates.
	maxJSONContainers = 32
	maxJSONElements   = 256
	// maxSignatureBytes bounds X-EATP-Signature (an Ed25519 signature is
	// 86 characters of base64url).
	maxSignatureBytes = 512
)

// TrustContext is the EATP trust context a request presented in its
// X-EATP-* headers. Fields that were absent or malformed are empty.
//
// Chain lists the agents that delegated, oldest first; it does not include
// AgentID, the agent acting now. A nil Chain means no chain was given.
type TrustContext struct {
	TraceID     string
	AgentID     string
	HumanOrigin map[string]any // JSON object; numbers are json.Number
	Chain       []string
	Depth       int
	HasDepth    bool
	Constraints map[string]any // JSON object; numbers are json.Number
	// TrustSessionID names the trust session (X-EATP-Session-ID) the
	// request acts in; it is not the MCP session (Mcp-Session-Id).
	TrustSessionID string
	Signature      string
	// Raw holds every X-EATP-* header of the request (at most 32 names),
	// keyed by http.CanonicalHeaderKey (e.g. "X-Eatp-Trace-Id"); a repeated
	// header's values are joined by ", " (so a signature over the single
	// value no longer verifies). Values are unvalidated: never log or echo
	// them. Signature verification uses Raw.
	Raw map[string]string
	// Verified is set by Middleware when the context passed verification;
	// it is never read from headers.
	Verified bool
}

// Valid reports whether tc has the two required fields, trace id and agent id.
func (tc TrustContext) Valid() bool {
	return tc.TraceID != "" && tc.AgentID != ""
}

// eatpHeader is one X-EATP-* header name (lower-cased) with its first value,
// the number of values it had across all spellings of the name, and its
// combined value (all values joined by ", " as RFC 9110 combines field lines).
type eatpHeader struct {
	name     string
	value    string
	count    int
	combined string
}

// eatpHeaders returns the X-EATP-* headers of h sorted by lower-cased name.
// Spellings of one name are merged: the canonical key's values first, then
// the others in key order, so "first value" is deterministic.
func eatpHeaders(h http.Header) []eatpHeader {
	var keys map[string][]string // lower-cased name -> keys of h
	for k := range h {
		if len(k) < len(headerPrefix) || !strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			continue
		}
		if keys == nil {
			keys = make(map[string][]string)
		}
		l := strings.ToLower(k)
		keys[l] = append(keys[l], k)
	}
	out := make([]eatpHeader, 0, len(keys))
	for l, ks := range keys {
		sort.Slice(ks, func(i, j int) bool {
			ci, cj := ks[i] == http.CanonicalHeaderKey(ks[i]), ks[j] == http.CanonicalHeaderKey(ks[j])
			if ci != cj {
				return ci
			}
			return ks[i] < ks[j]
		})
		e := eatpHeader{name: l}
		var all []string
		for _, k := range ks {
			if len(h[k]) > 0 && e.count == 0 {
				e.value = h[k][0]
			}
			e.count += len(h[k])
			all = append(all, h[k]...)
		}
		e.combined = e.value
		if e.count > 1 {
			e.combined = strings.Join(all, ", ")
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Extract reads the EATP headers of h into a TrustContext. It never fails:
// a malformed field (bad base64, JSON or integer, a repeated header, a value
// over a bound, control characters in an id) is left empty and described in
// the returned warnings, which are also logged at Warn when logger is not
// nil. Warnings name the header and the problem, never the value.
func Extract(h http.Header, logger *slog.Logger) (TrustContext, []string) {
	var (
		tc       TrustContext
		warnings []string
	)
	warn := func(name, reason string) {
		warnings = append(warnings, name+": "+reason)
		if logger != nil {
			logger.Warn("eatp header ignored", "header", name, "reason", reason)
		}
	}

	all := eatpHeaders(h)
	byName := make(map[string]eatpHeader, len(all))
	for i, e := range all {
		if i == maxRawHeaders {
			warn("X-EATP-*", "too many EATP headers")
			break
		}
		if tc.Raw == nil {
			tc.Raw = make(map[string]string, len(all))
		}
		tc.Raw[http.CanonicalHeaderKey(e.name)] = e.combined
		byName[e.name] = e
	}

	// get returns the trimmed value of a known header, or "" after a
	// warning when it is absent, repeated or too long.
	get := func(name string, limit int) string {
		e, ok := byName[strings.ToLower(name)]
		switch {
		case !ok:
			return ""
		case e.count > 1:
			warn(name, "repeated header")
			return ""
		case len(e.value) > limit:
			warn(name, "value too long")
			return ""
		}
		return strings.TrimSpace(e.value)
	}
	id := func(name string) string {
		v := get(name, MaxHeaderBytes)
		if v == "" {
			return ""
		}
		if reason := IDReason(v); reason != "" {
			warn(name, "id "+reason)
			return ""
		}
		return v
	}
	object := func(name string) map[string]any {
		v := get(name, MaxHeaderBytes)
		if v == "" {
			return nil
		}
		m, reason := parseObjectHeader(v)
		if reason != "" {
			warn(name, reason)
			return nil
		}
		return m
	}

	tc.TraceID = id(HeaderTraceID)
	tc.AgentID = id(HeaderAgentID)
	tc.TrustSessionID = id(HeaderSessionID)
	tc.HumanOrigin = object(HeaderHumanOrigin)
	tc.Constraints = object(HeaderConstraints)

	if v := get(HeaderDelegationChain, MaxHeaderBytes); v != "" {
		chain, reason := parseChain(v)
		if reason != "" {
			warn(HeaderDelegationChain, reason)
		} else {
			tc.Chain = chain
		}
	}
	if v := get(HeaderDelegationDepth, MaxHeaderBytes); v != "" {
		d, err := strconv.Atoi(v)
		switch {
		case err != nil:
			warn(HeaderDelegationDepth, "not an integer")
		case d > MaxDepthValue || d < -MaxDepthValue:
			warn(HeaderDelegationDepth, "out of range")
		default:
			tc.Depth, tc.HasDepth = d, true
		}
	}
	if v := get(HeaderSignature, maxSignatureBytes); v != "" {
		if strings.IndexFunc(v, func(r rune) bool { return !isBase64URLRune(r) }) >= 0 {
			warn(HeaderSignature, "not base64url")
		} else {
			tc.Signature = v
		}
	}
	return tc, warnings
}

// ToHeaders is the reverse of Extract: it renders tc's fields as EATP
// headers (human origin and constraints as base64 of their JSON, the chain
// as a JSON array). Empty fields are omitted, and so is a map that cannot be
// marshalled. Raw and Verified are not rendered. To sign, build the headers,
// then set HeaderSignature to Sign(key, method, path, h).
func ToHeaders(tc TrustContext) http.Header {
	h := make(http.Header)
	set := func(name, v string) {
		if v != "" {
			h.Set(name, v)
		}
	}
	object := func(name string, m map[string]any) {
		if m == nil {
			return
		}
		if b, err := json.Marshal(m); err == nil {
			h.Set(name, base64.StdEncoding.EncodeToString(b))
		}
	}
	set(HeaderTraceID, tc.TraceID)
	set(HeaderAgentID, tc.AgentID)
	object(HeaderHumanOrigin, tc.HumanOrigin)
	if tc.Chain != nil {
		if b, err := json.Marshal(tc.Chain); err == nil {
			h.Set(HeaderDelegationChain, string(b))
		}
	}
	if tc.HasDepth {
		h.Set(HeaderDelegationDepth, strconv.Itoa(tc.Depth))
	}
	object(HeaderConstraints, tc.Constraints)
	set(HeaderSessionID, tc.TrustSessionID)
	set(HeaderSignature, tc.Signature)
	return h
}

func isBase64URLRune(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// parseObjectHeader decodes a human origin or constraints value: a JSON
// object, either raw (starting with '{') or base64 (standard or URL
// alphabet, padded or not) of one.
func parseObjectHeader(v string) (map[string]any, string) {
	var data []byte
	if strings.HasPrefix(v, "{") {
		data = []byte(v)
	} else {
		var err error
		if data, err = decodeBase64(v); err != nil {
			return nil, "malformed base64"
		}
	}
	m, err := parseJSONObject(data)
	if err != nil {
		return nil, "malformed JSON object"
	}
	return m, ""
}

// decodeBase64 accepts the four base64 variants.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("malformed base64")
}

// parseChain decodes a chain: a JSON array of strings, or a comma list.
// Entries must be acceptable ids; at most MaxChainEntries.
func parseChain(v string) ([]string, string) {
	var entries []string
	if strings.HasPrefix(v, "[") {
		dec := json.NewDecoder(strings.NewReader(v))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil, "malformed JSON array"
		}
		entries = []string{}
		for {
			tok, err := dec.Token()
			if err != nil {
				return nil, "malformed JSON array"
			}
			if tok == json.Delim(']') {
				break
			}
			s, ok := tok.(string)
			if !ok {
				return nil, "chain entries must be strings"
			}
			if len(entries) == MaxChainEntries {
				return nil, "too many chain entries"
			}
			entries = append(entries, s)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, "malformed JSON array"
		}
	} else {
		if strings.Count(v, ",") >= MaxChainEntries {
			return nil, "too many chain entries"
		}
		entries = strings.Split(v, ",")
		for i := range entries {
			entries[i] = strings.TrimSpace(entries[i])
		}
	}
	for _, e := range entries {
		if e == "" {
			return nil, "empty chain entry"
		}
		if reason := IDReason(e); reason != "" {
			return nil, "chain entry " + reason
		}
	}
	return entries, ""
}

// parseJSONObject decodes one JSON object with numbers as json.Number. It
// refuses duplicate keys (which other parsers resolve differently), nesting
// deeper than maxJSONNesting and trailing data.
func parseJSONObject(data []byte) (map[string]any, error) {
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	if err := checkJSONShape(data); err != nil {
		return nil, err
	}
	v, err := decodeUseNumber(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

var (
	errTooDeep = errors.New("JSON nested too deeply")
	errTooBig  = errors.New("JSON has too many values")
)

// checkJSONShape walks valid JSON (json.Valid is true) and refuses
// duplicate object keys, nesting deeper than maxJSONNesting and more than
// maxJSONContainers objects/arrays or maxJSONElements members. It works on
// the bytes because json.Decoder.Token allocates several times more than
// decoding.
func checkJSONShape(data []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		keys      [][]byte // sub-slices of data (or unescaped copies)
	}
	var (
		stack                []frame
		containers, elements int
	)
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONNesting {
				return errTooDeep
			}
			if containers++; containers > maxJSONContainers {
				return errTooBig
			}
			stack = append(stack, frame{object: c == '{', expectKey: c == '{'})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if elements++; elements > maxJSONElements {
				return errTooBig
			}
			if top := len(stack) - 1; top >= 0 && stack[top].object {
				stack[top].expectKey = true
			}
		case '"':
			j, escaped := i+1, false
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' {
					j++
					escaped = true
				}
			}
			top := len(stack) - 1
			if top < 0 || !stack[top].object || !stack[top].expectKey {
				i = j
				continue
			}
			f := &stack[top]
			f.expectKey = false
			key := data[i+1 : j]
			if escaped {
				var k string
				if err := json.Unmarshal(data[i:j+1], &k); err != nil {
					return err
				}
				key = []byte(k)
			}
			i = j
			// Linear search: members are bounded by maxJSONElements.
			for _, k := range f.keys {
				if bytes.Equal(k, key) {
					return errors.New("duplicate object key")
				}
			}
			f.keys = append(f.keys, key)
		}
	}
	return nil
}
