package stdioserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// stdioDrain lets the requests a stdio client sent finish when its input
// ends. mcp-go's StdioServer.Listen cancels every request still running as
// soon as it reads EOF, so `printf '<requests>' | nexus-mcp serve` (and a
// host that closes stdin right after its last call) got `internal error`
// for every call. stdioDrain stands between the process's stdin/stdout and
// Listen: it forwards stdin line by line through a pipe, counting the
// requests it forwards and the responses Listen writes, and on EOF (or
// SIGTERM/SIGINT) it holds the pipe open until every forwarded request is
// answered or the shutdown timeout passes; only then does Listen see EOF.
type stdioDrain struct {
	mu      sync.Mutex
	pending map[string]int // JSON-RPC id → requests forwarded and not yet answered
	n       int
	changed chan struct{} // closed and replaced whenever n drops
}

func newStdioDrain() *stdioDrain {
	return &stdioDrain{pending: map[string]int{}, changed: make(chan struct{})}
}

// rpcLine is what the drain reads of a JSON-RPC message.
type rpcLine struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		RequestID json.RawMessage `json:"requestId"`
	} `json:"params"`
}

// idKey is the canonical form of a JSON-RPC id, as mcp-go matches ids
// (mcp.RequestId), so that a request and its response match however each
// was spelled; "" for none or an invalid one.
func idKey(raw json.RawMessage) string {
	var id mcp.RequestId
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil || id.IsNil() {
		return ""
	}
	return id.String()
}

// longLived are requests that only end when cancelled: the drain does not
// wait for them.
var longLived = map[string]bool{string(mcp.MethodSubscriptionsListen): true}

// forwarded records one line read from the client.
func (d *stdioDrain) forwarded(line []byte) {
	var m rpcLine
	if json.Unmarshal(line, &m) != nil {
		return // mcp-go answers a parse error with a null id
	}
	switch {
	case m.Method == string(mcp.MethodNotificationCancelled):
		// a cancelled request may go unanswered
		d.done(idKey(m.Params.RequestID))
	case m.Method != "" && !longLived[m.Method]:
		if id := idKey(m.ID); id != "" {
			d.mu.Lock()
			d.pending[id]++
			d.n++
			d.mu.Unlock()
		}
	}
}

// done records the answer to request id.
func (d *stdioDrain) done(id string) {
	if id == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending[id] == 0 {
		return
	}
	d.pending[id]--
	if d.pending[id] == 0 {
		delete(d.pending, id)
	}
	d.n--
	close(d.changed)
	d.changed = make(chan struct{})
}

// wait returns the number of requests still unanswered when they are all
// answered (0) or ctx ends.
func (d *stdioDrain) wait(ctx context.Context) int {
	for {
		d.mu.Lock()
		n, ch := d.n, d.changed
		d.mu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n
		}
	}
}

// writer wraps the protocol output: every JSON-RPC response written
// through it answers its request. mcp-go writes one message per Write.
func (d *stdioDrain) writer(w io.Writer) io.Writer { return drainWriter{d: d, w: w} }

type drainWriter struct {
	d *stdioDrain
	w io.Writer
}

func (dw drainWriter) Write(p []byte) (int, error) {
	n, err := dw.w.Write(p)
	var m rpcLine
	if json.Unmarshal(p, &m) == nil && m.Method == "" {
		dw.d.done(idKey(m.ID))
	}
	return n, err
}

// reader returns the input Listen reads. It ends (EOF) once stdin has
// ended or ctx is done, and then every forwarded request is answered or
// timeout has passed.
func (d *stdioDrain) reader(ctx context.Context, stdin io.Reader, timeout time.Duration, log *slog.Logger) io.Reader {
	pr, pw := io.Pipe()
	inputEnded := make(chan error, 1)
	go func() {
		br := bufio.NewReader(stdin)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				d.forwarded(line)
				if _, werr := pw.Write(line); werr != nil {
					inputEnded <- werr
					return
				}
			}
			if err != nil {
				inputEnded <- err
				return
			}
		}
	}()
	go func() {
		why := "stdin closed"
		select {
		case err := <-inputEnded:
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				log.Warn("reading stdin failed", "err", err)
			}
		case <-ctx.Done():
			why = "shutting down"
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		if d.wait(wctx) == 0 {
			log.Debug(why+": every request answered", "timeout", timeout)
		} else {
			d.mu.Lock()
			n := d.n
			d.mu.Unlock()
			log.Warn(why+": requests still running after --shutdown-timeout are cancelled", "requests", n, "timeout", timeout)
		}
		pw.Close()
	}()
	return pr
}
