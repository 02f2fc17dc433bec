package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The tenant-isolation matrix: every tool and resource, every identity-bearing
// argument and header, concurrent same-id requests and session ids across
// tenants.
// Tenants mx-a and mx-b each have two users (a1 admin, a2; b1 admin, b2),
// an API key per user (over HTTP the second user authenticates with an
// HS256 JWT), and use the same agent ids (planner, coder) and project id
// (proj-1). Each transport runs in the default global agent scope, where an
// agent's id, name, capabilities, status and lastSeen are public by design
// (A therefore puts its canaries in every other text field, including the
// agent's endpoint and metadata, which only the owner sees), and again in
// tenant agent scope (--agent-scope tenant), where B also registers A's
// agent ids and A has agents B must not see at all. The HTTP fixtures
// also check per-tenant audit chains, membership by tenant (a user id
// admin in A only), B's writes by an entity name A also uses, and that B
// never signs with A's EATP key. TestMutation (mutation_test.go, build tag
// mutation) proves the HTTP part fails when any tenant predicate goes.

const (
	mxTenantA = "mx-a"
	mxTenantB = "mx-b"
)

// mxResp is what a caller received for one tools/call.
type mxResp struct {
	text   string // text content
	sc     string // structuredContent as JSON
	rpcErr string // JSON-RPC error, if any
	isErr  bool
}

func (r mxResp) body() string { return r.text + "\n" + r.sc + "\n" + r.rpcErr }

func (r mxResp) ok() bool { return r.rpcErr == "" && !r.isErr }

// mxCall calls a tool; a JSON-RPC error is returned in the response, not
// fatal. While TestAuditCompleteness runs, mxAudit counts the audit rows
// each call writes.
func mxCall(c *client.Client, tool string, args any) mxResp {
	if a := mxAudit; a != nil {
		before := a.callRows()
		r := mxCallOnce(c, tool, args)
		a.observe(tool, r.text, r.isErr, r.rpcErr != "", a.callRows()-before)
		return r
	}
	return mxCallOnce(c, tool, args)
}

func mxCallOnce(c *client.Client, tool string, args any) mxResp {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name = tool
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return mxResp{rpcErr: err.Error()}
	}
	b, _ := json.Marshal(res.StructuredContent)
	return mxResp{text: resultText(res), sc: string(b), isErr: res.IsError}
}

// mxFixture is one transport's fixture: clients, A's ids and secrets, B's
// own data for the positive controls.
type mxFixture struct {
	transport string
	scope     string         // agent registry scope of the server
	a, a2     *client.Client // tenant A: user a1 (admin), user a2
	b, b2     *client.Client // tenant B: user b1 (admin), user b2
	keyIDA    string         // id of a1's API key
	keyIDB    string         // id of b1's API key
	// rawA and rawB send one tools/call whose arguments are raw JSON bytes
	// (for duplicate keys) and return the raw response.
	rawA, rawB func(tool, rawArgs string) string

	env *httpEnv // the HTTP transport's server (nil over stdio)
	db  string   // the database every server of the fixture serves
	// embed is the fake embedder every server of the fixture uses, so that
	// the vector path of search_entities is in the matrix.
	embed *fakeEmbedServer

	ids      mxIDs    // A's ids
	shared   string   // an entity name both tenants use (A's first)
	bSharedO string   // B's observation of the shared entity
	bSharedR string   // B's relation type from the shared entity
	aSecrets []string // every canary and id of A
	bCanary  string   // in every text field B writes
	bEntity  string
	bAgent   string // an agent id only B registers
}

// mxMetrics are the figures of the matrix.
type mxMetrics struct {
	mu              sync.Mutex
	cells           int
	canaryHits      int
	leakyResponses  int
	oracleMismatch  int
	aModified       int
	spoofRuns       int // transports whose spoofs ran
	spoofs          int
	spoofsAccepted  int
	spoofControlsOK int
	spoofHonoured   int
	stdioHonoured   int
	replayLeaks     int
	// sharedMisdirected counts B's changes by a shared name that missed B's entity.
	sharedMisdirected int
	auditChainBreaks  int
	sharedUserAdmin   int // a user admin in A only acting as admin in B
	foreignKeyUse     int // B's calls signed with A's trust key
}

func mxRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var mxHexRunRE = regexp.MustCompile(`[0-9a-f]{4,}`)

// mxLike returns a random id of the same shape as id: every run of four or
// more hex digits is replaced by random hex digits.
func mxLike(id string) string {
	return mxHexRunRE.ReplaceAllStringFunc(id, func(s string) string { return mxRandHex((len(s) + 1) / 2)[:len(s)] })
}

// mxRandomIDs returns random ids shaped like a's.
func mxRandomIDs(a mxIDs) mxIDs {
	return mxIDs{Entity: mxLike(a.Entity), Entity2: mxLike(a.Entity2), Obs: mxLike(a.Obs), RelType: mxLike(a.RelType),
		MsgID: mxLike(a.MsgID), Solo: mxLike(a.Solo), Priv: mxLike(a.Priv), Shared: mxLike(a.Shared), Project: mxLike(a.Project), Deleg: mxLike(a.Deleg),
		Trace: mxLike(a.Trace), Session: mxLike(a.Session), User: "u-" + mxRandHex(4), Canary: mxLike(a.Canary)}
}

// mxPlaceholders maps each id of ids to a placeholder naming its field.
// Tools may also echo an id split into words at '-' (search_entities'
// words), so each segment of 8 or more characters gets a placeholder too;
// an id shorter than 8 characters is replaced only as a whole JSON string.
func mxPlaceholders(ids mxIDs) map[string]string {
	ph := map[string]string{ids.Entity: "<entity>", ids.Entity2: "<entity2>", ids.Obs: "<obs>", ids.RelType: "<reltype>",
		ids.MsgID: "<msgid>", ids.Solo: "<solo>", ids.Priv: "<priv>", ids.Project: "<project>", ids.Deleg: "<deleg>", ids.Trace: "<trace>",
		ids.Session: "<session>", ids.User: "<user>", ids.Canary: "<canary>"}
	for id, p := range maps.Clone(ph) {
		if len(id) < 8 { // a short id (the user a1) only as a whole JSON string
			delete(ph, id)
			ph[`"`+id+`"`] = `"` + p + `"`
			continue
		}
		for i, seg := range strings.Split(id, "-") {
			if len(seg) >= 8 && seg != id {
				ph[seg] = fmt.Sprintf("%s#%d", p, i)
			}
		}
	}
	return ph
}

// Fields that legitimately differ between two calls: RFC 3339 times, fresh
// UUIDs (message ids), internal-error references; and the JSON members
// mxVolatile (a fresh delegation's id, MCP session and signed headers).
var (
	mxTimeRE   = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
	mxUUIDRE   = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	mxRefRE    = regexp.MustCompile(`ref [0-9a-f]+`)
	mxVolatile = map[string]bool{"headers": true, "delegation_id": true, "mcp_session_id": true}
)

func mxDropVolatile(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if mxVolatile[k] {
				delete(x, k)
				continue
			}
			x[k] = mxDropVolatile(e)
		}
	case []any:
		for i, e := range x {
			x[i] = mxDropVolatile(e)
		}
	}
	return v
}

// mxCanonical substitutes placeholders for ids, re-encodes JSON without
// the volatile members and masks times, UUIDs and references.
func mxCanonical(s string, ph map[string]string) string {
	keys := make([]string, 0, len(ph))
	for k := range ph {
		if k != "" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		s = strings.ReplaceAll(s, k, ph[k])
	}
	var v any
	if json.Unmarshal([]byte(s), &v) == nil {
		b, _ := json.Marshal(mxDropVolatile(v))
		s = string(b)
	}
	s = mxTimeRE.ReplaceAllString(s, "<time>")
	s = mxUUIDRE.ReplaceAllString(s, "<uuid>")
	return mxRefRE.ReplaceAllString(s, "ref <ref>")
}

func mxNormalize(r mxResp, ph map[string]string) string {
	return fmt.Sprintf("isError=%v\ntext=%s\nsc=%s\nrpc=%s", r.isErr, mxCanonical(r.text, ph), mxCanonical(r.sc, ph), mxCanonical(r.rpcErr, ph))
}

// mxScan counts secrets in r that the request did not itself carry (an
// answer may echo an argument; every A object carries several distinct
// canaries, so a leaked object is still caught).
func mxScan(t *testing.T, label string, req any, r mxResp, secrets []string) int {
	t.Helper()
	hits := mxHits(req, r, secrets)
	for _, s := range hits {
		t.Errorf("%s: answer contains the other tenant's %q: %.600s", label, s, r.body())
	}
	return len(hits)
}

// mxHits returns the secrets in r's text, structured content or error
// that req does not contain.
func mxHits(req any, r mxResp, secrets []string) []string {
	rb, _ := json.Marshal(req)
	var hits []string
	body := r.body()
	for _, s := range secrets {
		if s != "" && strings.Contains(body, s) && !bytes.Contains(rb, []byte(s)) {
			hits = append(hits, s)
		}
	}
	return hits
}

// mxMust calls a tool and fails unless it succeeds; it returns the
// structured content.
func mxMust(t *testing.T, c *client.Client, tool string, args map[string]any) map[string]any {
	t.Helper()
	r := mxCall(c, tool, args)
	if !r.ok() {
		t.Fatalf("fixture %s(%v): %s", tool, args, r.body())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.sc), &m); err != nil {
		t.Fatalf("fixture %s: structured content %q: %v", tool, r.sc, err)
	}
	return m
}

// mxProvision creates both tenants, their users' keys and admin memberships
// in store, and returns the keys by user and the key ids of a1 and b1.
func mxProvision(t *testing.T, store *memory.Store) (keys map[string]string, keyIDA, keyIDB string) {
	t.Helper()
	ctx := context.Background()
	keys = map[string]string{}
	for _, u := range []struct{ tenant, user string }{{mxTenantA, "a1"}, {mxTenantA, "a2"}, {mxTenantB, "b1"}, {mxTenantB, "b2"}} {
		if err := store.EnsureTenant(ctx, u.tenant); err != nil {
			t.Fatal(err)
		}
		key, ak, err := store.CreateAPIKey(ctx, memory.NewKey{TenantID: u.tenant, UserID: u.user})
		if err != nil {
			t.Fatal(err)
		}
		keys[u.user] = key
		switch u.user {
		case "a1":
			keyIDA = ak.ID
		case "b1":
			keyIDB = ak.ID
		}
	}
	for tenant, user := range map[string]string{mxTenantA: "a1", mxTenantB: "b1"} {
		if err := store.SetMember(ctx, tenant, tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: tenant, UserID: user}, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	return keys, keyIDA, keyIDB
}

// mxStartHTTP is startHTTP with the store opened in the agent registry
// scope and extra serve flags (startHTTP's options only reach the HTTP
// flags; --agent-scope and --eatp-* are serve flags).
func mxStartHTTP(t *testing.T, scope string, args ...string) *httpEnv {
	t.Helper()
	return mxStartHTTPWith(t, scope, nil, args...)
}

// mxStartHTTPWith is mxStartHTTP with a hook that adjusts the parsed flags.
func mxStartHTTPWith(t *testing.T, scope string, adjust func(*serveFlags), args ...string) *httpEnv {
	t.Helper()
	return startHTTP(t, httpTestOpts{scope: scope, serve: adjust, args: args})
}

// mxHTTPFixture starts the HTTP transport with the fixture's credentials:
// API keys for a1 and b1, HS256 JWTs for a2 and b2.
func mxHTTPFixture(t *testing.T) *mxFixture { return mxHTTPFixtureScope(t, memory.AgentScopeGlobal) }

// mxHTTPTenantScope is mxHTTPFixture with --agent-scope tenant.
func mxHTTPTenantScope(t *testing.T) *mxFixture {
	return mxHTTPFixtureScope(t, memory.AgentScopeTenant)
}

func mxHTTPFixtureScope(t *testing.T, scope string) *mxFixture {
	emb := newFakeEmbedServer(t)
	e := mxStartHTTP(t, scope, emb.flags()...)
	if got := e.store.AgentScope(); got != scope {
		t.Fatalf("store agent scope = %q, want %q", got, scope)
	}
	keys, ka, kb := mxProvision(t, e.store)
	fx := &mxFixture{transport: "http", scope: scope, keyIDA: ka, keyIDB: kb, env: e, db: e.db, embed: emb}
	fx.a, _ = mcpGoClient(t, e.url, bearer(keys["a1"]), false)
	fx.a2, _ = mcpGoClient(t, e.url, bearer(testJWT(t, mxTenantA, "a2")), false)
	fx.b, _ = mcpGoClient(t, e.url, bearer(keys["b1"]), false)
	fx.b2, _ = mcpGoClient(t, e.url, bearer(testJWT(t, mxTenantB, "b2")), false)
	raw := func(key string) func(tool, rawArgs string) string {
		hdr := with(bearer(key), server.HeaderKeySessionID, rawSession(t, e.url, bearer(key)), "Mcp-Protocol-Version", "2025-06-18")
		return func(tool, rawArgs string) string {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, tool, rawArgs)
			r := rawDo(t, http.MethodPost, e.url, hdr, strings.NewReader(body))
			return fmt.Sprintf("%d %s", r.status, r.body)
		}
	}
	fx.rawA, fx.rawB = raw(keys["a1"]), raw(keys["b1"])
	return fx
}

// mxStdioFixture starts one stdio server process per user (NEXUS_API_KEY)
// on one database, plus a raw line-level process per tenant.
func mxStdioFixture(t *testing.T) *mxFixture { return mxStdioFixtureScope(t, memory.AgentScopeGlobal) }

// mxStdioTenantScope is mxStdioFixture with --agent-scope tenant, where both
// tenants also register the same agent ids.
func mxStdioTenantScope(t *testing.T) *mxFixture {
	return mxStdioFixtureScope(t, memory.AgentScopeTenant)
}

func mxStdioFixtureScope(t *testing.T, scope string) *mxFixture {
	db := memtest.DSN(t)
	store, err := memory.Open(context.Background(), db, memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, ka, kb := mxProvision(t, store)
	store.Close()
	emb := newFakeEmbedServer(t)
	fx := &mxFixture{transport: "stdio", scope: scope, keyIDA: ka, keyIDB: kb, db: db, embed: emb}
	env := slices.Clip(append([]string{"NEXUS_AGENT_SCOPE=" + scope}, emb.env()...))
	fx.a = stdioClient(t, db, append(env, "NEXUS_API_KEY="+keys["a1"])...)
	fx.a2 = stdioClient(t, db, append(env, "NEXUS_API_KEY="+keys["a2"])...)
	fx.b = stdioClient(t, db, append(env, "NEXUS_API_KEY="+keys["b1"])...)
	fx.b2 = stdioClient(t, db, append(env, "NEXUS_API_KEY="+keys["b2"])...)
	fx.rawA = mxRawStdio(t, db, env, keys["a1"])
	fx.rawB = mxRawStdio(t, db, env, keys["b1"])
	return fx
}

// mxRawStdio starts a stdio server and returns a function that writes one
// raw tools/call line and returns the response line with its id.
func mxRawStdio(t *testing.T, db string, env []string, key string) func(tool, rawArgs string) string {
	t.Helper()
	cmd := serverCommand(t, append(env, "NEXUS_API_KEY="+key), "serve", "--db", db, "--log-level", "warn")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	out := bufio.NewReaderSize(outPipe, 1<<20)
	next := 100
	send := func(line string, id int) string {
		if _, err := io.WriteString(in, line+"\n"); err != nil {
			t.Fatalf("raw stdio write: %v", err)
		}
		if id == 0 {
			return ""
		}
		want := fmt.Sprintf(`"id":%d`, id)
		for range 100 { // skip notifications; bounded
			l, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("raw stdio read: %v", err)
			}
			if strings.Contains(l, want) {
				return l
			}
		}
		t.Fatalf("raw stdio: no response with %s", want)
		return ""
	}
	send(strings.Replace(rawInitialize, `"id":1`, `"id":99`, 1), 99)
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, 0)
	return func(tool, rawArgs string) string {
		next++
		return send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, next, tool, rawArgs), next)
	}
}

// mxSeed writes A's data (canaries in every text field) and B's own data.
func mxSeed(t *testing.T, fx *mxFixture) {
	t.Helper()
	var secrets []string
	cn := func() string {
		c := canary()
		secrets = append(secrets, c)
		return c
	}
	id := func(v any) string {
		s, _ := v.(string)
		if s == "" {
			t.Fatalf("fixture: missing id in %v", v)
		}
		secrets = append(secrets, s)
		return s
	}
	a := mxIDs{User: "a1", Solo: "solo-" + mxRandHex(6), Priv: "priv-" + mxRandHex(6), Project: "projA-" + mxRandHex(6)}
	// not a.Priv: B registers that id for itself (register-a-private); A's
	// agent of that id carries canaries in its name
	secrets = append(secrets, a.Solo, a.Project)
	mxMust(t, fx.a, "register_agent", mxArgs("agentId", "planner", "name", "Planner", "capabilities", []any{"planning"},
		"endpoint", "http://127.0.0.1:1/"+cn(), "metadata", mxArgs("note", cn())))
	mxMust(t, fx.a2, "register_agent", mxArgs("agentId", "coder", "name", "Coder", "capabilities", []any{"go"},
		"endpoint", "http://127.0.0.1:1/"+cn(), "metadata", mxArgs("note", cn())))
	mxMust(t, fx.a, "set_agent_identity", mxArgs("newAgentId", "coder", "metadata", mxArgs("note", cn(), "deep", mxArgs("k", cn()))))
	if fx.scope == memory.AgentScopeTenant { // A's private agent: B must not see, count or message it
		mxMust(t, fx.a, "register_agent", mxArgs("agentId", a.Solo, "name", "Solo "+cn(), "capabilities", []any{"planning", "go"},
			"endpoint", "http://127.0.0.1:1/"+cn(), "metadata", mxArgs("note", cn())))
		mxMust(t, fx.a, "register_agent", mxArgs("agentId", a.Priv, "name", "Priv "+cn(), "capabilities", []any{"private"}))
	}
	a.Entity, a.Entity2, a.Obs, a.RelType, a.Canary = cn(), cn(), cn(), cn(), cn()
	mxMust(t, fx.a, "create_entities", mxArgs("entities", []any{
		mxArgs("name", a.Entity, "entityType", cn(), "observations", []any{a.Obs, a.Canary}, "aliases", []any{cn()}, "metadata", mxArgs("k", cn())),
		mxArgs("name", a.Entity2, "entityType", cn(), "observations", []any{cn()}),
	}))
	mxMust(t, fx.a2, "create_relations", mxArgs("relations", []any{mxArgs("from", a.Entity, "to", a.Entity2, "relationType", a.RelType, "properties", mxArgs("k", cn()))}))
	// An entity name both tenants use, A's first (B's statements by name
	// must resolve to B's entity, never to A's older one).
	fx.shared = "shared-" + mxRandHex(6)
	a.Shared = fx.shared
	mxMust(t, fx.a, "create_entities", mxArgs("entities", []any{mxArgs("name", fx.shared, "entityType", "t", "observations", []any{cn()})}))
	mxMust(t, fx.a, "create_relations", mxArgs("relations", []any{mxArgs("from", fx.shared, "to", a.Entity2, "relationType", cn())}))
	mxMust(t, fx.a, "add_observations", mxArgs("observations", []any{mxArgs("entityName", a.Entity2, "contents", []any{cn()})}))
	sent := mxMust(t, fx.a, "send_ai_message", mxArgs("from", "planner", "to", "coder", "content", cn(), "messageType", "task", "priority", "high"))
	a.MsgID = id(mxFirstMessageID(sent))
	for _, m := range []struct {
		c        *client.Client
		from, to string
	}{{fx.a2, "coder", "planner"}, {fx.a, "planner", a.Solo}, {fx.a2, "coder", a.Solo}, {fx.a, "planner", "coder"}} {
		s := mxMust(t, m.c, "send_ai_message", mxArgs("from", m.from, "to", m.to, "message", cn()))
		id(mxFirstMessageID(s))
	}
	mxMust(t, fx.a, "record_learning", mxArgs("agentId", "planner", "context", cn(), "lesson", cn(), "confidence", 0.9))
	mxMust(t, fx.a2, "record_learning", mxArgs("agentId", a.Solo, "context", cn(), "lesson", cn()))
	mxMust(t, fx.a2, "set_preferences", mxArgs("agentId", "planner", "preferences", mxArgs("theme", cn(), "nested", mxArgs("k", cn()))))
	mxMust(t, fx.a, "set_preferences", mxArgs("agentId", a.Solo, "preferences", mxArgs("theme", cn())))
	mxMust(t, fx.a, "end_session", mxArgs("agentId", "planner", "projectId", "proj-1", "summary", cn(), "openItems", []any{cn()},
		"learnings", []any{mxArgs("context", cn(), "lesson", cn())}))
	mxMust(t, fx.a2, "end_session", mxArgs("agentId", "coder", "projectId", a.Project, "summary", cn(), "openItems", []any{cn()}))
	del := mxMust(t, fx.a, "prepare_agent_call", mxArgs("calling_agent", "planner", "target_agent", "coder", "tool_name", "read_graph",
		"human_origin", mxArgs("display_name", cn())))
	a.Deleg, a.Trace = id(del["delegation_id"]), id(del["eatp_trace_id"])
	ts := mxMust(t, fx.a, "create_trust_session", mxArgs("human_origin", mxArgs("display_name", cn()), "agent_id", "planner"))
	a.Session = id(ts["session_id"])
	fx.ids, fx.aSecrets = a, secrets

	// B's own data, for the positive controls.
	fx.bCanary = canary()
	fx.bEntity = "b-ent-" + fx.bCanary
	fx.bAgent = "b-agent-" + mxRandHex(4)
	mxMust(t, fx.b, "register_agent", mxArgs("agentId", fx.bAgent, "name", "B "+fx.bCanary, "capabilities", []any{"b"}))
	if fx.scope == memory.AgentScopeTenant { // the same agent ids registered in both tenants
		for _, ag := range []string{"planner", "coder"} {
			mxMust(t, fx.b2, "register_agent", mxArgs("agentId", ag, "name", "B "+fx.bCanary, "capabilities", []any{"planning", "go"},
				"endpoint", "http://127.0.0.1:1/"+fx.bCanary))
		}
	}
	mxMust(t, fx.b, "create_entities", mxArgs("entities", []any{mxArgs("name", fx.bEntity, "entityType", "t", "observations", []any{fx.bCanary})}))
	fx.bSharedO, fx.bSharedR = "b-obs-"+fx.bCanary, "b-rel-"+fx.bCanary
	mxMust(t, fx.b, "create_entities", mxArgs("entities", []any{mxArgs("name", fx.shared, "entityType", "t", "observations", []any{fx.bSharedO})}))
	mxMust(t, fx.b, "create_relations", mxArgs("relations", []any{mxArgs("from", fx.shared, "to", fx.bEntity, "relationType", fx.bSharedR),
		mxArgs("from", fx.bEntity, "to", fx.shared, "relationType", fx.bSharedR+"-in")}))
	mxMust(t, fx.b2, "send_ai_message", mxArgs("from", fx.bAgent, "to", "coder", "content", "b msg "+fx.bCanary))
	mxMust(t, fx.b2, "send_ai_message", mxArgs("from", fx.bAgent, "to", "coder", "content", "b msg 2 "+fx.bCanary))
	mxMust(t, fx.b, "record_learning", mxArgs("agentId", "planner", "context", "b", "lesson", "b lesson "+fx.bCanary))
	mxMust(t, fx.b2, "set_preferences", mxArgs("agentId", "planner", "preferences", mxArgs("b", fx.bCanary)))
	mxMust(t, fx.b, "end_session", mxArgs("agentId", "coder", "projectId", "proj-1", "summary", "b handoff "+fx.bCanary))
	mxMust(t, fx.b, "prepare_agent_call", mxArgs("calling_agent", fx.bAgent, "target_agent", "coder", "tool_name", "read_graph",
		"human_origin", mxArgs("display_name", fx.bCanary)))
	mxMust(t, fx.b2, "create_trust_session", mxArgs("human_origin", mxArgs("display_name", fx.bCanary)))
}

// mxFirstMessageID returns the first message id of a send_ai_message result.
func mxFirstMessageID(sent map[string]any) any {
	ids, _ := sent["messageIds"].([]any)
	if len(ids) == 0 {
		return nil
	}
	if m, ok := ids[0].(map[string]any); ok {
		return m["messageId"]
	}
	return ids[0]
}

// mxSnapshotA are the reads A uses to fingerprint its objects.
func mxSnapshotA(a mxIDs) [][2]any {
	return [][2]any{
		{"read_graph", mxArgs()},
		{"open_nodes", mxArgs("names", []any{a.Entity, a.Entity2})},
		// with updatedAt, which B's changes to its same-named entity must not touch
		{"search_entities", mxArgs("query", a.Shared, "searchType", "exact")},
		{"get_ai_messages", mxArgs("agentId", "coder", "limit", 100)},
		{"get_ai_messages", mxArgs("agentId", "planner", "limit", 100)},
		{"get_ai_messages", mxArgs("agentId", a.Solo, "limit", 100)},
		{"get_agent_status", mxArgs("agentId", "planner")},
		{"get_agent_status", mxArgs("agentId", "coder")},
		{"get_agent_status", mxArgs()},
		{"get_individual_memory", mxArgs("agentId", "planner")},
		{"get_individual_memory", mxArgs("agentId", a.Solo)},
		{"get_agent_context", mxArgs("agentId", "planner", "projectId", "proj-1", "depth", "cold")},
		{"get_agent_context", mxArgs("agentId", "coder", "projectId", a.Project, "depth", "cold")},
		{"get_delegation_history", mxArgs()},
		{"get_trust_session", mxArgs("session_id", a.Session)},
		{"list_trust_sessions", mxArgs("active_only", false)},
	}
}

// mxSnapshotB fingerprints B's objects.
func mxSnapshotB(fx *mxFixture) [][2]any {
	return [][2]any{
		{"read_graph", mxArgs()},
		{"get_ai_messages", mxArgs("agentId", "coder", "limit", 100)},
		{"get_agent_status", mxArgs()},
		{"get_individual_memory", mxArgs("agentId", "planner")},
		{"get_delegation_history", mxArgs()},
		{"list_trust_sessions", mxArgs("active_only", false)},
	}
}

// mxSnapshot returns a content hash per read (each must succeed).
func mxSnapshot(t *testing.T, c *client.Client, reads [][2]any) []string {
	t.Helper()
	out := make([]string, len(reads))
	for i, rd := range reads {
		r := mxCall(c, rd[0].(string), rd[1])
		if !r.ok() {
			t.Fatalf("snapshot %s(%v): %s", rd[0], rd[1], r.body())
		}
		sum := sha256.Sum256([]byte(r.text + "\x00" + r.sc))
		out[i] = hex.EncodeToString(sum[:])
	}
	return out
}

func mxChanged(t *testing.T, who string, reads [][2]any, before, after []string) int {
	t.Helper()
	n := 0
	for i := range reads {
		if before[i] != after[i] {
			n++
			t.Errorf("%s: %s(%v) changed", who, reads[i][0], reads[i][1])
		}
	}
	return n
}

// mxToolNames lists the tools over c, sorted, and which are read-only.
func mxToolNames(t *testing.T, c *client.Client) ([]string, map[string]bool) {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	readOnly := map[string]bool{}
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
		readOnly[tl.Name] = tl.Annotations.ReadOnlyHint != nil && *tl.Annotations.ReadOnlyHint
	}
	sort.Strings(names)
	return names, readOnly
}

// TestMatrixTenantIsolation runs the cross-tenant matrix and the identity
// argument spoofs over stdio and HTTP.
func TestMatrixTenantIsolation(t *testing.T) {
	m := &mxMetrics{}
	transports := []struct {
		name   string
		start  func(*testing.T) *mxFixture
		spoofs bool // the argument spoofs do not depend on the agent scope: run them once per transport
	}{
		{"stdio", mxStdioFixture, true},
		{"http", mxHTTPFixture, true},
		{"stdio_agent_scope_tenant", mxStdioTenantScope, false},
		{"http_agent_scope_tenant", mxHTTPTenantScope, false},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			fx := tr.start(t)
			names, readOnly := mxToolNames(t, fx.b)
			if len(names) == 0 {
				t.Fatal("tools/list is empty")
			}
			for _, n := range names {
				if _, ok := mxTable[n]; !ok {
					t.Errorf("tool %s has no matrix entry in mxTable (matrix_cases_test.go)", n)
				}
			}
			for n := range mxTable {
				if !slices.Contains(names, n) {
					t.Errorf("mxTable has an entry for %s, which tools/list does not return", n)
				}
			}
			mxSeed(t, fx)
			t.Run("cross_tenant", func(t *testing.T) { mxCrossTenant(t, fx, names, readOnly, m) })
			if tr.spoofs {
				t.Run("spoofed_args", func(t *testing.T) { mxSpoofs(t, fx, names, m) })
			}
			t.Run("shared_user", func(t *testing.T) { mxSharedUser(t, fx, m) })
			t.Run("audit_chains", func(t *testing.T) { mxAuditChains(t, fx, m) })
			t.Run("trust_key", func(t *testing.T) { mxTrustKey(t, fx, m) })
		})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Logf("metric cross_tenant_leaks=%d", m.leakyResponses+m.aModified)
	t.Logf("metric matrix_cells=%d", m.cells)
	t.Logf("metric canary_hits=%d", m.canaryHits)
	t.Logf("metric oracle_mismatches=%d", m.oracleMismatch)
	t.Logf("metric a_objects_modified=%d", m.aModified)
	t.Logf("metric replay_leaks=%d", m.replayLeaks)
	t.Logf("metric shared_name_misdirected=%d", m.sharedMisdirected)
	t.Logf("metric shared_user_admin_elsewhere=%d", m.sharedUserAdmin)
	t.Logf("metric audit_chain_breaks=%d", m.auditChainBreaks)
	t.Logf("metric foreign_trust_key_uses=%d", m.foreignKeyUse)
	t.Logf("metric spoof_calls=%d", m.spoofs)
	t.Logf("metric spoofs_accepted_ignored=%d", m.spoofsAccepted)
	t.Logf("metric spoof_controls_ok=%d", m.spoofControlsOK)
	if m.spoofControlsOK < m.spoofRuns*2*20 {
		t.Errorf("only %d unspoofed control calls succeeded; the spoof refusals prove little", m.spoofControlsOK)
	}
	t.Logf("metric spoofed_args_honoured=%d", m.spoofHonoured)
	t.Logf("metric stdio_spoofs_honoured=%d", m.stdioHonoured)
}

// mxCrossTenant: B runs every probe of every tool against A's data.
func mxCrossTenant(t *testing.T, fx *mxFixture, names []string, readOnly map[string]bool, m *mxMetrics) {
	a := fx.ids
	reads := mxSnapshotA(a)
	before := mxSnapshot(t, fx.a, reads)

	// Controls: the canary scan finds A's data in A's own answers, and the
	// oracle tells A's existing ids from random ones when A asks.
	for _, rd := range [][2]any{{"read_graph", mxArgs()}, {"get_ai_messages", mxArgs("agentId", "coder")}, {"get_individual_memory", mxArgs("agentId", "planner")}} {
		if hits := mxHits(mxArgs(), mxCall(fx.a, rd[0].(string), rd[1]), fx.aSecrets); len(hits) == 0 {
			t.Errorf("control: A's own %s(%v) shows none of A's canaries; the scan would see nothing", rd[0], rd[1])
		}
	}
	rv, av := reflect.ValueOf(mxRandomIDs(a)), reflect.ValueOf(a)
	for i := range av.NumField() {
		if f := av.Type().Field(i).Name; rv.Field(i).String() == av.Field(i).String() {
			t.Fatalf("random %s = A's %q; the oracle would compare A's id with itself", f, av.Field(i).String())
		}
	}
	open := func(ids mxIDs) map[string]any { return mxArgs("names", []any{ids.Entity, ids.Entity2}) }
	rnd := mxRandomIDs(a)
	if mxNormalize(mxCall(fx.a, "open_nodes", open(a)), mxPlaceholders(a)) == mxNormalize(mxCall(fx.a, "open_nodes", open(rnd)), mxPlaceholders(rnd)) {
		t.Errorf("control: A's open_nodes of its own entities normalizes like random names; the oracle would see nothing")
	}
	for _, name := range names {
		entry := mxTable[name]
		// b1 (admin, API key) runs every probe; b2 (JWT over HTTP) the read-only ones too
		callers := []struct {
			user string
			c    *client.Client
		}{{"b1", fx.b}}
		if readOnly[name] {
			callers = append(callers, struct {
				user string
				c    *client.Client
			}{"b2", fx.b2})
		}
		for _, p := range entry.probes {
			for _, cl := range callers {
				t.Run(name+"/"+p.op+"/"+cl.user, func(t *testing.T) {
					mxProbeOnce(t, fx, name, p, cl.c, m)
				})
			}
		}
	}
	mxSharedName(t, fx, m) // B's changes by a name A also uses leave A's entity alone
	after := mxSnapshot(t, fx.a, reads)
	n := mxChanged(t, "A's objects after B's attempts", reads, before, after)
	// A's handoffs were not consumed by B: A takes each exactly once (control).
	for _, p := range []struct{ agent, project string }{{"planner", "proj-1"}, {"coder", a.Project}} {
		got := mxMust(t, fx.a, "begin_session", mxArgs("agentId", p.agent, "projectId", p.project))
		if got["handoff"] == nil {
			n++
			t.Errorf("A's handoff for %s lost after B's attempts: %v", p.project, got)
		}
	}
	// Control: the fingerprint sees the change A itself just made.
	if consumed := mxSnapshot(t, fx.a, reads); slices.Equal(consumed, after) {
		t.Errorf("control: A's snapshot did not change after A consumed its handoffs; the fingerprint would see nothing")
	}
	m.mu.Lock()
	m.aModified += n
	m.mu.Unlock()
}

// mxSharedName: B's own changes addressed by a name A also uses reach
// B's entity, never A's older one of the same name.
func mxSharedName(t *testing.T, fx *mxFixture, m *mxMetrics) {
	bad := 0
	open := mxArgs("names", []any{fx.shared})
	if got := mxCall(fx.b, "open_nodes", open); !got.ok() || !strings.Contains(got.body(), fx.bSharedO) {
		t.Errorf("control: B's open_nodes(%s) = %.400s, want B's observation %s", fx.shared, got.body(), fx.bSharedO)
	}
	if r := mxCall(fx.b, "delete_observations", mxArgs("deletions", []any{mxArgs("entityName", fx.shared, "observations", []any{fx.bSharedO})})); !r.ok() {
		t.Errorf("B deletes its observation of %s: %.400s", fx.shared, r.body())
	}
	// B's page holding its shared entity lists the relation from it
	found := false
	for off := 0; off < 20 && !found; off++ {
		r := mxCall(fx.b, "read_graph", mxArgs("limit", 1, "offset", off))
		if !r.ok() || !strings.Contains(r.sc, `"entities":[{`) {
			break
		}
		if strings.Contains(r.sc, `"name":"`+fx.shared+`"`) {
			found = true
			if !strings.Contains(r.sc, fx.bSharedR) {
				bad++
				t.Errorf("B's read_graph page %d with its entity %s lacks its relation %s: %.400s", off, fx.shared, fx.bSharedR, r.sc)
			}
		}
	}
	if !found {
		t.Errorf("control: no page of B's read_graph(limit 1) holds its entity %s", fx.shared)
	}
	if r := mxCall(fx.b, "delete_relations", mxArgs("relations", []any{mxArgs("from", fx.shared, "to", fx.bEntity, "relationType", fx.bSharedR),
		mxArgs("from", fx.bEntity, "to", fx.shared, "relationType", fx.bSharedR+"-in")})); !r.ok() {
		t.Errorf("B deletes its relations of %s: %.400s", fx.shared, r.body())
	}
	got := mxCall(fx.b, "open_nodes", open)
	if !strings.Contains(got.body(), fx.shared) || strings.Contains(got.body(), fx.bSharedO) {
		bad++
		t.Errorf("B's open_nodes(%s) after B deleted its observation = %.400s, want the entity without %s", fx.shared, got.body(), fx.bSharedO)
	}
	if g := mxCall(fx.b, "read_graph", mxArgs()); !g.ok() || strings.Contains(g.body(), fx.bSharedR) {
		bad++
		t.Errorf("B's read_graph after B deleted its relation %s = %.400s", fx.bSharedR, g.body())
	}
	m.mu.Lock()
	m.sharedMisdirected += bad
	m.mu.Unlock()
}

// mxTotalMismatch checks a list answer of B: when the first page holds
// every row (no offset, fewer rows than the limit), its total must count
// exactly those rows; a total that counts another tenant's rows fails.
func mxTotalMismatch(args map[string]any, r mxResp) string {
	if !r.ok() || args["offset"] != nil {
		return ""
	}
	var v map[string]any
	if json.Unmarshal([]byte(r.sc), &v) != nil {
		return ""
	}
	total, ok := v["total"].(float64)
	if !ok {
		return ""
	}
	limit, _ := v["limit"].(float64)
	for _, k := range []string{"agents", "rows", "delegations", "sessions", "entities", "messages"} {
		rows, ok := v[k].([]any)
		if !ok {
			continue
		}
		if (limit == 0 || float64(len(rows)) < limit) && float64(len(rows)) != total {
			return fmt.Sprintf("total %v but %d %s on a complete first page", total, len(rows), k)
		}
	}
	return ""
}

// mxAuditChains checks each tenant's audit hash chain over the HTTP
// fixture's store: a row chained to another tenant's breaks it.
func mxAuditChains(t *testing.T, fx *mxFixture, m *mxMetrics) {
	if fx.env == nil {
		return
	}
	for _, tenant := range []string{mxTenantA, mxTenantB} {
		chk, err := fx.env.store.VerifyAudit(context.Background(), tenant)
		if err != nil || !chk.OK || chk.Rows == 0 {
			m.mu.Lock()
			m.auditChainBreaks++
			m.mu.Unlock()
			t.Errorf("VerifyAudit(%s) = %+v, %v; want an intact, non-empty chain", tenant, chk, err)
		}
	}
}

// mxTrustKey: once A has an EATP signing key, A's prepared calls are
// signed (control) and B's, without a key of its own, are not: B never
// signs with A's key. Over HTTP only (the store is in-process).
func mxTrustKey(t *testing.T, fx *mxFixture, m *mxMetrics) {
	if fx.env == nil {
		return
	}
	if _, err := fx.env.store.CreateTrustKey(context.Background(), mxTenantA, delegation.AlgHMACSHA256); err != nil {
		t.Fatal(err)
	}
	signed := func(r mxResp) bool { return strings.Contains(strings.ToLower(r.sc), "x-eatp-signature") }
	mxMust(t, fx.a, "register_agent", mxArgs("agentId", "a-sig-1", "name", "A", "capabilities", []any{"a"}))
	mxMust(t, fx.a, "register_agent", mxArgs("agentId", "a-sig-2", "name", "A", "capabilities", []any{"a"}, "endpoint", "http://127.0.0.1:1/a"))
	a := mxCall(fx.a, "prepare_agent_call", mxArgs("calling_agent", "a-sig-1", "target_agent", "a-sig-2", "tool_name", "read_graph"))
	if !a.ok() || !signed(a) {
		t.Errorf("control: A's prepare_agent_call to its agent with an endpoint = %.400s, want signed headers", a.body())
	}
	mxMust(t, fx.b, "register_agent", mxArgs("agentId", "b-sig-1", "name", "B", "capabilities", []any{"b"}))
	mxMust(t, fx.b, "register_agent", mxArgs("agentId", "b-sig-2", "name", "B", "capabilities", []any{"b"}, "endpoint", "http://127.0.0.1:1/b"))
	b := mxCall(fx.b, "prepare_agent_call", mxArgs("calling_agent", "b-sig-1", "target_agent", "b-sig-2", "tool_name", "read_graph"))
	if !b.ok() || signed(b) {
		m.mu.Lock()
		m.foreignKeyUse++
		m.mu.Unlock()
		t.Errorf("B (no key) prepare_agent_call = %.400s, want unsigned headers", b.body())
	}
}

// mxSharedUser: a user id that is admin in A and no member of B gets no
// admin rights in B (membership is per tenant), with A's as the control.
func mxSharedUser(t *testing.T, fx *mxFixture, m *mxMetrics) {
	if fx.env == nil {
		return
	}
	ctx := context.Background()
	keys := map[string]string{}
	for _, tenant := range []string{mxTenantA, mxTenantB} {
		key, _, err := fx.env.store.CreateAPIKey(ctx, memory.NewKey{TenantID: tenant, UserID: "ux"})
		if err != nil {
			t.Fatal(err)
		}
		keys[tenant] = key
	}
	if err := fx.env.store.SetMember(ctx, mxTenantA, tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: mxTenantA, UserID: "ux"}, "admin"); err != nil {
		t.Fatal(err)
	}
	ca, _ := mcpGoClient(t, fx.env.url, bearer(keys[mxTenantA]), false)
	cb, _ := mcpGoClient(t, fx.env.url, bearer(keys[mxTenantB]), false)
	if r := mxCall(ca, "get_audit_log", mxArgs()); !r.ok() {
		t.Errorf("control: ux, admin of A, get_audit_log in A = %.300s, want rows", r.body())
	}
	if r := mxCall(cb, "get_audit_log", mxArgs()); r.ok() {
		m.mu.Lock()
		m.sharedUserAdmin++
		m.mu.Unlock()
		t.Errorf("ux, admin of A only, read B's audit log: %.300s", r.body())
	}
}

// mxProbeOnce runs one probe as caller c of tenant B: canary scan, positive
// control, and the existence oracle against random ids.
func mxProbeOnce(t *testing.T, fx *mxFixture, name string, p mxProbe, c *client.Client, m *mxMetrics) {
	a := fx.ids
	if p.settle {
		waitIndexed(t, fx.db)
	}
	args := p.args(a, fx)
	r := mxCall(c, name, args)
	if strings.Contains(r.rpcErr, "internal error") {
		t.Errorf("B %s: %s", name, r.rpcErr)
	}
	hits := mxScan(t, "B "+name+"/"+p.op, args, r, fx.aSecrets)
	if p.control && (!r.ok() || !strings.Contains(r.body(), fx.bCanary) && !strings.Contains(r.body(), fx.bAgent)) {
		t.Errorf("control: B %s(%v) = %.600s, want B's own %s or %s", name, args, r.body(), fx.bCanary, fx.bAgent)
	}
	mismatch := 0
	if why := mxTotalMismatch(args, r); why != "" {
		mismatch++
		t.Errorf("B %s/%s: %s (counts rows B cannot see): %.400s", name, p.op, why, r.sc)
	}
	if p.oracle {
		rnd := mxRandomIDs(a)
		rargs := p.args(rnd, fx)
		rr := mxCall(c, name, rargs)
		hits += mxScan(t, "B "+name+"/"+p.op+" (random ids)", rargs, rr, fx.aSecrets)
		got, want := mxNormalize(r, mxPlaceholders(a)), mxNormalize(rr, mxPlaceholders(rnd))
		if got != want {
			mismatch = 1
			t.Errorf("oracle: B %s for A's ids differs from random ids:\n A's: %.800s\nrand: %.800s", name, got, want)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells++
	m.canaryHits += hits
	m.oracleMismatch += mismatch
	if hits > 0 {
		m.leakyResponses++
		if strings.Contains(p.op, "replay") || strings.HasPrefix(p.op, "consume") || p.oracle {
			m.replayLeaks++
		}
	}
}

// mxSpoofKeys are the identity arguments tried, set to the other tenant's
// values: plain, case and separator variants, and nested.
func mxSpoofKeys(otherTenant, otherUser, otherKeyID string) []map[string]any {
	return []map[string]any{
		{"tenant_id": otherTenant},
		{"tenantId": otherTenant},
		{"Tenant-ID": otherTenant},
		{"user_id": otherUser},
		{"userId": otherUser},
		{"api_key_id": otherKeyID},
		{"owner": otherTenant},
		{"filter": map[string]any{"tenant_id": otherTenant, "user_id": otherUser}},
	}
}

// mxNested returns a deep copy of base with key set to val in every object
// below the top level (entity metadata, preferences, constraints, ...), and
// whether there was such an object.
func mxNested(base map[string]any, key, val string) (map[string]any, bool) {
	b, _ := json.Marshal(base)
	var cp map[string]any
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, false
	}
	found := false
	var walk func(v any, top bool)
	walk = func(v any, top bool) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e, false)
			}
			if !top {
				x[key] = val
				found = true
			}
		case []any:
			for _, e := range x {
				walk(e, false)
			}
		}
	}
	walk(cp, true)
	return cp, found
}

// mxSpoofs: every tool, called by B with A's identity values and by A with
// B's, via the client and as raw JSON with duplicate keys. A spoof must be
// refused (isError) or ignored; the victim's objects must not change and
// no answer may carry the victim's data.
func mxSpoofs(t *testing.T, fx *mxFixture, names []string, m *mxMetrics) {
	m.mu.Lock()
	m.spoofRuns++
	m.mu.Unlock()
	attackers := []struct {
		who                string
		c                  *client.Client
		raw                func(tool, rawArgs string) string
		victim             *client.Client
		victimReads        [][2]any
		victimSecrets      []string
		ownTenant, oTenant string
		oUser, oKeyID      string
	}{
		{"B", fx.b, fx.rawB, fx.a, mxSnapshotA(fx.ids), fx.aSecrets, mxTenantB, mxTenantA, "a1", fx.keyIDA},
		{"A", fx.a, fx.rawA, fx.b, mxSnapshotB(fx), []string{fx.bCanary}, mxTenantA, mxTenantB, "b1", fx.keyIDB},
	}
	for _, at := range attackers {
		before := mxSnapshot(t, at.victim, at.victimReads)
		honoured := 0
		for _, name := range names {
			entry, ok := mxTable[name]
			if !ok || len(entry.probes) == 0 {
				continue
			}
			base := entry.probes[0].args(fx.ids, fx)
			t.Run(at.who+"/"+name, func(t *testing.T) {
				// control: the same call without identity arguments
				if r0 := mxCall(at.c, name, base); r0.ok() {
					m.mu.Lock()
					m.spoofControlsOK++
					m.mu.Unlock()
				}
				var variants []map[string]any
				for _, extra := range mxSpoofKeys(at.oTenant, at.oUser, at.oKeyID) {
					args := maps.Clone(base)
					maps.Copy(args, extra)
					variants = append(variants, args)
				}
				for _, kv := range [][2]string{{"tenant_id", at.oTenant}, {"user_id", at.oUser}} {
					if nested, ok := mxNested(base, kv[0], kv[1]); ok {
						variants = append(variants, nested)
					}
				}
				for i, args := range variants {
					r := mxCall(at.c, name, args)
					if strings.Contains(r.rpcErr, "internal error") {
						t.Errorf("%s %s spoof %d: %s", at.who, name, i, r.rpcErr)
					}
					hits := mxScan(t, at.who+" "+name+" spoof", args, r, at.victimSecrets)
					m.mu.Lock()
					m.spoofs++
					if r.ok() {
						m.spoofsAccepted++
						t.Logf("%s %s with %v: accepted (must be ignored)", at.who, name, args)
					}
					honoured += hits
					m.mu.Unlock()
				}
				// duplicate keys in the raw body, both orders
				b, _ := json.Marshal(base)
				prefix := strings.TrimSuffix(string(b), "}")
				if prefix != "{" {
					prefix += ","
				}
				for _, dup := range []string{
					fmt.Sprintf(`"tenant_id":%q,"tenant_id":%q`, at.ownTenant, at.oTenant),
					fmt.Sprintf(`"tenant_id":%q,"tenant_id":%q`, at.oTenant, at.ownTenant),
					fmt.Sprintf(`"tenantId":%q,"TENANT_ID":%q`, at.ownTenant, at.oTenant),
				} {
					rawArgs := prefix + dup + "}"
					resp := at.raw(name, rawArgs)
					refused := strings.Contains(resp, `"isError":true`) || strings.Contains(resp, `"error":{`)
					n := 0
					for _, s := range at.victimSecrets {
						if strings.Contains(resp, s) && !strings.Contains(rawArgs, s) {
							n++
							t.Errorf("%s %s duplicate-key spoof: answer contains %q", at.who, name, s)
						}
					}
					m.mu.Lock()
					m.spoofs++
					if !refused {
						m.spoofsAccepted++
						t.Errorf("%s %s with duplicate keys %s: not refused: %.300s", at.who, name, dup, resp)
					}
					honoured += n
					m.mu.Unlock()
				}
			})
		}
		if at.who == "A" {
			// control: the victim fingerprint sees a write the victim makes
			after := mxSnapshot(t, at.victim, at.victimReads)
			mxMust(t, at.victim, "create_entities", entityArgs("ctrl-"+canary()))
			if slices.Equal(after, mxSnapshot(t, at.victim, at.victimReads)) {
				t.Errorf("control: B's fingerprint did not change after B wrote")
			}
			before = mxSnapshot(t, at.victim, at.victimReads)
		}
		after := mxSnapshot(t, at.victim, at.victimReads)
		honoured += mxChanged(t, "victim of "+at.who+"'s spoofs", at.victimReads, before, after)
		m.mu.Lock()
		m.spoofHonoured += honoured
		if strings.HasPrefix(fx.transport, "stdio") {
			m.stdioHonoured += honoured
		}
		m.mu.Unlock()
	}
}

// TestMatrixSameIDConcurrency: tenants A and B call get_ai_messages
// for the same agent id with identical JSON-RPC ids, concurrently; every
// answer must carry its caller's canary and not the other's.
func TestMatrixSameIDConcurrency(t *testing.T) {
	perTenant := 500
	if raceEnabled() {
		perTenant = 100
	}
	const workers = 4
	e := startHTTP(t, httpTestOpts{})
	keys, _, _ := mxProvision(t, e.store)
	tenants := []struct {
		user, canary string
	}{{"a1", canary()}, {"b1", canary()}}
	for _, tn := range tenants {
		c, _ := mcpGoClient(t, e.url, bearer(keys[tn.user]), false)
		if r := mxCall(c, "send_ai_message", mxArgs("from", "planner", "to", "coder", "content", tn.canary)); !r.ok() {
			t.Fatalf("send: %s", r.body())
		}
	}
	type job struct {
		tenant int
		hdr    map[string]string
	}
	var jobs []job
	for i, tn := range tenants {
		for range workers {
			hdr := with(bearer(keys[tn.user]), "Mcp-Protocol-Version", "2025-06-18")
			hdr[server.HeaderKeySessionID] = rawSession(t, e.url, bearer(keys[tn.user]))
			jobs = append(jobs, job{i, hdr})
		}
	}
	var mu sync.Mutex
	var misrouted, failed, answered int
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own, other := tenants[j.tenant].canary, tenants[1-j.tenant].canary
			for i := range perTenant / workers {
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get_ai_messages","arguments":{"agentId":"coder"}}}`, i+1)
				got, err := mxPost(e.url, j.hdr, body)
				mu.Lock()
				switch {
				case err != nil:
					failed++
				case !strings.Contains(got, fmt.Sprintf(`"id":%d`, i+1)) || !strings.Contains(got, own) || strings.Contains(got, other):
					misrouted++
				default:
					answered++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != 0 || misrouted != 0 || answered != 2*workers*(perTenant/workers) {
		t.Errorf("answered %d, misrouted %d, failed %d; want %d, 0, 0", answered, misrouted, failed, 2*workers*(perTenant/workers))
	}
	t.Logf("metric same_id_calls=%d", answered+misrouted+failed)
	t.Logf("metric misrouted_responses=%d", misrouted)
}

// mxPost is rawDo for goroutines: it returns an error instead of failing.
func mxPost(url string, hdr map[string]string, body string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// TestMatrixIdentityHeaders: headers that are not credentials do not
// change who the caller is. X-Tenant-Id naming a tenant the user is not a
// member of is 403; X-User-Id with dev headers off, X-EATP-Human-Origin
// naming the other tenant (default permissive EATP mode), X-EATP-Agent-ID
// of the other tenant's agent and X-EATP-Session-ID of the other tenant's
// trust session leave the RequestContext as the credential says.
func TestMatrixIdentityHeaders(t *testing.T) {
	rec := &rcRecorder{}
	e := startHTTP(t, httpTestOpts{mcpOptions: []server.ServerOption{rec.option()}})
	keys, _, _ := mxProvision(t, e.store)
	ca, _ := mcpGoClient(t, e.url, bearer(keys["a1"]), false)
	cb, _ := mcpGoClient(t, e.url, bearer(keys["b1"]), false)
	aSession := mxMust(t, ca, "create_trust_session", mxArgs("human_origin", mxArgs("display_name", "a")))["session_id"].(string)
	mxMust(t, cb, "register_agent", mxArgs("agentId", "b-only", "name", "B", "capabilities", []any{"b"}))
	origin := func(tenant, user string) string {
		b, _ := json.Marshal(map[string]any{"user_id": user, "tenant_id": tenant, "display_name": user})
		return base64.StdEncoding.EncodeToString(b)
	}
	overrides := 0

	// A's MCP session id presented with B's credential
	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	aSid := []string{server.HeaderKeySessionID, rawSession(t, e.url, bearer(keys["a1"])), "Mcp-Protocol-Version", "2025-06-18"}
	status := []struct {
		name string
		hdr  map[string]string
		body string
		want int
	}{
		{"A names B in X-Tenant-Id", with(bearer(keys["a1"]), tenancy.HeaderTenantID, mxTenantB), rawInitialize, http.StatusForbidden},
		{"B names A in X-Tenant-Id", with(bearer(keys["b1"]), tenancy.HeaderTenantID, mxTenantA), rawInitialize, http.StatusForbidden},
		{"A names A in X-Tenant-Id (control)", with(bearer(keys["a1"]), tenancy.HeaderTenantID, mxTenantA), rawInitialize, http.StatusOK},
		{"no header (control)", bearer(keys["a1"]), rawInitialize, http.StatusOK},
		{"B replays A's Mcp-Session-Id", with(bearer(keys["b1"]), aSid...), list, http.StatusNotFound},
		{"A uses its Mcp-Session-Id (control)", with(bearer(keys["a1"]), aSid...), list, http.StatusOK},
	}
	for _, tc := range status {
		t.Run(tc.name, func(t *testing.T) {
			if r := rawDo(t, http.MethodPost, e.url, tc.hdr, strings.NewReader(tc.body)); r.status != tc.want {
				overrides++
				t.Errorf("initialize = %d %q, want %d", r.status, r.body, tc.want)
			}
		})
	}

	sessionBefore := mxCall(ca, "get_trust_session", mxArgs("session_id", aSession))
	calls := []struct {
		name   string
		key    string
		extra  []string
		tenant string
		user   string
	}{
		{"A plain (control)", "a1", nil, mxTenantA, "a1"},
		{"A with X-User-Id of B's user", "a1", []string{tenancy.HeaderUserID, "b1"}, mxTenantA, "a1"},
		{"A with X-User-Id of its other user", "a1", []string{tenancy.HeaderUserID, "a2"}, mxTenantA, "a1"},
		{"A with X-EATP-Human-Origin naming B", "a1", []string{delegation.HeaderHumanOrigin, origin(mxTenantB, "b1")}, mxTenantA, "a1"},
		{"A with X-EATP-Agent-ID of B's agent", "a1", []string{delegation.HeaderAgentID, "b-only"}, mxTenantA, "a1"},
		{"B with X-EATP-Session-ID of A's session", "b1", []string{delegation.HeaderSessionID, aSession}, mxTenantB, "b1"},
		{"B with every header naming A", "b1", []string{tenancy.HeaderUserID, "a1", delegation.HeaderHumanOrigin, origin(mxTenantA, "a1"),
			delegation.HeaderSessionID, aSession}, mxTenantB, "b1"},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			hdr := with(bearer(keys[tc.key]), tc.extra...)
			c, _ := mcpGoClient(t, e.url, hdr, false)
			cn := canary()
			r := mxCall(c, "create_entities", entityArgs(cn))
			if !r.ok() {
				// refused is acceptable; the identity check below needs a recorded call
				t.Logf("create_entities refused: %.300s", r.body())
				mxCall(c, "read_graph", mxArgs())
			}
			rc := rec.last(t)
			if rc.TenantID != tc.tenant || rc.UserID != tc.user || rc.DevOverride {
				overrides++
				t.Errorf("RequestContext = %+v, want tenant %s user %s (the credential's)", rc, tc.tenant, tc.user)
			}
			if !r.ok() {
				return
			}
			// the entity is the caller's, not the other tenant's
			own, other := ca, cb
			if tc.tenant == mxTenantB {
				own, other = cb, ca
			}
			if !strings.Contains(mxCall(own, "search_nodes", mxArgs("query", cn)).body(), cn) {
				overrides++
				t.Errorf("the caller's tenant does not have its entity %s", cn)
			}
			if strings.Contains(mxCall(other, "search_nodes", mxArgs("query", cn)).body(), cn) {
				overrides++
				t.Errorf("the other tenant has the entity %s", cn)
			}
		})
	}
	// B naming A's trust session did not touch it (activity, workflow count)
	if got := mxCall(ca, "get_trust_session", mxArgs("session_id", aSession)); got.sc != sessionBefore.sc || !strings.Contains(got.sc, `"user_id":"a1"`) {
		overrides++
		t.Errorf("A's trust session after B's attempts = %s, before %s", got.sc, sessionBefore.sc)
	}
	// control: A naming its own trust session does touch it
	own, _ := mcpGoClient(t, e.url, with(bearer(keys["a1"]), delegation.HeaderSessionID, aSession), false)
	mxMust(t, own, "read_graph", mxArgs())
	if got := mxCall(ca, "get_trust_session", mxArgs("session_id", aSession)); got.sc == sessionBefore.sc {
		t.Errorf("control: A's own X-EATP-Session-ID left its session untouched (%s); the check above proves nothing", got.sc)
	}
	t.Logf("metric header_overrides=%d", overrides)
}

// TestMatrixHumanOriginEnforcing (enforcing mode): a request with
// tenant A's credential whose X-EATP-Human-Origin names tenant B is
// refused with 403 and audited in A as a trust denial; the same request
// without the header, or naming A, succeeds (controls). The symmetric
// case (B's credential naming A) is refused too.
func TestMatrixHumanOriginEnforcing(t *testing.T) {
	e := mxStartHTTP(t, memory.AgentScopeGlobal, "--eatp-mode=enforcing")
	keys, _, _ := mxProvision(t, e.store)
	for tenant, agent := range map[string]string{mxTenantA: "a-agent", mxTenantB: "b-agent", mxTenantA + " ": "a-agent2"} {
		tenant = strings.TrimSpace(tenant)
		if _, _, err := e.store.RegisterAgent(actAs(tenant), memory.AgentRegistration{ID: agent, Name: agent}); err != nil {
			t.Fatal(err)
		}
	}
	origin := func(tenant, user string) string {
		b, _ := json.Marshal(map[string]any{"user_id": user, "tenant_id": tenant, "display_name": user})
		return base64.StdEncoding.EncodeToString(b)
	}
	trust := func(key, agent string, extra ...string) map[string]string {
		return with(bearer(key), append([]string{delegation.HeaderTraceID, "eatp-mcp-" + mxRandHex(8), delegation.HeaderAgentID, agent}, extra...)...)
	}
	denials := func(tenant string) int {
		n := 0
		for _, r := range auditOf(t, e.store, tenant) {
			if r.Event.Action == "trust.denied" && r.Event.Outcome == memory.OutcomeDenied {
				n++
			}
		}
		return n
	}
	refusedOK := 0
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		want   int
		tenant string // whose audit gets the denial row
	}{
		{"A without human origin (control)", trust(keys["a1"], "a-agent"), http.StatusOK, ""},
		{"A with human origin naming A (control)", trust(keys["a1"], "a-agent", delegation.HeaderHumanOrigin, origin(mxTenantA, "a1")), http.StatusOK, ""},
		{"A with human origin naming B", trust(keys["a1"], "a-agent", delegation.HeaderHumanOrigin, origin(mxTenantB, "b1")), http.StatusForbidden, mxTenantA},
		{"B with human origin naming B (control)", trust(keys["b1"], "b-agent", delegation.HeaderHumanOrigin, origin(mxTenantB, "b1")), http.StatusOK, ""},
		{"B with human origin naming A", trust(keys["b1"], "b-agent", delegation.HeaderHumanOrigin, origin(mxTenantA, "a1")), http.StatusForbidden, mxTenantB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before int
			if tc.tenant != "" {
				before = denials(tc.tenant)
			}
			r := rawDo(t, http.MethodPost, e.url, tc.hdr, strings.NewReader(rawInitialize))
			if r.status != tc.want {
				t.Fatalf("initialize = %d %q, want %d", r.status, r.body, tc.want)
			}
			if tc.tenant == "" {
				return
			}
			refusedOK++
			if strings.Contains(r.body, mxTenantA) || strings.Contains(r.body, mxTenantB) {
				t.Errorf("refusal body %q echoes a tenant id", r.body)
			}
			if got := denials(tc.tenant) - before; got != 1 {
				t.Errorf("trust.denied rows of %s grew by %d, want 1", tc.tenant, got)
			}
		})
	}
	t.Logf("metric human_origin_cross_tenant_refused=%d/2", refusedOK)

	// X-EATP-Trace-ID naming A's delegation, sent by B, is an unknown
	// trace for B (accepted like a random one); A's own trace with the
	// wrong agent is refused (control: the trace is looked up).
	ca, _ := mcpGoClient(t, e.url, trust(keys["a1"], "a-agent"), false)
	prep := mxMust(t, ca, "prepare_agent_call", mxArgs("calling_agent", "a-agent", "target_agent", "a-agent2", "tool_name", "read_graph"))
	aTrace, _ := prep["eatp_trace_id"].(string)
	aSession, _ := mxMust(t, ca, "create_trust_session", mxArgs("human_origin", mxArgs("display_name", "a")))["session_id"].(string)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"A's trace with an agent it does not target (control)", with(bearer(keys["a1"]), delegation.HeaderTraceID, aTrace, delegation.HeaderAgentID, "a-agent"), http.StatusForbidden},
		{"A's trace with its target (control)", with(bearer(keys["a1"]), delegation.HeaderTraceID, aTrace, delegation.HeaderAgentID, "a-agent2"), http.StatusOK},
		{"B with A's trace", with(bearer(keys["b1"]), delegation.HeaderTraceID, aTrace, delegation.HeaderAgentID, "b-agent"), http.StatusOK},
		// X-EATP-Session-ID must name an active session of the caller's tenant
		{"A with its trust session (control)", trust(keys["a1"], "a-agent", delegation.HeaderSessionID, aSession), http.StatusOK},
		{"B with A's trust session", trust(keys["b1"], "b-agent", delegation.HeaderSessionID, aSession), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := rawDo(t, http.MethodPost, e.url, tc.hdr, strings.NewReader(rawInitialize)); r.status != tc.want {
				t.Errorf("initialize = %d %q, want %d", r.status, r.body, tc.want)
			}
		})
	}
	// A completes its delegation (control for verify_agent_response's
	// write); B's attempt on the same id is not found, like a random id.
	verify := func(id string) map[string]any {
		return mxArgs("delegation_id", id, "response", mxArgs("content", []any{}))
	}
	cb, _ := mcpGoClient(t, e.url, trust(keys["b1"], "b-agent"), false)
	aDeleg, _ := prep["delegation_id"].(string)
	rnd := mxLike(aDeleg)
	rb, rr := mxCall(cb, "verify_agent_response", verify(aDeleg)), mxCall(cb, "verify_agent_response", verify(rnd))
	if mxNormalize(rb, map[string]string{aDeleg: "<id>"}) != mxNormalize(rr, map[string]string{rnd: "<id>"}) {
		t.Errorf("B verify_agent_response(A's delegation) = %.300s; random id: %.300s", rb.body(), rr.body())
	}
	mxMust(t, ca, "verify_agent_response", verify(aDeleg))
}
