package memory

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The trigram indexes (entities_fts, observations_fts) are FTS5 tables:
// each write transaction adds a small segment, and segments must be merged
// as they pile up. Left to FTS5 (automerge), the write that completes a
// level merges it, inside that write's transaction: one tenant's batch
// then held the single writer for ~30 ms of merging on top of its own
// work, every few batches, and another tenant's small write waited for it
// (the tail of BenchmarkNeighbourWrites). Migration 0015 turns automerge
// off; this worker merges instead, shortly after graph writes, in writer turns
// of its own of at most ftsMergePages pages each, so no turn is long and
// the write gate can put other tenants' writes between them. FTS5's crisis
// merge (a level of 16 segments) still runs inside a write if the worker
// ever falls that far behind.

// ftsMergeDelay is how long after a write the worker merges: the writes of
// a burst share its turns.
const ftsMergeDelay = 100 * time.Millisecond

// ftsMergePages bounds the merge work of one writer turn, in pages written
// per table (FTS5's 'merge' command).
const ftsMergePages = 32

// ftsMergeTurns bounds the turns of one round, so the worker cannot keep
// taking turns if merging never finishes.
const ftsMergeTurns = 64

type ftsMerger struct {
	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// startFTSMerger starts the worker (SQLite only). s.ftsMerge is set here,
// before any other goroutine can write, and never changes: writes that
// commit after the worker stopped still kick it, harmlessly.
func (s *Store) startFTSMerger(log *slog.Logger) {
	m := &ftsMerger{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.ftsMerge = m
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-m.stop
		cancel()
	}()
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			case <-m.kick:
			}
			select {
			case <-m.stop:
				return
			case <-time.After(ftsMergeDelay):
			}
			if err := s.mergeFTS(ctx); err != nil && ctx.Err() == nil {
				log.Warn("trigram index merge", "err", err)
			}
		}
	}()
}

// mergeFTS merges the trigram indexes' segments in turns of at most
// ftsMergePages pages per table until there is nothing left to merge.
func (s *Store) mergeFTS(ctx context.Context) error {
	for range ftsMergeTurns {
		worked := false
		err := s.write(ctx, func(t *txn) error {
			for _, table := range []string{"entities_fts", "observations_fts"} {
				// FTS5: a change count that grows by less than two means
				// the command found nothing to merge.
				var before, after int64
				if err := t.queryRow(`SELECT total_changes()`).Scan(&before); err != nil {
					return err
				}
				if _, err := t.exec(`INSERT INTO `+table+`(`+table+`, rank) VALUES('merge', ?)`, ftsMergePages); err != nil {
					return err
				}
				if err := t.queryRow(`SELECT total_changes()`).Scan(&after); err != nil {
					return err
				}
				worked = worked || after-before >= 2
			}
			return nil
		})
		if err != nil || !worked {
			return err
		}
	}
	return nil
}

// kickFTSMerger tells the worker that a write changed the graph's text.
func (s *Store) kickFTSMerger() {
	if s.ftsMerge == nil {
		return
	}
	select {
	case s.ftsMerge.kick <- struct{}{}:
	default:
	}
}

// stopFTSMerger stops the worker and waits for it; it may be called again.
func (s *Store) stopFTSMerger() {
	if s.ftsMerge == nil {
		return
	}
	s.ftsMerge.stopOnce.Do(func() { close(s.ftsMerge.stop) })
	<-s.ftsMerge.done
}
