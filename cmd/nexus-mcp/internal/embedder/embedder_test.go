package embedder

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a loopback OpenAI-compatible embeddings endpoint with
// deterministic vectors (hashed bag of words) that can fail, stall and
// answer the wrong dimension.
type fakeServer struct {
	*httptest.Server
	dim int

	mu       sync.Mutex
	failNext int    // answer 503 to this many requests
	status   int    // answer this status to every request (0: 200)
	stall    bool   // hold every request until its client gives up
	wrongDim bool   // answer dim+1 components
	auth     string // the last Authorization header
	batches  []int  // inputs per request
}

func newFake(t *testing.T, dim int) *fakeServer {
	f := &fakeServer{dim: dim}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/embeddings" {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.auth = r.Header.Get("Authorization")
	f.batches = append(f.batches, len(req.Input))
	fail := f.failNext > 0
	if fail {
		f.failNext--
	}
	status, stall, dim := f.status, f.stall, f.dim
	if f.wrongDim {
		dim++
	}
	f.mu.Unlock()
	switch {
	case stall:
		<-r.Context().Done()
		return
	case fail:
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	case status != 0:
		http.Error(w, `{"error":"input too long"}`, status)
		return
	}
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	out := struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
		Model  string `json:"model"`
	}{Object: "list", Model: req.Model}
	// Reverse order: the client must place vectors by index.
	for i := len(req.Input) - 1; i >= 0; i-- {
		out.Data = append(out.Data, item{"embedding", i, bag(req.Input[i], dim)})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func bag(text string, dim int) []float32 {
	v := make([]float32, dim)
	for _, w := range strings.Fields(strings.ToLower(text)) {
		h := fnv.New32a()
		h.Write([]byte(w))
		v[h.Sum32()%uint32(dim)]++
	}
	v[0] += 0.5 // never all zero
	return v
}

// requests returns the inputs per request so far, and the last
// Authorization header.
func (f *fakeServer) requests() ([]int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...), f.auth
}

func (f *fakeServer) set(fn func(f *fakeServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return c
}

func TestEmbedBatchesInOrderWithKey(t *testing.T) {
	f := newFake(t, 8)
	c := newClient(t, Config{URL: f.URL + "/v1", Model: "m", APIKey: "sk-test", Batch: 2})
	texts := []string{"alpha", "beta", "gamma delta", "alpha", "epsilon"}
	vecs, err := c.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if want := bag(text, 8); !equal(vecs[i], want) {
			t.Errorf("vector %d (%q) = %v, want %v", i, text, vecs[i], want)
		}
	}
	got, auth := f.requests()
	if len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 1 {
		t.Errorf("batches = %v, want [2 2 1]", got)
	}
	if auth != "Bearer sk-test" {
		t.Errorf("Authorization = %q, want the key as a bearer token", auth)
	}
	if d := c.Describe(); strings.Contains(d, "sk-test") || !strings.Contains(d, "model m") {
		t.Errorf("Describe() = %q, want the endpoint and model, never the key", d)
	}
	if c.Dimensions() != 8 {
		t.Errorf("Dimensions() = %d, want 8 learned", c.Dimensions())
	}
}

func TestEndpointURL(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"http://h:11434", "http://h:11434/v1/embeddings", true},
		{"http://h:11434/v1", "http://h:11434/v1/embeddings", true},
		{"https://api.example.com/v1/", "https://api.example.com/v1/embeddings", true},
		{"http://h/openai/v1/embeddings", "http://h/openai/v1/embeddings", true},
		{"ftp://h", "", false},
		{"http://user:secret@h/v1", "", false},
		{"localhost:8080", "", false},
	} {
		got, err := endpointURL(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("endpointURL(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("endpointURL(%q) error %q shows the password", c.in, err)
		}
	}
}

func TestEmbedRetriesThenSucceeds(t *testing.T) {
	f := newFake(t, 4)
	f.set(func(f *fakeServer) { f.failNext = 2 })
	c := newClient(t, Config{URL: f.URL, Model: "m", Retries: 2, Backoff: time.Millisecond})
	if _, err := c.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatalf("Embed after two 503s with 2 retries = %v, want success", err)
	}
	// Negative: one retry is not enough for two failures.
	f.set(func(f *fakeServer) { f.failNext = 2 })
	c = newClient(t, Config{URL: f.URL, Model: "m", Retries: 1, Backoff: time.Millisecond})
	var se *StatusError
	if _, err := c.Embed(context.Background(), []string{"x"}); !errors.As(err, &se) || se.Code != 503 || se.Permanent() {
		t.Fatalf("Embed after two 503s with 1 retry = %v, want a retryable HTTP 503", err)
	}
}

func TestEmbedRefusedInputIsPermanentAndNotRetried(t *testing.T) {
	f := newFake(t, 4)
	f.set(func(f *fakeServer) { f.status = http.StatusRequestEntityTooLarge })
	c := newClient(t, Config{URL: f.URL, Model: "m", Retries: 3, Backoff: time.Millisecond})
	var se *StatusError
	if _, err := c.Embed(context.Background(), []string{"x"}); !errors.As(err, &se) || !se.Permanent() {
		t.Fatalf("Embed refused with 413 = %v, want a permanent StatusError", err)
	}
	if got, _ := f.requests(); len(got) != 1 {
		t.Errorf("requests = %d, want 1 (a refused input is not retried)", len(got))
	}
}

func TestEmbedWrongDimensionRefused(t *testing.T) {
	f := newFake(t, 4)
	c := newClient(t, Config{URL: f.URL, Model: "m", Backoff: time.Millisecond})
	if _, err := c.Embed(context.Background(), []string{"x"}); err != nil { // learns 4
		t.Fatal(err)
	}
	f.set(func(f *fakeServer) { f.wrongDim = true })
	if _, err := c.Embed(context.Background(), []string{"y"}); !errors.Is(err, ErrDimension) {
		t.Fatalf("Embed answered with 5 dimensions after 4 = %v, want ErrDimension", err)
	}
	// A configured dimension is enforced from the first answer.
	c = newClient(t, Config{URL: f.URL, Model: "m", Dimensions: 4})
	if _, err := c.Embed(context.Background(), []string{"y"}); !errors.Is(err, ErrDimension) {
		t.Fatalf("Embed with --embedder-dimensions 4 answered 5 = %v, want ErrDimension", err)
	}
	f.set(func(f *fakeServer) { f.wrongDim = false })
	if _, err := c.Embed(context.Background(), []string{"y"}); err != nil {
		t.Fatalf("Embed with the right dimension = %v", err)
	}
}

// TestEmbedStallBoundedByTimeout: a provider that never answers costs at
// most the timeout per attempt; the error says it was a timeout.
func TestEmbedStallBoundedByTimeout(t *testing.T) {
	f := newFake(t, 4)
	f.set(func(f *fakeServer) { f.stall = true })
	c := newClient(t, Config{URL: f.URL, Model: "m", Timeout: 50 * time.Millisecond, Retries: 1, Backoff: time.Millisecond})
	_, err := c.Embed(context.Background(), []string{"x"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Embed against a stalled server = %v, want a deadline error", err)
	}
	if got, _ := f.requests(); len(got) != 2 {
		t.Errorf("attempts = %d, want 2 (the first and one retry)", len(got))
	}
	// Positive control: the same client works once the server answers.
	f.set(func(f *fakeServer) { f.stall = false })
	if _, err := c.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatalf("Embed after the stall = %v", err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
