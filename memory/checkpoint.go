package memory

import (
	"context"
	"database/sql"
	"log/slog"
	"time"
)

// SQLite's WAL is copied back into the database file by checkpoints. Left
// to SQLite, the commit that finds the WAL past wal_autocheckpoint pages
// runs the checkpoint itself, holding the single writer meanwhile: one
// tenant's large writes then made another tenant's small write wait for a
// checkpoint of both (tens of ms). Instead a background worker runs
// PASSIVE checkpoints on a connection of its own shortly after writes;
// they copy what readers no longer need without taking the write lock, so
// writers go on meanwhile. wal_autocheckpoint stays as a safety net, set
// high enough that the worker normally keeps the WAL below it.

// checkpointDelay is how long after a write the worker checkpoints: writes
// of a burst share one checkpoint.
const checkpointDelay = 50 * time.Millisecond

// autoCheckpointPages is the writer's wal_autocheckpoint (SQLite's default
// is 1,000 pages). Under a steady stream of writes the WAL is never fully
// copied back when the next write begins, so SQLite cannot start it over
// and it grows to this size, where a commit checkpoints: by then the worker
// has copied nearly all of it, so that checkpoint is short. Larger values
// kept more of them off the writer (neighbour p99 ~50 ms at 10,000 pages
// against ~62 ms at 2,000) for a WAL file of up to 40 MiB.
const autoCheckpointPages = 2000

// walSizeLimit makes the connections that checkpoint or restart the WAL
// cut its file back to 4 MiB: SQLite otherwise keeps the file at its
// largest size for good.
const walSizeLimit = "&_pragma=journal_size_limit(4194304)"

type checkpointer struct {
	db   *sql.DB
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// startCheckpointer opens the worker's connection to path and starts it.
func (s *Store) startCheckpointer(path, synchronous string, log *slog.Logger) error {
	db, err := sql.Open("sqlite", dsn(path, "", synchronous)+walSizeLimit)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	c := &checkpointer{db: db, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.ckpt = c
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			case <-c.kick:
			}
			select {
			case <-c.stop:
				return
			case <-time.After(checkpointDelay):
			}
			var busy, logPages, done int
			if err := db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done); err != nil {
				log.Warn("wal checkpoint", "err", err)
			}
		}
	}()
	return nil
}

// kickCheckpointer tells the worker that a write committed.
func (s *Store) kickCheckpointer() {
	if s.ckpt == nil {
		return
	}
	select {
	case s.ckpt.kick <- struct{}{}:
	default:
	}
}

// stopCheckpointer stops the worker and closes its connection.
func (s *Store) stopCheckpointer() error {
	if s.ckpt == nil {
		return nil
	}
	close(s.ckpt.stop)
	<-s.ckpt.done
	err := s.ckpt.db.Close()
	s.ckpt = nil
	return err
}
