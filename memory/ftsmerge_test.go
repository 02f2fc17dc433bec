package memory

import (
	"context"
	"fmt"
	"testing"
)

// TestTrigramIndexMergedOffTheWritePath: graph writes leave merging the
// trigram indexes' segments to the background merger (automerge is off,
// so no write's transaction pays for a merge), the merger merges until
// nothing is left, and substring search finds every entity before and
// after.
func TestTrigramIndexMergedOffTheWritePath(t *testing.T) {
	s := openSQLiteStore(t)
	ctx := context.Background()
	if err := s.CreateTenant(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	s.stopFTSMerger() // the test merges by hand
	const n = 12      // below FTS5's crisis merge (16 segments)
	for i := range n {
		mustCreate(t, s, as("a"), Entity{Name: fmt.Sprintf("entity-%d", i), EntityType: "note",
			Observations: []string{fmt.Sprintf("observation %d of the merge test", i)}})
	}
	// pending reports whether a 'merge' command finds work in table; the
	// probe itself merges, so each case uses it once per table.
	pending := func(table string) bool {
		var worked bool
		if err := s.write(ctx, func(tx *txn) error {
			var before, after int64
			if err := tx.queryRow(`SELECT total_changes()`).Scan(&before); err != nil {
				return err
			}
			if _, err := tx.exec(`INSERT INTO ` + table + `(` + table + `, rank) VALUES('merge', 1)`); err != nil {
				return err
			}
			if err := tx.queryRow(`SELECT total_changes()`).Scan(&after); err != nil {
				return err
			}
			worked = after-before >= 2
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return worked
	}
	found := func() int {
		g, err := s.SearchNodes(as("a"), "of the merge", Page{})
		if err != nil {
			t.Fatal(err)
		}
		return len(g.Entities)
	}
	if got := found(); got != n {
		t.Fatalf("before merging: search finds %d entities, want %d", got, n)
	}
	for _, table := range []string{"entities_fts", "observations_fts"} {
		var automerge string
		if err := s.r.QueryRow(`SELECT v FROM ` + table + `_config WHERE k = 'automerge'`).Scan(&automerge); err != nil || automerge != "0" {
			t.Errorf("%s: automerge = %q (%v), want 0: writes would merge segments in their own transactions", table, automerge, err)
		}
	}
	if err := s.mergeFTS(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"entities_fts", "observations_fts"} {
		if pending(table) {
			t.Errorf("%s: the merger left work", table)
		}
	}
	if got := found(); got != n {
		t.Fatalf("after merging: search finds %d entities, want %d", got, n)
	}
}
