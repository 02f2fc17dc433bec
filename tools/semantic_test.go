package tools

import (
	"context"
	"errors"
	"hash/fnv"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// fakeEmbedder is a deterministic query embedder (hashed bag of words) that
// can be made to fail.
type fakeEmbedder struct {
	mu   sync.Mutex
	fail bool
}

func (f *fakeEmbedder) Model() string { return "fake" }

func (f *fakeEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("connection refused")
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v := make([]float32, 32)
		for _, w := range strings.Fields(strings.ToLower(t)) {
			h := fnv.New32a()
			h.Write([]byte(w))
			v[h.Sum32()%32]++
		}
		out[i] = v
	}
	return out, nil
}

func (f *fakeEmbedder) setFail(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = b
}

// withEmbedder is ts's store served by handlers that have emb.
func withEmbedder(ts *testServer, emb QueryEmbedder) *testServer {
	h := New(Deps{Store: ts.store, Embedder: emb})
	srv := server.NewMCPServer("test", "0", h.ServerOptions()...)
	h.Register(srv)
	return &testServer{t: ts.t, srv: srv, store: ts.store}
}

func TestSearchEntitiesSemantic(t *testing.T) {
	plain := newTestServer(t)
	emb := &fakeEmbedder{}
	sem := withEmbedder(plain, emb)
	a, b := asUser("a", "", ""), asUser("b", "", "")
	runSteps(t, plain, []step{
		{"create", a, "create_entities", map[string]any{"entities": []map[string]any{
			{"name": "Harbor", "entityType": "place", "observations": []string{"boats and sailing"}},
			{"name": "Library", "entityType": "place", "observations": []string{"books"}},
		}}, `{}`, ""},
	})
	store := plain.store
	if _, err := store.IndexPending(context.Background(), emb, memory.IndexerOptions{}); err != nil {
		t.Fatal(err)
	}
	runSteps(t, plain, []step{
		{"semantic without an embedder names the flag", a, "search_entities", map[string]any{"query": "sailing", "searchType": "semantic"}, "", "--embedder-url"},
		{"hybrid without an embedder is word ranking, labelled", a, "search_entities", map[string]any{"query": "sailing"},
			`{"searchType":"hybrid","semantic":false,"total":1,"entities":[{"name":"Harbor"}]}`, ""},
	})
	runSteps(t, sem, []step{
		{"semantic ranks by vector", a, "search_entities", map[string]any{"query": "boats", "searchType": "semantic"},
			`{"searchType":"semantic","semantic":true,"total":2,"entities":[{"name":"Harbor"},{"name":"Library"}]}`, ""},
		{"hybrid fuses, labelled", a, "search_entities", map[string]any{"query": "books"},
			`{"searchType":"hybrid","semantic":true,"total":2,"entities":[{"name":"Library","matchedWords":1},{"name":"Harbor","matchedWords":0}]}`, ""},
		{"exact is unchanged", a, "search_entities", map[string]any{"query": "ailin", "searchType": "exact"},
			`{"semantic":false,"total":1,"entities":[{"name":"Harbor"}]}`, ""},
		{"other tenant sees no vectors", b, "search_entities", map[string]any{"query": "boats", "searchType": "semantic"},
			`{"semantic":true,"total":0,"entities":[]}`, ""},
	})
	emb.setFail(true)
	runSteps(t, sem, []step{
		{"semantic with a failing embedder is an error", a, "search_entities", map[string]any{"query": "boats", "searchType": "semantic"}, "", "embedder did not answer"},
		{"hybrid with a failing embedder says it ran on words", a, "search_entities", map[string]any{"query": "boats"},
			`{"semantic":false,"total":1,"entities":[{"name":"Harbor"}]}`, ""},
	})
}
