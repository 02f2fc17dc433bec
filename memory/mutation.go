//go:build mutation

package memory

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Mutation testing of the tenant-isolation tests,
// compiled only with -tags mutation. At start-up NEXUS_MUTANT selects:
//
//   - "record:<file>": every distinct statement the package runs is
//     appended to file, one JSON string per line (several processes may
//     share the file), so a driver can enumerate the mutants of what a
//     test actually executes;
//   - "<statement id>:<k>": the mutant that drops the k-th tenant predicate
//     (0-based, MutantSites order) of the statement whose MutantStatementID
//     is id, or every one of them when k is "all"; every other statement
//     runs unchanged. With NEXUS_MUTANT_HIT
//     set, the first application creates that file, so the driver can tell
//     a mutant that ran from one that was never reached.
//
// A tenant predicate is tenant_id = ? or tenant_id <> ? (optionally
// qualified, t.tenant_id) in a WHERE, ON, AND, OR or ORDER BY position,
// i.e. every comparison with the caller's tenant; assignments (SET
// tenant_id = ?) and INSERT column lists are not predicates. The "owned by
// another tenant" check (tenant_id <> ?) is a predicate too: dropping it
// makes the check ignore the tenant, which is the bug a mutant models.
// Composite-key join predicates (o.tenant_id = e.tenant_id) carry no
// placeholder and are not mutated: their rows are already tied to one
// tenant by the composite foreign keys that TestStaticTenantPredicates
// checks. A mutant replaces the predicate with (? IS NOT NULL), which keeps
// the placeholder count (and so the argument binding) and is always true
// for the tenant argument.

// mutantPred matches one tenant predicate with a placeholder; group 1 is
// the word before it, which tells a predicate from an assignment.
var mutantPred = regexp.MustCompile(`(?i)(\w+|\()?\s*\b(?:[a-z_][a-z0-9_]*\.)?tenant_id\s*(?:=|<>)\s*\?`)

// predicateContext are the words (lower case) after which a match is a
// predicate.
var predicateContext = map[string]bool{"where": true, "and": true, "or": true, "on": true, "by": true, "(": true, "not": true}

// mutantSpans returns the byte spans [start, end) of the tenant predicates
// of query (from the tenant_id token to the placeholder).
func mutantSpans(query string) [][2]int {
	var out [][2]int
	for _, m := range mutantPred.FindAllStringSubmatchIndex(query, -1) {
		before := ""
		if m[2] >= 0 {
			before = strings.ToLower(query[m[2]:m[3]])
		}
		if !predicateContext[before] {
			continue
		}
		start := m[0]
		if m[2] >= 0 {
			start = m[3]
		}
		for start < m[1] && (query[start] == ' ' || query[start] == '\t' || query[start] == '\n' || query[start] == '\r') {
			start++
		}
		out = append(out, [2]int{start, m[1]})
	}
	return out
}

// MutantSites returns the tenant predicates of query a mutant can drop, in
// the order the k of NEXUS_MUTANT counts them.
func MutantSites(query string) []string {
	var out []string
	for _, sp := range mutantSpans(query) {
		out = append(out, query[sp[0]:sp[1]])
	}
	return out
}

// MutantStatementID identifies a statement by its exact text: the first
// 16 hex digits of its SHA-256.
func MutantStatementID(query string) string {
	sum := sha256.Sum256([]byte(query))
	return hex.EncodeToString(sum[:8])
}

// MutateAll is the k that drops every tenant predicate of a statement.
const MutateAll = -1

// Mutate returns query with its k-th tenant predicate (every one for
// MutateAll) replaced by (? IS NOT NULL), and whether there was one.
func Mutate(query string, k int) (string, bool) {
	spans := mutantSpans(query)
	if k == MutateAll && len(spans) > 0 {
		for i := len(spans) - 1; i >= 0; i-- {
			query = query[:spans[i][0]] + "(? IS NOT NULL)" + query[spans[i][1]:]
		}
		return query, true
	}
	if k < 0 || k >= len(spans) {
		return query, false
	}
	sp := spans[k]
	return query[:sp[0]] + "(? IS NOT NULL)" + query[sp[1]:], true
}

func init() {
	spec := os.Getenv("NEXUS_MUTANT")
	if spec == "" {
		return
	}
	if file, ok := strings.CutPrefix(spec, "record:"); ok {
		mutateSQL = recorder(file)
		return
	}
	id, ks, ok := strings.Cut(spec, ":")
	k, err := strconv.Atoi(ks)
	if ks == "all" {
		k, err = MutateAll, nil
	}
	if !ok || err != nil || id == "" {
		fmt.Fprintf(os.Stderr, "memory: NEXUS_MUTANT=%q: want record:<file> or <statement id>:<k>\n", spec)
		os.Exit(2)
	}
	mutateSQL = mutant(id, k, os.Getenv("NEXUS_MUTANT_HIT"))
}

// recorder appends each distinct statement to file once per process.
func recorder(file string) func(string) string {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	return func(q string) string {
		mu.Lock()
		defer mu.Unlock()
		if seen[q] {
			return q
		}
		seen[q] = true
		line, _ := json.Marshal(q)
		f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			panic(fmt.Sprintf("memory: mutation record: %v", err))
		}
		defer f.Close()
		if _, err := f.Write(append(line, '\n')); err != nil {
			panic(fmt.Sprintf("memory: mutation record: %v", err))
		}
		return q
	}
}

// mutant applies one mutant, remembering which statements it has hashed.
func mutant(id string, k int, hitFile string) func(string) string {
	var (
		mu   sync.Mutex
		ids  = map[string]string{}
		once sync.Once
	)
	return func(q string) string {
		mu.Lock()
		sid, ok := ids[q]
		if !ok {
			sid = MutantStatementID(q)
			ids[q] = sid
		}
		mu.Unlock()
		if sid != id {
			return q
		}
		m, ok := Mutate(q, k)
		if ok && hitFile != "" {
			once.Do(func() {
				if f, err := os.OpenFile(hitFile, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
					f.Close()
				}
			})
		}
		return m
	}
}
