package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
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
		stopProfile := profileServer()
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stopProfile()
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// profileServer writes a CPU profile of this server process to
// $NEXUS_E2E_CPUPROFILE_DIR/cpu-<pid>.pprof when that is set (go test's
// -cpuprofile profiles the client side only), for example
//
//	NEXUS_E2E_CPUPROFILE_DIR=/tmp/prof NEXUS_LOCOMO_DIR=../shared/eval/locomo-dev \
//		go test -run '^$' -bench Recall -o /tmp/prof/nexus.test ./cmd/nexus-mcp
//	go tool pprof /tmp/prof/nexus.test /tmp/prof/cpu-*.pprof
//
// It returns the function that ends the profile.
func profileServer() func() {
	dir := os.Getenv("NEXUS_E2E_CPUPROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", os.Getpid())))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "NEXUS_E2E_CPUPROFILE_DIR: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// runCLI runs the CLI in-process and returns stdout, stderr and the exit code.
func runCLI(t testing.TB, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, errs, code := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("nexus-mcp %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}
