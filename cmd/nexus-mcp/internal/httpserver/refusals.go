package httpserver

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Bounds of the audit of refusals that establish no tenant.
const (
	// denialTallyInterval is how often the tallies are written: one audit
	// row per source, action, reason and status seen in the interval.
	denialTallyInterval = time.Minute
	// maxDenialTallies bounds the tallies of one interval; the refusals of
	// further sources are counted in one row of source "other".
	maxDenialTallies = 64
)

// denialTally keeps the evidence of requests refused before any tenant
// was established (bad or missing credentials, sources over their
// failure limit) without writing a row per request, which let anyone
// without a credential grow the append-only audit log without bound. It
// counts each (source, action, reason, status) and writes one row per
// tally (Store.AuditDenialTally, the chain of no tenant) every interval and at
// shutdown: at most maxDenialTallies+1 rows per interval, whatever the
// request rate. The counts of the current interval are lost if the
// process dies before writing them (they are in the log).
type denialTally struct {
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	counts map[tallyKey]*tallyCount
}

type tallyKey struct {
	source, action, reason string
	status                 int
}

type tallyCount struct {
	n           int64
	first, last time.Time
}

// otherSources is the source of the tally that counts the refusals of
// sources beyond maxDenialTallies.
const otherSources = "other"

func newDenialTally(store Store, log *slog.Logger, now func() time.Time) *denialTally {
	return &denialTally{store: store, log: log, now: now, counts: make(map[tallyKey]*tallyCount)}
}

// add counts one refusal of r.
func (d *denialTally) add(r *http.Request, action, reason string, status int) {
	k := tallyKey{source: tenancy.SourceOf(r), action: action, reason: reason, status: status}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.counts[k]
	if c == nil {
		if len(d.counts) >= maxDenialTallies {
			k.source = otherSources
			c = d.counts[k]
		}
		if c == nil {
			c = &tallyCount{first: now}
			d.counts[k] = c
		}
	}
	c.n++
	c.last = now
}

// flush writes one audit row per tally and starts a new interval. A tally
// that cannot be written is kept for the next flush.
func (d *denialTally) flush(ctx context.Context) {
	d.mu.Lock()
	counts := d.counts
	d.counts = make(map[tallyKey]*tallyCount, len(counts))
	d.mu.Unlock()
	for k, c := range counts {
		t := Tally{Action: k.action, Reason: k.reason, Source: k.source, Status: k.status, Count: c.n, First: c.first, Last: c.last}
		if err := d.store.AuditDenialTally(ctx, t); err != nil {
			d.log.Error("audit of refused requests failed; kept for the next interval", "action", k.action, "count", c.n, "err", err)
			d.mu.Lock()
			if cur := d.counts[k]; cur != nil {
				cur.n += c.n
				cur.first = c.first
			} else {
				d.counts[k] = c
			}
			d.mu.Unlock()
		}
	}
}
