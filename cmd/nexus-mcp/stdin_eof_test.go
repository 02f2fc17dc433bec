package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// pipedSession runs the real server binary with lines written to a real
// pipe that is closed right after them (printf ... | nexus-mcp serve), and
// returns every JSON-RPC message it wrote, keyed by id, and its stderr.
func pipedSession(t *testing.T, db string, lines []string, extra ...string) (map[string]map[string]any, string) {
	t.Helper()
	cmd := serverCommand(t, nil, append([]string{"serve", "--db", db}, extra...)...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = r
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			t.Fatal(err)
		}
	}
	w.Close() // EOF right behind the last request
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exit: %v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("server did not exit after EOF\nstderr: %s", stderr.String())
	}
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", sc.Text())
		}
		if id, ok := m["id"]; ok {
			out[fmt.Sprint(id)] = m
		}
	}
	return out, stderr.String()
}

const (
	pipeInit        = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}`
	pipeInitialized = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
)

func pipeCall(id int, tool string, args string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, args)
}

// TestStdinEOFFinishesInFlightCalls: closing stdin right after the requests
// (a shell pipe) still answers every one of them, from the tool itself.
func TestStdinEOFFinishesInFlightCalls(t *testing.T) {
	db := memtest.DSN(t)
	lines := []string{pipeInit, pipeInitialized,
		pipeCall(2, "create_entities", `{"entities":[{"name":"piped","entityType":"test","observations":["via a pipe"]}]}`),
		`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
	}
	for i := range 8 {
		lines = append(lines, pipeCall(10+i, "search_nodes", `{"query":"piped"}`))
	}
	got, stderr := pipedSession(t, db, lines)
	want := []string{"1", "2", "3"}
	for i := range 8 {
		want = append(want, fmt.Sprint(10+i))
	}
	for _, id := range want {
		m, ok := got[id]
		switch {
		case !ok:
			t.Errorf("request %s: no answer after EOF\nstderr: %s", id, stderr)
		case m["error"] != nil:
			t.Errorf("request %s answered %v, want a result\nstderr: %s", id, m["error"], stderr)
		case m["result"].(map[string]any)["isError"] == true:
			t.Errorf("request %s: tool error %v", id, m["result"])
		}
	}
	if strings.Contains(stderr, "context canceled") {
		t.Errorf("stderr mentions a cancelled context:\n%s", stderr)
	}
	// control: what was written through the pipe is in the database
	out := mustCLI(t, "--db", db, "export", "--tenant", "default")
	if !strings.Contains(out, `"piped"`) {
		t.Errorf("export after the piped session = %q, want the piped entity", out)
	}
}
