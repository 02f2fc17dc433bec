package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// Several stateless replicas on one PostgreSQL database behave as one
// server (issue 8): three server processes (this test binary re-run with
// NEXUS_E2E_SERVER=1) on one fresh schema, on loopback ports, with clients
// whose requests go round-robin to the three.
//
// These tests need PostgreSQL. The SQLite pass of .ci/run has none, so
// they skip there, and only there: without NEXUS_TEST_POSTGRES. The
// PostgreSQL pass (NEXUS_TEST_POSTGRES set) runs them; run them alone with
//
//	NEXUS_TEST_POSTGRES='postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable' \
//	  go test -timeout 600s ./cmd/nexus-mcp -run Replica
//
// The session-sharing test also runs on SQLite (three processes on one
// file), since bindings take the same code path on both backends.

// replicaTenant is the tenant of the replica tests.
const replicaTenant = "rep"

// replicaSet is n server processes on one database.
type replicaSet struct {
	db    string
	procs []*serverProc
	key   string // an API key of replicaTenant
}

// replicaPostgres returns a fresh schema of NEXUS_TEST_POSTGRES, or skips
// the test when it is unset (the SQLite pass of .ci/run).
func replicaPostgres(t *testing.T) string {
	t.Helper()
	base := os.Getenv(memtest.EnvPostgres)
	if base == "" {
		t.Skip("needs PostgreSQL: set " + memtest.EnvPostgres + " (the PostgreSQL pass of .ci/run does)")
	}
	return memtest.Schema(t, base)
}

// startReplicas creates replicaTenant and a key in db, then starts n
// replicas on it with the extra serve flags.
func startReplicas(t *testing.T, db string, n int, extra ...string) *replicaSet {
	t.Helper()
	rs := &replicaSet{db: db, key: newTenantKey(t, db, replicaTenant)}
	for range n {
		rs.procs = append(rs.procs, startServerProc(t, db, extra...))
	}
	return rs
}

func (rs *replicaSet) urls() []string {
	out := make([]string, len(rs.procs))
	for i, p := range rs.procs {
		out[i] = p.url()
	}
	return out
}

// roundRobin sends each request to the next of its base URLs, whatever
// URL the client asked for.
type roundRobin struct {
	bases []*url.URL
	rt    http.RoundTripper
	next  atomic.Uint64
	hits  []atomic.Int64
}

func newRoundRobin(tb testing.TB, urls []string) *roundRobin {
	tb.Helper()
	rr := &roundRobin{rt: &http.Transport{MaxIdleConnsPerHost: 8}, hits: make([]atomic.Int64, len(urls))}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			tb.Fatal(err)
		}
		rr.bases = append(rr.bases, p)
	}
	tb.Cleanup(func() { rr.rt.(*http.Transport).CloseIdleConnections() })
	return rr
}

func (rr *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	i := int((rr.next.Add(1) - 1) % uint64(len(rr.bases)))
	rr.hits[i].Add(1)
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rr.bases[i].Scheme, rr.bases[i].Host, rr.bases[i].Host
	return rr.rt.RoundTrip(r)
}

// rrMCPClient is an initialized mcp-go client (sessions: legacy protocol)
// whose requests go round-robin to urls.
func rrMCPClient(t *testing.T, urls []string, hdr map[string]string) (*client.Client, *roundRobin) {
	t.Helper()
	rr := newRoundRobin(t, urls)
	tr, err := transport.NewStreamableHTTP(urls[0], transport.WithHTTPHeaders(hdr),
		transport.WithHTTPBasicClient(&http.Client{Transport: rr}))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "replica-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if tr.GetSessionId() == "" {
		t.Fatal("no session id: the client must run with a session")
	}
	return c, rr
}

// rrCall calls a tool and returns its result as JSON (text content),
// failing the test on a protocol error or an error result.
func rrCall(t *testing.T, c *client.Client, name string, args map[string]any) map[string]any {
	t.Helper()
	res := callTool(t, c, name, args)
	if res.IsError {
		t.Fatalf("%s(%v): error result %q", name, args, resultText(res))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(resultText(res)), &m); err != nil {
		t.Fatalf("%s: result %q: %v", name, resultText(res), err)
	}
	return m
}

// rrRPCClient is an rpcClient (one session) whose requests go round-robin
// to urls.
func rrRPCClient(t *testing.T, urls []string, auth map[string]string) *rpcClient {
	t.Helper()
	c := &rpcClient{url: urls[0], hc: &http.Client{Transport: newRoundRobin(t, urls)}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.post(ctx, auth, []byte(rawInitialize))
	if err != nil || r.status != http.StatusOK || r.resp == nil || r.sid() == "" {
		t.Fatalf("initialize: %v %d %q", err, r.status, r.body)
	}
	c.hdr = with(auth, server.HeaderKeySessionID, r.sid(), "Mcp-Protocol-Version", "2025-06-18")
	c.id.Store(100)
	return c
}

// pgConn connects the test to the replicas' database (read-only use).
func pgConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// pgState reads tenant's entities (with their observation counts) and its
// create_entities audit rows by content hash.
func pgState(t *testing.T, db, tenant string) dbState {
	t.Helper()
	ctx := context.Background()
	conn := pgConn(t, db)
	st := dbState{entities: map[string]int{}, audit: map[string]int{}}
	rows, err := conn.Query(ctx, `SELECT e.name, (SELECT count(*) FROM observations o WHERE o.tenant_id = e.tenant_id AND o.entity_id = e.id)
		FROM entities e WHERE e.tenant_id = $1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		var obs int
		if err := rows.Scan(&n, &obs); err != nil {
			t.Fatal(err)
		}
		st.entities[n] = obs
	}
	rows.Close()
	rows, err = conn.Query(ctx, `SELECT content_hash, count(*) FROM audit_log WHERE tenant_id = $1 AND tool = 'create_entities' GROUP BY content_hash`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		var n int
		if err := rows.Scan(&h, &n); err != nil {
			t.Fatal(err)
		}
		st.audit[h] = n
	}
	rows.Close()
	return st
}

// TestReplicaSessions: a session created on one replica is usable on the
// others by its principal only; another tenant's request with the id gets
// 404 on every replica (as for an unknown id); a DELETE through one
// replica ends it on all of them. PostgreSQL when NEXUS_TEST_POSTGRES is
// set, else three processes on one SQLite file.
func TestReplicaSessions(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nexus.db")
	if os.Getenv(memtest.EnvPostgres) != "" {
		db = replicaPostgres(t)
	}
	// idle/4 = 1 s: how long a replica still holding a session takes to
	// notice a DELETE made through another.
	const idle = 4 * time.Second
	rs := startReplicas(t, db, 3, "--session-idle-timeout="+idle.String())
	keyB := newTenantKey(t, db, "rep-other")
	keyA2 := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", replicaTenant, "--user", "u2"))
	urls := rs.urls()
	const list = `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`
	do := func(method string, i int, hdr map[string]string) int {
		t.Helper()
		var body *strings.Reader
		if method == http.MethodPost {
			body = strings.NewReader(list)
		} else {
			body = strings.NewReader("")
		}
		return rawDo(t, method, urls[i], hdr, body).status
	}

	sid := rawSession(t, urls[0], bearer(rs.key))
	owner := with(bearer(rs.key), server.HeaderKeySessionID, sid, "Mcp-Protocol-Version", "2025-06-18")
	other := with(bearer(keyB), server.HeaderKeySessionID, sid, "Mcp-Protocol-Version", "2025-06-18")
	sameTenant := with(bearer(keyA2), server.HeaderKeySessionID, sid, "Mcp-Protocol-Version", "2025-06-18")
	unknown := with(bearer(rs.key), server.HeaderKeySessionID, "mcp-session-6f1c1b5e-7d42-4b8e-9a4f-2d2f7f0c9a11")
	crossAccepted := 0
	for i := range urls {
		// Other principals first, so a replica that has not yet seen the
		// session cannot have it cached: the refusal comes from the store.
		if got := do(http.MethodPost, i, other); got != http.StatusNotFound {
			t.Errorf("replica %d: another tenant with the session = %d, want 404", i+1, got)
			crossAccepted++
		}
		if got := do(http.MethodPost, i, sameTenant); got != http.StatusNotFound {
			t.Errorf("replica %d: another key of the tenant with the session = %d, want 404", i+1, got)
			crossAccepted++
		}
		if got := do(http.MethodPost, i, unknown); got != http.StatusNotFound {
			t.Errorf("replica %d: unknown session = %d, want 404", i+1, got)
		}
		if got := do(http.MethodPost, i, owner); got != http.StatusOK { // positive control
			t.Errorf("replica %d: owner's session = %d, want 200", i+1, got)
		}
		if got := do(http.MethodPost, i, other); got != http.StatusNotFound {
			t.Errorf("replica %d: another tenant after the owner's use = %d, want 404", i+1, got)
			crossAccepted++
		}
	}
	t.Logf("metric replica_session_crossuse_accepted=%d", crossAccepted)

	// DELETE through replica 3; replica 2 then forgets it within idle/4.
	if got := do(http.MethodDelete, 2, owner); got < 200 || got > 299 {
		t.Fatalf("DELETE through replica 3 = %d, want 2xx", got)
	}
	deadline := time.Now().Add(idle / 4 * 3)
	var got int
	for {
		got = do(http.MethodPost, 1, owner)
		if got == http.StatusNotFound || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != http.StatusNotFound {
		t.Errorf("replica 2 after DELETE through replica 3: %d, want 404 within %s", got, idle/4*3)
	}
	if got := do(http.MethodPost, 0, owner); got != http.StatusNotFound {
		t.Errorf("replica 1 after DELETE through replica 3: %d, want 404", got)
	}

	// A session used only through replica 2 stays alive on replica 1 past
	// the idle timeout, because replica 2 records its use in the store.
	sid2 := rawSession(t, urls[0], bearer(rs.key))
	owner2 := with(bearer(rs.key), server.HeaderKeySessionID, sid2, "Mcp-Protocol-Version", "2025-06-18")
	for end := time.Now().Add(idle + idle/2); time.Now().Before(end); time.Sleep(idle / 8) {
		if got := do(http.MethodPost, 1, owner2); got != http.StatusOK {
			t.Fatalf("replica 2, session in steady use = %d, want 200", got)
		}
	}
	if got := do(http.MethodPost, 0, owner2); got != http.StatusOK {
		t.Errorf("replica 1 after %s of use through replica 2 = %d, want 200 (the session is not idle)", idle+idle/2, got)
	}
}

// TestReplicaCollaboration (a): one MCP client, requests round-robin to
// three replicas, runs the collaboration scenario.
func TestReplicaCollaboration(t *testing.T) {
	rs := startReplicas(t, replicaPostgres(t), 3)
	c, rr := rrMCPClient(t, rs.urls(), bearer(rs.key))
	step := 0
	call := func(name string, args map[string]any) map[string]any {
		t.Helper()
		step++
		return rrCall(t, c, name, args)
	}

	call("register_agent", map[string]any{"agentId": "planner", "name": "Planner", "capabilities": []any{"planning"}})
	call("register_agent", map[string]any{"agentId": "coder", "name": "Coder", "capabilities": []any{"go"}})
	st := call("get_agent_status", map[string]any{})
	if !strings.Contains(fmt.Sprint(st), "planner") || !strings.Contains(fmt.Sprint(st), "coder") {
		t.Errorf("get_agent_status = %v, want planner and coder", st)
	}

	msg := "msg-" + canary()
	call("send_ai_message", map[string]any{"from": "planner", "to": "coder", "content": msg, "messageType": "task", "priority": "high"})
	got := call("get_ai_messages", map[string]any{"agentId": "coder"})
	if !strings.Contains(fmt.Sprint(got), msg) {
		t.Errorf("get_ai_messages(coder) = %v, want the message %q", got, msg)
	}

	lesson := "lesson-" + canary()
	call("record_learning", map[string]any{"agentId": "coder", "context": "replicas", "lesson": lesson, "confidence": 0.9})
	// Read it through every replica (each request goes to the next one).
	for i := range rs.procs {
		if m := call("get_individual_memory", map[string]any{"agentId": "coder"}); !strings.Contains(fmt.Sprint(m), lesson) {
			t.Errorf("get_individual_memory(coder), read %d = %v, want lesson %q", i+1, m, lesson)
		}
	}

	summary := "summary-" + canary()
	call("end_session", map[string]any{"agentId": "planner", "projectId": "proj-rep", "summary": summary, "openItems": []any{"next"}})
	begun := call("begin_session", map[string]any{"agentId": "coder", "projectId": "proj-rep"})
	h, _ := begun["handoff"].(map[string]any)
	if h == nil || h["summary"] != summary {
		t.Errorf("begin_session handoff = %v, want the summary %q", begun["handoff"], summary)
	}
	again := call("begin_session", map[string]any{"agentId": "coder", "projectId": "proj-rep"})
	if again["handoff"] != nil {
		t.Errorf("second begin_session handoff = %v, want none (consumed once)", again["handoff"])
	}

	ent := "ent-" + canary()
	call("create_entities", entityArgs(ent, ent+"-2"))
	call("create_relations", map[string]any{"relations": []any{map[string]any{"from": ent, "to": ent + "-2", "relationType": "uses"}}})
	found := call("search_nodes", map[string]any{"query": ent})
	if names := fmt.Sprint(found["entities"]); !strings.Contains(names, ent) {
		t.Errorf("search_nodes(%q) = %v, want the entity", ent, found)
	}
	graph := call("read_graph", map[string]any{})
	if rels := fmt.Sprint(graph["relations"]); !strings.Contains(rels, "uses") {
		t.Errorf("read_graph relations = %v, want the relation", rels)
	}

	for i := range rr.hits {
		if rr.hits[i].Load() == 0 {
			t.Errorf("replica %d served no request", i+1)
		}
	}
	t.Logf("metric replica_collab_steps=%d", step)
	t.Logf("metric replica_collab_requests=%d", rr.next.Load())
}

// TestReplicaCacheCoherence: a change made through one replica is seen
// through the others even when they had read (and may cache) the state
// before it: every replica reads coder's individual memory, then a
// learning and a preference are written through replica 1 and read
// through replicas 2 and 3. Control: replica 1 itself sees them.
func TestReplicaCacheCoherence(t *testing.T) {
	rs := startReplicas(t, replicaPostgres(t), 3)
	urls := rs.urls()
	cs := make([]*rpcClient, len(urls))
	for i := range urls {
		cs[i] = mustRPCClient(t, urls[i], bearer(rs.key))
	}
	call := func(i int, name string, args map[string]any) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := cs[i].callTool(ctx, name, args)
		if err != nil || !r.acked() {
			t.Fatalf("replica %d %s: %v %d %.300s", i+1, name, err, r.status, r.body)
		}
		_, text, _ := r.toolResult()
		return text
	}
	call(0, "register_agent", map[string]any{"agentId": "coder", "name": "Coder", "capabilities": []any{"go"}})
	for i := range cs {
		call(i, "get_individual_memory", map[string]any{"agentId": "coder"})
	}
	lesson, pref := "lesson-"+canary(), "pref-"+canary()
	call(0, "record_learning", map[string]any{"agentId": "coder", "context": "replicas", "lesson": lesson})
	call(0, "set_preferences", map[string]any{"agentId": "coder", "preferences": map[string]any{"theme": pref}})
	stale := 0
	for i := range cs {
		got := call(i, "get_individual_memory", map[string]any{"agentId": "coder"})
		for _, want := range []string{lesson, pref} {
			if !strings.Contains(got, want) {
				stale++
				t.Errorf("replica %d: get_individual_memory(coder) after the write through replica 1 = %.300s, want %q", i+1, got, want)
			}
		}
	}
	t.Logf("metric replica_stale_reads=%d", stale)
}

// replicaWrites is the size of the concurrent-writers test: 16 clients x
// 1,000 writes, 16 x 100 under -race (.ci/run runs the full size without
// -race in its PostgreSQL pass).
func replicaWrites() (clients, writes int) {
	if raceEnabled() || testing.Short() {
		return 16, 100
	}
	return 16, 1000
}

// TestReplicaConcurrentWriters (b): 16 clients, each with one session
// whose requests go round-robin to three replicas, write distinct
// entities; afterwards the database holds each acknowledged write exactly
// once (one entity, one observation, one audit row) and nothing else.
func TestReplicaConcurrentWriters(t *testing.T) {
	rs := startReplicas(t, replicaPostgres(t), 3)
	clients, writes := replicaWrites()
	urls := rs.urls()
	var (
		mu       sync.Mutex
		acked    []string
		failures []string
		wg       sync.WaitGroup
	)
	for w := range clients {
		c := rrRPCClient(t, urls, bearer(rs.key))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				name := fmt.Sprintf("rep-w%02d-%06d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				r, err := c.callTool(ctx, "create_entities", writeArgs(name))
				cancel()
				mu.Lock()
				if err == nil && r.acked() {
					acked = append(acked, name)
				} else if len(failures) < 5 {
					failures = append(failures, fmt.Sprintf("%s: %v %d %.200s", name, err, r.status, r.body))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(acked) != clients*writes {
		t.Errorf("acknowledged %d of %d writes; first failures: %q", len(acked), clients*writes, failures)
	}

	st := pgState(t, rs.db, replicaTenant)
	lost, dups := 0, 0
	for _, n := range acked {
		obs, ok := st.entities[n]
		switch {
		case !ok:
			lost++
		case obs != 1:
			dups++
		}
		if st.audit[argsHash(t, writeArgs(n))] != 1 {
			dups++
		}
	}
	extra := len(st.entities) - len(acked)
	if lost != 0 || dups != 0 || extra != 0 {
		t.Errorf("lost %d, duplicated %d, unacknowledged rows %d; want 0, 0, 0", lost, dups, extra)
	}
	t.Logf("metric replica_writes_acked=%d", len(acked))
	t.Logf("metric replica_writes_lost=%d", lost)
	t.Logf("metric replica_writes_duplicated=%d", dups)
}

// TestReplicaKill (c): one of three replicas is killed with SIGKILL in the
// middle of a write burst; the clients' next requests go to the others
// (same sessions), and every acknowledged write is in the database.
func TestReplicaKill(t *testing.T) {
	rs := startReplicas(t, replicaPostgres(t), 3)
	const clients = 8
	perClient := 150
	if raceEnabled() {
		perClient = 40
	}
	urls := rs.urls()
	var (
		mu            sync.Mutex
		acked         []string
		transportErrs atomic.Int64 // requests that failed at the transport (the dead replica)
		ackedN        atomic.Int64
		wg            sync.WaitGroup
	)
	for w := range clients {
		c := rrRPCClient(t, urls, bearer(rs.key))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				name := fmt.Sprintf("kill-w%02d-%06d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				r, err := c.callTool(ctx, "create_entities", writeArgs(name))
				cancel()
				if err != nil {
					transportErrs.Add(1)
					continue // not acknowledged; the next request goes to the next replica
				}
				if r.acked() {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
					ackedN.Add(1)
				}
			}
		}()
	}
	waitAcks(t, &ackedN, int64(clients*perClient/4))
	if err := rs.procs[1].cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killedAt := ackedN.Load()
	wg.Wait()

	st := pgState(t, rs.db, replicaTenant)
	lost := 0
	for _, n := range acked {
		if _, ok := st.entities[n]; !ok {
			lost++
		}
	}
	if lost != 0 {
		t.Errorf("%d acknowledged writes missing after SIGKILL of replica 2", lost)
	}
	if after := int64(len(acked)) - killedAt; after <= 0 {
		t.Errorf("no write acknowledged after the kill; the survivors must keep serving the sessions")
	}
	if transportErrs.Load() == 0 {
		t.Errorf("no request failed at the transport: replica 2 was not serving when killed")
	}
	t.Logf("metric replica_acked=%d", len(acked))
	t.Logf("metric replica_acked_lost=%d", lost)
	t.Logf("metric replica_acked_after_kill=%d", int64(len(acked))-killedAt)
	t.Logf("metric replica_transport_failures=%d", transportErrs.Load())
}

// TestReplicaKillSwitch (d): a tenant disabled (CLI, on the shared
// database) is refused by every replica within a second; a revoked key
// likewise. Positive control: both worked on every replica before.
func TestReplicaKillSwitch(t *testing.T) {
	rs := startReplicas(t, replicaPostgres(t), 3)
	urls := rs.urls()
	ctx := context.Background()
	store, err := memory.Open(ctx, rs.db, memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	revoked := strings.TrimSpace(mustCLI(t, "--db", rs.db, "keys", "create", "--tenant", replicaTenant, "--user", "revokee"))
	keys, err := store.APIKeys(ctx, replicaTenant)
	if err != nil {
		t.Fatal(err)
	}
	revokedID := ""
	for _, k := range keys {
		if k.UserID == "revokee" {
			revokedID = k.ID
		}
	}
	if revokedID == "" {
		t.Fatalf("key of revokee not found in %v", keys)
	}

	status := func(i int, key string) int {
		return rawDo(t, http.MethodPost, urls[i], bearer(key), strings.NewReader(rawInitialize)).status
	}
	for i := range urls { // positive control
		for _, k := range []string{rs.key, revoked} {
			if got := status(i, k); got != http.StatusOK {
				t.Fatalf("replica %d before: initialize = %d, want 200", i+1, got)
			}
		}
	}
	// refusedWithin polls replicas 2 and 3 until each answers want with
	// key, and reports the slowest in milliseconds; a replica still
	// accepting a second later fails the test.
	refusedWithin := func(what, key string, want int) float64 {
		t.Helper()
		changed := time.Now()
		deadline := changed.Add(time.Second)
		slowest := 0.0
		for _, i := range []int{1, 2} {
			got := 0
			for {
				got = status(i, key)
				if got == want || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got != want {
				t.Errorf("replica %d, %s: %d a second later, want %d", i+1, what, got, want)
				continue
			}
			slowest = max(slowest, float64(time.Since(changed).Milliseconds()))
		}
		return slowest
	}

	mustCLI(t, "--db", rs.db, "keys", "revoke", revokedID)
	revokeMS := refusedWithin("revoked key", revoked, http.StatusUnauthorized)
	if got := status(1, rs.key); got != http.StatusOK { // the tenant's other key still works
		t.Errorf("replica 2, other key after the revocation = %d, want 200", got)
	}
	mustCLI(t, "--db", rs.db, "tenants", "disable", replicaTenant)
	disableMS := refusedWithin("disabled tenant", rs.key, http.StatusForbidden)
	t.Logf("metric replica_revoke_refused_ms=%.0f", revokeMS)
	t.Logf("metric replica_disable_refused_ms=%.0f", disableMS)
}

// TestReplicaHandoffRace (e): begin_session racing on different replicas
// consumes a handoff exactly once: of N racers spread over the replicas,
// exactly one gets it, in every round.
func TestReplicaHandoffRace(t *testing.T) {
	rs := startReplicas(t, replicaPostgres(t), 3)
	urls := rs.urls()
	const racers = 9
	rounds := 10
	if raceEnabled() {
		rounds = 4
	}
	writer := rrRPCClient(t, urls, bearer(rs.key))
	cs := make([]*rpcClient, racers)
	for i := range cs {
		cs[i] = mustRPCClient(t, urls[i%len(urls)], bearer(rs.key)) // racer i on replica i mod 3
	}
	badRounds, winners := 0, 0
	for round := range rounds {
		project := fmt.Sprintf("race-%d", round)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := writer.callTool(ctx, "end_session", map[string]any{"agentId": "planner", "projectId": project, "summary": "s " + project})
		cancel()
		if err != nil || !r.acked() {
			t.Fatalf("end_session: %v %d %.300s", err, r.status, r.body)
		}
		var (
			got   atomic.Int64
			ready sync.WaitGroup
			done  sync.WaitGroup
			start = make(chan struct{})
		)
		for i, c := range cs {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				r, err := c.callTool(ctx, "begin_session", map[string]any{"agentId": fmt.Sprintf("coder-%d", i), "projectId": project})
				if err != nil || !r.acked() {
					t.Errorf("racer %d begin_session: %v %d %.300s", i, err, r.status, r.body)
					return
				}
				_, text, _ := r.toolResult()
				var res struct {
					Handoff *struct {
						Summary string `json:"summary"`
					} `json:"handoff"`
				}
				if err := json.Unmarshal([]byte(text), &res); err != nil {
					t.Errorf("racer %d: result %q: %v", i, text, err)
					return
				}
				if res.Handoff != nil {
					got.Add(1)
				}
			}()
		}
		ready.Wait()
		close(start)
		done.Wait()
		if got.Load() != 1 {
			badRounds++
			t.Errorf("round %d: %d racers got the handoff, want exactly 1", round, got.Load())
		}
		winners += int(got.Load())
	}
	t.Logf("metric replica_handoff_rounds=%d", rounds)
	t.Logf("metric replica_handoff_racers=%d", racers)
	t.Logf("metric replica_handoff_bad_rounds=%d", badRounds)
	t.Logf("metric replica_handoff_consumptions=%d", winners)
}

// TestReplicaRateLimit: three replicas share each tenant's limit. With
// --rate-rps 1 --rate-burst 30, 90 requests at once spread evenly over the
// replicas admit about 30 in total (each replica: ceil(30/3) = 10), not 90.
// Control: a burst through one replica alone, before the others start,
// admits the whole burst of 30 (another tenant, so its bucket is fresh).
func TestReplicaRateLimit(t *testing.T) {
	db := replicaPostgres(t)
	keyAlone := newTenantKey(t, db, "rep-alone")
	key := newTenantKey(t, db, replicaTenant)
	flags := []string{"--rate-rps=1", "--rate-burst=30"}
	burstOf := func(urls []string, n int, key string) int {
		rr := newRoundRobin(t, urls)
		hc := &http.Client{Transport: rr}
		admitted := 0
		for range n {
			req, err := http.NewRequest(http.MethodPost, urls[0], strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests {
				admitted++
			}
		}
		return admitted
	}
	first := startServerProc(t, db, flags...)
	start := time.Now()
	alone := burstOf([]string{first.url()}, 40, keyAlone)
	if slack := 1 + int(time.Since(start).Seconds()); alone < 30 || alone > 30+slack {
		t.Errorf("one replica admitted %d of 40, want its burst of 30 (+%d refill)", alone, slack)
	}

	procs := []*serverProc{first, startServerProc(t, db, flags...), startServerProc(t, db, flags...)}
	// Each replica logs the count of live replicas when it changes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		all := true
		for _, p := range procs {
			all = all && strings.Contains(p.stderr.String(), "replicas=3")
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replicas did not count each other (no \"replicas=3\" log line) within 10 s")
		}
	}
	urls := []string{procs[0].url(), procs[1].url(), procs[2].url()}
	start = time.Now()
	shared := burstOf(urls, 90, key)
	// Tolerance (tenancy.RateLimiter.Replicas): burst + N-1 for rounding,
	// plus the aggregate refill of 1 rps while the burst runs.
	slack := 2 + 1 + int(time.Since(start).Seconds())
	if shared < 30-3 || shared > 30+slack {
		t.Errorf("three replicas admitted %d of 90, want about 30 (burst 30 shared; tolerance +%d)", shared, slack)
	}
	t.Logf("metric replica_rate_alone_admitted=%d", alone)
	t.Logf("metric replica_rate_shared_admitted=%d", shared)
}
