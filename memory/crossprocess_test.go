package memory

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestWatchOtherProcesses: two Stores on one SQLite file stand for two
// processes. The watching one receives the other's graph changes with
// their tenant, in commit order, and its own changes once.
func TestWatchOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nexus.db")
	open := func() *Store {
		s, err := Open(context.Background(), path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	watcher, other := open(), open()
	for _, id := range []string{"a", "b"} {
		if err := watcher.CreateTenant(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []string
	watcher.OnChange(func(kind, tenant string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, kind+":"+tenant)
	})
	waitFor := func(n int) []string {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			g := slices.Clone(got)
			mu.Unlock()
			if len(g) >= n {
				return g
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("got %v, want %d events", got, n)
		return nil
	}

	stop := watcher.WatchOtherProcesses()
	stop2 := watcher.WatchOtherProcesses() // nested watches
	stop2()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(watcher.Publish(as("a"), ChangeGraph)) // local: delivered at once
	must(other.Publish(as("b"), ChangeGraph))
	must(other.Publish(as("a"), ChangeGraph))
	g := waitFor(3)
	if want := []string{"graph:a", "graph:b", "graph:a"}; fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v (own change once, the other's in commit order with their tenant)", g, want)
	}
	stop()
	watcher.sqliteChanges.mu.Lock()
	n := watcher.sqliteChanges.watchers
	watcher.sqliteChanges.mu.Unlock()
	if n != 0 {
		t.Errorf("watchers after every stop = %d, want 0", n)
	}
}

// BenchmarkPublishSQLite is the cost a graph write pays on SQLite for
// reaching other processes: one small write transaction per change.
func BenchmarkPublishSQLite(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "nexus.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateTenant(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	ctx := as("a")
	for b.Loop() {
		if err := s.Publish(ctx, ChangeGraph); err != nil {
			b.Fatal(err)
		}
	}
}
