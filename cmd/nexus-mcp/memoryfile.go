package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// envMemoryFile is the reference server's setting naming its memory.jsonl.
const envMemoryFile = "MEMORY_FILE_PATH"

// importMemoryFile carries a reference server's configuration over: when
// MEMORY_FILE_PATH names an existing memory.jsonl, it is imported once into
// the tenant the stdio server serves (rc), on the first start with it; the
// file is only read. A file that cannot be imported stops the start: the
// user swapped the command expecting their memory, and an empty graph
// would hide that it is missing.
func importMemoryFile(ctx context.Context, store *memory.Store, rc tenancy.RequestContext, logger *slog.Logger) error {
	path := os.Getenv(envMemoryFile)
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) {
		return &exitError{code: 1, msg: fmt.Sprintf("%s %q is relative: the reference server resolved it inside its own package directory; "+
			"import that file with `nexus-mcp import --tenant %s FILE` and remove %s; refusing to start", envMemoryFile, path, rc.TenantID, envMemoryFile)}
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		logger.Info(envMemoryFile+" does not exist; nothing to import", "path", path)
		return nil
	case err != nil:
		return &exitError{code: 1, msg: fmt.Sprintf("%s %s: %v; refusing to start", envMemoryFile, path, err)}
	}
	entities, relations, _, err := parseJSONL(bytes.NewReader(b))
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("%s %s: %v; nothing imported; fix the file or remove %s; refusing to start", envMemoryFile, path, err, envMemoryFile)}
	}
	sum := sha256.Sum256(b)
	res, at, err := store.ImportOnce(tenancy.NewContext(ctx, rc), path, hex.EncodeToString(sum[:]), entities, relations)
	if err != nil {
		return fmt.Errorf("import %s %s: %w", envMemoryFile, path, err)
	}
	if at != "" {
		logger.Info(envMemoryFile+" was imported before; not importing it again", "path", path, "imported_at", at)
		return nil
	}
	logger.Info("imported "+envMemoryFile+" (the file is left as it is)", "path", path,
		"entities_created", res.EntitiesCreated, "observations_added", res.ObservationsAdded,
		"relations_created", res.RelationsCreated, "relations_skipped", len(res.DanglingRelations))
	return nil
}
