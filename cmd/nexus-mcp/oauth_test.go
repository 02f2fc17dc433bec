package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// goAuthServer is the discovery surface of an authorization server
// (RFC 8414 metadata and a JWKS) with a key the test signs tokens with.
// The end-to-end test with a real authorization server and a real client
// is TestOAuthEndToEnd; this one keeps the HTTP edge's own tests in Go.
type goAuthServer struct {
	*httptest.Server
	key *ecdsa.PrivateKey
}

func newGoAuthServer(t *testing.T) *goAuthServer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	as := &goAuthServer{key: k}
	mux := http.NewServeMux()
	as.Server = httptest.NewServer(mux)
	t.Cleanup(as.Close)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": as.URL, "jwks_uri": as.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		pt, _ := k.PublicKey.Bytes()
		enc := base64.RawURLEncoding.EncodeToString
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": enc(pt[1:33]), "y": enc(pt[33:])}}})
	})
	return as
}

// token signs an access token for aud, tenant and scope.
func (as *goAuthServer) token(t *testing.T, aud, tenant, sub, scope string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": as.URL, "aud": aud, "sub": sub, "tenant_id": tenant, "scope": scope,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(as.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawCall is a tools/call request body.
func rawCall(tool string, args any) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": args}})
	return string(b)
}

// TestHTTPWithoutOAuth: a server with API keys only answers the OAuth
// probes of clients with JSON that says so, every unknown path with JSON,
// and a 401 whose body names the API key.
func TestHTTPWithoutOAuth(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	for _, p := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		r := rawDo(t, http.MethodGet, e.base+p, nil, nil)
		var body map[string]string
		if r.status != http.StatusNotFound || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") ||
			json.Unmarshal([]byte(r.body), &body) != nil || !strings.Contains(body["error_description"], "API keys") {
			t.Errorf("GET %s = %d %q %q, want JSON 404 naming API keys", p, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/register", "/nope"} {
		r := rawDo(t, http.MethodPost, e.base+p, nil, strings.NewReader("{}"))
		var body map[string]string
		if r.status != http.StatusNotFound || json.Unmarshal([]byte(r.body), &body) != nil ||
			!strings.Contains(body["error_description"], "missing or invalid one. Send Authorization: Bearer nxk_") {
			t.Errorf("POST %s = %d %q, want a JSON 404 naming the API key", p, r.status, r.body)
		}
	}
	r := rawDo(t, http.MethodPost, e.url, nil, strings.NewReader(rawInitialize))
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" ||
		!strings.Contains(r.body, "missing or invalid API key (send Authorization: Bearer nxk_…)") {
		t.Errorf("no key = %d %q %q, want 401 naming the API key", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	r = rawDo(t, http.MethodPost, e.url, bearer("nxk_wrong"), strings.NewReader(rawInitialize))
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` ||
		!strings.Contains(r.body, "missing or invalid API key") {
		t.Errorf("wrong key = %d %q %q, want 401 invalid_token naming the API key", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	if r := rawDo(t, http.MethodGet, e.base+"/healthz", nil, nil); r.status != http.StatusOK {
		t.Errorf("/healthz = %d (control)", r.status)
	}
}

// TestHTTPKeyScopes: a key created with fewer scopes is refused, per tool
// call, with 403 insufficient_scope, in both protocol eras; the refusal is
// audited in its tenant; a key with every scope (another tenant) and the
// key's own reads pass.
func TestHTTPKeyScopes(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	readKey := e.newKey(t, memory.NewKey{TenantID: "ro", Scopes: tenancy.ScopeSet(tenancy.ScopeRead)})
	fullKey := e.newKey(t, memory.NewKey{TenantID: "rw"})
	for _, legacy := range []bool{true, false} {
		name := map[bool]string{true: "2025-11-25 sessions", false: "2026-07-28 stateless"}[legacy]
		t.Run(name, func(t *testing.T) {
			ro, _ := mcpGoClient(t, e.url, bearer(readKey), legacy)
			if res := callTool(t, ro, "read_graph", map[string]any{}); res.IsError {
				t.Errorf("read_graph with a nexus:read key = %q (control)", resultText(res))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var req = callRequest("create_entities", entityArgs("X"))
			if res, err := ro.CallTool(ctx, req); err == nil {
				t.Errorf("create_entities with a nexus:read key = %v, want a 403 error", resultText(res))
			}
			rw, _ := mcpGoClient(t, e.url, bearer(fullKey), legacy)
			if res := callTool(t, rw, "create_entities", entityArgs("Y-"+name)); res.IsError {
				t.Errorf("create_entities with a full key = %q (control)", resultText(res))
			}
		})
	}
	r := rawDo(t, http.MethodPost, e.url, bearer(readKey), strings.NewReader(rawCall("create_entities", entityArgs("Z"))))
	if want := `Bearer error="insufficient_scope", scope="nexus:read nexus:write"`; r.status != http.StatusForbidden || r.header.Get("WWW-Authenticate") != want {
		t.Errorf("raw create_entities with a read key = %d %q, want 403 %q", r.status, r.header.Get("WWW-Authenticate"), want)
	}
	// A batch hiding a write behind a read is refused too.
	batch := "[" + rawCall("read_graph", map[string]any{}) + "," + rawCall("delete_entities", map[string]any{"entityNames": []string{"Y"}}) + "]"
	if r := rawDo(t, http.MethodPost, e.url, bearer(readKey), strings.NewReader(batch)); r.status != http.StatusForbidden {
		t.Errorf("batch with a write = %d %q, want 403", r.status, r.body)
	}

	ctx := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "ro"})
	recs, _, err := e.store.AuditLog(ctx, memory.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, r := range recs {
		if r.Event.Action == "scope.denied" && strings.Contains(r.Event.Detail, "nexus:write") {
			denied++
		}
	}
	if denied < 3 {
		t.Errorf("tenant ro has %d scope.denied rows, want at least 3 (two eras, raw, batch)", denied)
	}
	ctxRW := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "rw"})
	if recs, _, err := e.store.AuditLog(ctxRW, memory.AuditFilter{Limit: 100}); err != nil || slices.ContainsFunc(recs, func(r memory.AuditRecord) bool { return r.Event.Action == "scope.denied" }) {
		t.Errorf("tenant rw audit = %d rows, err %v: want no scope.denied row", len(recs), err)
	}
}

// TestHTTPOAuth drives the OAuth resource server mode over HTTP: RFC 9728
// metadata at both paths, the 401 challenge, audience binding, per-call
// scopes with 403 insufficient_scope, API keys beside OAuth, both eras.
func TestHTTPOAuth(t *testing.T) {
	as := newGoAuthServer(t)
	e := startHTTP(t, httpTestOpts{oauthIssuers: []string{as.URL}})
	resource := e.url
	metaURL := e.base + "/.well-known/oauth-protected-resource/mcp"

	for _, p := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		r := rawDo(t, http.MethodGet, e.base+p, map[string]string{"Origin": "https://claude.ai"}, nil)
		var md struct {
			Resource               string   `json:"resource"`
			AuthorizationServers   []string `json:"authorization_servers"`
			ScopesSupported        []string `json:"scopes_supported"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
			ResourceName           string   `json:"resource_name"`
		}
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &md) != nil || md.Resource != resource ||
			!slices.Equal(md.AuthorizationServers, []string{as.URL}) ||
			!slices.Equal(md.ScopesSupported, []string{"nexus:read", "nexus:write", "nexus:delegate", "nexus:admin"}) ||
			!slices.Equal(md.BearerMethodsSupported, []string{"header"}) || md.ResourceName == "" {
			t.Errorf("GET %s = %d %s, want RFC 9728 metadata for %s", p, r.status, r.body, resource)
		}
	}

	if r := rawDo(t, http.MethodPost, e.base+"/register", nil, strings.NewReader("{}")); r.status != http.StatusNotFound ||
		!json.Valid([]byte(r.body)) || !strings.Contains(r.body, "/.well-known/oauth-protected-resource") {
		t.Errorf("POST /register = %d %q, want a JSON 404 pointing at the metadata", r.status, r.body)
	}

	wantChallenge := `Bearer resource_metadata="` + metaURL + `", scope="nexus:read nexus:write nexus:delegate nexus:admin"`
	if r := rawDo(t, http.MethodPost, e.url, nil, strings.NewReader(rawInitialize)); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != wantChallenge {
		t.Errorf("no token = %d %q, want 401 %q", r.status, r.header.Get("WWW-Authenticate"), wantChallenge)
	}
	other := as.token(t, "https://other.example/mcp", "acme", "alice", "nexus:read nexus:write")
	if r := rawDo(t, http.MethodPost, e.url, bearer(other), strings.NewReader(rawInitialize)); r.status != http.StatusUnauthorized ||
		!strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token", resource_metadata="`+metaURL) {
		t.Errorf("token for another audience = %d %q, want 401 invalid_token", r.status, r.header.Get("WWW-Authenticate"))
	}

	readTok := as.token(t, resource, "acme", "alice", "nexus:read")
	fullTok := as.token(t, resource, "acme", "alice", "nexus:read nexus:write")
	otherTenant := as.token(t, resource, "globex", "alice", "nexus:read nexus:write")
	for _, legacy := range []bool{true, false} {
		name := map[bool]string{true: "2025-11-25 sessions", false: "2026-07-28 stateless"}[legacy]
		t.Run(name, func(t *testing.T) {
			rw, _ := mcpGoClient(t, e.url, bearer(fullTok), legacy)
			if res := callTool(t, rw, "create_entities", entityArgs("A-"+name)); res.IsError {
				t.Errorf("create_entities with nexus:write = %q (control)", resultText(res))
			}
			ro, _ := mcpGoClient(t, e.url, bearer(readTok), legacy)
			if res := callTool(t, ro, "read_graph", map[string]any{}); res.IsError || !slices.Contains(graphNames(t, resultText(res)), "A-"+name) {
				t.Errorf("read_graph with nexus:read = %q, want A-%s (control)", resultText(res), name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if res, err := ro.CallTool(ctx, callRequest("create_entities", entityArgs("B"))); err == nil {
				t.Errorf("create_entities with nexus:read = %v, want a 403 error", resultText(res))
			}
			og, _ := mcpGoClient(t, e.url, bearer(otherTenant), legacy)
			if res := callTool(t, og, "read_graph", map[string]any{}); res.IsError || len(graphNames(t, resultText(res))) != 0 {
				t.Errorf("read_graph of tenant globex = %q, want an empty graph", resultText(res))
			}
		})
	}
	r := rawDo(t, http.MethodPost, e.url, bearer(readTok), strings.NewReader(rawCall("create_entities", entityArgs("C"))))
	wantScope := `Bearer error="insufficient_scope", scope="nexus:read nexus:write", resource_metadata="` + metaURL + `"`
	if r.status != http.StatusForbidden || r.header.Get("WWW-Authenticate") != wantScope {
		t.Errorf("write with a read token = %d %q, want 403 %q", r.status, r.header.Get("WWW-Authenticate"), wantScope)
	}

	// API keys keep working beside OAuth.
	key := e.newKey(t, memory.NewKey{TenantID: "acme"})
	c, _ := mcpGoClient(t, e.url, bearer(key), false)
	if res := callTool(t, c, "read_graph", map[string]any{}); res.IsError || len(graphNames(t, resultText(res))) != 2 {
		t.Errorf("read_graph with an API key of acme = %q, want the two entities the token wrote", resultText(res))
	}
}

// TestOAuthFlags: OAuth mode needs both flags and safe URLs.
func TestOAuthFlags(t *testing.T) {
	cases := []struct {
		name     string
		issuers  []string
		resource string
		wantErr  string
	}{
		{"issuer without resource", []string{"https://idp.example"}, "", "--resource-url"},
		{"resource without issuer", nil, "https://nexus.example/mcp", "--oauth-issuer"},
		{"http issuer off loopback", []string{"http://idp.example"}, "https://nexus.example/mcp", "https"},
		{"http resource off loopback", []string{"https://idp.example"}, "http://nexus.example/mcp", "https"},
		{"both, https (control)", []string{"https://idp.example"}, "https://nexus.example/mcp", ""},
		{"neither (control)", nil, "", ""},
	}
	for _, c := range cases {
		f := httpFlags{oauth: oauthFlags{issuers: c.issuers, resourceURL: c.resource}}
		_, err := f.resourceServer()
		if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: resourceServer() error = %v, want %q", c.name, err, c.wantErr)
		}
	}
}

// callRequest is a tools/call request of the mcp-go client.
func callRequest(name string, args any) mcp.CallToolRequest {
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	return req
}

// TestKeysCreateScopes: `keys create --scopes` stores fewer scopes, the
// key authenticates with exactly them, a key without --scopes has every
// scope, and an unknown scope is refused naming the valid ones.
func TestKeysCreateScopes(t *testing.T) {
	db := memtest.DSN(t)
	mustCLI(t, "--db", db, "tenants", "create", "acme")
	limited := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "acme", "--scopes", "read,nexus:delegate"))
	full := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "acme"))
	_, errs, code := runCLI(t, "", "--db", db, "keys", "create", "--tenant", "acme", "--scopes", "read,root")
	if code == 0 || !strings.Contains(errs, `unknown scope "nexus:root"`) || !strings.Contains(errs, "nexus:admin") {
		t.Errorf("--scopes read,root = exit %d %q, want a refusal naming the valid scopes", code, errs)
	}
	store, err := memory.Open(context.Background(), db, memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for key, want := range map[string]tenancy.ScopeSet{
		limited: tenancy.ScopeSet(tenancy.ScopeRead | tenancy.ScopeDelegate),
		full:    tenancy.AllScopes,
	} {
		rc, _, err := tenancy.VerifyAPIKey(context.Background(), store, key, time.Now())
		if err != nil || rc.Scopes != want {
			t.Errorf("VerifyAPIKey scopes = %v (err %v), want %v", rc.Scopes, err, want)
		}
	}
	list := mustCLI(t, "--db", db, "keys", "list", "--tenant", "acme")
	if !strings.Contains(list, "SCOPES") || !strings.Contains(list, "nexus:read,nexus:delegate") ||
		!strings.Contains(list, "nexus:read,nexus:write,nexus:delegate,nexus:admin") {
		t.Errorf("keys list =\n%s\nwant a SCOPES column with both keys' scopes", list)
	}
}
