package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
	"time"
)

// Replica heartbeat (PostgreSQL only): how rate limits are shared by
// replicas on one database.
const (
	// heartbeatInterval is how often each replica records that it is alive.
	heartbeatInterval = time.Second
	// heartbeatWindow is how recent a beat must be for its replica to count
	// as live: a replica that joins or dies changes the count within it.
	heartbeatWindow = 3 * time.Second
)

// replicaHeartbeat keeps this replica's row in the store's replicas table
// and the number of live replicas, which the rate limiter divides each
// tenant's limit by (tenancy.RateLimiter.Replicas states the tolerance).
type replicaHeartbeat struct {
	store Store
	log   *slog.Logger
	id    string
	n     atomic.Int32
}

func newReplicaHeartbeat(store Store, log *slog.Logger) *replicaHeartbeat {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	h := &replicaHeartbeat{store: store, log: log, id: hex.EncodeToString(b)}
	h.n.Store(1)
	return h
}

// live is the number of live replicas, this one included (at least 1).
func (h *replicaHeartbeat) live() int { return int(h.n.Load()) }

// beat records one heartbeat. On a storage error the last count stays.
func (h *replicaHeartbeat) beat(ctx context.Context) {
	n, err := h.store.ReplicaHeartbeat(ctx, h.id, heartbeatWindow)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Error("replica heartbeat failed", "err", err)
		}
		return
	}
	if old := h.n.Swap(int32(n)); int(old) != n {
		h.log.Info("live replicas changed; each enforces its share of the rate limits", "replicas", n, "was", old)
	}
}

// start beats once, then every heartbeatInterval until the returned stop
// is called; stop removes this replica's row so the others stop counting
// it at their next beat.
func (h *replicaHeartbeat) start(ctx context.Context) (stop func()) {
	h.beat(ctx)
	stopBeats := Every(ctx, heartbeatInterval, h.beat)
	return func() {
		stopBeats()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		if err := h.store.RemoveReplica(rctx, h.id); err != nil {
			h.log.Warn("remove replica heartbeat", "err", err)
		}
	}
}
