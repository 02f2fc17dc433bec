package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// TestMain re-runs the test binary as the nexus-mcp server when
// NEXUS_E2E_SERVER is set, so end-to-end tests drive the real server
// process without building it separately.
func TestMain(m *testing.M) {
	if os.Getenv("NEXUS_E2E_SERVER") == "1" {
		// the same signal handling as main, so tests can SIGTERM the server
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// runCLI runs the CLI in-process and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("nexus-mcp %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}
