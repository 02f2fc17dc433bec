package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

const referenceJSONL = `{"type":"entity","name":"Ada","entityType":"person","observations":["writes programs"]}
{"type":"entity","name":"Engine","entityType":"machine","observations":[]}
{"type":"relation","from":"Ada","to":"Engine","relationType":"programs"}
`

// graphOverPipe starts the real server with env, reads the graph through
// stdin (closed after the requests) and returns the entity names and stderr.
func graphOverPipe(t *testing.T, db string, env []string, calls ...string) ([]string, string, int) {
	t.Helper()
	lines := append([]string{pipeInit, pipeInitialized}, calls...)
	lines = append(lines, pipeCall(99, "read_graph", `{}`))
	stdout, stderr, code := runExe(t, env, strings.Join(lines, "\n")+"\n", "serve", "--db", db)
	var names []string
	for _, l := range strings.Split(stdout, "\n") {
		var m struct {
			ID     int `json:"id"`
			Result struct {
				StructuredContent struct {
					Entities []struct{ Name string } `json:"entities"`
				} `json:"structuredContent"`
			} `json:"result"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.ID == 99 {
			for _, e := range m.Result.StructuredContent.Entities {
				names = append(names, e.Name)
			}
		}
	}
	return names, stderr, code
}

// TestMemoryFilePathCarriesOver: a reference server's config (with
// MEMORY_FILE_PATH) swapped to nexus-mcp starts on the user's graph,
// imported once; the file is left as it is.
func TestMemoryFilePathCarriesOver(t *testing.T) {
	db := memtest.DSN(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.jsonl")
	if err := os.WriteFile(file, []byte(referenceJSONL), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"MEMORY_FILE_PATH=" + file}

	// control: without MEMORY_FILE_PATH the graph is empty
	if names, stderr, code := graphOverPipe(t, db, nil); code != 0 || len(names) != 0 {
		t.Fatalf("without MEMORY_FILE_PATH: exit %d, entities %v, stderr %s", code, names, stderr)
	}
	names, stderr, code := graphOverPipe(t, db, env)
	if code != 0 || strings.Join(names, ",") != "Ada,Engine" {
		t.Fatalf("first start with MEMORY_FILE_PATH: exit %d, entities %v, stderr %s", code, names, stderr)
	}
	if !strings.Contains(stderr, `msg="imported MEMORY_FILE_PATH (the file is left as it is)" path=`+file+` entities_created=2 observations_added=1 relations_created=1 relations_skipped=0`) {
		t.Errorf("first start stderr = %s, want the import logged", stderr)
	}
	// delete one entity (calls on one pipe run concurrently: the deletion
	// is checked by the next start); the next start must not bring it back
	_, stderr, code = graphOverPipe(t, db, env, pipeCall(5, "delete_entities", `{"entityNames":["Engine"]}`))
	if code != 0 || !strings.Contains(stderr, `msg="MEMORY_FILE_PATH was imported before; not importing it again" path=`+file) {
		t.Errorf("second start: exit %d, stderr = %s, want the earlier import named", code, stderr)
	}
	names, _, _ = graphOverPipe(t, db, env)
	if strings.Join(names, ",") != "Ada" {
		t.Errorf("third start: entities %v, want the deletion kept", names)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != referenceJSONL {
		t.Errorf("memory.jsonl changed: %q, %v", b, err)
	}

	// a file that cannot be imported stops the start with one line
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(referenceJSONL+"{not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ value, want string }{
		"malformed": {bad, "MEMORY_FILE_PATH " + bad + ": line 4: "},
		"relative":  {"memory.jsonl", `MEMORY_FILE_PATH "memory.jsonl" is relative`},
	} {
		_, stderr, code := runExe(t, []string{"MEMORY_FILE_PATH=" + tc.value}, "", "serve", "--db", db, "--log-level", "warn")
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || !strings.HasSuffix(lines[0], "refusing to start") {
			t.Errorf("%s MEMORY_FILE_PATH: exit %d, stderr %q, want one line with %q", name, code, stderr, tc.want)
		}
	}
	// a file that does not exist (yet) is not an error, as in the reference
	if _, stderr, code := runExe(t, []string{"MEMORY_FILE_PATH=" + filepath.Join(dir, "none.jsonl")}, "", "serve", "--db", db); code != 0 ||
		!strings.Contains(stderr, "MEMORY_FILE_PATH does not exist; nothing to import") {
		t.Errorf("missing MEMORY_FILE_PATH file: exit %d, stderr %s", code, stderr)
	}
}

// TestImportDefaultOnFreshDatabase: the README's migration works on a new
// database, from a file and from stdin.
func TestImportDefaultOnFreshDatabase(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.jsonl")
	if err := os.WriteFile(file, []byte(referenceJSONL), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "fresh.db")
	stdout, stderr, code := runExe(t, nil, "", "import", "--tenant", "default", file, "--db", db)
	want := "imported into default: 2 entities created, 1 observations added, 1 relations created, 0 relations skipped\n"
	if code != 0 || stdout != want || stderr != "nexus-mcp: created database "+db+"\n" {
		t.Fatalf("import on a fresh database: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	names, _, _ := graphOverPipe(t, db, nil)
	if strings.Join(names, ",") != "Ada,Engine" {
		t.Errorf("served graph after import = %v", names)
	}
	// import - reads stdin
	db2 := filepath.Join(dir, "stdin.db")
	stdout, stderr, code = runExe(t, nil, referenceJSONL, "import", "--tenant", "default", "-", "--db", db2)
	if code != 0 || stdout != want {
		t.Errorf("import - : exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// another tenant must exist: the message says how to create it
	_, stderr, code = runExe(t, nil, referenceJSONL, "import", "--tenant", "acme", "-", "--db", db2)
	if code != 1 || !strings.Contains(stderr, `tenant "acme" not found in database `+db2+"; create it with `nexus-mcp tenants create acme`") {
		t.Errorf("import into a missing tenant: exit %d, stderr %q", code, stderr)
	}
	out := mustCLI(t, "--db", db2, "export", "--tenant", "default")
	if !bytes.Contains([]byte(out), []byte(`"Ada"`)) {
		t.Errorf("export after import - = %q", out)
	}
}
