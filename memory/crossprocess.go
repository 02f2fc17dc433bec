package memory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Change events between processes sharing one SQLite file. PostgreSQL
// replicas exchange them with NOTIFY (notify.go); SQLite has no such
// channel, so each published graph change is also appended to the changes
// table, and a process that has resource subscribers polls it for the rows
// other processes appended (WatchOtherProcesses).
const (
	// changePollInterval is how often a watching process looks for
	// changes of other processes: updates arrive within about that.
	changePollInterval = 250 * time.Millisecond
	// changeRetention is how long rows stay in the changes table, far
	// longer than any poll interval.
	changeRetention = time.Minute
	// changePruneEvery is how many appended rows trigger a prune.
	changePruneEvery = 256
)

// sqliteChanges is the SQLite side of the change feed.
type sqliteChanges struct {
	origin string // this Store's id in the origin column
	log    *slog.Logger

	kick chan struct{} // a change is pending
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the change writer returns

	mu       sync.Mutex
	pending  []change // published here, not yet in the table; in order, each once
	appended int
	watchers int
	cancel   context.CancelFunc
}

func newSQLiteChanges(log *slog.Logger) *sqliteChanges {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return &sqliteChanges{origin: hex.EncodeToString(b), log: log, kick: make(chan struct{}, 1)}
}

// appendChange records c for the other processes on this file, after it
// was delivered here. The row is written by a background worker, in one
// transaction with the other changes published meanwhile (one row per
// tenant and kind: a subscriber needs to know that, not how often), so
// that the call that published it does not wait for the writer a second
// time.
func (s *Store) appendChange(c change) {
	sc := s.sqliteChanges
	sc.mu.Lock()
	if !slices.Contains(sc.pending, c) {
		sc.pending = append(sc.pending, c)
	}
	sc.mu.Unlock()
	select {
	case sc.kick <- struct{}{}:
	default:
	}
}

// startChangeWriter starts the worker that writes pending changes until
// stopChangeWriter, which waits for it to write what is left.
func (s *Store) startChangeWriter() {
	sc := s.sqliteChanges
	sc.stop, sc.done = make(chan struct{}), make(chan struct{})
	go s.runChangeWriter()
}

func (s *Store) stopChangeWriter() {
	if sc := s.sqliteChanges; sc != nil && sc.stop != nil {
		close(sc.stop)
		<-sc.done
		sc.stop = nil
	}
}

func (s *Store) runChangeWriter() {
	sc := s.sqliteChanges
	defer close(sc.done)
	for {
		select {
		case <-sc.stop:
			s.writeChanges()
			return
		case <-sc.kick:
		}
		s.writeChanges()
	}
}

// writeChanges appends the pending changes to the changes table.
func (s *Store) writeChanges() {
	sc := s.sqliteChanges
	sc.mu.Lock()
	pending := sc.pending
	sc.pending = nil
	sc.appended += len(pending)
	prune := sc.appended >= changePruneEvery
	if prune {
		sc.appended = 0
	}
	sc.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	rows := make([][2]string, 0, len(pending))
	for _, c := range pending {
		rows = append(rows, [2]string{c.Tenant, c.Kind})
	}
	list, _ := json.Marshal(rows) // strings: cannot fail
	err := s.write(context.Background(), func(t *txn) error {
		if _, err := t.exec(`INSERT INTO changes (tenant_id, kind, origin, at)
			SELECT value->>0, value->>1, ?, ? FROM `+t.s.d.jsonArray+``, sc.origin, t.now, string(list)); err != nil {
			return err
		}
		if !prune {
			return nil
		}
		_, err := t.exec(`DELETE FROM changes WHERE at < ?`, Stamp(txnTime(t).Add(-changeRetention)))
		return err
	})
	if err != nil {
		// other processes miss these updates; this one delivered them
		sc.log.Warn("record changes for other processes", "err", err)
	}
}

// WatchOtherProcesses makes this process deliver, to its OnChange
// callbacks, the changes that other processes sharing the SQLite file
// publish after it returns, within about changePollInterval, until every
// returned stop has
// been called. Calls nest: polling runs while at least one watch is on. On
// PostgreSQL every replica's changes arrive anyway and it does nothing.
func (s *Store) WatchOtherProcesses() (stop func()) {
	sc := s.sqliteChanges
	if sc == nil {
		return func() {}
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.watchers++
	if sc.watchers == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		sc.cancel = cancel
		// where the table ends now: changes committed after this call
		// returns are delivered, earlier ones are not replayed
		var last int64
		if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM changes`).Scan(&last); err != nil {
			sc.log.Error("watch other processes' changes: read the last change; updates from other processes start with the next", "err", err)
		}
		go s.pollChanges(ctx, last, sc.log)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			sc.mu.Lock()
			defer sc.mu.Unlock()
			sc.watchers--
			if sc.watchers == 0 {
				sc.cancel()
			}
		})
	}
}

// pollChanges delivers other processes' changes appended after seq last,
// in the order they were committed, until ctx ends.
func (s *Store) pollChanges(ctx context.Context, last int64, log *slog.Logger) {
	tick := time.NewTicker(changePollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var err error
		if last, err = s.deliverChangesAfter(ctx, last); err != nil && ctx.Err() == nil {
			log.Warn("read other processes' changes", "err", err)
		}
	}
}

// deliverChangesAfter delivers the changes of other origins with seq >
// last and returns the last seq read.
func (s *Store) deliverChangesAfter(ctx context.Context, last int64) (int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, tenant_id, kind, origin FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000`, last)
	if err != nil {
		return last, err
	}
	var got []change
	for rows.Next() {
		var c change
		var origin string
		if err := rows.Scan(&last, &c.Tenant, &c.Kind, &origin); err != nil {
			rows.Close()
			return last, err
		}
		if origin != s.sqliteChanges.origin {
			got = append(got, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return last, err
	}
	for _, c := range got {
		s.deliver(c)
	}
	return last, nil
}
