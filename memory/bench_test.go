package memory

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchEntity mirrors the shared harness's entities: a unique needle, a
// group token and a longer note per entity.
func benchEntity(prefix string, i int) Entity {
	return Entity{
		Name:       fmt.Sprintf("%s-ent-%d", prefix, i),
		EntityType: []string{"person", "project", "concept", "place"}[i%4],
		Observations: []string{
			fmt.Sprintf("needle nd%s%dz recorded by the benchmark", prefix, i),
			fmt.Sprintf("member of group g%s%dq", prefix, i%100),
			fmt.Sprintf("note %d: the quick brown fox jumps over the lazy dog near the river bank", i),
		},
	}
}

var (
	benchOnce  sync.Once
	benchStore *Store
	benchDir   string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore != nil {
		benchStore.Close()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// filledStore returns a store shared by the read benchmarks, holding 10,000
// entities and 10,000 relations in tenant "a" (and a little in "b").
func filledStore(b *testing.B) *Store {
	b.Helper()
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nexus-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = dir
		s, err := Open(context.Background(), dir+"/bench.db", Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.CreateTenant(context.Background(), "a", "")
		s.CreateTenant(context.Background(), "b", "")
		ctx := as("a")
		for i := 0; i < 10000; i += 100 {
			var es []Entity
			for j := i; j < i+100; j++ {
				es = append(es, benchEntity("p0", j))
			}
			if _, err := s.CreateEntities(ctx, es); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; i < 10000; i += 100 {
			var rs []Relation
			for j := i; j < i+100; j++ {
				rs = append(rs, Relation{From: fmt.Sprintf("p0-ent-%d", j), To: fmt.Sprintf("p0-ent-%d", (j*7919+1)%10000), RelationType: "knows"})
			}
			if _, err := s.CreateRelations(ctx, rs); err != nil {
				b.Fatal(err)
			}
		}
		s.CreateEntities(as("b"), []Entity{benchEntity("p0", 1)})
		if err := s.indexAllQueued(context.Background()); err != nil { // the word index settles before reads are measured
			b.Fatal(err)
		}
		benchStore = s
	})
	return benchStore
}

func BenchmarkCreateEntitiesBatch10(b *testing.B) {
	s := filledStore(b)
	ctx := as("a")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es := make([]Entity, 10)
		for j := range es {
			es[j] = benchEntity(fmt.Sprintf("w%d", i), j)
		}
		if _, err := s.CreateEntities(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSearchNodes(b *testing.B) {
	s := filledStore(b)
	ctx := as("a")
	for _, tc := range []struct{ name, format string }{
		{"hit", "ndp0%dz"},
		{"miss", "zzp0miss%d"},
		{"group", "gp0%dq"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := s.SearchNodes(ctx, fmt.Sprintf(tc.format, i%100*97), Page{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpenNodes10(b *testing.B) {
	s := filledStore(b)
	ctx := as("a")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		names := make([]string, 10)
		for j := range names {
			names[j] = fmt.Sprintf("p0-ent-%d", (i*31+j*997)%10000)
		}
		if _, err := s.OpenNodes(ctx, names, Page{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadGraph10k(b *testing.B) {
	s := filledStore(b)
	ctx := as("a")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.ReadGraph(ctx, Page{MaxBytes: 8 << 20}); err != nil {
			b.Fatal(err)
		}
	}
}

// heavyEntities is a batch at tools' per-call limits (80 KiB of text, 500
// items): 19 entities of 20 observations of ~200 bytes of words.
func heavyEntities(seq int) []Entity {
	words := strings.Fields("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega " +
		"writer reader tenant batch latency index trigram search memory agent graph relation")
	var es []Entity
	for i := range 19 {
		e := Entity{Name: fmt.Sprintf("heavy-%d-%d", seq, i), EntityType: "load"}
		for k := range 20 {
			var sb strings.Builder
			for n := 0; sb.Len() < 200; n++ {
				sb.WriteString(words[(seq*31+i*7+k*13+n*n)%len(words)])
				sb.WriteByte(' ')
			}
			e.Observations = append(e.Observations, sb.String())
		}
		es = append(es, e)
	}
	return es
}

// BenchmarkCreateEntitiesHeavy is one maximal create_entities batch: how
// long one call holds the single SQLite writer.
func BenchmarkCreateEntitiesHeavy(b *testing.B) {
	s := filledStore(b)
	ctx := as("a")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.CreateEntities(ctx, heavyEntities(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNeighbourWritesStore is BenchmarkNeighbourWrites of
// cmd/nexus-mcp without HTTP: tenant "calm" creates one small entity per
// op while two goroutines of tenant "heavy" keep writing maximal batches.
// It reports calm's write latency p50/p99/max and the heavy calls' p50/p99.
func BenchmarkNeighbourWritesStore(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/n.db", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.CreateTenant(context.Background(), "calm", "")
	s.CreateTenant(context.Background(), "heavy", "")
	stop := make(chan struct{})
	var (
		wg           sync.WaitGroup
		seq, batches atomic.Int64
		hmu          sync.Mutex
		hlat         []time.Duration
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				if _, err := s.CreateEntities(as("heavy"), heavyEntities(int(seq.Add(1)))); err != nil {
					b.Error(err)
					return
				}
				hmu.Lock()
				hlat = append(hlat, time.Since(t0))
				hmu.Unlock()
				batches.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := s.CreateEntities(as("calm"), []Entity{benchEntity("calm", i)}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	ms := func(ds []time.Duration, p float64) float64 {
		slices.Sort(ds)
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(lat, 0.5), "p50_ms")
	b.ReportMetric(ms(lat, 0.99), "p99_ms")
	b.ReportMetric(ms(lat, 1), "max_ms")
	b.ReportMetric(float64(batches.Load()), "heavy_batches")
	b.ReportMetric(ms(hlat, 0.5), "heavy_p50_ms")
	b.ReportMetric(ms(hlat, 0.99), "heavy_p99_ms")
}
