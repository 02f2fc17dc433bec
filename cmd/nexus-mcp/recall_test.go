package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkRecall measures search_entities on the LoCoMo conversations in
// $NEXUS_LOCOMO_DIR (see ../shared/eval/README.md): every turn of a
// conversation is stored through create_entities as one entity (name =
// dia_id, one observation "<speaker>: <text>") in a fresh server, then
// every question of categories 1-4 is asked through search_entities with
// default arguments, and recall@k (the share of a question's evidence
// turns among the first k results, averaged over questions) is printed
// overall and per category, with the mean latency of a search call as the
// client sees it over stdio.
//
//	NEXUS_LOCOMO_DIR=../shared/eval/locomo-dev go test -run '^$' -bench Recall ./cmd/nexus-mcp
func BenchmarkRecall(b *testing.B) {
	dir := os.Getenv("NEXUS_LOCOMO_DIR")
	if dir == "" {
		b.Skip("set NEXUS_LOCOMO_DIR to a directory of LoCoMo conversation files (e.g. ../shared/eval/locomo-dev) to run the recall benchmark")
	}
	if _, err := os.Stat(dir); err != nil && !filepath.IsAbs(dir) {
		// go test runs in the package directory; the command in README is
		// run from the module root.
		dir = filepath.Join("..", "..", dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		b.Skipf("no LoCoMo conversation files (*.json) in NEXUS_LOCOMO_DIR=%s", dir)
	}
	sort.Strings(files)
	var tally recallTally
	for b.Loop() {
		tally = recallTally{}
		for _, f := range files {
			conv, err := loadConversation(f)
			if err != nil {
				b.Fatal(err)
			}
			runConversation(b, conv, &tally)
		}
	}
	b.StopTimer()
	fmt.Print(tally.report())
	all := tally.cats[0]
	b.ReportMetric(all.at(1), "R@1")
	b.ReportMetric(all.at(5), "R@5")
	b.ReportMetric(all.at(10), "R@10")
	b.ReportMetric(float64(tally.elapsed.Microseconds())/float64(max(1, tally.calls))/1000, "ms/search")
}

// locomoConversation is one LoCoMo file: its turns and its questions.
type locomoConversation struct {
	name  string
	turns []locomoTurn
	qa    []locomoQA
}

type locomoTurn struct {
	Speaker string `json:"speaker"`
	DiaID   string `json:"dia_id"`
	Text    string `json:"text"`
}

type locomoQA struct {
	Question string   `json:"question"`
	Evidence []string `json:"evidence"`
	Category int      `json:"category"`
}

var sessionKey = regexp.MustCompile(`^session_(\d+)$`)

func loadConversation(path string) (locomoConversation, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return locomoConversation{}, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return locomoConversation{}, fmt.Errorf("%s: %w", path, err)
	}
	c := locomoConversation{name: filepath.Base(path)}
	var sessions []int
	for k := range doc {
		if m := sessionKey.FindStringSubmatch(k); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			sessions = append(sessions, n)
		}
	}
	sort.Ints(sessions)
	for _, n := range sessions {
		var turns []locomoTurn
		if err := json.Unmarshal(doc[fmt.Sprintf("session_%d", n)], &turns); err != nil {
			continue // session_N_date_time and friends are not turn lists
		}
		c.turns = append(c.turns, turns...)
	}
	if err := json.Unmarshal(doc["qa"], &c.qa); err != nil {
		return locomoConversation{}, fmt.Errorf("%s: qa: %w", path, err)
	}
	return c, nil
}

// recallAt accumulates recall@k for one category.
type recallAt struct {
	questions int
	sum       [11]float64 // sum[k]: recall@k summed over questions
}

func (r recallAt) at(k int) float64 {
	if r.questions == 0 {
		return 0
	}
	return r.sum[k] / float64(r.questions)
}

type recallTally struct {
	cats    [5]recallAt // 0: all, 1-4: LoCoMo categories
	calls   int
	elapsed time.Duration
	// firsts is the time of each conversation's first search, which also
	// indexes the turns written just before it.
	firsts time.Duration
	// times are the calls' durations, for the median.
	times         []time.Duration
	conversations int
}

func (t *recallTally) add(cat int, evidence, ranked []string) {
	want := map[string]bool{}
	for _, e := range evidence {
		want[e] = true
	}
	for _, c := range []int{0, cat} {
		r := &t.cats[c]
		r.questions++
		found := 0
		for k := 1; k <= 10; k++ {
			if k <= len(ranked) && want[ranked[k-1]] {
				found++
			}
			r.sum[k] += float64(found) / float64(len(want))
		}
	}
}

func (t *recallTally) report() string {
	names := []string{"all", "1 multi-hop", "2 temporal", "3 open-domain", "4 single-hop"}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-14s %9s %6s %6s %6s\n", "category", "questions", "R@1", "R@5", "R@10")
	for i, r := range t.cats {
		fmt.Fprintf(&b, "%-14s %9d %6.3f %6.3f %6.3f\n", names[i], r.questions, r.at(1), r.at(5), r.at(10))
	}
	fmt.Fprintf(&b, "search_entities: %d calls, mean %.3f ms per call (client side, stdio)\n",
		t.calls, float64(t.elapsed.Microseconds())/float64(max(1, t.calls))/1000)
	if n := t.calls - t.conversations; n > 0 {
		ts := slices.Clone(t.times)
		slices.Sort(ts)
		fmt.Fprintf(&b, "  without each conversation's first call (%d, which indexes its turns): mean %.3f ms; median of all %.3f ms\n",
			t.conversations, float64((t.elapsed-t.firsts).Microseconds())/float64(n)/1000,
			float64(ts[len(ts)/2].Microseconds())/1000)
	}
	return b.String()
}

// runConversation stores conv's turns in a fresh server and asks its
// questions of categories 1-4.
func runConversation(b *testing.B, conv locomoConversation, tally *recallTally) {
	b.Helper()
	db := filepath.Join(b.TempDir(), "recall.db")
	c := stdioClient(b, db)
	defer c.Close()
	const batch = 50
	for i := 0; i < len(conv.turns); i += batch {
		var ents []map[string]any
		for _, turn := range conv.turns[i:min(i+batch, len(conv.turns))] {
			ents = append(ents, map[string]any{
				"name":         turn.DiaID,
				"entityType":   "dialog_turn",
				"observations": []string{turn.Speaker + ": " + turn.Text},
			})
		}
		if res := callTool(b, c, "create_entities", map[string]any{"entities": ents}); res.IsError {
			b.Fatalf("%s: create_entities: %v", conv.name, res.Content)
		}
	}
	first := true
	for _, q := range conv.qa {
		if q.Category < 1 || q.Category > 4 || len(q.Evidence) == 0 {
			continue
		}
		start := time.Now()
		res := callTool(b, c, "search_entities", map[string]any{"query": q.Question})
		took := time.Since(start)
		tally.elapsed += took
		tally.times = append(tally.times, took)
		if first {
			tally.firsts += took
			tally.conversations++
			first = false
		}
		tally.calls++
		if res.IsError {
			b.Fatalf("%s: search_entities(%q): %v", conv.name, q.Question, res.Content)
		}
		var out struct {
			Entities []struct {
				Name string `json:"name"`
			} `json:"entities"`
		}
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, &out); err != nil {
			b.Fatal(err)
		}
		var ranked []string
		for _, e := range out.Entities {
			ranked = append(ranked, e.Name)
		}
		tally.add(q.Category, q.Evidence, ranked)
	}
}
