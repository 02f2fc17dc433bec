// Package stdioserver is nexus-mcp's stdio transport: mcp-go's stdio
// server with every request run as the identity the process was started
// with, and the input drained so that requests a client sent before
// closing stdin are answered (drain.go).
package stdioserver

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// workers is how many requests of the client run at once.
const workers = 16

// Serve serves s on stdin and stdout as rc until stdin ends or ctx ends
// (SIGTERM/SIGINT); either way the requests already read are answered
// first, for up to drainTimeout. mcp-go's own messages go to errLog;
// stdout carries the protocol only.
func Serve(ctx context.Context, s *server.MCPServer, rc tenancy.RequestContext, stdin io.Reader, stdout, errLog io.Writer,
	drainTimeout time.Duration, logger *slog.Logger) error {
	stdio := server.NewStdioServer(s)
	server.WithWorkerPoolSize(workers)(stdio)
	stdio.SetErrorLogger(log.New(errLog, "mcp-go: ", log.LstdFlags))
	stdio.SetContextFunc(func(ctx context.Context) context.Context {
		return tenancy.NewContext(ctx, rc)
	})
	// Listen cancels whatever is running once its input ends; the drain
	// ends that input only after in-flight requests are answered (or
	// drainTimeout), on EOF and on SIGTERM/SIGINT alike.
	drain := newStdioDrain()
	in := drain.reader(ctx, stdin, drainTimeout, logger)
	err := stdio.Listen(context.WithoutCancel(ctx), in, drain.writer(stdout))
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
