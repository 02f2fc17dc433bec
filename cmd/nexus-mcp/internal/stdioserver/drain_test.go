package stdioserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStdioDrainWaitsForAnswers: after stdin ends, the input Listen reads
// ends only once every forwarded request is answered; a request never
// answered holds it for the shutdown timeout only.
func TestStdioDrainWaitsForAnswers(t *testing.T) {
	for _, answered := range []bool{true, false} {
		var logs syncBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		d := newStdioDrain()
		stdin := strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}` + "\n" +
			`{"jsonrpc":"2.0","id":8,"method":"subscriptions/listen","params":{}}` + "\n") // a stream: not waited for
		timeout := time.Hour
		if !answered {
			timeout = 50 * time.Millisecond
		}
		in := d.reader(context.Background(), stdin, timeout, log)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(in)
			got <- b
		}()
		if answered {
			// nothing ends the input until the answer is written
			select {
			case b := <-got:
				t.Fatalf("input ended before the answer: %q", b)
			case <-time.After(100 * time.Millisecond):
			}
			var out bytes.Buffer
			if _, err := d.writer(&out).Write([]byte(`{"jsonrpc":"2.0","id":7,"result":{}}` + "\n")); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case b := <-got:
			if n := strings.Count(string(b), "\n"); n != 2 {
				t.Errorf("answered=%v: Listen read %d lines, want 2", answered, n)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("answered=%v: input did not end", answered)
		}
		wantLog := "every request answered"
		if !answered {
			wantLog = "requests still running after --shutdown-timeout are cancelled\" requests=1"
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), wantLog) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), wantLog) {
			t.Errorf("answered=%v: log %q, want %q", answered, logs.String(), wantLog)
		}
	}
}

// syncBuffer is a log buffer the drain's goroutines write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
