package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// runExe runs the real server binary (the test binary as nexus-mcp) and
// returns its stdout, stderr and exit code.
func runExe(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := serverCommand(t, env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestMissingDatabaseIsRefused: a mistyped --db never silently means an
// empty database. Read and admin commands refuse a file that does not
// exist, naming it, and create nothing; serve, import and tenants create
// create it and say so.
func TestMissingDatabaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo", "nexsu.db")
	for _, args := range [][]string{
		{"tenants", "list"},
		{"tenants", "disable", "acme"},
		{"tenants", "limit", "acme", "--rps", "1"},
		{"keys", "list", "--tenant", "acme"},
		{"keys", "create", "--tenant", "acme"},
		{"keys", "revoke", "k1"},
		{"members", "list", "--tenant", "acme"},
		{"export", "--tenant", "default"},
		{"audit", "verify"},
		{"audit", "list", "--tenant", "acme"},
		{"trust", "cleanup"},
		{"trust", "key", "create", "--tenant", "acme"},
		{"agents", "credential", "set", "--tenant", "acme", "--agent", "b"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, code := runExe(t, nil, "secret\n", append(args, "--db", typo)...)
			if code == 0 {
				t.Errorf("exit 0 on a missing database; stdout %q", stdout)
			}
			if !strings.Contains(stderr, "database "+typo+" does not exist") || !strings.Contains(stderr, "create one") {
				t.Errorf("stderr = %q, want the path and how to create one", stderr)
			}
			if _, err := os.Stat(filepath.Dir(typo)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was created (stat: %v)", filepath.Dir(typo), err)
			}
		})
	}

	// serve with a key: a key cannot be valid in a database that does not exist
	_, stderr, code := runExe(t, []string{"NEXUS_API_KEY=nxk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "", "serve", "--db", typo)
	if code != 1 || !strings.Contains(stderr, typo+" does not exist") {
		t.Errorf("serve with a key on a missing database: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Dir(typo)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve with a key created %s", filepath.Dir(typo))
	}

	// control: tenants create creates the database and says so; then the
	// commands above work on it
	db := filepath.Join(dir, "real", "nexus.db")
	stdout, stderr, code := runExe(t, nil, "", "tenants", "create", "acme", "--db", db)
	if code != 0 || stderr != "nexus-mcp: created database "+db+"\n" || stdout != "created tenant acme\n" {
		t.Fatalf("tenants create on a new database: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runExe(t, nil, "", "tenants", "list", "--db", db)
	if code != 0 || !strings.Contains(stdout, "acme") || stderr != "" {
		t.Errorf("tenants list on the created database: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// a second create says nothing about creating the database
	if _, stderr, code = runExe(t, nil, "", "tenants", "create", "beta", "--db", db); code != 0 || stderr != "" {
		t.Errorf("tenants create on an existing database: exit %d, stderr %q", code, stderr)
	}

	// serve (local mode) creates the database and logs it
	served := filepath.Join(dir, "served", "nexus.db")
	_, stderr, code = runExe(t, nil, "", "serve", "--db", served)
	if code != 0 || !strings.Contains(stderr, `msg="created database" db=`+served) {
		t.Errorf("serve on a new database: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(served); err != nil {
		t.Errorf("serve did not create %s: %v", served, err)
	}
}

// TestDatabaseErrorsNameTheDatabase: an invalid key and a file that is not
// a database are reported with the database they concern.
func TestDatabaseErrorsNameTheDatabase(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "nexus.db")
	mustCLI(t, "--db", db, "tenants", "create", "acme")
	good := strings.TrimSpace(mustCLI(t, "--db", db, "keys", "create", "--tenant", "acme"))
	other := filepath.Join(dir, "other.db")
	mustCLI(t, "--db", other, "tenants", "create", "acme")

	_, stderr, code := runExe(t, []string{"NEXUS_API_KEY=" + good}, "", "serve", "--db", other)
	want := "nexus-mcp: NEXUS_API_KEY is not a valid key in database " + other + " (unknown, revoked or expired); refusing to start\n"
	if code != 1 || stderr != want {
		t.Errorf("key of another database: exit %d, stderr %q, want %q", code, stderr, want)
	}
	// control: the key works with the database it lives in
	if _, stderr, code := runExe(t, []string{"NEXUS_API_KEY=" + good}, "", "serve", "--db", db, "--log-level", "warn"); code != 0 {
		t.Errorf("key of its own database: exit %d, stderr %q", code, stderr)
	}

	garbage := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runExe(t, nil, "", "tenants", "list", "--db", garbage)
	if code == 0 || !strings.HasPrefix(stderr, "nexus-mcp: database "+garbage+": ") || !strings.Contains(stderr, "not a database") {
		t.Errorf("tenants list on a non-database file: exit %d, stderr %q", code, stderr)
	}
}

// TestPostgresURLIsNotAFile: the existence check is for SQLite files only;
// a PostgreSQL database is used as it is.
func TestPostgresURLIsNotAFile(t *testing.T) {
	if os.Getenv(memtest.EnvPostgres) == "" {
		t.Skip("set " + memtest.EnvPostgres + " to run on PostgreSQL")
	}
	db := memtest.DSN(t)
	stdout, stderr, code := runExe(t, nil, "", "tenants", "list", "--db", db)
	if code != 0 || !strings.HasPrefix(stdout, "TENANT") || strings.Contains(stderr, "does not exist") {
		t.Errorf("tenants list on a fresh PostgreSQL schema: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
