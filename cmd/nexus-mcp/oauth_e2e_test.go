package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// oauthNodeDir holds the Node.js side of TestOAuthEndToEnd: a real
// authorization server (oauth2-mock-server) and the official MCP
// TypeScript SDK client, installed with `npm ci` (.ci/run does it).
var oauthNodeDir = filepath.Join("testdata", "oauth")

// requireOAuthNode returns the node binary, or skips the test when Node.js
// or the npm dependencies are absent.
func requireOAuthNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("skipping the OAuth end-to-end test: node is not installed (needs Node.js 20+ and `npm ci` in cmd/nexus-mcp/testdata/oauth; .ci/run does both)")
	}
	for _, m := range []string{"oauth2-mock-server", "@modelcontextprotocol/sdk"} {
		if _, err := os.Stat(filepath.Join(oauthNodeDir, "node_modules", m, "package.json")); err != nil {
			t.Skipf("skipping the OAuth end-to-end test: npm package %s is not installed (run `npm ci` in cmd/nexus-mcp/testdata/oauth; .ci/run does)", m)
		}
	}
	return node
}

// startNodeAuthServer runs testdata/oauth/as.mjs and returns its issuer.
func startNodeAuthServer(t *testing.T, node string) string {
	t.Helper()
	cmd := exec.Command(node, "as.mjs")
	cmd.Dir = oauthNodeDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("authorization server stderr:\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("authorization server did not start: %v\n%s", err, stderr.String())
	}
	var out struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal([]byte(line), &out); err != nil || out.Issuer == "" {
		t.Fatalf("authorization server said %q: %v", line, err)
	}
	return out.Issuer
}

// clientEvent is one line client.mjs prints.
type clientEvent struct {
	Event           string `json:"event"`
	Method          string `json:"method"`
	URL             string `json:"url"`
	Status          int    `json:"status"`
	WWWAuthenticate string `json:"www_authenticate"`
	Scope           string `json:"scope"`
	Resource        string `json:"resource"`
	ChallengeMethod string `json:"code_challenge_method"`
	Aud             any    `json:"aud"`
	Iss             string `json:"iss"`
	Tool            string `json:"tool"`
	IsError         bool   `json:"isError"`
	Text            string `json:"text"`
	Error           string `json:"error"`
	Protocol        string `json:"protocol"`
}

// runSDKClient runs client.mjs against serverURL as clientID and returns
// its events.
func runSDKClient(t *testing.T, node, serverURL, clientID string, calls []map[string]any) []clientEvent {
	t.Helper()
	b, _ := json.Marshal(calls)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", serverURL, clientID, string(b))
	cmd.Dir = oauthNodeDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.mjs %s: %v\nstdout:\n%s\nstderr:\n%s", clientID, err, out, stderr.String())
	}
	var evs []clientEvent
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev clientEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("client.mjs printed %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	t.Logf("%s:\n%s", clientID, out)
	return evs
}

func find(evs []clientEvent, ok func(clientEvent) bool) (clientEvent, bool) {
	for _, ev := range evs {
		if ok(ev) {
			return ev, true
		}
	}
	return clientEvent{}, false
}

// TestOAuthEndToEnd proves the MCP authorization flow with a real
// authorization server and the official TypeScript SDK client: the client
// starts with no token, discovers the resource metadata from the 401,
// then the authorization server, obtains a token for this resource
// (authorization code, PKCE, RFC 8707 resource indicator), calls tools,
// and a read-only user's write gets 403 insufficient_scope (the SDK's
// step-up authorization is granted no more, so the write stays refused).
// A token the same server issues for another resource is refused.
func TestOAuthEndToEnd(t *testing.T) {
	node := requireOAuthNode(t)
	issuer := startNodeAuthServer(t, node)
	e := startHTTP(t, httpTestOpts{oauthIssuers: []string{issuer}})
	metaURL := e.base + "/.well-known/oauth-protected-resource/mcp"
	entity := canary()

	t.Run("full user: discover, authorize, write, read", func(t *testing.T) {
		evs := runSDKClient(t, node, e.url, "nexus-full", []map[string]any{
			{"tool": "create_entities", "arguments": entityArgs(entity)},
			{"tool": "read_graph"},
		})
		if len(evs) == 0 || evs[0].Event != "http" || evs[0].Status != http.StatusUnauthorized ||
			!strings.Contains(evs[0].WWWAuthenticate, `resource_metadata="`+metaURL+`"`) {
			t.Fatalf("first exchange = %+v, want 401 naming %s", evs[0], metaURL)
		}
		if _, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "http" && ev.URL == metaURL && ev.Status == 200 }); !ok {
			t.Errorf("the client never fetched %s", metaURL)
		}
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "authorize" }); !ok || ev.Resource != e.url || ev.ChallengeMethod != "S256" {
			t.Errorf("authorization request = %+v, want resource %s and PKCE S256", ev, e.url)
		}
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "token" }); !ok || ev.Aud != e.url || ev.Iss != issuer ||
			ev.Scope != "nexus:read nexus:write nexus:delegate nexus:admin" {
			t.Errorf("token = %+v, want aud %s, iss %s and every scope", ev, e.url, issuer)
		}
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "call" && ev.Tool == "create_entities" }); !ok || ev.IsError || ev.Error != "" {
			t.Errorf("create_entities = %+v, want success", ev)
		}
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "call" && ev.Tool == "read_graph" }); !ok || !strings.Contains(ev.Text, entity) {
			t.Errorf("read_graph = %+v, want %s", ev, entity)
		}
	})

	t.Run("read-only user: read, then a write gets 403 insufficient_scope", func(t *testing.T) {
		evs := runSDKClient(t, node, e.url, "nexus-readonly", []map[string]any{
			{"tool": "read_graph"},
			{"tool": "create_entities", "arguments": entityArgs("never-" + entity)},
		})
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "token" }); !ok || ev.Scope != "nexus:read" || ev.Aud != e.url {
			t.Errorf("token = %+v, want nexus:read for %s", ev, e.url)
		}
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "call" && ev.Tool == "read_graph" }); !ok || ev.IsError || !strings.Contains(ev.Text, entity) {
			t.Errorf("read_graph = %+v, want the full user's %s (same tenant; control)", ev, entity)
		}
		want := `Bearer error="insufficient_scope", scope="nexus:read nexus:write", resource_metadata="` + metaURL + `"`
		if _, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "http" && ev.Status == 403 && ev.WWWAuthenticate == want }); !ok {
			t.Errorf("no 403 with WWW-Authenticate %s", want)
		}
		if _, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "authorize" && ev.Scope == "nexus:read nexus:write" }); !ok {
			t.Errorf("the SDK did not ask for nexus:read nexus:write after the 403 (step-up)")
		}
		if ev, ok := find(evs, func(ev clientEvent) bool { return ev.Event == "call" && ev.Tool == "create_entities" }); !ok || ev.Error == "" || !strings.Contains(ev.Error, "403") {
			t.Errorf("create_entities = %+v, want a 403 error", ev)
		}
		ctx := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "acme"})
		recs, _, err := e.store.AuditLog(ctx, memory.AuditFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		reader := tenancy.OAuthUserID(issuer, "reader")
		denied := 0
		for _, r := range recs {
			if r.Event.Action == "scope.denied" && r.Event.UserID == reader {
				denied++
			}
		}
		if denied == 0 {
			t.Errorf("no scope.denied audit row of %s in acme", reader)
		}
	})

	t.Run("a token of the trusted server for another resource is refused", func(t *testing.T) {
		token := func(resource string) string {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"nexus-full"}, "scope": {"nexus:read"}, "resource": {resource}}
			resp, err := http.PostForm(issuer+"/token", form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
				t.Fatalf("token for %s: %v (status %d)", resource, err, resp.StatusCode)
			}
			return tok.AccessToken
		}
		r := rawDo(t, http.MethodPost, e.url, bearer(token("https://other.example/mcp")), strings.NewReader(rawInitialize))
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
			t.Errorf("token for another resource = %d %q, want 401 invalid_token", r.status, r.header.Get("WWW-Authenticate"))
		}
		if r := rawDo(t, http.MethodPost, e.url, bearer(token(e.url)), strings.NewReader(rawInitialize)); r.status != http.StatusOK {
			t.Errorf("token for this resource = %d %q, want 200 (control)", r.status, r.body)
		}
	})
}
