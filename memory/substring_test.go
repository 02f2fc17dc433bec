package memory

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// substringProbe records the candidate queries of a store's substring
// searches and counts, in the search's own transaction, the rows each
// visits: on SQLite the trigram-index rows its MATCH expressions reach, on
// PostgreSQL the rows its plan's scans read (EXPLAIN ANALYZE).
type substringProbe struct {
	plans   []string
	visited int
}

func newSubstringProbe(t *testing.T, s *Store) *substringProbe {
	p := &substringProbe{}
	s.onSubstringQuery = func(tx *txn, q string, args []any) {
		if s.pg != nil {
			p.plans = append(p.plans, fmt.Sprint(args...))
			p.visited += pgRowsVisited(t, tx, q, args)
			return
		}
		// Each "FROM <table> WHERE <table> MATCH ?", with the rowid range
		// after it if there is one, counted with the same arguments.
		for _, m := range ftsScan.FindAllStringSubmatchIndex(q, -1) {
			first := strings.Count(q[:m[0]], "?")
			n := strings.Count(q[m[0]:m[1]], "?")
			table := q[m[2]:m[3]]
			p.plans = append(p.plans, q[m[0]:m[1]]+fmt.Sprint(args[first:first+n]...))
			var c int
			if err := tx.queryRow(`SELECT count(*) `+q[m[0]:m[1]], args[first:first+n]...).Scan(&c); err != nil {
				t.Errorf("count %s: %v", table, err)
			}
			p.visited += c
		}
	}
	t.Cleanup(func() { s.onSubstringQuery = nil })
	return p
}

// ftsScan finds the trigram-index reads of a candidate query.
var ftsScan = regexp.MustCompile(`FROM (\w+_fts) WHERE \w+_fts MATCH \?(?: AND rowid BETWEEN \? AND \?)?`)

// search runs search_nodes' query as tenant in s and returns the plans it
// asked for (the SQLite MATCH expressions, or the PostgreSQL query's
// arguments), the rows they visit and the names found.
func (p *substringProbe) search(t *testing.T, s *Store, tenant, query string) (plans []string, visited int, names []string) {
	t.Helper()
	p.plans, p.visited = nil, 0
	g, err := s.SearchNodes(as(tenant), query, Page{})
	if err != nil {
		t.Fatalf("SearchNodes(%s, %q): %v", tenant, query, err)
	}
	for _, e := range g.Entities {
		names = append(names, e.Name)
	}
	return p.plans, p.visited, names
}

// pgRowsVisited runs q under EXPLAIN ANALYZE in tx and adds up the rows
// its scan nodes read: the rows they return plus those their filters
// removed.
func pgRowsVisited(t *testing.T, tx *txn, q string, args []any) int {
	var js string
	if err := tx.queryRow(`EXPLAIN (ANALYZE, FORMAT JSON) `+q, args...).Scan(&js); err != nil {
		t.Errorf("EXPLAIN: %v", err)
		return 0
	}
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal([]byte(js), &plans); err != nil {
		t.Errorf("EXPLAIN JSON: %v", err)
		return 0
	}
	var walk func(n map[string]any) int
	walk = func(n map[string]any) int {
		rows := 0
		if typ, _ := n["Node Type"].(string); strings.HasSuffix(typ, "Scan") && typ != "Bitmap Heap Scan" && typ != "CTE Scan" && typ != "Subquery Scan" {
			num := func(k string) int { f, _ := n[k].(float64); return int(f) }
			loops := max(num("Actual Loops"), 1)
			rows += (num("Actual Rows") + num("Rows Removed by Filter")) * loops
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			if m, ok := k.(map[string]any); ok {
				rows += walk(m)
			}
		}
		return rows
	}
	return walk(plans[0].Plan)
}

// TestSubstringSearchWorkIsPerTenant: tenant b's substring search visits
// only b's rows. A word that exists only in a's rows costs b exactly what
// a word that exists nowhere costs, and (SQLite) b's choice of trigrams is
// the same whether a has none or many rows sharing them — so b can learn
// nothing of a's text from what its searches cost.
// The positive controls: a's own search of a's word does reach a's rows,
// and b still finds its own entities.
func TestSubstringSearchWorkIsPerTenant(t *testing.T) {
	s := newTestStore(t)
	p := newSubstringProbe(t, s)
	// Both tenants are large enough that an index on the text alone is
	// the cheaper plan for a rare word: the plan that visits the other
	// tenant's rows if it is allowed to exist.
	const n = 600
	bs := []Entity{
		{Name: "apple pie", EntityType: "recipe", Observations: []string{"bake the apples slowly", "pie crust with butter"}},
		{Name: "pineapple", EntityType: "fruit", Observations: []string{"sweet and sharp"}},
		{Name: "people", EntityType: "group", Observations: []string{"ample"}},
	}
	for i := range n {
		bs = append(bs, Entity{Name: fmt.Sprintf("b-%d", i), EntityType: "note", Observations: []string{fmt.Sprintf("an ordinary note number %d", i)}})
	}
	mustCreate(t, s, as("b"), bs...)
	refreshPlannerStats(t, s)

	beforePlans, beforeVisited, beforeNames := p.search(t, s, "b", "apple pie")
	if !slices.Equal(beforeNames, []string{"apple pie"}) {
		t.Fatalf("b finds %v for %q, want [apple pie]", beforeNames, "apple pie")
	}

	// a writes many rows holding a word b's data lacks and the trigrams of
	// b's query (so a whole-index count would rank them differently).
	var es []Entity
	for i := range n {
		es = append(es, Entity{Name: fmt.Sprintf("a-%d", i), EntityType: "note",
			Observations: []string{"the secret word is wombatx", fmt.Sprintf("apple pie people %d", i)}})
	}
	mustCreate(t, s, as("a"), es...)
	refreshPlannerStats(t, s)

	_, aVisited, aNames := p.search(t, s, "a", "wombatx")
	if aVisited == 0 || len(aNames) != n {
		t.Fatalf("control: a's search of its own word visited %d index rows and found %d entities, want > 0 and %d", aVisited, len(aNames), n)
	}

	_, nowhereVisited, _ := p.search(t, s, "b", "qzxjv")
	_, onlyAVisited, onlyANames := p.search(t, s, "b", "wombatx")
	if len(onlyANames) != 0 {
		t.Fatalf("b found %v, a's entities", onlyANames)
	}
	if onlyAVisited != nowhereVisited {
		t.Errorf("b's search of a word only a has visited %d index rows; of a word nobody has, %d: the cost tells b what a wrote", onlyAVisited, nowhereVisited)
	}

	afterPlans, afterVisited, afterNames := p.search(t, s, "b", "apple pie")
	if !slices.Equal(afterNames, beforeNames) {
		t.Fatalf("b finds %v after a's writes, %v before", afterNames, beforeNames)
	}
	if s.pg != nil {
		// PostgreSQL's planner weighs its plans by table size, which a's
		// writes change: b's search may then read b's rows through another
		// tenant-led index (the same rows of b, another count). Its
		// choice follows no tenant's text (migration 0015 keeps no column
		// statistics), which the equal costs above show.
		return
	}
	if !slices.Equal(afterPlans, beforePlans) {
		t.Errorf("b's plan for %q changed when a wrote:\nbefore %q\nafter  %q", "apple pie", beforePlans, afterPlans)
	}
	if afterVisited != beforeVisited {
		t.Errorf("b's search of %q visited %d index rows after a's writes, %d before", "apple pie", afterVisited, beforeVisited)
	}
}

// refreshPlannerStats refreshes PostgreSQL's planner statistics, as autovacuum would
// after bulk writes (SQLite plans without them).
func refreshPlannerStats(t *testing.T, s *Store) {
	t.Helper()
	if s.pg == nil {
		return
	}
	if _, err := s.w.Exec(`ANALYZE entities, observations`); err != nil {
		t.Fatalf("ANALYZE: %v", err)
	}
}
