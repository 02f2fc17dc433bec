package main

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// startJSONServer starts the real binary serving HTTP with JSON logs and
// returns its base URL and its stderr.
func startJSONServer(t *testing.T, db string, extra ...string) (string, *lockedBuffer) {
	t.Helper()
	p := startServerProc(t, db, append([]string{"--log-format", "json"}, extra...)...)
	return "http://" + p.addr, p.stderr
}

// jsonLines parses every complete log line; a line that is not JSON fails.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	lines := strings.Split(log, "\n")
	for _, l := range lines[:len(lines)-1] { // the last element is an incomplete line or ""
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// waitLine waits (bounded) for a log line for which match is true.
func waitLine(t *testing.T, log *lockedBuffer, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, m := range jsonLines(t, log.String()) {
			if match(m) {
				return m
			}
		}
	}
	t.Fatalf("no log line for %s:\n%s", what, log.String())
	return nil
}

// TestAccessLog: one JSON line per HTTP request and per tool call, a reason
// on every refusal (bodies stay fixed), tenants hashed unless asked for.
func TestAccessLog(t *testing.T) {
	db := memtest.DSN(t)
	const tenant = "acme-secret-name"
	key := newTenantKey(t, db, tenant)

	for _, names := range []bool{false, true} {
		var extra []string
		if names {
			extra = []string{"--log-tenant-names"}
		}
		base, log := startJSONServer(t, db, extra...)
		wantTenant := tenantHash(tenant)
		if names {
			wantTenant = tenant
		}

		c, _ := mcpGoClient(t, base+"/mcp", bearer(key), true)
		callTool(t, c, "read_graph", map[string]any{})
		toolLine := waitLine(t, log, "the tool call", func(m map[string]any) bool { return m["msg"] == "tool call" && m["tool"] == "read_graph" })
		if toolLine["level"] != "INFO" || toolLine["outcome"] != "ok" || toolLine["tenant"] != wantTenant || toolLine["duration_ms"] == nil {
			t.Errorf("tool call line = %v, want INFO, outcome ok, tenant %q, a duration", toolLine, wantTenant)
		}
		callLine := waitLine(t, log, "the tools/call request", func(m map[string]any) bool { return m["msg"] == "http request" && m["rpc"] == "tools/call" })
		if callLine["status"] != float64(200) || callLine["tenant"] != wantTenant || callLine["method"] != "POST" || callLine["reason"] != nil {
			t.Errorf("http line of the call = %v, want 200, tenant %q, no reason", callLine, wantTenant)
		}

		for _, tc := range []struct {
			name, reason string
			hdr          map[string]string
			status       int
		}{
			{"no credentials", "missing_credentials", nil, 401},
			{"bad key", "invalid_key", bearer("nxk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 401},
			{"foreign origin", "origin_not_allowed", with(bearer(key), "Origin", "https://evil.example"), 403},
			{"rebinding host", "host_not_allowed", with(bearer(key), "Host", "evil.example"), 403},
		} {
			// a distinct path tells this request's line apart
			path := "/mcp?case=" + strings.ReplaceAll(tc.name, " ", "-")
			resp := rawDo(t, "POST", base+path, tc.hdr, strings.NewReader(rawInitialize))
			if resp.status != tc.status {
				t.Errorf("%s: status %d, want %d", tc.name, resp.status, tc.status)
			}
			if strings.Contains(resp.body, tc.reason) {
				t.Errorf("%s: body %q carries the reason", tc.name, resp.body)
			}
			line := waitLine(t, log, tc.name, func(m map[string]any) bool {
				return m["msg"] == "http request" && m["status"] == float64(tc.status) && m["reason"] == tc.reason
			})
			if line["level"] != "INFO" || line["path"] != "/mcp" {
				t.Errorf("%s: line %v", tc.name, line)
			}
		}
		all := log.String()
		if got := strings.Contains(all, tenant); got != names {
			t.Errorf("--log-tenant-names=%v: tenant name in the log = %v\n%s", names, got, all)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "dev+0123456789ab.dirty"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{nil, "dev"},
	} {
		if got := versionOf(tc.bi); got != tc.want {
			t.Errorf("versionOf(%+v) = %q, want %q", tc.bi, got, tc.want)
		}
	}
	// the real binary: `version` and the serverInfo of initialize agree
	stdout, _, code := runExe(t, nil, "", "version")
	v, ok := strings.CutPrefix(strings.TrimSpace(stdout), "nexus-mcp ")
	if code != 0 || !ok || v == "" {
		t.Fatalf("version: exit %d, %q", code, stdout)
	}
	got, _ := pipedSession(t, memtest.DSN(t), []string{pipeInit})
	info, _ := got["1"]["result"].(map[string]any)["serverInfo"].(map[string]any)
	if info["version"] != v {
		t.Errorf("serverInfo = %v, want version %q as `version` prints", info, v)
	}
}
