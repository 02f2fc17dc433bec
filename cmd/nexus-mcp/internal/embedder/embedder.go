// Package embedder is the HTTP client of an OpenAI-compatible embeddings
// endpoint (POST /v1/embeddings: OpenAI, Ollama, llama.cpp server, vLLM,
// LM Studio, Text Embeddings Inference, ...): batching, a timeout per
// attempt, retries with exponential backoff, and a dimension check.
//
// It imports the standard library only; the API key never appears in an
// error or a log line.
package embedder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultBatch   = 32
	DefaultTimeout = 30 * time.Second
	DefaultRetries = 3
	maxResponse    = 64 << 20
)

// StatusError is an answer with an HTTP error status.
type StatusError struct {
	Code int
	Body string // the start of the body, on one line
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("embedder: HTTP %d", e.Code)
	}
	return fmt.Sprintf("embedder: HTTP %d: %s", e.Code, e.Body)
}

// Permanent reports whether the endpoint refused the input itself (a 4xx
// other than 408 and 429), so that sending it again cannot succeed.
func (e *StatusError) Permanent() bool {
	return e.Code >= 400 && e.Code < 500 && e.Code != http.StatusRequestTimeout && e.Code != http.StatusTooManyRequests
}

// ErrDimension is returned when the endpoint answers with vectors of
// another dimension than the expected one.
var ErrDimension = errors.New("embedding dimension mismatch")

// Config configures a Client.
type Config struct {
	// URL is the endpoint: the full .../embeddings URL, or a base URL to
	// which /v1/embeddings (or /embeddings after a /v1 path) is appended.
	URL   string
	Model string
	// APIKey is sent as "Authorization: Bearer"; none when empty.
	APIKey string
	// Dimensions is the expected vector length; 0 learns it from the first
	// answer and holds every later answer to it.
	Dimensions int
	// Batch is the most texts per request (DefaultBatch when 0).
	Batch int
	// Timeout bounds one attempt (DefaultTimeout when 0).
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried (network
	// error, timeout, 429 or 5xx); DefaultRetries when 0, none when < 0.
	Retries int
	// Backoff is the wait before the first retry, doubling after each
	// (500 ms when 0).
	Backoff time.Duration
	// HTTPClient is the client; a new one when nil.
	HTTPClient *http.Client
}

// Client embeds texts through an OpenAI-compatible endpoint. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	endpoint string
	http     *http.Client

	mu  sync.Mutex
	dim int
}

// New checks cfg and returns its client. It does not contact the endpoint.
func New(cfg Config) (*Client, error) {
	if cfg.Model == "" {
		return nil, errors.New("embedder: a model name is required (--embedder-model)")
	}
	endpoint, err := endpointURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{cfg: cfg, endpoint: endpoint, http: hc, dim: cfg.Dimensions}, nil
}

func endpointURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("embedder: --embedder-url must be an http:// or https:// URL")
	}
	if u.User != nil {
		return "", errors.New("embedder: --embedder-url must not carry credentials; set NEXUS_EMBEDDER_API_KEY")
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/embeddings"):
	case strings.HasSuffix(p, "/v1"):
		p += "/embeddings"
	default:
		p += "/v1/embeddings"
	}
	u.Path = p
	return u.String(), nil
}

// Model is the model name sent with every request.
func (c *Client) Model() string { return c.cfg.Model }

// Describe names the embedder for the start-up line: host and path of the
// endpoint and the model, never the key or the query string.
func (c *Client) Describe() string {
	u, _ := url.Parse(c.endpoint)
	return fmt.Sprintf("%s://%s%s model %s", u.Scheme, u.Host, u.Path, c.cfg.Model)
}

// Dimensions is the vector length expected, 0 until known.
func (c *Client) Dimensions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dim
}

// Embed returns one vector per text, in order, in batches of at most
// Config.Batch texts. An input the endpoint refuses (4xx other than 408
// and 429) is a *StatusError whose Permanent is true; a vector of the wrong
// dimension, ErrDimension.
func (c *Client) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); start += c.cfg.Batch {
		part := texts[start:min(start+c.cfg.Batch, len(texts))]
		vecs, err := c.embedRetrying(ctx, part)
		if err != nil {
			return nil, err
		}
		out = append(out, vecs...)
	}
	return out, nil
}

func (c *Client) embedRetrying(ctx context.Context, texts []string) ([][]float32, error) {
	wait := c.cfg.Backoff
	for attempt := 0; ; attempt++ {
		vecs, retry, err := c.embedOnce(ctx, texts)
		if err == nil {
			return vecs, nil
		}
		if !retry || attempt >= c.cfg.Retries || ctx.Err() != nil {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait *= 2
	}
}

type request struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

type response struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// embedOnce makes one request; retry tells whether another attempt may
// succeed.
func (c *Client) embedOnce(ctx context.Context, texts []string) (vecs [][]float32, retry bool, err error) {
	body, err := json.Marshal(request{Model: c.cfg.Model, Input: texts})
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error names the endpoint and the cause; the key is in a
		// header, never in it.
		return nil, true, fmt.Errorf("embedder: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, true, fmt.Errorf("embedder: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		se := &StatusError{Code: resp.StatusCode, Body: snippet(raw)}
		return nil, !se.Permanent(), se
	}
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, true, fmt.Errorf("embedder: answer is not an embeddings response: %w", err)
	}
	if len(r.Data) != len(texts) {
		return nil, true, fmt.Errorf("embedder: %d vectors for %d inputs", len(r.Data), len(texts))
	}
	vecs = make([][]float32, len(texts))
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(texts) || vecs[d.Index] != nil {
			return nil, true, fmt.Errorf("embedder: bad or repeated index %d", d.Index)
		}
		if len(d.Embedding) == 0 {
			return nil, true, errors.New("embedder: empty vector")
		}
		vecs[d.Index] = d.Embedding
	}
	if err := c.checkDim(vecs); err != nil {
		return nil, false, err
	}
	return vecs, false, nil
}

// checkDim holds every vector to the expected dimension, learning it from
// the first answer when it was not configured.
func (c *Client) checkDim(vecs [][]float32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := c.dim
	if want == 0 {
		want = len(vecs[0])
	}
	for _, v := range vecs {
		if len(v) != want {
			return fmt.Errorf("embedder: model %s answered a %d-dimensional vector, want %d: %w", c.cfg.Model, len(v), want, ErrDimension)
		}
	}
	c.dim = want
	return nil
}

// snippet is the start of an error body, on one line, for the log.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
