package memory

import (
	"io/fs"
	"path"
	"slices"
	"testing"
)

// TestMigrationTreesMatch: the SQLite and PostgreSQL migration trees have
// the same files, so a migration added to one tree only fails here.
func TestMigrationTreesMatch(t *testing.T) {
	names := func(dir string) []string {
		t.Helper()
		files, err := fs.Glob(migrationFS, dir+"/*.sql")
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			files[i] = path.Base(f)
		}
		slices.Sort(files)
		return files
	}
	lite, pg := names("migrations"), names("migrations/postgres")
	if len(lite) < 9 {
		t.Fatalf("migrations = %v, want at least 0001-0012", lite)
	}
	if !slices.Equal(lite, pg) {
		t.Errorf("migration files differ:\nsqlite:   %v\npostgres: %v", lite, pg)
	}
}
