package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// fakeEmbedServer is a loopback OpenAI-compatible embeddings endpoint.
// Its vectors are deterministic: component 0 is 1 for every text, and each
// distinct word gets a component of its own on first sight, so texts
// sharing no word have exactly the same similarity to any third text (the
// matrix oracle compares answers byte for byte). It can fail, and answer
// the wrong dimension.
type fakeEmbedServer struct {
	*httptest.Server
	dim int

	mu       sync.Mutex
	vocab    map[string]int
	fail     bool // answer 503
	wrongDim bool // answer dim+1 components
	requests int
	auth     string
}

const fakeEmbedDim = 4096

func newFakeEmbedServer(t testing.TB) *fakeEmbedServer {
	f := &fakeEmbedServer{dim: fakeEmbedDim, vocab: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEmbedServer) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if r.URL.Path != "/v1/embeddings" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	f.auth = r.Header.Get("Authorization")
	if f.fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	dim := f.dim
	if f.wrongDim {
		dim++
	}
	type item struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	var data []item
	for i, text := range req.Input {
		v := make([]float32, dim)
		v[0] = 1
		for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			k, ok := f.vocab[w]
			if !ok {
				k = 1 + len(f.vocab)%(f.dim-1)
				f.vocab[w] = k
			}
			v[k]++
		}
		data = append(data, item{i, v})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model})
}

func (f *fakeEmbedServer) set(fn func(*fakeEmbedServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// flags are the serve flags that point at f.
func (f *fakeEmbedServer) flags() []string {
	return []string{"--embedder-url=" + f.URL + "/v1", "--embedder-model=fake-embed"}
}

// env is f as environment variables of a stdio server.
func (f *fakeEmbedServer) env() []string {
	return []string{"NEXUS_EMBEDDER_URL=" + f.URL + "/v1", "NEXUS_EMBEDDER_MODEL=fake-embed"}
}

// waitIndexed waits until no entity of the database db is queued for
// embedding (the servers' indexers drained it), failing after 60 s.
func waitIndexed(t testing.TB, db string) {
	t.Helper()
	s, err := memory.Open(context.Background(), db, memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := s.EmbedQueueLen(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entities still queued for embedding after 60 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing after 60 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSemanticSearchEndToEnd drives the HTTP server with an embedder that
// goes down, answers the wrong dimension, and comes back: nothing written
// meanwhile is lost, the wrong dimension is refused and logged, and the
// start-up line names the embedder but never its key.
func TestSemanticSearchEndToEnd(t *testing.T) {
	emb := newFakeEmbedServer(t)
	t.Setenv(envEmbedderAPIKey, "sk-e2e-secret-key")
	emb.set(func(f *fakeEmbedServer) { f.fail = true })
	e := mxStartHTTPWith(t, memory.AgentScopeGlobal, func(sf *serveFlags) {
		sf.embed.indexer = memory.IndexerOptions{Idle: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	}, emb.flags()...)
	keys, _, _ := mxProvision(t, e.store)
	a, _ := mcpGoClient(t, e.url, bearer(keys["a1"]), false)

	mxMust(t, a, "create_entities", mxArgs("entities", []any{
		mxArgs("name", "harbor", "entityType", "place", "observations", []any{"boats sailing"}),
		mxArgs("name", "library", "entityType", "place", "observations", []any{"books reading"}),
	}))
	// Down: semantic is an error the model can act on; hybrid runs on words, labelled.
	if r := mxCall(a, "search_entities", mxArgs("query", "sailing", "searchType", "semantic")); !r.isErr || !strings.Contains(r.text, "embedder did not answer") {
		t.Fatalf("semantic with the embedder down = %s, want an isError about the embedder", r.body())
	}
	if r := mxCall(a, "search_entities", mxArgs("query", "sailing")); !r.ok() || !strings.Contains(r.sc, `"semantic":false`) || !strings.Contains(r.sc, "harbor") {
		t.Fatalf("hybrid with the embedder down = %s, want harbor by words, semantic false", r.body())
	}
	n, err := e.store.EmbedQueueLen(context.Background(), "")
	if err != nil || n != 2 {
		t.Fatalf("queued while the embedder is down = %d, %v; want 2", n, err)
	}

	// Wrong dimension: refused and logged, nothing stored, still queued.
	emb.set(func(f *fakeEmbedServer) { f.fail, f.wrongDim = false, false })
	waitIndexed(t, e.db) // the probe learns the dimension and the two are stored
	emb.set(func(f *fakeEmbedServer) { f.wrongDim = true })
	mxMust(t, a, "add_observations", mxArgs("observations", []any{mxArgs("entityName", "library", "contents", []any{"quiet study"})}))
	waitFor(t, "the wrong dimension logged", func() bool { return strings.Contains(e.logs.String(), "embedding dimension mismatch") })
	if n, _ := e.store.EmbedQueueLen(context.Background(), ""); n != 1 {
		t.Fatalf("queued after a wrong-dimension answer = %d, want 1 (library)", n)
	}
	// Recovery catches up.
	emb.set(func(f *fakeEmbedServer) { f.wrongDim = false })
	waitIndexed(t, e.db)
	r := mxCall(a, "search_entities", mxArgs("query", "quiet study", "searchType", "semantic"))
	var res struct {
		Semantic bool `json:"semantic"`
		Total    int  `json:"total"`
		Entities []struct {
			Name string `json:"name"`
		} `json:"entities"`
	}
	if err := json.Unmarshal([]byte(r.sc), &res); err != nil || !res.Semantic || res.Total != 2 || res.Entities[0].Name != "library" {
		t.Fatalf("semantic after recovery = %s, want library first of 2, semantic true", r.body())
	}

	logs := e.logs.String()
	if !strings.Contains(logs, "semantic search on: embedder "+emb.URL+"/v1/embeddings model fake-embed") {
		t.Errorf("no start-up line naming the embedder in:\n%.2000s", logs)
	}
	if strings.Contains(logs, "sk-e2e-secret-key") {
		t.Errorf("the embedder API key is in the log")
	}
	emb.mu.Lock()
	auth := emb.auth
	emb.mu.Unlock()
	if auth != "Bearer sk-e2e-secret-key" {
		t.Errorf("the embedder got Authorization %q, want the key from %s", auth, envEmbedderAPIKey)
	}
}

// TestReindexCommand: reindex re-embeds one tenant with a new model.
func TestReindexCommand(t *testing.T) {
	emb := newFakeEmbedServer(t)
	db := memtest.DSN(t)
	s, err := memory.Open(context.Background(), db, memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range []string{"ta", "tb"} {
		if err := s.CreateTenant(context.Background(), tn, ""); err != nil {
			t.Fatal(err)
		}
		ctx := tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: tn, AuthMethod: tenancy.AuthLocal})
		if _, err := s.CreateEntities(ctx, []memory.Entity{{Name: "x", EntityType: "t"}, {Name: "y", EntityType: "t"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	var out, errb strings.Builder
	code := run(context.Background(), append([]string{"reindex", "--db", db, "--tenant", "ta"}, emb.flags()...), strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("reindex = %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "reindexed: 2 vectors stored with model fake-embed (4096 dimensions), 0 entities queued") {
		t.Errorf("reindex output = %q", out.String())
	}
	s, err = memory.Open(context.Background(), db, memory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// tb was not reindexed: its two entities are still queued.
	if n, _ := s.EmbedQueueLen(context.Background(), "tb"); n != 2 {
		t.Errorf("tb queued = %d, want 2 (reindex --tenant ta leaves tb alone)", n)
	}
	if n, _ := s.EmbedQueueLen(context.Background(), "ta"); n != 0 {
		t.Errorf("ta queued = %d, want 0", n)
	}
	if code := run(context.Background(), []string{"reindex", "--db", db}, strings.NewReader(""), &out, &errb); code == 0 {
		t.Errorf("reindex without --embedder-url succeeded")
	}
}

// TestEmbedderFlagsRefused: a half or unsafe embedder configuration stops
// the server at start-up with a message naming the flag; the key never
// shows.
func TestEmbedderFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"model without url", []string{"--embedder-model=m"}, "--embedder-model needs --embedder-url"},
		{"url without model", []string{"--embedder-url=http://127.0.0.1:1/v1"}, "--embedder-model"},
		{"credentials in the url", []string{"--embedder-url=http://u:pw-secret@127.0.0.1:1/v1", "--embedder-model=m"}, "NEXUS_EMBEDDER_API_KEY"},
		{"not http", []string{"--embedder-url=file:///etc/passwd", "--embedder-model=m"}, "--embedder-url must be an http"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb strings.Builder
			args := append([]string{"serve", "--db", filepath.Join(t.TempDir(), "n.db")}, c.args...)
			code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), c.want) {
				t.Errorf("serve %v = %d, stderr %q; want a failure naming %q", c.args, code, errb.String(), c.want)
			}
			if strings.Contains(errb.String(), "pw-secret") {
				t.Errorf("stderr shows the URL's password: %q", errb.String())
			}
			if out.Len() != 0 {
				t.Errorf("stdout = %q, want nothing (the protocol stream)", out.String())
			}
		})
	}
}
