package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/embedder"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

// envEmbedderAPIKey holds the embedder's API key; it is never a flag, so it
// never shows in a process list, and never logged.
const envEmbedderAPIKey = "NEXUS_EMBEDDER_API_KEY"

// embedFlags configure semantic search (--embedder-*).
type embedFlags struct {
	url        string
	model      string
	dimensions int
	batch      int
	timeout    time.Duration

	// indexer overrides the indexer's options (tests shorten the waits).
	indexer memory.IndexerOptions
	// client is the embedder built by setup, nil without --embedder-url.
	client *embedder.Client
}

func addEmbedFlags(fs *pflag.FlagSet, f *embedFlags) {
	fs.StringVar(&f.url, "embedder-url", "",
		"OpenAI-compatible embeddings endpoint for semantic search, e.g. http://localhost:11434/v1 (Ollama); key from "+envEmbedderAPIKey)
	fs.StringVar(&f.model, "embedder-model", "", "embedding model name sent to --embedder-url")
	fs.IntVar(&f.dimensions, "embedder-dimensions", 0, "expected vector length (0: learned from the first answer)")
	fs.IntVar(&f.batch, "embedder-batch", embedder.DefaultBatch, "texts per embeddings request")
	fs.DurationVar(&f.timeout, "embedder-timeout", embedder.DefaultTimeout, "timeout of one embeddings request")
}

// setup builds the embedder client from the flags (nil without
// --embedder-url) and logs the one start-up line naming it.
func (f *embedFlags) setup(logger *slog.Logger) error {
	if f.url == "" {
		if f.model != "" {
			return &exitError{code: 1, msg: "--embedder-model needs --embedder-url"}
		}
		logger.Info("semantic search off: no --embedder-url; search_entities hybrid uses word ranking only")
		return nil
	}
	c, err := embedder.New(embedder.Config{URL: f.url, Model: f.model, APIKey: os.Getenv(envEmbedderAPIKey),
		Dimensions: f.dimensions, Batch: f.batch, Timeout: f.timeout})
	if err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	f.client = c
	logger.Info("semantic search on: embedder "+c.Describe(), "api_key_set", os.Getenv(envEmbedderAPIKey) != "")
	return nil
}

// queryEmbedder is the client as the tools see it: nil (not a typed nil)
// without an embedder.
func (f *embedFlags) queryEmbedder() tools.QueryEmbedder {
	if f.client == nil {
		return nil
	}
	return f.client
}

// startIndexer runs the embedding indexer until ctx ends or stop is
// called; nothing without an embedder.
func (f *embedFlags) startIndexer(ctx context.Context, store *memory.Store, logger *slog.Logger) (stop func()) {
	if f.client == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	opts := f.indexer
	opts.Batch = f.batch
	opts.Logger = logger
	go func() {
		defer close(done)
		store.RunIndexer(ctx, f.client, opts)
	}()
	return func() { cancel(); <-done }
}

func newReindexCmd(g *globalFlags) *cobra.Command {
	var (
		tenant string
		ef     embedFlags
	)
	cmd := &cobra.Command{
		Use:   "reindex [--tenant T] --embedder-url URL --embedder-model NAME",
		Short: "Re-embed every entity (of one tenant, or all) for semantic search, e.g. after changing the model",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ef.url == "" {
				return &exitError{code: 1, msg: "reindex needs --embedder-url and --embedder-model (or NEXUS_EMBEDDER_URL and NEXUS_EMBEDDER_MODEL)"}
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if err := ef.setup(logger); err != nil {
				return err
			}
			return withStore(cmd, g, func(s *memory.Store) error {
				return reindex(cmd, s, ef.client, tenant, ef.batch, logger)
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant (default: every tenant)")
	addEmbedFlags(cmd.Flags(), &ef)
	return cmd
}

// reindex queues every entity of tenant ("" for all) and embeds until
// none of them is queued.
func reindex(cmd *cobra.Command, s *memory.Store, c *embedder.Client, tenant string, batch int, logger *slog.Logger) error {
	ctx := cmd.Context()
	probe, err := c.Embed(ctx, []string{"dimension probe"})
	if err != nil {
		return fmt.Errorf("embedder %s: %w", c.Describe(), err)
	}
	n, err := s.QueueForEmbedding(ctx, tenant, c.Model(), len(probe[0]), true)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "reindex: %d entities queued\n", n)
	done, last := 0, -1
	opts := memory.IndexerOptions{Batch: batch, Tenant: tenant, Logger: logger}
	for {
		k, err := s.IndexPending(ctx, c, opts)
		done += k
		if err != nil {
			left, _ := s.EmbedQueueLen(ctx, tenant)
			return fmt.Errorf("reindex stopped after %d vectors (%d entities stay queued; a serving process with this embedder finishes them): %w", done, left, err)
		}
		left, err := s.EmbedQueueLen(ctx, tenant)
		if err != nil {
			return err
		}
		if left == 0 || (k == 0 && left == last) {
			fmt.Fprintf(cmd.OutOrStdout(), "reindexed: %d vectors stored with model %s (%d dimensions), %d entities queued\n",
				done, c.Model(), len(probe[0]), left)
			return nil
		}
		if done%1000 < k {
			fmt.Fprintf(cmd.ErrOrStderr(), "reindex: %d vectors\n", done)
		}
		last = left
	}
}
