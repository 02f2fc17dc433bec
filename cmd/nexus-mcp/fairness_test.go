package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// heavyBatch returns create_entities arguments as large as maxBytes (of
// argument JSON) and maxItems (array elements, entities and observations
// together) allow: entities of 20 observations of ~200 bytes of words,
// names unique by seq.
func heavyBatch(seq int64, maxBytes, maxItems int) map[string]any {
	words := strings.Fields("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega " +
		"writer reader tenant batch latency index trigram search memory agent graph relation")
	r := rand.New(rand.NewPCG(uint64(seq), 7))
	obs := func() string {
		var sb strings.Builder
		for sb.Len() < 200 {
			sb.WriteString(words[r.IntN(len(words))])
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	var es []any
	size, items := len(`{"entities":[]}`), 0
	for i := 0; ; i++ {
		e := map[string]any{"name": fmt.Sprintf("heavy-%d-%d", seq, i), "entityType": "load"}
		var os []any
		for range 20 {
			os = append(os, obs())
		}
		e["observations"] = os
		b, _ := json.Marshal(e)
		if size+len(b)+1 > maxBytes || items+1+len(os) > maxItems || len(es) == 1000 {
			break
		}
		es = append(es, e)
		size += len(b) + 1
		items += 1 + len(os)
	}
	return map[string]any{"entities": es}
}

// BenchmarkNeighbourWrites measures one tenant's small writes (one
// create_entities of one entity, b.N of them, one after another) while
// another tenant keeps two (or eight) clients sending the largest create_entities
// batches the server accepts (heavyBatch at the per-call limits). It
// reports the neighbour's write latency p50/p99/max and the heavy
// tenant's accepted batches; any failed write fails the benchmark.
//
// The "alone" case is the same without the heavy tenant (the control: the
// machine's own latency).
//
//	go test -run '^$' -bench BenchmarkNeighbourWrites -benchtime 300x ./cmd/nexus-mcp
func BenchmarkNeighbourWrites(b *testing.B) {
	b.Run("alone", func(b *testing.B) { benchNeighbour(b, 0) })
	b.Run("heavy2", func(b *testing.B) { benchNeighbour(b, 2) })
	b.Run("heavy8", func(b *testing.B) { benchNeighbour(b, 8) })
}

func benchNeighbour(b *testing.B, heavyClients int) {
	e := startHTTP(b, httpTestOpts{})
	keyA := e.newKey(b, memory.NewKey{TenantID: "calm", UserID: "ca"})
	keyB := e.newKey(b, memory.NewKey{TenantID: "heavy", UserID: "hb"})
	neighbour, _ := mcpGoClient(b, e.url, bearer(keyA), false)
	heavy := make([]*client.Client, heavyClients)
	for i := range heavy {
		heavy[i], _ = mcpGoClient(b, e.url, bearer(keyB), false)
	}
	maxBytes, maxItems := benchWriteLimits()
	probe, _ := json.Marshal(heavyBatch(0, maxBytes, maxItems))
	b.Logf("heavy batch: %d bytes of arguments, %d entities", len(probe), len(heavyBatch(0, maxBytes, maxItems)["entities"].([]any)))

	var seq, batches, heavyFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range heavy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var req mcp.CallToolRequest
				req.Params.Name = "create_entities"
				req.Params.Arguments = heavyBatch(seq.Add(1), maxBytes, maxItems)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				res, err := c.CallTool(ctx, req)
				cancel()
				if err != nil || res.IsError {
					heavyFailed.Add(1)
					if res != nil && len(res.Content) > 0 {
						b.Logf("heavy batch refused: %.200s", res.Content[0].(mcp.TextContent).Text)
					}
					continue
				}
				batches.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // let the heavy batches start
	lat := make([]time.Duration, 0, b.N)
	overlap := make([]int64, 0, b.N) // heavy batches that completed during each neighbour write
	failed := 0
	b.ResetTimer()
	for i := range b.N {
		var req mcp.CallToolRequest
		req.Params.Name = "create_entities"
		req.Params.Arguments = entityArgs(fmt.Sprintf("calm-%07d", i))
		t0, done0 := time.Now(), batches.Load()
		res, err := neighbour.CallTool(context.Background(), req)
		lat = append(lat, time.Since(t0))
		overlap = append(overlap, batches.Load()-done0)
		if err != nil || res.IsError {
			failed++
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	if failed != 0 || heavyFailed.Load() != 0 {
		b.Errorf("neighbour writes failed: %d; heavy batches failed: %d; want 0, 0", failed, heavyFailed.Load())
	}
	if heavyClients > 0 && batches.Load() == 0 {
		b.Errorf("no heavy batch was accepted while the neighbour wrote; the figure proves nothing")
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max_ms")
	b.ReportMetric(float64(batches.Load()), "heavy_batches")
	// How many of the heavy tenant's batches one neighbour write waited
	// through (at most): with fair turns across tenants it stays near the
	// number of heavy batches in flight, whatever the machine's speed.
	slices.Sort(overlap)
	b.ReportMetric(float64(overlap[min(len(overlap)-1, int(0.99*float64(len(overlap))))]), "overlap_p99")
	b.ReportMetric(float64(overlap[len(overlap)-1]), "overlap_max")
	if heavyClients > 0 {
		b.Logf("metric neighbour_write_p99_ms=%.1f", pct(0.99))
	}
}
