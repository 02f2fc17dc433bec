package delegation

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func b64(s string) string    { return base64.StdEncoding.EncodeToString([]byte(s)) }
func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// hdr builds a header map with keys exactly as given (no canonicalization),
// so tests can send any spelling.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// sameTC compares the parsed fields of two trust contexts (not Raw).
func sameTC(a, b TrustContext) bool {
	a.Raw, b.Raw = nil, nil
	return reflect.DeepEqual(a, b)
}

func TestExtract(t *testing.T) {
	origin := `{"user_id":"u1","tenant_id":"A","n":7}`
	originMap := map[string]any{"user_id": "u1", "tenant_id": "A", "n": json.Number("7")}
	cons := `{"max_cost":5,"scope":"department:finance"}`
	consMap := map[string]any{"max_cost": json.Number("5"), "scope": "department:finance"}
	seventeen := make([]string, 17)
	sixteen := make([]string, 16)
	for i := range seventeen {
		seventeen[i] = "a" + strconv.Itoa(i)
		if i < 16 {
			sixteen[i] = seventeen[i]
		}
	}
	jsonList := func(s []string) string { b, _ := json.Marshal(s); return string(b) }
	tests := []struct {
		name     string
		h        http.Header
		want     TrustContext
		warnings []string // headers named by the warnings, in order
	}{
		{name: "no headers", h: http.Header{}},
		{name: "all eight canonical", h: hdr(
			"X-Eatp-Trace-Id", "t1", "X-Eatp-Agent-Id", "ag1", "X-Eatp-Human-Origin", b64(origin),
			"X-Eatp-Delegation-Chain", `["c1","c2"]`, "X-Eatp-Delegation-Depth", "2",
			"X-Eatp-Constraints", b64(cons), "X-Eatp-Session-Id", "nxs-1", "X-Eatp-Signature", "c2lnbmF0dXJl"),
			want: TrustContext{TraceID: "t1", AgentID: "ag1", HumanOrigin: originMap, Chain: []string{"c1", "c2"},
				Depth: 2, HasDepth: true, Constraints: consMap, TrustSessionID: "nxs-1", Signature: "c2lnbmF0dXJl"}},
		{name: "lower-case names", h: hdr("x-eatp-trace-id", "t1", "x-eatp-agent-id", "ag1", "x-eatp-delegation-depth", "0"),
			want: TrustContext{TraceID: "t1", AgentID: "ag1", HasDepth: true}},
		{name: "upper-case names", h: hdr("X-EATP-TRACE-ID", "t1", "X-EATP-AGENT-ID", "ag1", "X-EATP-SESSION-ID", "s"),
			want: TrustContext{TraceID: "t1", AgentID: "ag1", TrustSessionID: "s"}},
		{name: "spec spelling", h: hdr(HeaderTraceID, "t1", HeaderAgentID, "ag1"),
			want: TrustContext{TraceID: "t1", AgentID: "ag1"}},
		{name: "surrounding space trimmed", h: hdr(HeaderTraceID, "  t1 ", HeaderDelegationDepth, " 3 "),
			want: TrustContext{TraceID: "t1", Depth: 3, HasDepth: true}},
		{name: "empty values are absent", h: hdr(HeaderTraceID, "", HeaderHumanOrigin, "   ")},

		{name: "human origin raw JSON", h: hdr(HeaderHumanOrigin, origin), want: TrustContext{HumanOrigin: originMap}},
		{name: "human origin base64url unpadded", h: hdr(HeaderHumanOrigin, b64url(origin)), want: TrustContext{HumanOrigin: originMap}},
		{name: "human origin malformed base64", h: hdr(HeaderHumanOrigin, "!!not base64!!"), warnings: []string{HeaderHumanOrigin}},
		{name: "human origin base64 of bad JSON", h: hdr(HeaderHumanOrigin, b64(`{"a":`)), warnings: []string{HeaderHumanOrigin}},
		{name: "human origin raw bad JSON", h: hdr(HeaderHumanOrigin, `{"a":1`), warnings: []string{HeaderHumanOrigin}},
		{name: "human origin not an object", h: hdr(HeaderHumanOrigin, b64(`["a"]`)), warnings: []string{HeaderHumanOrigin}},
		{name: "human origin duplicate keys", h: hdr(HeaderHumanOrigin, `{"tenant_id":"A","tenant_id":"B"}`), warnings: []string{HeaderHumanOrigin}},
		{name: "human origin trailing data", h: hdr(HeaderHumanOrigin, `{}{}`), warnings: []string{HeaderHumanOrigin}},
		{name: "human origin nested too deep", h: hdr(HeaderHumanOrigin, strings.Repeat(`{"a":`, 40)+"1"+strings.Repeat("}", 40)),
			warnings: []string{HeaderHumanOrigin}},
		{name: "constraints with too many values", h: hdr(HeaderConstraints, `{"a":[`+strings.Repeat("1,", maxJSONElements+1)+`1]}`),
			warnings: []string{HeaderConstraints}},
		{name: "constraints with too many objects", h: hdr(HeaderConstraints, `{"a":[`+strings.Repeat("{},", maxJSONContainers/2)+`{}],"b":[`+strings.Repeat("{},", maxJSONContainers/2)+`{}]}`),
			warnings: []string{HeaderConstraints}},
		{name: "constraints at the element bound", h: hdr(HeaderConstraints, `{"a":[`+strings.Repeat("1,", maxJSONElements-1)+`1]}`),
			want: TrustContext{Constraints: map[string]any{"a": func() []any {
				a := make([]any, maxJSONElements)
				for i := range a {
					a[i] = json.Number("1")
				}
				return a
			}()}}},
		{name: "constraints base64", h: hdr(HeaderConstraints, b64(cons)), want: TrustContext{Constraints: consMap}},
		{name: "constraints raw JSON", h: hdr(HeaderConstraints, cons), want: TrustContext{Constraints: consMap}},
		{name: "constraints malformed, other fields kept", h: hdr(HeaderConstraints, "%%%", HeaderTraceID, "t1"),
			want: TrustContext{TraceID: "t1"}, warnings: []string{HeaderConstraints}},

		{name: "chain JSON array", h: hdr(HeaderDelegationChain, `["a","b"]`), want: TrustContext{Chain: []string{"a", "b"}}},
		{name: "chain empty JSON array", h: hdr(HeaderDelegationChain, `[]`), want: TrustContext{Chain: []string{}}},
		{name: "chain comma list", h: hdr(HeaderDelegationChain, "a, b ,c"), want: TrustContext{Chain: []string{"a", "b", "c"}}},
		{name: "chain single", h: hdr(HeaderDelegationChain, "a"), want: TrustContext{Chain: []string{"a"}}},
		{name: "chain empty entry", h: hdr(HeaderDelegationChain, "a,,b"), warnings: []string{HeaderDelegationChain}},
		{name: "chain non-string entry", h: hdr(HeaderDelegationChain, `["a",1]`), warnings: []string{HeaderDelegationChain}},
		{name: "chain bad JSON", h: hdr(HeaderDelegationChain, `["a"`), warnings: []string{HeaderDelegationChain}},
		{name: "chain JSON trailing data", h: hdr(HeaderDelegationChain, `["a"]x`), warnings: []string{HeaderDelegationChain}},
		{name: "chain 16 entries (bound)", h: hdr(HeaderDelegationChain, jsonList(sixteen)), want: TrustContext{Chain: sixteen}},
		{name: "chain 17 entries JSON", h: hdr(HeaderDelegationChain, jsonList(seventeen)), warnings: []string{HeaderDelegationChain}},
		{name: "chain 17 entries CSV", h: hdr(HeaderDelegationChain, strings.Join(seventeen, ",")), warnings: []string{HeaderDelegationChain}},
		{name: "chain entry with CR/LF", h: hdr(HeaderDelegationChain, `["a","b\r\nX-Injected: 1"]`), warnings: []string{HeaderDelegationChain}},

		{name: "depth zero", h: hdr(HeaderDelegationDepth, "0"), want: TrustContext{HasDepth: true}},
		{name: "depth negative kept for CheckChain", h: hdr(HeaderDelegationDepth, "-1"), want: TrustContext{Depth: -1, HasDepth: true}},
		{name: "depth not an integer", h: hdr(HeaderDelegationDepth, "two"), warnings: []string{HeaderDelegationDepth}},
		{name: "depth fraction", h: hdr(HeaderDelegationDepth, "1.5"), warnings: []string{HeaderDelegationDepth}},
		{name: "depth out of range", h: hdr(HeaderDelegationDepth, "99999999999999999999"), warnings: []string{HeaderDelegationDepth}},
		{name: "depth over bound", h: hdr(HeaderDelegationDepth, strconv.Itoa(MaxDepthValue+1)), warnings: []string{HeaderDelegationDepth}},

		{name: "agent id with CR/LF", h: hdr(HeaderAgentID, "ag1\r\nX-Admin: yes", HeaderTraceID, "t1"),
			want: TrustContext{TraceID: "t1"}, warnings: []string{HeaderAgentID}},
		{name: "trace id with NUL", h: hdr(HeaderTraceID, "t\x001"), warnings: []string{HeaderTraceID}},
		{name: "session id with bidi override", h: hdr(HeaderSessionID, "nxs-\u202e1"), warnings: []string{HeaderSessionID}},
		{name: "agent id invalid UTF-8", h: hdr(HeaderAgentID, "ag\xff"), warnings: []string{HeaderAgentID}},
		{name: "agent id over 256 bytes", h: hdr(HeaderAgentID, strings.Repeat("a", MaxIDBytes+1)), warnings: []string{HeaderAgentID}},
		{name: "agent id at 256 bytes", h: hdr(HeaderAgentID, strings.Repeat("a", MaxIDBytes)),
			want: TrustContext{AgentID: strings.Repeat("a", MaxIDBytes)}},
		{name: "header over 8 KiB", h: hdr(HeaderConstraints, `{"a":"`+strings.Repeat("x", MaxHeaderBytes)+`"}`),
			warnings: []string{HeaderConstraints}},
		{name: "unicode agent id accepted", h: hdr(HeaderAgentID, "agent-ü-日本"), want: TrustContext{AgentID: "agent-ü-日本"}},
		{name: "repeated header", h: hdr(HeaderAgentID, "a1", HeaderAgentID, "a2"), warnings: []string{HeaderAgentID}},
		{name: "repeated across spellings", h: hdr("X-Eatp-Agent-Id", "a1", "x-eatp-agent-id", "a2"), warnings: []string{HeaderAgentID}},
		{name: "signature padded", h: hdr(HeaderSignature, "c2lnbmF0dXJl="), warnings: []string{HeaderSignature}},
		{name: "signature too long", h: hdr(HeaderSignature, strings.Repeat("A", 600)), warnings: []string{HeaderSignature}},
		{name: "unknown EATP header only in Raw", h: hdr("X-Eatp-Future", "x"), want: TrustContext{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			got, warnings := Extract(tt.h, slog.New(slog.NewTextHandler(&logs, nil)))
			if !sameTC(got, tt.want) {
				t.Errorf("Extract() = %+v, want %+v", got, tt.want)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("Extract() warnings = %q, want for %q", warnings, tt.warnings)
			}
			for i, w := range warnings {
				if !strings.HasPrefix(w, tt.warnings[i]+": ") {
					t.Errorf("warning %d = %q, want about %s", i, w, tt.warnings[i])
				}
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != len(tt.warnings) {
				t.Errorf("logged %d warnings, want %d:\n%s", n, len(tt.warnings), logs.String())
			}
			for _, bad := range []string{"X-Injected", "X-Admin", "\r", "\x00"} {
				if strings.Contains(logs.String(), bad) || strings.Contains(strings.Join(warnings, "\n"), bad) {
					t.Errorf("logs or warnings echo raw value %q:\n%s", bad, logs.String())
				}
			}
			// Raw holds every EATP header that was sent.
			for k := range tt.h {
				if _, ok := got.Raw[http.CanonicalHeaderKey(k)]; !ok {
					t.Errorf("Raw lacks %s", k)
				}
			}
		})
	}
}

func TestExtractRawBound(t *testing.T) {
	h := http.Header{}
	for i := range 40 {
		h.Set(fmt.Sprintf("X-Eatp-X%02d", i), "v")
	}
	h.Set(HeaderTraceID, "t1")
	tc, warnings := Extract(h, nil)
	if len(tc.Raw) != maxRawHeaders {
		t.Errorf("len(Raw) = %d, want %d", len(tc.Raw), maxRawHeaders)
	}
	if len(warnings) != 1 {
		t.Errorf("warnings = %q, want one", warnings)
	}
	// Control: below the bound, every header is kept.
	tc, warnings = Extract(hdr(HeaderTraceID, "t1", "X-Eatp-Other", "o"), nil)
	if len(tc.Raw) != 2 || len(warnings) != 0 || tc.TraceID != "t1" {
		t.Errorf("Extract(2 headers) Raw=%d warnings=%q trace=%q", len(tc.Raw), warnings, tc.TraceID)
	}
}

func TestToHeadersRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tc   TrustContext
	}{
		{name: "empty"},
		{name: "ids only", tc: TrustContext{TraceID: "eatp-mcp-0123456789abcdef", AgentID: "ag"}},
		{name: "everything", tc: TrustContext{
			TraceID: "t", AgentID: "ag", TrustSessionID: "nxs-1", Signature: "abc_-1",
			HumanOrigin: map[string]any{"user_id": "u", "tenant_id": "A", "nested": map[string]any{"k": []any{"x", json.Number("1.50")}}},
			Chain:       []string{"a", "b,c", "d"}, Depth: 3, HasDepth: true,
			Constraints: map[string]any{"max_cost": json.Number("10"), "tools": []any{"a", "b"}, "<html>": "&"},
		}},
		{name: "empty chain and maps", tc: TrustContext{Chain: []string{}, HumanOrigin: map[string]any{}, Constraints: map[string]any{}}},
		{name: "negative depth", tc: TrustContext{Depth: -2, HasDepth: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ToHeaders(tt.tc)
			got, warnings := Extract(h, nil)
			if len(warnings) > 0 {
				t.Errorf("Extract(ToHeaders()) warnings = %q", warnings)
			}
			if !sameTC(got, tt.tc) {
				t.Errorf("Extract(ToHeaders(%+v)) = %+v", tt.tc, got)
			}
			for k, v := range h {
				if len(v) != 1 || strings.ContainsAny(v[0], "\r\n") {
					t.Errorf("ToHeaders() %s = %q", k, v)
				}
			}
		})
	}
	// JSON fields are base64, the chain a JSON array.
	h := ToHeaders(TrustContext{HumanOrigin: map[string]any{"a": "b"}, Chain: []string{"x"}})
	if got := h.Get(HeaderHumanOrigin); got != b64(`{"a":"b"}`) {
		t.Errorf("ToHeaders() human origin = %q, want base64 JSON", got)
	}
	if got := h.Get(HeaderDelegationChain); got != `["x"]` {
		t.Errorf("ToHeaders() chain = %q, want JSON array", got)
	}
}

// worstCaseHeaders has every EATP header at (or near) its 8 KiB bound, the
// JSON headers with as many small values as the element bound allows.
func worstCaseHeaders() http.Header {
	big := map[string]any{}
	for i := range maxJSONContainers - 1 {
		big[fmt.Sprintf("k%02d", i)] = []any{strings.Repeat("x", 70), json.Number("1"), true, nil, strings.Repeat("y", 70), json.Number("2"), false}
	}
	chain := make([]string, MaxChainEntries)
	for i := range chain {
		chain[i] = strings.Repeat(string(rune('a'+i)), 200)
	}
	h := ToHeaders(TrustContext{
		TraceID: strings.Repeat("t", MaxIDBytes), AgentID: strings.Repeat("a", MaxIDBytes),
		TrustSessionID: strings.Repeat("s", MaxIDBytes), HumanOrigin: big, Constraints: big, Chain: chain,
		Depth: 16, HasDepth: true, Signature: strings.Repeat("S", 86),
	})
	return h
}

func TestExtractAllocationBound(t *testing.T) {
	h := worstCaseHeaders()
	tc, warnings := Extract(h, nil)
	if len(warnings) != 0 || len(tc.Chain) != MaxChainEntries || tc.HumanOrigin == nil || tc.Constraints == nil {
		t.Fatalf("worst case did not parse: warnings=%q chain=%d", warnings, len(tc.Chain))
	}
	const runs = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		Extract(h, nil)
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / runs
	t.Logf("metric extract_alloc_bytes=%d", perCall)
	for k, v := range h {
		t.Logf("%s: %d bytes", k, len(v[0]))
	}
	// Extract may allocate at most 64 KiB per 8 KiB JSON header (decoding
	// costs a few times its size, no more); two of the headers are JSON.
	if limit := uint64(2 * 64 << 10); perCall > limit {
		t.Errorf("Extract allocates %d bytes per call, want <= %d", perCall, limit)
	}
}

// FuzzExtract checks the extractor on arbitrary values of the eight headers:
// it never panics, ids are valid UTF-8 without control characters, the
// depth and chain stay in bounds, and ToHeaders/Extract round-trips.
func FuzzExtract(f *testing.F) {
	f.Add("t1", "ag1", b64(`{"user_id":"u"}`), `["a","b"]`, "2", `{"max":1}`, "nxs-1", "c2ln")
	f.Add("t\r\n", "ag\x00", "!!", "a,,b", "-5", "e30", "\u202e", "=")
	names := []string{HeaderTraceID, HeaderAgentID, HeaderHumanOrigin, HeaderDelegationChain,
		HeaderDelegationDepth, HeaderConstraints, HeaderSessionID, HeaderSignature}
	f.Fuzz(func(t *testing.T, trace, agent, origin, chain, depth, constraints, session, sig string) {
		h := http.Header{}
		for i, v := range []string{trace, agent, origin, chain, depth, constraints, session, sig} {
			if v != "" {
				h[names[i]] = []string{v}
			}
		}
		tc, _ := Extract(h, nil)
		for _, id := range append([]string{tc.TraceID, tc.AgentID, tc.TrustSessionID}, tc.Chain...) {
			if !utf8.ValidString(id) || strings.IndexFunc(id, badIDRune) >= 0 || len(id) > MaxIDBytes {
				t.Fatalf("Extract() produced bad id %q", id)
			}
		}
		if tc.Depth < -MaxDepthValue || tc.Depth > MaxDepthValue || (!tc.HasDepth && tc.Depth != 0) {
			t.Fatalf("Extract() depth = %d (has %v)", tc.Depth, tc.HasDepth)
		}
		if len(tc.Chain) > MaxChainEntries {
			t.Fatalf("Extract() chain has %d entries", len(tc.Chain))
		}
		out := ToHeaders(tc)
		for _, v := range out {
			if len(v[0]) > MaxHeaderBytes {
				return // re-encoding (base64, JSON escapes) can outgrow the bound
			}
		}
		again, warnings := Extract(out, nil)
		if len(warnings) > 0 || !sameTC(again, tc) {
			t.Fatalf("round trip: %+v -> %+v (warnings %q)", tc, again, warnings)
		}
		_ = CheckChain(tc, ChainPolicy{})
	})
}
