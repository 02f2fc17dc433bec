package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for openRO on PostgreSQL

	"github.com/mark3labs/mcp-go/server"
	_ "modernc.org/sqlite" // the tests read the database file directly, read-only

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
)

// Storage reliability: concurrent writers,
// kill -9 mid-burst, client disconnects mid-write and SIGTERM mid-burst.

// rpcResponse is a JSON-RPC response.
type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	sessionID string // the Mcp-Session-Id header of the reply
}

// rpcReply is one HTTP exchange: status and, when the body held one, the
// JSON-RPC response.
type rpcReply struct {
	status int
	body   string
	resp   *rpcResponse
}

// toolResult decodes a tools/call result: isError and its text.
func (r rpcReply) toolResult() (isError bool, text string, ok bool) {
	if r.resp == nil || r.resp.Error != nil || r.resp.Result == nil {
		return false, "", false
	}
	var res struct {
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(r.resp.Result, &res) != nil {
		return false, "", false
	}
	var b strings.Builder
	for _, c := range res.Content {
		b.WriteString(c.Text)
	}
	return res.IsError, b.String(), true
}

// acked reports an acknowledged tool call: HTTP 200, a result, not isError.
func (r rpcReply) acked() bool {
	isErr, _, ok := r.toolResult()
	return r.status == http.StatusOK && ok && !isErr
}

// rpcClient speaks raw JSON-RPC over streamable HTTP in one session, on
// its own keep-alive connections.
type rpcClient struct {
	url string
	hdr map[string]string
	hc  *http.Client
	id  atomic.Int64
}

// newRPCClient initializes a session (legacy protocol) with auth headers.
func newRPCClient(ctx context.Context, url string, auth map[string]string) (*rpcClient, error) {
	c := &rpcClient{url: url, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	r, err := c.post(ctx, auth, []byte(rawInitialize))
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK || r.resp == nil || r.resp.Error != nil {
		return nil, fmt.Errorf("initialize: %d %q", r.status, r.body)
	}
	c.hdr = with(auth, server.HeaderKeySessionID, r.sid(), "Mcp-Protocol-Version", "2025-06-18")
	c.id.Store(100)
	return c, nil
}

func (r rpcReply) sid() string { return r.resp.sessionID }

func (c *rpcClient) close() { c.hc.CloseIdleConnections() }

// post sends body with the headers and reads the reply (JSON or SSE).
func (c *rpcClient) post(ctx context.Context, hdr map[string]string, body []byte) (rpcReply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return rpcReply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return rpcReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return rpcReply{status: resp.StatusCode}, err
	}
	r := rpcReply{status: resp.StatusCode, body: string(b)}
	r.resp = parseRPCBody(resp.Header.Get("Content-Type"), b)
	if r.resp != nil {
		r.resp.sessionID = resp.Header.Get(server.HeaderKeySessionID)
	}
	return r, nil
}

// parseRPCBody finds the JSON-RPC response in a JSON or SSE body.
func parseRPCBody(contentType string, b []byte) *rpcResponse {
	var candidates [][]byte
	if strings.HasPrefix(contentType, "text/event-stream") {
		for _, line := range strings.Split(string(b), "\n") {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				candidates = append(candidates, []byte(strings.TrimSpace(d)))
			}
		}
	} else {
		candidates = [][]byte{b}
	}
	for _, c := range candidates {
		var r rpcResponse
		if json.Unmarshal(c, &r) == nil && (r.Result != nil || r.Error != nil) {
			return &r
		}
	}
	return nil
}

// callTool sends tools/call.
func (c *rpcClient) callTool(ctx context.Context, name string, args any) (rpcReply, error) {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": c.id.Add(1), "method": "tools/call",
		"params": map[string]any{"name": name, "arguments": args}})
	if err != nil {
		return rpcReply{}, err
	}
	return c.post(ctx, c.hdr, body)
}

// mustRPCClient is newRPCClient failing the test.
func mustRPCClient(tb testing.TB, url string, auth map[string]string) *rpcClient {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := newRPCClient(ctx, url, auth)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.close)
	return c
}

// writeArgs are the create_entities arguments of one tracked write; its
// audit row carries their hash.
func writeArgs(name string) map[string]any {
	return map[string]any{"entities": []any{map[string]any{"name": name, "entityType": "durability", "observations": []any{"obs " + name}}}}
}

func argsHash(tb testing.TB, args map[string]any) string {
	tb.Helper()
	h, err := delegation.HashJSON(args)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// openRO opens the database read-only: the SQLite file, or the PostgreSQL
// database (test queries use $1 placeholders, which both engines accept).
func openRO(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	driver, dsn := "sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)"
	if memory.IsPostgresURL(path) {
		driver, dsn = "pgx", path
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// dbState is what a tenant's tracked writes left in the database.
type dbState struct {
	entities map[string]int // name -> observations
	audit    map[string]int // content_hash -> create_entities audit rows
}

func readState(tb testing.TB, db *sql.DB, tenant string) dbState {
	tb.Helper()
	st := dbState{entities: map[string]int{}, audit: map[string]int{}}
	rows, err := db.Query(`SELECT e.name, (SELECT count(*) FROM observations o WHERE o.tenant_id = e.tenant_id AND o.entity_id = e.id)
		FROM entities e WHERE e.tenant_id = $1`, tenant)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var n string
		var obs int
		if err := rows.Scan(&n, &obs); err != nil {
			tb.Fatal(err)
		}
		st.entities[n] = obs
	}
	rows.Close()
	rows, err = db.Query(`SELECT content_hash, count(*) FROM audit_log WHERE tenant_id = $1 AND tool = 'create_entities' GROUP BY content_hash`, tenant)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var h string
		var n int
		if err := rows.Scan(&h, &n); err != nil {
			tb.Fatal(err)
		}
		st.audit[h] = n
	}
	rows.Close()
	return st
}

func integrityOK(tb testing.TB, db *sql.DB) bool {
	tb.Helper()
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil {
		tb.Errorf("integrity_check: %v", err)
		return false
	}
	if res != "ok" {
		tb.Errorf("integrity_check = %q", res)
	}
	return res == "ok"
}

// TestDurabilityConcurrentWriters: 16 HTTP clients x 1000 distinct
// writes (16 x 100 under -race) with 4 concurrent readers: nothing lost,
// nothing written twice, no "database is locked" in any response or log.
// How fast: BenchmarkHTTPWrites16.
func TestDurabilityConcurrentWriters(t *testing.T) {
	const clients, readers = 16, 4
	perClient, readPace := 1000, 20*time.Millisecond
	if raceEnabled() {
		perClient, readPace = 100, 100*time.Millisecond
	}
	e := startHTTP(t, httpTestOpts{})
	key := e.newKey(t, memory.NewKey{TenantID: "w1", UserID: "writer"})
	var (
		acked, failed, busy, fiveXX, reads atomic.Int64
		hashes                             = make([][]string, clients)
		wg                                 sync.WaitGroup
		done                               = make(chan struct{})
	)
	cls := make([]*rpcClient, clients)
	for i := range cls {
		cls[i] = mustRPCClient(t, e.url, bearer(key))
	}
	check := func(r rpcReply, err error) {
		switch {
		case err != nil:
			failed.Add(1)
			if isBusy(err.Error()) {
				busy.Add(1)
			}
			t.Errorf("call: %v", err)
		case r.status >= 500:
			fiveXX.Add(1)
		}
		if isBusy(r.body) {
			busy.Add(1)
		}
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				args := writeArgs(fmt.Sprintf("c%02d-%05d", c, i))
				hashes[c] = append(hashes[c], argsHash(t, args))
				r, err := cls[c].callTool(context.Background(), "create_entities", args)
				check(r, err)
				if err == nil && r.acked() {
					acked.Add(1)
				} else if err == nil {
					failed.Add(1)
					t.Errorf("write c%02d-%05d: %d %.200s", c, i, r.status, r.body)
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for rd := range readers {
		rc := mustRPCClient(t, e.url, bearer(key))
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; i < 100000; i++ { // bounded; stops when the writers are done
				select { // paced: readers share the 2 cores with 16 writers
				case <-done:
					return
				case <-time.After(readPace):
				}
				var (
					r   rpcReply
					err error
				)
				if (i+rd)%2 == 0 {
					r, err = rc.callTool(context.Background(), "search_nodes", map[string]any{"query": fmt.Sprintf("c%02d-%03d", (i*7+rd)%clients, i%100)})
				} else {
					r, err = rc.callTool(context.Background(), "read_graph", map[string]any{"limit": 50, "offset": (i * 37) % max(1, int(acked.Load()))})
				}
				check(r, err)
				if err == nil && (r.status != http.StatusOK || r.resp == nil || r.resp.Error != nil) {
					t.Errorf("reader: %d %.200s", r.status, r.body)
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	close(done)
	rwg.Wait()
	if isBusy(e.logs.String()) {
		busy.Add(1)
	}

	st := readState(t, openRO(t, e.db), "w1")
	lost, dups := 0, 0
	for c := range clients {
		for i := range perClient {
			name := fmt.Sprintf("c%02d-%05d", c, i)
			if st.entities[name] != 1 {
				lost++
			}
			if n := st.audit[hashes[c][i]]; n != 1 {
				dups++
				if dups <= 5 {
					t.Errorf("write %s has %d audit rows, want 1", name, n)
				}
			}
		}
	}
	total := clients * perClient
	if acked.Load() != int64(total) || lost != 0 || dups != 0 || busy.Load() != 0 || fiveXX.Load() != 0 || len(st.entities) != total {
		t.Errorf("acked %d of %d, rows %d, lost %d, duplicated %d, busy %d, 5xx %d; want all acked and present once, 0 busy",
			acked.Load(), total, len(st.entities), lost, dups, busy.Load(), fiveXX.Load())
	}
	t.Logf("metric acked=%d", acked.Load())
	t.Logf("metric rows=%d", len(st.entities))
	t.Logf("metric lost=%d", lost)
	t.Logf("metric duplicated=%d", dups)
	t.Logf("metric busy_errors=%d", busy.Load())
	t.Logf("metric five_xx=%d", fiveXX.Load())
	t.Logf("metric reads=%d", reads.Load())
}

// newTenantKey creates tenant and an API key in db through the CLI.
func newTenantKey(tb testing.TB, db, tenant string) string {
	tb.Helper()
	mustCLI(tb, "--db", db, "tenants", "create", tenant)
	return strings.TrimSpace(mustCLI(tb, "--db", db, "keys", "create", "--tenant", tenant, "--user", "u-"+tenant))
}

// burst runs writers that write distinct names through c until a call
// fails at the transport level (the server went away) or stop is closed,
// and returns the acknowledged names and the number of 5xx answers. Each
// ack also increments acks when it is not nil.
func burst(c *rpcClient, writers int, prefix string, stop <-chan struct{}, limit int, acks *atomic.Int64) (acked []string, fiveXX int) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < limit; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("%s-w%02d-%06d", prefix, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				r, err := c.callTool(ctx, "create_entities", writeArgs(name))
				cancel()
				if err != nil {
					return
				}
				mu.Lock()
				if r.status >= 500 {
					fiveXX++
				}
				if r.acked() {
					acked = append(acked, name)
					if acks != nil {
						acks.Add(1)
					}
				}
				mu.Unlock()
				if r.status != http.StatusOK {
					return
				}
			}
		}()
	}
	wg.Wait()
	return acked, fiveXX
}

// TestKillDurability: SIGKILL of the server at a random moment
// 50-350 ms into a write burst, then restart, 20 rounds (5 under -race):
// every acknowledged write is present with exactly one audit row, the
// database passes integrity_check, and the first request after the
// restart succeeds.
func TestKillDurability(t *testing.T) {
	rounds := 20
	if raceEnabled() {
		rounds = 5
	}
	db := filepath.Join(t.TempDir(), "kill.db")
	key := newTenantKey(t, db, "w3")
	p := startServerProc(t, db)
	var (
		ackedTotal, lost, integrityFailures, auditBad, firstFailures int
		allAcked                                                     []string
	)
	for round := range rounds {
		c := mustRPCClient(t, p.url(), bearer(key))
		stop := make(chan struct{})
		type result struct {
			acked []string
			five  int
		}
		res := make(chan result, 1)
		var acks atomic.Int64
		go func() {
			a, f := burst(c, 4, fmt.Sprintf("r%02d", round), stop, 1_000_000, &acks)
			res <- result{a, f}
		}()
		waitAcks(t, &acks, 1)
		time.Sleep(time.Duration(50+rand.IntN(301)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		close(stop)
		r := <-res
		c.close()
		if r.five != 0 {
			t.Errorf("round %d: %d answers 5xx", round, r.five)
		}
		allAcked = append(allAcked, r.acked...)
		ackedTotal += len(r.acked)

		p = startServerProc(t, db)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		first, err := newRPCClient(ctx, p.url(), bearer(key))
		var fr rpcReply
		if err == nil {
			fr, err = first.callTool(ctx, "read_graph", map[string]any{})
			first.close()
		}
		cancel()
		if err != nil || fr.status != http.StatusOK || fr.resp == nil || fr.resp.Error != nil {
			firstFailures++
			t.Errorf("round %d: first request after restart: %v %d %.200s", round, err, fr.status, fr.body)
		}

		ro := openRO(t, db)
		if !integrityOK(t, ro) {
			integrityFailures++
		}
		st := readState(t, ro, "w3")
		ro.Close()
		for _, name := range allAcked {
			if st.entities[name] != 1 {
				lost++
				t.Errorf("round %d: acknowledged write %s missing (observations %d)", round, name, st.entities[name])
			}
			if n := st.audit[argsHash(t, writeArgs(name))]; n != 1 {
				auditBad++
				t.Errorf("round %d: acknowledged write %s has %d audit rows, want 1", round, name, n)
			}
		}
		// Rows present beyond the acks (committed, ack not yet read) are
		// fine; every row present has its one audit row too.
		for name := range st.entities {
			if n := st.audit[argsHash(t, writeArgs(name))]; n != 1 {
				auditBad++
				t.Errorf("round %d: stored write %s has %d audit rows, want 1", round, name, n)
			}
		}
		if t.Failed() {
			break
		}
	}
	if ackedTotal == 0 {
		t.Error("no write acknowledged in any round (the burst never ran)")
	}
	// the final server stops cleanly
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	t.Logf("metric rounds=%d", rounds)
	t.Logf("metric acked_total=%d", ackedTotal)
	t.Logf("metric lost=%d", lost)
	t.Logf("metric audit_mismatches=%d", auditBad)
	t.Logf("metric integrity_failures=%d", integrityFailures)
	t.Logf("metric first_request_failures=%d", firstFailures)
}

// BenchmarkRestartAfterKill: the server is killed (SIGKILL) and started
// again on the same database; one op is the start-up until the first
// read_graph answers (restart_ms). TestKillDurability proves what survives
// the kill.
func BenchmarkRestartAfterKill(b *testing.B) {
	db := filepath.Join(b.TempDir(), "restart.db")
	key := newTenantKey(b, db, "w3")
	p := startServerProc(b, db)
	c := mustRPCClient(b, p.url(), bearer(key))
	for i := range 100 { // a database with rows, not an empty file
		if r, err := c.callTool(context.Background(), "create_entities", writeArgs(fmt.Sprintf("seed-%03d", i))); err != nil || !r.acked() {
			b.Fatalf("seed write %d: %v %d %.200s", i, err, r.status, r.body)
		}
	}
	c.close()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := p.cmd.Process.Kill(); err != nil {
			b.Fatal(err)
		}
		<-p.exited
		b.StartTimer()
		p = startServerProc(b, db)
		first := mustRPCClient(b, p.url(), bearer(key))
		r, err := first.callTool(context.Background(), "read_graph", map[string]any{})
		first.close()
		if err != nil || r.status != http.StatusOK || r.resp == nil || r.resp.Error != nil {
			b.Fatalf("first request after restart: %v %d %.200s", err, r.status, r.body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "restart_ms")
}

// TestDurabilityClientDisconnect: a client that gives up on a
// multi-entity write mid-call (its request context is cancelled while
// other clients hold the writer) leaves the write either fully committed
// (entities, observations and its audit row) or absent, and the next write
// succeeds.
func TestDurabilityClientDisconnect(t *testing.T) {
	attempts, maxDelay := 40, 4000 // cancel 0-4 ms into the call
	if raceEnabled() {
		attempts, maxDelay = 15, 40000
	}
	e := startHTTP(t, httpTestOpts{})
	key := e.newKey(t, memory.NewKey{TenantID: "w5", UserID: "quitter"})
	victim := mustRPCClient(t, e.url, bearer(key))
	// background writers keep the single writer connection contended
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for w := range 6 {
		c := mustRPCClient(t, e.url, bearer(key))
		bg.Add(1)
		go func() {
			defer bg.Done()
			burst(c, 1, fmt.Sprintf("bg%d", w), stop, 100000, nil)
		}()
	}
	multi := func(i int) map[string]any {
		var es []any
		for _, s := range []string{"a", "b", "c"} {
			n := fmt.Sprintf("w5-%03d-%s", i, s)
			es = append(es, map[string]any{"name": n, "entityType": "t", "observations": []any{"one " + n, "two " + n}})
		}
		return map[string]any{"entities": es}
	}
	stuck, cancelledAcked := 0, 0
	for i := range attempts {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Duration(rand.IntN(maxDelay))*time.Microsecond, cancel)
		r, err := victim.callTool(ctx, "create_entities", multi(i))
		cancel()
		if err == nil && r.acked() {
			cancelledAcked++ // finished before the cancel
		}
		nctx, ncancel := context.WithTimeout(context.Background(), 30*time.Second)
		nr, err := victim.callTool(nctx, "create_entities", writeArgs(fmt.Sprintf("w5-next-%03d", i)))
		ncancel()
		if err != nil || !nr.acked() {
			stuck++
			t.Errorf("write after cancelled write %d: %v %d %.200s", i, err, nr.status, nr.body)
		}
	}
	close(stop)
	bg.Wait()

	st := readState(t, openRO(t, e.db), "w5")
	partial, committed, absent := 0, 0, 0
	for i := range attempts {
		present, obs := 0, 0
		for _, s := range []string{"a", "b", "c"} {
			if n, ok := st.entities[fmt.Sprintf("w5-%03d-%s", i, s)]; ok {
				present++
				obs += n
			}
		}
		audit := st.audit[argsHash(t, multi(i))]
		switch {
		case present == 3 && obs == 6 && audit == 1:
			committed++
		case present == 0 && audit == 0:
			absent++
		default:
			partial++
			t.Errorf("cancelled write %d: %d of 3 entities, %d of 6 observations, %d audit rows; want all or nothing", i, present, obs, audit)
		}
	}
	// positive control: the writes acknowledged before their cancel are among the committed
	if committed < cancelledAcked {
		t.Errorf("%d cancelled-but-acknowledged writes, only %d committed", cancelledAcked, committed)
	}
	t.Logf("metric cancelled_writes=%d", attempts)
	t.Logf("metric cancelled_committed=%d", committed)
	t.Logf("metric cancelled_absent=%d", absent)
	t.Logf("metric partial_writes=%d", partial)
	t.Logf("metric stuck_tx=%d", stuck)
}

// TestDurabilitySIGTERM: SIGTERM during a 16-client write burst:
// every acknowledged write is present, no 5xx, the process exits within
// its shutdown timeout, and the WAL file is gone after exit.
func TestDurabilitySIGTERM(t *testing.T) {
	const clients = 16
	const shutdownTimeout = 10 * time.Second
	db := filepath.Join(t.TempDir(), "term.db")
	key := newTenantKey(t, db, "s4")
	p := startServerProc(t, db, "--shutdown-timeout", shutdownTimeout.String())
	var (
		mu     sync.Mutex
		acked  []string
		fiveXX int
		wg     sync.WaitGroup
		stop   = make(chan struct{})
		acks   atomic.Int64
	)
	for c := range clients {
		cl := mustRPCClient(t, p.url(), bearer(key))
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, f := burst(cl, 1, fmt.Sprintf("s4c%02d", c), stop, 1_000_000, &acks)
			mu.Lock()
			acked = append(acked, a...)
			fiveXX += f
			mu.Unlock()
		}()
	}
	// SIGTERM at a random moment once the burst is under way.
	waitAcks(t, &acks, clients)
	time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(shutdownTimeout + 20*time.Second): // safety net
		t.Fatalf("server still running %v after SIGTERM", shutdownTimeout+20*time.Second)
	}
	shutdown := time.Since(t0)
	close(stop)
	wg.Wait()
	if p.err != nil {
		t.Errorf("server exit: %v\n%s", p.err, p.stderr.String())
	}
	if shutdown > shutdownTimeout+5*time.Second {
		t.Errorf("exit %v after SIGTERM, shutdown timeout %v", shutdown, shutdownTimeout)
	}
	_, walErr := os.Stat(db + "-wal")
	walLeft := !errors.Is(walErr, os.ErrNotExist)
	if walLeft {
		t.Errorf("WAL file left after exit (stat: %v)", walErr)
	}
	st := readState(t, openRO(t, db), "s4")
	lostAcked := 0
	for _, name := range acked {
		if st.entities[name] != 1 {
			lostAcked++
			t.Errorf("acknowledged write %s missing after SIGTERM", name)
		}
	}
	if len(acked) == 0 {
		t.Error("no write acknowledged before SIGTERM (the burst never ran)")
	}
	if fiveXX != 0 {
		t.Errorf("%d answers 5xx during shutdown", fiveXX)
	}
	if !strings.Contains(p.stderr.String(), "shutting down") {
		t.Errorf("no graceful shutdown in the server log:\n%s", tail(p.stderr.String(), 2048))
	}
	t.Logf("metric acked=%d", len(acked))
	t.Logf("metric lost_acked=%d", lostAcked)
	t.Logf("metric five_xx=%d", fiveXX)
	t.Logf("metric shutdown_s=%.2f", shutdown.Seconds())
	t.Logf("metric wal_left=%d", map[bool]int{true: 1}[walLeft])
}

// waitAcks waits until acks reaches n (a safety net of 60 s fails the test).
func waitAcks(t *testing.T, acks *atomic.Int64, n int64) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); acks.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes acknowledged in 60 s, want %d before the fault", acks.Load(), n)
		}
	}
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }
