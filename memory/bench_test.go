package memory

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
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
