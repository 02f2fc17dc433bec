//go:build mutation

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// The mutation check of the isolation matrix:
// every mutant drops one tenant predicate of one statement of the memory
// package (memory/mutation.go describes mutants and predicates), and the
// matrix must fail under each. Run with
//
//	go test -tags mutation ./cmd/nexus-mcp -run '^TestMutation$' -count=1 -v
//
// The test re-executes its own binary, built with the tag, once per mutant
// with NEXUS_MUTANT set; the mutant lives in that process, where the HTTP
// transports of the matrix serve in-process from the mutated store. The
// mutants run the HTTP transports only (global and tenant agent scope):
// they cover every tool, and the memory package runs the same statements
// under stdio. A first, unmutated run records the statements the matrix
// executes (NEXUS_MUTANT=record:<file>) and must pass: it is the positive
// control. The statements of the package's source (found as in
// memory/static_test.go) that carry a tenant predicate but never ran are
// reported and count as survivors unless mtUnexercised justifies them.

// mtMatrix and mtSkip select the matrix tests a mutant runs: the HTTP
// transports of the isolation matrix, the identity-header tests, and the
// agent-id claim of key-bound agents (whose own-tenant control is the only
// request path that tells "another tenant's key" from "any key").
const (
	mtMatrix = `^(TestMatrix(TenantIsolation|IdentityHeaders|HumanOriginEnforcing)|TestHTTPTenantCannotRegisterAgentIDBoundToAnotherTenantsKey)$`
	mtSkip   = `^TestMatrixTenantIsolation$/^stdio`
)

// mtEquivalent lists the surviving mutants that are equivalent (the
// program's behaviour does not change), each found by a fragment of its
// statement (lower case, single spaces) and the predicate's index, with
// the reason. Every entry must match a survivor.
//
// Most are "by id" predicates: entity ids are INTEGER PRIMARY KEYs (one
// sequence for all tenants) and child rows reference their parent by
// (tenant_id, id) (composite foreign keys, checked by
// TestStaticTenantPredicates), so a row selected by an id the caller got
// from a tenant-filtered query of the same transaction can only be the
// caller's; the others are a second filter of rows already filtered.
var mtEquivalent = []struct {
	fragment string
	site     int
	reason   string
}{
	{"delete from observations where tenant_id = ? and entity_id = (select id from entities where tenant_id = ?", 0,
		"entity_id comes from the tenant-filtered subquery; by-id rows (composite FK)"},
	{"delete from relations where tenant_id = ? and from_id = (select id from entities where tenant_id = ?", 0,
		"from_id and to_id come from tenant-filtered subqueries; by-id rows (composite FK)"},
	{"left join observations o on o.tenant_id = ? and o.entity_id = e.id", 1,
		"o.entity_id = e.id of the tenant-filtered entity page; by-id rows (composite FK)"},
	{"select entity_id, content from observations where tenant_id = ? and entity_id in", 0,
		"ids from a tenant-filtered query of the same transaction; by-id rows (composite FK)"},
	{"select e.id, e.name, e.entity_type, e.aliases, e.metadata, e.created_at, e.updated_at, o.content from entities e left join observations o", 0,
		"ids from a tenant-filtered query of the same transaction; observations joined on the entity's own tenant_id"},
	{"select id, updated_at from entities where tenant_id = ? and id in", 0,
		"ids from a tenant-filtered query of the same transaction"},
	{"update entities set updated_at = ? where tenant_id = ? and id = ?", 0,
		"id from a tenant-filtered lookup of the same transaction"},
	{"from relations r join entities f on f.tenant_id = r.tenant_id and f.id = r.from_id join entities t on t.tenant_id = r.tenant_id and t.id = r.to_id where r.tenant_id = ? and r.from_id in (select id from entities where tenant_id = ?", 0,
		"r.from_id IN the tenant-filtered entity page; by-id rows (composite FK)"},
	{"from agents where agent_id = ? order by tenant_id = ? desc", 0,
		"global agent scope: RegisterAgent refuses an id another tenant owns, so an id has one row and the preference never decides"},
	{"update delegations set status = ?, completed_at = ?, has_error = ?, response_keys = ?, response_hash = ? where tenant_id = ? and id = ?", 0,
		"CompleteDelegation reads the delegation with the tenant predicate first, in the same transaction (not found otherwise)"},
	{"update messages set read_at = ? where tenant_id = ? and id = ? and read_at is null", 0,
		"the ids are those of the page just read with the tenant predicate, in the same transaction"},
	{"update trust_sessions set revoked_at = ?, revoke_reason = ? where tenant_id = ? and id = ?", 0,
		"RevokeTrustSession reads the session with the tenant predicate first, in the same transaction (not found otherwise)"},
	{"with recursive sub(id) as (", 0,
		"RevokeDelegation reads the root with the tenant predicate first, in the same transaction; the final UPDATE filters again"},
	{"with recursive sub(id) as (", 1,
		"children reference their parent by (tenant_id, parent_id): the parent is the caller's, so are they"},
	{"with recursive sub(id) as (", 2,
		"the ids come from sub, whose root was read with the tenant predicate and whose children are tied to it by the composite FK"},
	{"with recursive sub(id) as (", memory.MutateAll,
		"RevokeDelegation reaches the statement only for a root it read with the tenant predicate; children by composite FK"},
	{"with hits(id) as ( select e.id from (select rowid - ? as id from entities_fts", 0,
		"hits are joined again with e.tenant_id = ? (site 2): a second filter"},
	{"with hits(id) as ( select e.id from (select rowid - ? as id from entities_fts", 1,
		"hits are joined again with e.tenant_id = ? (site 2): a second filter"},
	{"with hits(id) as ( select e.id from (select rowid - ? as id from entities_fts", 2,
		"both branches of hits are tenant-filtered (sites 0, 1): a second filter"},
	{"with hits(id) as ( select e.id from (select rowid - ? as id from entities_fts", memory.MutateAll,
		"both MATCH reads are bounded to the tenant's rowid range (migration 0015), so the index hits are the tenant's rows only: the SQL predicates are a second filter (the range's own lookup in substring_fts_tenants is caught by the matrix)"},
	{"select count(*) from (select 1 from entities e where e.tenant_id = ?", 0,
		"Open's check for entities written before migration 0005: another tenant's unindexed entity only starts a batch that reads the tenant's own rows (tenant-filtered) and finds nothing"},
	{"select count(*) from (select 1 from entities e where e.tenant_id = ?", 1,
		"Open's check: search_docs is probed by e.id, the caller's entity; entity ids are unique across tenants"},
	{"select count(*) from (select 1 from entities e where e.tenant_id = ?", memory.MutateAll,
		"Open's check: at worst a batch for this tenant that reads its own rows (tenant-filtered) and finds nothing"},
	{"select docs, len_name, len_type, len_alias, len_obs, version from search_stats where tenant_id = ?", 0,
		"not equivalent: the ranking statistics would be another tenant's; the matrix compares B's answers for A's ids and for random ids, which one shared statistics row does not tell apart; memory.TestSearchScoresPerTenant fails under this mutant (B's scores move when A writes)"},
	{"delete from search_docs where tenant_id = ? and entity_id in (select cast(value as bigint) from json_each(?))", 0,
		"ids are the caller's (deleted or re-indexed in the same transaction); entity ids are unique across tenants"},
	{"delete from search_postings where tenant_id = ? and (term, entity_id) in (", 0,
		"entity ids read from the caller's search_docs rows; entity ids are unique across tenants"},
	{"select entity_id, terms, len_name, len_type, len_alias, len_obs from search_docs where tenant_id = ? and entity_id in (", 0,
		"ids are the caller's (deleted or re-indexed in the same transaction); entity ids are unique across tenants"},
	{"delete from search_queue where tenant_id = ? and entity_id in (select cast(value as bigint) from json_each(?))", 0,
		"ids read from the caller's queue in the same transaction; entity ids are unique across tenants"},
	{"select entity_id from search_queue where tenant_id = ? order by entity_id limit", 0,
		"another tenant's ids would go only to tenant-filtered statements (reindexEntities, the queue's DELETE): nothing of theirs is read, indexed, removed or shown (a batch made only of them would be read again and again: a stall of the worker, not a leak)"},
	{"select count(*) from (select 1 from search_queue where tenant_id = ? limit 1) x", 0,
		"not equivalent: a search would take an (empty) indexing turn at the writer when another tenant has queued writes, which the matrix cannot see in answers; memory.TestSearchIndexesOnlyItsTenantsQueue fails under this mutant"},
	{"select id, name, entity_type, aliases from entities where tenant_id = ? and id in (", 0,
		"ids are the caller's (re-indexed in the same transaction); entity ids are unique across tenants"},
	{"with ids(id) as (select cast(value as bigint) from json_each(?)), touching(id) as (", 0,
		"ids are the caller's entity ids (tenant-filtered page); relations reference entities by (tenant_id, id)"},
	{"with ids(id) as (select cast(value as bigint) from json_each(?)), touching(id) as (", 1,
		"ids are the caller's entity ids (tenant-filtered page); relations reference entities by (tenant_id, id)"},
	{"with ids(id) as (select cast(value as bigint) from json_each(?)), touching(id) as (", 2,
		"x.id comes from touching, already tied to the caller's entity ids"},
	{"with ids(id) as (select cast(value as bigint) from json_each(?)), touching(id) as (", memory.MutateAll,
		"only the caller's relations can reference the caller's entity ids (composite FK, ids unique across tenants)"},
	// The embedding indexer (memory/semantic.go) works outside requests;
	// what a client sees of vectors is filtered by the vector scan, whose
	// mutant the matrix kills.
	{"insert into embed_queue (tenant_id, entity_id, queued_at, gen) select e.tenant_id, e.id", 0,
		"queues entities under their own e.tenant_id; without the filter other tenants' entities are only queued early, nothing is read or returned"},
	{"select q.entity_id, q.gen, e.name, e.entity_type, e.aliases from embed_queue q", 0,
		"a job of another tenant is never stored: storeVectors deletes the queue row and writes the vector with the tenant predicate, and skips it"},
	{"delete from embed_queue where tenant_id = ? and entity_id = ? and gen = ?", 0,
		"entity ids are unique across tenants and come from claimJobs' tenant-filtered read"},
	{"select count(*) from embed_queue where tenant_id = ? or ? = ''", 0,
		"queue length for the CLI and tests; the matrix asks with tenant \"\" (every tenant), which the mutant does not change"},
}

// mtUnexercised lists the source statements with a tenant predicate that
// the matrix does not run, found by file and fragment, with the reason.
//
// A source statement textually equal to an executed one (the PostgreSQL
// branch of a scan, the export's graph read) counts as exercised: the
// mutant of that text ran.
var mtUnexercised = []struct {
	file, fragment, reason string
}{
	{"admin.go", "from api_keys where tenant_id = ?", "CLI key list (administrative), no MCP tool"},
	{"admin.go", "delete from members where tenant_id = ?", "CLI member remove (administrative), no MCP tool"},
	{"admin.go", "from members where tenant_id = ? order by user_id", "CLI member list (administrative), no MCP tool"},
	{"audit.go", "select count(*) from audit_log where tenant_id = ?", "AuditTenants: CLI audit verify, the reserved unauthenticated chain"},
	{"transfer.go", "where r.tenant_id = ? order by r.id", "CLI export"},
	{"transfer.go", "from memory_file_imports where tenant_id = ?", "start-up import of MEMORY_FILE_PATH, not a request path; isolation in memory TestImportOnce"},
	{"trustkeys.go", "select credential from agent_credentials", "A2A credential forwarding needs a live target endpoint; isolation in memory TestAgentCredentials"},
	{"delegations.go", "has_error = 1, response_keys = '[]'", "FailDelegation: a call_agent_tool outcome needs a live target endpoint; isolation in memory TestFailDelegation, end to end in TestCallAgentToolEndsItsDelegation"},
	{"trustsessions.go", "delete from trust_sessions where tenant_id = ? and expires_at <= ?", "background expiry sweep (startTrustSweep), not a request path"},
	{"substring.go", "ilike", "PostgreSQL branch (the dialect's trigramILIKE), the matrix runs on SQLite"},
	{"lexical.go", "select e.id from entities e where e.tenant_id = ?", "Open: indexing entities written before migration 0005; tested by memory TestOpenIndexesUnindexedEntities"},
	{"replicas.go", "mcp_sessions", "MCP session store: read on a replica's local miss, touched after idle/4, swept after idle — a one-server matrix run reaches none of these; cross-tenant use is tested by TestReplicaSessions (replica_session_crossuse_accepted=0)"},
}

// mtRun runs the matrix subset in a child process with env added and
// returns whether it passed and its output.
func mtRun(ctx context.Context, exe string, env ...string) (bool, string, error) {
	cmd := exec.CommandContext(ctx, exe, "-test.run", mtMatrix, "-test.skip", mtSkip, "-test.count=1", "-test.failfast")
	cmd.Env = append(mtEnviron(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return false, out.String(), fmt.Errorf("timed out: %w", ctx.Err())
	}
	if _, ok := err.(*exec.ExitError); ok {
		return false, out.String(), nil
	}
	return err == nil, out.String(), err
}

// mtEnviron is the environment without the variables the driver sets.
func mtEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NEXUS_MUTANT") && !strings.HasPrefix(kv, "NEXUS_E2E_SERVER=") {
			out = append(out, kv)
		}
	}
	return out
}

// mtMutant is one mutant and what became of it.
type mtMutant struct {
	stmt   string // the statement as the package runs it
	site   int
	pred   string
	killed bool
	hit    bool // the mutated statement ran
	err    error
	out    string
}

var mtSpace = regexp.MustCompile(`\s+`)

func mtNorm(s string) string {
	return strings.ToLower(strings.TrimSpace(mtSpace.ReplaceAllString(s, " ")))
}

func TestMutation(t *testing.T) {
	if os.Getenv("NEXUS_MUTANT") != "" {
		t.Skip("running as a mutant")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := time.Now()

	// Positive control and recording: the unmutated matrix passes.
	rec := filepath.Join(dir, "statements.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	ok, out, err := mtRun(ctx, exe, "NEXUS_MUTANT=record:"+rec)
	cancel()
	if err != nil || !ok {
		t.Fatalf("control: the unmutated matrix fails (err %v):\n%s", err, mtTail(out))
	}
	stmts := mtRecorded(t, rec)
	recordS := time.Since(start)

	var mutants []*mtMutant
	for _, q := range stmts {
		sites := memory.MutantSites(q)
		for k, p := range sites {
			mutants = append(mutants, &mtMutant{stmt: q, site: k, pred: p})
		}
		if len(sites) > 1 { // the statement without any tenant predicate
			mutants = append(mutants, &mtMutant{stmt: q, site: memory.MutateAll, pred: "every tenant predicate"})
		}
	}
	if len(mutants) < 20 {
		t.Fatalf("only %d mutants from %d recorded statements; is the recorder broken?", len(mutants), len(stmts))
	}
	// Control: Mutate changes the statement and keeps its placeholders.
	for _, m := range mutants {
		got, ok := memory.Mutate(m.stmt, m.site)
		if !ok || got == m.stmt || strings.Count(got, "?") != strings.Count(m.stmt, "?") {
			t.Fatalf("Mutate(%q, %d) = %q, %v; want a changed statement with the same placeholders", m.stmt, m.site, got, ok)
		}
	}

	// Source statements with a tenant predicate that never ran.
	unexercised := mtUnexercisedStatements(t, stmts)

	workers := max(2, runtime.NumCPU())
	if w, err := strconv.Atoi(os.Getenv("NEXUS_MUTATION_WORKERS")); err == nil && w > 0 {
		workers = w
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				m := mutants[i]
				hit := filepath.Join(dir, fmt.Sprintf("hit-%d", i))
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				k := strconv.Itoa(m.site)
				if m.site == memory.MutateAll {
					k = "all"
				}
				passed, out, err := mtRun(ctx, exe,
					fmt.Sprintf("NEXUS_MUTANT=%s:%s", memory.MutantStatementID(m.stmt), k), "NEXUS_MUTANT_HIT="+hit)
				cancel()
				_, serr := os.Stat(hit)
				m.killed, m.hit, m.err, m.out = !passed, serr == nil, err, out
			}
		}()
	}
	for i := range mutants {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	killed, equivalent, notHit := 0, 0, 0
	usedEq := make([]bool, len(mtEquivalent))
	for _, m := range mutants {
		if m.err != nil {
			t.Errorf("mutant %q #%d (%s): %v", mtNorm(m.stmt), m.site, m.pred, m.err)
		}
		if !m.hit {
			notHit++
		}
		if m.killed {
			killed++
			continue
		}
		if i := mtEquivalentEntry(m); i >= 0 {
			usedEq[i] = true
			equivalent++
			t.Logf("equivalent mutant: drop %s (#%d) in %q: %s", m.pred, m.site, mtNorm(m.stmt), mtEquivalent[i].reason)
			continue
		}
		t.Errorf("surviving mutant (the matrix passes without it; hit=%v): drop %s (#%d) in\n%s", m.hit, m.pred, m.site, strings.TrimSpace(m.stmt))
	}
	for i, u := range usedEq {
		if !u {
			t.Errorf("mtEquivalent entry %q #%d matches no survivor; remove it", mtEquivalent[i].fragment, mtEquivalent[i].site)
		}
	}
	// Unexercised source statements count as survivors unless justified.
	justified := 0
	usedUn := make([]bool, len(mtUnexercised))
	for _, st := range unexercised {
		sites := len(memory.MutantSites(st.Text))
		if i := mtUnexercisedEntry(st); i >= 0 {
			usedUn[i] = true
			justified += sites
			t.Logf("unexercised %s (%d predicates): %s", st.Pos, sites, mtUnexercised[i].reason)
			continue
		}
		t.Errorf("%s: statement with %d tenant predicates never ran in the matrix (each counts as a survivor):\n%s", st.Pos, sites, strings.TrimSpace(st.Text))
	}
	for i, u := range usedUn {
		if !u {
			t.Errorf("mtUnexercised entry %q (%s) matches no unexercised statement; remove it", mtUnexercised[i].fragment, mtUnexercised[i].file)
		}
	}
	total := len(mutants)
	for _, st := range unexercised {
		total += len(memory.MutantSites(st.Text))
	}
	t.Logf("metric mutation_statements_recorded=%d", len(stmts))
	t.Logf("metric mutation_statements_unexercised=%d", len(unexercised))
	t.Logf("metric mutants_total=%d", total)
	t.Logf("metric mutants_killed=%d/%d", killed, total)
	if killed == 0 {
		t.Errorf("control: no mutant was killed; is the mutation hook wired (memory/mutation.go, -tags mutation)?")
	}
	t.Logf("metric mutants_equivalent=%d", equivalent)
	t.Logf("metric mutants_unexercised_justified=%d", justified)
	t.Logf("metric mutants_not_reached=%d", notHit)
	t.Logf("metric mutation_seconds=%.1f (record %.1f, %d workers)", time.Since(start).Seconds(), recordS.Seconds(), workers)
}

func mtTail(s string) string { return s[max(0, len(s)-6000):] }

func mtEquivalentEntry(m *mtMutant) int {
	s := mtNorm(m.stmt)
	for i, e := range mtEquivalent {
		if e.site == m.site && strings.Contains(s, e.fragment) {
			return i
		}
	}
	return -1
}

func mtUnexercisedEntry(st mtStmt) int {
	s := mtNorm(st.Text)
	file := strings.SplitN(st.Pos, ":", 2)[0]
	for i, e := range mtUnexercised {
		if e.file == file && strings.Contains(s, e.fragment) {
			return i
		}
	}
	return -1
}

// mtRecorded reads the recorded statements (distinct, sorted).
func mtRecorded(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var q string
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("recorded statement %q: %v", sc.Text(), err)
		}
		seen[q] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(seen))
	for q := range seen {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// mtStmt is a SQL statement of the memory package's source.
type mtStmt = memtest.Statement

// mtUnexercisedStatements returns the source statements with a tenant
// predicate that match none of the recorded ones. Source parts that are
// not constant (⟨name⟩) match anything.
func mtUnexercisedStatements(t *testing.T, recorded []string) []mtStmt {
	t.Helper()
	src := mtSourceSQL(t, filepath.Join("..", "..", "memory"))
	if len(src) < 50 {
		t.Fatalf("found %d SQL statements in memory; is the collector broken?", len(src))
	}
	norm := make([]string, len(recorded))
	for i, q := range recorded {
		norm[i] = mtNorm(q)
	}
	hole := regexp.MustCompile(`⟨[^⟩]*⟩`)
	var out []mtStmt
	matched := 0
	for _, st := range src {
		if len(memory.MutantSites(st.Text)) == 0 {
			continue
		}
		parts := hole.Split(mtNorm(st.Text), -1)
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(strings.TrimSpace(p))
		}
		re := regexp.MustCompile(`(?s)^` + strings.Join(parts, `.*?`) + `$`)
		found := false
		for _, q := range norm {
			if re.MatchString(q) {
				found = true
				break
			}
		}
		if found {
			matched++
			continue
		}
		out = append(out, st)
	}
	if matched == 0 {
		t.Fatalf("no source statement matches a recorded one; is the matcher broken?")
	}
	t.Logf("metric mutation_source_statements_with_predicates=%d", matched+len(out))
	return out
}

// mtSourceSQL returns the SQL statements of the non-test Go files in dir
// (memtest.PackageSQL, the collector of memory's static check).
func mtSourceSQL(t *testing.T, dir string) []mtStmt {
	t.Helper()
	stmts, err := memtest.PackageSQL(dir)
	if err != nil {
		t.Fatal(err)
	}
	return stmts
}
