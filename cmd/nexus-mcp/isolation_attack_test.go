package main

import (
	"encoding/json"
	"regexp"
	"time"

	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// TestHTTPDisabledHomeTenantJWTCannotSwitchTenant: a credential whose home
// tenant is disabled is refused everywhere, also when X-Tenant-Id selects
// another tenant its user is a member of — a JWT the same as an API key.
func TestHTTPDisabledHomeTenantJWTCannotSwitchTenant(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	ctx := context.Background()
	keyAlpha := e.newKey(t, memory.NewKey{TenantID: "alpha", UserID: "alice"})
	keyBeta := e.newKey(t, memory.NewKey{TenantID: "beta", UserID: "bob"})
	tokBeta := testJWT(t, "beta", "bob")
	addMember(t, e.db, "alpha", "bob", "beta", "")
	addMember(t, e.db, "alpha", "bob", "", "test-issuer")

	cases := []struct {
		name string
		hdr  map[string]string
	}{
		{"beta jwt into alpha", with(bearer(tokBeta), tenancy.HeaderTenantID, "alpha")},
		{"beta api key into alpha", with(bearer(keyBeta), tenancy.HeaderTenantID, "alpha")},
		{"beta jwt at home", bearer(tokBeta)},
		{"beta api key at home", bearer(keyBeta)},
	}
	status := func(hdr map[string]string) int {
		return rawDo(t, http.MethodPost, e.url, hdr, strings.NewReader(rawInitialize)).status
	}
	// Positive control: beta enabled, every path admitted.
	for _, c := range cases {
		if got := status(c.hdr); got != http.StatusOK {
			t.Errorf("%s with beta enabled = %d, want 200 (control)", c.name, got)
		}
	}
	if err := e.store.SetTenantDisabled(ctx, "beta", true); err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for _, c := range cases {
		if got := status(c.hdr); got != http.StatusForbidden {
			admitted++
			t.Errorf("%s with beta disabled = %d, want 403", c.name, got)
		}
	}
	// alpha itself is unaffected (control).
	if got := status(bearer(keyAlpha)); got != http.StatusOK {
		t.Errorf("alpha's own key with beta disabled = %d, want 200 (control)", got)
	}
	t.Logf("metric disabled_home_admitted=%d", admitted)
}

// addMember admits a principal to tenant with the CLI: fromTenant for an
// API-key user, issuer for a JWT user.
func addMember(t *testing.T, db, tenant, user, fromTenant, issuer string) {
	t.Helper()
	args := []string{"--db", db, "members", "add", "--tenant", tenant, "--user", user}
	if fromTenant != "" {
		args = append(args, "--from-tenant", fromTenant)
	}
	if issuer != "" {
		args = append(args, "--issuer", issuer)
	}
	mustCLI(t, args...)
}

// cliKey creates a key with the CLI and returns the key and its id.
func cliKey(t *testing.T, db string, args ...string) (key, id string) {
	t.Helper()
	out, errs, code := runCLI(t, "", append([]string{"--db", db, "keys", "create"}, args...)...)
	if code != 0 {
		t.Fatalf("keys create %v: exit %d: %s", args, code, errs)
	}
	m := regexp.MustCompile(`created key (key_[0-9a-f]+)`).FindStringSubmatch(errs)
	if m == nil {
		t.Fatalf("keys create: no key id in %q", errs)
	}
	return strings.TrimSpace(out), m[1]
}

// stdioWrite creates one entity named name and reports the result.
func stdioWrite(t *testing.T, c *client.Client, name string) *mcp.CallToolResult {
	t.Helper()
	return callTool(t, c, "create_entities", map[string]any{"entities": []any{
		map[string]any{"name": name, "entityType": "t", "observations": []string{}}}})
}

// stdioHas reports whether c's tenant has an entity named name.
func stdioHas(t *testing.T, c *client.Client, name string) bool {
	t.Helper()
	return len(entityNames(t, callTool(t, c, "open_nodes", map[string]any{"names": []string{name}}))) > 0
}

// TestStdioRevokedKeyExpiredKeyAndDisabledTenantStopRunningServer: keys
// revoke, key expiry and tenants disable reach an already running stdio
// server on its next tool call; the refused call says why and writes
// nothing, while the other tenant's server keeps working.
func TestStdioRevokedKeyExpiredKeyAndDisabledTenantStopRunningServer(t *testing.T) {
	db := memtest.DSN(t)
	for _, tn := range []string{"alpha", "beta"} {
		mustCLI(t, "--db", db, "tenants", "create", tn)
	}
	keyA, idA := cliKey(t, db, "--tenant", "alpha", "--user", "alice")
	keyB, _ := cliKey(t, db, "--tenant", "beta", "--user", "bob")
	keyA2, _ := cliKey(t, db, "--tenant", "alpha", "--user", "alice")
	ca := stdioClient(t, db, "NEXUS_API_KEY="+keyA)
	cb := stdioClient(t, db, "NEXUS_API_KEY="+keyB)

	refusedWrites := 0
	refused := func(who string, res *mcp.CallToolResult, want string) {
		t.Helper()
		if !res.IsError || !strings.Contains(resultText(res), want) {
			refusedWrites++
			t.Errorf("%s: %q (isError %v), want isError containing %q", who, resultText(res), res.IsError, want)
		}
	}
	// Controls: every server works before anything changes.
	for who, c := range map[string]*client.Client{"alpha": ca, "beta": cb} {
		if res := stdioWrite(t, c, "before-"+who); res.IsError {
			t.Fatalf("%s write before revocation: %s (control)", who, resultText(res))
		}
	}

	// Revocation of alpha's key: alpha's running server refuses, beta's works.
	mustCLI(t, "--db", db, "keys", "revoke", idA)
	refused("revoked key write", stdioWrite(t, ca, "after-revoke"), "revoked or has expired")
	refused("revoked key read", callTool(t, ca, "read_graph", map[string]any{}), "revoked or has expired")
	if res := stdioWrite(t, cb, "beta-after-revoke"); res.IsError {
		t.Errorf("beta write after alpha's revocation: %s (control)", resultText(res))
	}

	// Kill switch of beta: refused while disabled, works again once enabled.
	mustCLI(t, "--db", db, "tenants", "disable", "beta")
	refused("disabled tenant write", stdioWrite(t, cb, "while-disabled"), "disabled")
	mustCLI(t, "--db", db, "tenants", "enable", "beta")
	if res := stdioWrite(t, cb, "after-enable"); res.IsError {
		t.Errorf("beta write after enable: %s (control)", resultText(res))
	}
	if stdioHas(t, cb, "while-disabled") {
		t.Error("the write refused while beta was disabled was stored")
	}

	// Expiry: a server started with a key that then expires refuses its
	// calls from then on. (The key is created here, just before its server
	// starts, so that start-up and the control fit its lifetime.)
	const ttl = 8 * time.Second
	start := time.Now()
	expiresAt := start.Add(ttl)
	keyE, _ := cliKey(t, db, "--tenant", "alpha", "--user", "eve", "--expires", ttl.String())
	ce := stdioClient(t, db, "NEXUS_API_KEY="+keyE)
	if res := stdioWrite(t, ce, "before-expiring"); res.IsError {
		t.Fatalf("expiring key write before its expiry: %s (control; start-up took %v of its %v)", resultText(res), time.Since(start), ttl)
	}
	time.Sleep(time.Until(expiresAt) + 500*time.Millisecond)
	refused("expired key write", stdioWrite(t, ce, "after-expiry"), "revoked or has expired")

	// Nothing of the refused calls reached alpha's data (read with a fresh key).
	cf := stdioClient(t, db, "NEXUS_API_KEY="+keyA2)
	for _, name := range []string{"after-revoke", "after-expiry"} {
		if stdioHas(t, cf, name) {
			t.Errorf("refused write %q was stored", name)
		}
	}
	if !stdioHas(t, cf, "before-alpha") {
		t.Error("alpha's earlier write is missing (control)")
	}
	t.Logf("metric stdio_refusals_missed=%d", refusedWrites)
}

// TestHTTPTenantCannotRegisterAgentIDBoundToAnotherTenantsKey: the agent id
// a key was created for (keys create --agent) belongs to that key's tenant
// in the global registry: another tenant cannot register or rename into it,
// nor create a key claiming it, and the owner's own tools keep working.
func TestHTTPTenantCannotRegisterAgentIDBoundToAnotherTenantsKey(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	for _, tn := range []string{"alpha", "beta", "gamma"} {
		if err := e.store.EnsureTenant(context.Background(), tn); err != nil {
			t.Fatal(err)
		}
	}
	keyA, _ := cliKey(t, e.db, "--tenant", "alpha", "--user", "alice", "--agent", "a-agent")
	keyB, _ := cliKey(t, e.db, "--tenant", "beta", "--user", "bob")
	cA, _ := mcpGoClient(t, e.url, bearer(keyA), false)
	cB, _ := mcpGoClient(t, e.url, bearer(keyB), false)
	bCanary := canary()

	taken := 0
	refusedConflict := func(who string, res *mcp.CallToolResult) {
		t.Helper()
		if !res.IsError || !strings.Contains(resultText(res), "another tenant") {
			taken++
			t.Errorf("%s = %q (isError %v), want isError saying another tenant owns the id", who, resultText(res), res.IsError)
		}
	}
	// The attack: beta claims the id alpha's key is bound to.
	refusedConflict("beta register_agent a-agent", callTool(t, cB, "register_agent",
		map[string]any{"agentId": "a-agent", "name": bCanary, "capabilities": []any{"x"}}))
	refusedConflict("beta set_agent_identity a-agent", callTool(t, cB, "set_agent_identity",
		map[string]any{"newAgentId": "a-agent", "newName": bCanary}))
	// Control: beta registers an id of its own.
	if res := callTool(t, cB, "register_agent", map[string]any{"agentId": "b-agent", "name": "B", "capabilities": []any{"x"}}); res.IsError {
		t.Fatalf("beta register_agent b-agent: %s (control)", resultText(res))
	}

	// alpha's own tools work on its id, and its lookup shows only alpha's data.
	if res := callTool(t, cA, "register_agent", map[string]any{"agentId": "a-agent", "name": "Alpha agent", "capabilities": []any{"plan"}}); res.IsError {
		t.Fatalf("alpha register_agent a-agent: %s", resultText(res))
	}
	// a-agent's key acts as a-agent only; alpha's agent-less key registers the target
	keyA2, _ := cliKey(t, e.db, "--tenant", "alpha", "--user", "alice")
	cA2, _ := mcpGoClient(t, e.url, bearer(keyA2), false)
	if res := callTool(t, cA2, "register_agent", map[string]any{"agentId": "a-target", "name": "T", "capabilities": []any{"x"}}); res.IsError {
		t.Fatalf("alpha register_agent a-target: %s", resultText(res))
	}
	if res := callTool(t, cA, "prepare_agent_call", map[string]any{"calling_agent": "a-agent", "target_agent": "a-target", "tool_name": "t"}); res.IsError {
		t.Errorf("alpha prepare_agent_call(calling_agent=a-agent): %s", resultText(res))
	}
	status := resultText(callTool(t, cA, "get_agent_status", map[string]any{"agentId": "a-agent"}))
	if strings.Contains(status, bCanary) || !strings.Contains(status, "Alpha agent") || !strings.Contains(status, `"owned":true`) {
		t.Errorf("alpha get_agent_status(a-agent) = %s, want alpha's own registration only", status)
	}

	// keys create --agent claims the id: refused for an id another tenant
	// owns (bound to its key, or registered), allowed for a free one.
	for _, c := range []struct{ tenant, agent string }{{"beta", "a-agent"}, {"gamma", "b-agent"}} {
		out, errs, code := runCLI(t, "", "--db", e.db, "keys", "create", "--tenant", c.tenant, "--agent", c.agent)
		if code == 0 || strings.Contains(out, tenancy.APIKeyPrefix) || !strings.Contains(errs, "another tenant") {
			taken++
			t.Errorf("keys create --tenant %s --agent %s: exit %d, out %q, err %q; want refused naming another tenant", c.tenant, c.agent, code, out, errs)
		}
	}
	cliKey(t, e.db, "--tenant", "gamma", "--agent", "g-agent") // control: a free id
	cliKey(t, e.db, "--tenant", "alpha", "--agent", "a-agent") // control: the owner's second key
	t.Logf("metric agent_id_claims_taken=%d", taken)
}

// mxAgentArgName reports whether a schema property names an agent: any
// name containing "agent" at any depth, and from/to/caller/sender at the
// top level (nested from/to are entity names of relations).
func mxAgentArgName(name string, top bool) bool {
	n := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(name))
	if strings.Contains(n, "agent") {
		return true
	}
	switch n {
	case "from", "to", "caller", "sender", "actor":
		return top
	}
	return false
}

// mxAgentArgs returns the agent-naming properties of an input schema
// (JSON), as dotted paths.
func mxAgentArgs(schema any, prefix string, out map[string]bool) {
	m, ok := schema.(map[string]any)
	if !ok {
		return
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for name, sub := range props {
			if mxAgentArgName(name, prefix == "") {
				out[prefix+name] = true
			}
			mxAgentArgs(sub, prefix+name+".", out)
		}
	}
	if items, ok := m["items"]; ok {
		mxAgentArgs(items, prefix, out)
	}
	if ap, ok := m["additionalProperties"]; ok {
		mxAgentArgs(ap, prefix, out)
	}
}

// TestMatrixAgentBoundKeyActsAsItsAgent: a key bound to an agent (keys
// create --agent planner) acts as that agent. Every argument naming the
// acting agent must be the bound agent or omitted (then it defaults to
// it); naming another agent is refused "forbidden: agent mismatch", writes
// nothing and is audited with the real key. Keys without an agent keep
// naming any agent of their tenant. Every agent-naming argument of every
// tool must be classified in mxSelfAgent or mxOtherAgent.
func TestMatrixAgentBoundKeyActsAsItsAgent(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	ctx := context.Background()
	mk := func(nk memory.NewKey) (string, string) {
		if err := e.store.EnsureTenant(ctx, nk.TenantID); err != nil {
			t.Fatal(err)
		}
		key, k, err := e.store.CreateAPIKey(ctx, nk)
		if err != nil {
			t.Fatal(err)
		}
		return key, k.ID
	}
	plainKey, _ := mk(memory.NewKey{TenantID: "alpha", UserID: "ua"})
	plannerKey, plannerKeyID := mk(memory.NewKey{TenantID: "alpha", UserID: "ua", AgentID: "planner"})
	betaKey, betaKeyID := mk(memory.NewKey{TenantID: "beta", UserID: "ub", AgentID: "b-agent"})
	plain, _ := mcpGoClient(t, e.url, bearer(plainKey), false)
	planner, _ := mcpGoClient(t, e.url, bearer(plannerKey), false)
	beta, _ := mcpGoClient(t, e.url, bearer(betaKey), false)
	for _, id := range []string{"planner", "coder", "reviewer"} {
		mxMust(t, plain, "register_agent", mxArgs("agentId", id, "name", id, "capabilities", []any{"c"}))
	}
	mxMust(t, beta, "register_agent", mxArgs("agentId", "b-agent", "name", "B", "capabilities", []any{"c"}))

	// Every agent-naming argument is classified, and every entry is live.
	list, err := planner.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	unclassified, cells := 0, 0
	seen := map[string]bool{}
	for _, tool := range list.Tools {
		var schema any
		b, _ := json.Marshal(tool.InputSchema)
		if tool.RawInputSchema != nil {
			b = tool.RawInputSchema
		}
		if err := json.Unmarshal(b, &schema); err != nil {
			t.Fatal(err)
		}
		args := map[string]bool{}
		mxAgentArgs(schema, "", args)
		for arg := range args {
			seen[tool.Name+"."+arg] = true
			self := false
			for _, s := range mxSelfAgent[tool.Name] {
				self = self || s.arg == arg
			}
			if _, other := mxOtherAgent[tool.Name][arg]; !self && !other {
				unclassified++
				t.Errorf("tool %s argument %s names an agent but is in neither mxSelfAgent nor mxOtherAgent", tool.Name, arg)
			}
		}
	}
	for tool, ss := range mxSelfAgent {
		for _, s := range ss {
			if !seen[tool+"."+s.arg] {
				t.Errorf("mxSelfAgent %s.%s: no such agent-naming argument in tools/list", tool, s.arg)
			}
		}
	}
	for tool, m := range mxOtherAgent {
		for arg := range m {
			if !seen[tool+"."+arg] {
				t.Errorf("mxOtherAgent %s.%s: no such agent-naming argument in tools/list", tool, arg)
			}
		}
	}

	const mismatch = "forbidden: agent mismatch"
	honoured, refusedControls, wantDenials := 0, 0, 0
	for tool, ss := range mxSelfAgent {
		for _, s := range ss {
			label := tool + "." + s.arg
			// The attacks: alpha's planner key names coder; beta's key names
			// alpha's planner.
			for _, atk := range []struct {
				who   string
				c     *client.Client
				other string
			}{{"planner key", planner, "coder"}, {"beta key", beta, "planner"}} {
				args := s.base()
				args[s.arg] = atk.other
				r := mxCall(atk.c, tool, args)
				cells++
				if !r.isErr || r.text != mismatch {
					honoured++
					t.Errorf("%s: %s with %s=%q = %q (isError %v), want isError %q", label, atk.who, s.arg, atk.other, r.body(), r.isErr, mismatch)
				}
				if atk.c == planner {
					wantDenials++
				}
			}
			// Controls: the bound agent itself, and the argument omitted.
			for _, ctl := range []struct {
				name string
				args map[string]any
			}{{"bound agent", mxArgs(s.arg, "planner")}, {"omitted", mxArgs()}} {
				args := s.base()
				for k, v := range ctl.args {
					args[k] = v
				}
				r := mxCall(planner, tool, args)
				if strings.Contains(r.body(), "agent mismatch") || strings.Contains(r.body(), "required") || strings.Contains(r.body(), "missing propert") {
					refusedControls++
					t.Errorf("%s: planner key with %s = %q, want the call to act as planner (control)", label, ctl.name, r.body())
				}
			}
		}
	}

	// The reported attack, end to end: planner's key sends as coder.
	sent := mxCall(planner, "send_ai_message", mxArgs("from", "coder", "to", "reviewer", "content", "spoofed"))
	mxMust(t, planner, "send_ai_message", mxArgs("to", "reviewer", "content", "genuine"))
	mxMust(t, plain, "send_ai_message", mxArgs("from", "coder", "to", "reviewer", "content", "shared")) // no agent: today's behaviour
	inbox := mxMust(t, plain, "get_ai_messages", mxArgs("agentId", "reviewer"))
	b, _ := json.Marshal(inbox["messages"])
	if sent.ok() || strings.Contains(string(b), "spoofed") {
		honoured++
		t.Errorf("planner key sending from coder: %q; reviewer's inbox %s", sent.body(), b)
	}
	if !strings.Contains(string(b), `"from":"planner","to":"reviewer","content":"genuine"`) &&
		!strings.Contains(string(b), `"content":"genuine"`) {
		t.Errorf("reviewer's inbox %s lacks planner's genuine message (control)", b)
	}
	wantDenials++

	// Each refusal of the planner key is one audit denial row naming the real key.
	rows, _, err := e.store.AuditLog(tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: "alpha"}), memory.AuditFilter{Limit: memory.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	denials := 0
	for _, r := range rows {
		if r.Event.Outcome == memory.OutcomeDenied && strings.Contains(r.Event.Detail, "agent mismatch") {
			denials++
			if r.Event.APIKeyID != plannerKeyID || r.Event.AgentID != "planner" {
				t.Errorf("denial row %+v: want api key %s, agent planner", r.Event, plannerKeyID)
			}
		}
	}
	if denials != wantDenials {
		t.Errorf("alpha has %d agent-mismatch denial rows, want %d", denials, wantDenials)
	}
	brows, _, err := e.store.AuditLog(tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: "beta"}), memory.AuditFilter{Limit: memory.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range brows {
		if r.Event.Outcome == memory.OutcomeDenied && r.Event.APIKeyID != betaKeyID {
			t.Errorf("beta denial row %+v does not name beta's key", r.Event)
		}
	}
	t.Logf("metric agent_spoofs_honoured=%d", honoured)
	t.Logf("metric agent_args_unclassified=%d", unclassified)
	t.Logf("metric agent_cells=%d", cells)
	t.Logf("metric agent_controls_refused=%d", refusedControls)
}

// TestStdioAgentBoundKeyCannotSendAsAnotherAgent: over stdio, the planner's
// key cannot send a message as coder; omitting from sends as planner.
func TestStdioAgentBoundKeyCannotSendAsAnotherAgent(t *testing.T) {
	db := memtest.DSN(t)
	mustCLI(t, "--db", db, "tenants", "create", "alpha")
	plainKey, _ := cliKey(t, db, "--tenant", "alpha", "--user", "ua")
	plannerKey, _ := cliKey(t, db, "--tenant", "alpha", "--user", "ua", "--agent", "planner")
	plain := stdioClient(t, db, "NEXUS_API_KEY="+plainKey)
	planner := stdioClient(t, db, "NEXUS_API_KEY="+plannerKey)
	res := callTool(t, planner, "send_ai_message", map[string]any{"from": "coder", "to": "reviewer", "content": "spoofed"})
	if !res.IsError || resultText(res) != "forbidden: agent mismatch" {
		t.Errorf("planner key from=coder over stdio = %q (isError %v), want isError \"forbidden: agent mismatch\"", resultText(res), res.IsError)
	}
	if res := callTool(t, planner, "send_ai_message", map[string]any{"to": "reviewer", "content": "genuine"}); res.IsError {
		t.Fatalf("planner key without from: %s (control)", resultText(res))
	}
	inbox := resultText(callTool(t, plain, "get_ai_messages", map[string]any{"agentId": "reviewer"}))
	if strings.Contains(inbox, "spoofed") || !strings.Contains(inbox, `"from":"planner"`) {
		t.Errorf("reviewer's inbox = %s, want planner's genuine message only", inbox)
	}
}

// TestHTTPMembershipAdmitsOnlyTheNamedPrincipal: a membership names where
// its user comes from. Admitting beta's bob to alpha does not admit
// gamma's unrelated bob, nor a JWT user bob; admitting the issuer's bob
// admits JWTs of that issuer only. members add refuses a user without
// its origin.
func TestHTTPMembershipAdmitsOnlyTheNamedPrincipal(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	e.newKey(t, memory.NewKey{TenantID: "alpha", UserID: "alice"})
	keyBeta := e.newKey(t, memory.NewKey{TenantID: "beta", UserID: "bob"})
	keyGamma := e.newKey(t, memory.NewKey{TenantID: "gamma", UserID: "bob"})
	jwtBob := testJWT(t, "gamma", "bob")
	into := func(hdr map[string]string) int {
		return rawDo(t, http.MethodPost, e.url, with(hdr, tenancy.HeaderTenantID, "alpha"), strings.NewReader(rawInitialize)).status
	}
	admitted := 0
	want := func(who string, hdr map[string]string, status int) {
		t.Helper()
		got := into(hdr)
		if got != status {
			t.Errorf("%s into alpha = %d, want %d", who, got, status)
			if status == http.StatusForbidden {
				admitted++
			}
		}
	}

	// A membership without its origin is refused, naming the flags.
	for _, extra := range [][]string{nil, {"--from-tenant", "beta", "--issuer", "test-issuer"}} {
		args := append([]string{"--db", e.db, "members", "add", "--tenant", "alpha", "--user", "bob"}, extra...)
		if _, errs, code := runCLI(t, "", args...); code == 0 || !strings.Contains(errs, "--from-tenant") || !strings.Contains(errs, "--issuer") {
			t.Errorf("members add %v: exit %d, %q; want refused naming --from-tenant and --issuer", extra, code, errs)
		}
	}
	want("beta's bob before any membership", bearer(keyBeta), http.StatusForbidden)

	addMember(t, e.db, "alpha", "bob", "beta", "")
	want("beta's bob (control)", bearer(keyBeta), http.StatusOK)
	want("gamma's bob", bearer(keyGamma), http.StatusForbidden)
	want("JWT bob", bearer(jwtBob), http.StatusForbidden)

	addMember(t, e.db, "alpha", "bob", "", "test-issuer")
	want("JWT bob of the admitted issuer (control)", bearer(jwtBob), http.StatusOK)
	want("gamma's bob after the issuer's bob was admitted", bearer(keyGamma), http.StatusForbidden)

	out := mustCLI(t, "--db", e.db, "members", "list", "--tenant", "alpha")
	if !strings.Contains(out, "tenant:beta") || !strings.Contains(out, "issuer:test-issuer") || strings.Contains(out, "gamma") {
		t.Errorf("members list = %q, want beta's and the issuer's bob only", out)
	}
	mustCLI(t, "--db", e.db, "members", "remove", "--tenant", "alpha", "--user", "bob", "--from-tenant", "beta")
	want("beta's bob after removal", bearer(keyBeta), http.StatusForbidden)
	want("JWT bob after beta's bob was removed (control)", bearer(jwtBob), http.StatusOK)
	t.Logf("metric member_collisions_admitted=%d", admitted)
}
