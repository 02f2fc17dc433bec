package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"
)

// tallyStore records the tallies written; it fails while fail is set. Its
// other Store methods are not called by the tally.
type tallyStore struct {
	Store
	fail bool
	rows []Tally
}

func (s *tallyStore) AuditDenialTally(_ context.Context, t Tally) error {
	if s.fail {
		return errors.New("storage down")
	}
	s.rows = append(s.rows, t)
	return nil
}

func (s *tallyStore) counts() (rows int, total int64, other int64) {
	for _, t := range s.rows {
		total += t.Count
		if t.Source == otherSources {
			other += t.Count
		}
	}
	return len(s.rows), total, other
}

// refuse adds n refusals from source (an IPv4 address) to d.
func refuse(d *denialTally, source string, n int) {
	for range n {
		r := httptest.NewRequest("POST", "/mcp", nil)
		r.RemoteAddr = source + ":40000"
		d.add(r, "auth.denied", "invalid_key", 401)
	}
}

// TestDenialTallyBounded: however many sources are refused in an interval,
// one flush writes at most maxDenialTallies+1 rows, and every refusal is
// counted in them (the sources beyond the bound in one "other" row). The
// control: fewer sources than the bound get a row each.
func TestDenialTallyBounded(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, sources := range []int{maxDenialTallies / 2, 5 * maxDenialTallies} {
		st := &tallyStore{}
		d := newDenialTally(st, log, clock.now)
		for i := range sources {
			refuse(d, fmt.Sprintf("127.0.%d.%d", i/250, i%250+1), 3)
		}
		d.flush(context.Background())
		rows, total, other := st.counts()
		wantRows, wantOther := sources, int64(0)
		if sources > maxDenialTallies {
			wantRows, wantOther = maxDenialTallies+1, int64(3*(sources-maxDenialTallies))
		}
		if rows != wantRows || total != int64(3*sources) || other != wantOther {
			t.Errorf("%d sources × 3 refusals: %d rows counting %d (%d as %q), want %d rows counting %d (%d)",
				sources, rows, total, other, otherSources, wantRows, 3*sources, wantOther)
		}
	}
}

// TestDenialTallyKeptWhenStorageFails: a flush the store refuses loses
// nothing: the next one writes the earlier interval's counts with the new
// ones, from the first refusal's time.
func TestDenialTallyKeptWhenStorageFails(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	first := clock.now()
	st := &tallyStore{fail: true}
	d := newDenialTally(st, slog.New(slog.NewTextHandler(io.Discard, nil)), clock.now)
	refuse(d, "127.0.0.2", 4)
	d.flush(context.Background())
	if len(st.rows) != 0 {
		t.Fatalf("rows written while the store fails: %d", len(st.rows))
	}
	clock.advance(time.Minute)
	refuse(d, "127.0.0.2", 2)
	st.fail = false
	d.flush(context.Background())
	if len(st.rows) != 1 || st.rows[0].Count != 6 || !st.rows[0].First.Equal(first) || !st.rows[0].Last.Equal(clock.now()) {
		t.Errorf("after the store came back: %+v, want one row counting 6 from %v to %v", st.rows, first, clock.now())
	}
	d.flush(context.Background())
	if len(st.rows) != 1 {
		t.Errorf("a flush with no new refusals wrote %d more rows", len(st.rows)-1)
	}
}
