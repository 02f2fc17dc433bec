package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/stdioserver"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

type serveFlags struct {
	graphBudget int
	toolsets    string     // --toolsets: comma-separated tools.Toolsets names, or all
	readOnly    bool       // --read-only: only tools with the read-only hint
	agentScope  string     // --agent-scope: memory.AgentScopeGlobal or memory.AgentScopeTenant
	http        httpFlags  // --http and the flags of the HTTP transport (http.go)
	trust       trustFlags // --eatp-* and --a2a-allow-hosts (trust.go)
	embed       embedFlags // --embedder-* (embed.go)
	// mcpOptions are extra mcp-go options appended when the server is
	// built; tests set them (nothing on the command line does).
	mcpOptions []server.ServerOption
}

func addServeFlags(fs *pflag.FlagSet, sf *serveFlags) {
	fs.IntVar(&sf.graphBudget, "graph-budget", tools.DefaultGraphBudget,
		"largest tool answer in bytes (structured content and text together); larger answers are paged")
	fs.StringVar(&sf.toolsets, "toolsets", "all",
		"comma-separated toolsets to expose: "+strings.Join(tools.ToolsetNames(), ", ")+", or all")
	fs.BoolVar(&sf.readOnly, "read-only", false, "expose only the tools that change nothing (readOnlyHint)")
	fs.StringVar(&sf.agentScope, "agent-scope", memory.AgentScopeGlobal,
		"agent registry scope: global (agent ids shared across tenants, owned by the registering tenant) or tenant (private per tenant)")
	addHTTPFlags(fs, &sf.http)
	addTrustFlags(fs, &sf.trust)
	addEmbedFlags(fs, &sf.embed)
}

func newServeCmd(g *globalFlags, sf *serveFlags, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve MCP over stdio (the default command), or streamable HTTP with --http",
		Long: "Serve MCP over stdio. With NEXUS_API_KEY set, every request runs as that key's tenant and user;\n" +
			"without it, local single-user mode (tenant \"default\").\n" +
			"With --http [ADDR] (default " + defaultHTTPAddr + "), serve streamable HTTP at /mcp instead,\n" +
			"authenticating every request (API keys, JWT, legacy key).",
		Args: serveArgs(sf),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := tools.ParseToolsets(sf.toolsets); err != nil {
				return &exitError{code: 2, msg: "--toolsets: " + err.Error()}
			}
			if sf.http.addr != "" {
				return serveHTTP(cmd.Context(), g, sf, stderr)
			}
			return serveStdio(cmd.Context(), g, sf, stdin, stdout, stderr)
		},
	}
	addServeFlags(cmd.Flags(), sf)
	return cmd
}

// openServeStore opens the store for serving, with the serve flags that
// configure it (--agent-scope), creating a SQLite file that does not exist
// (logged) unless create is false.
func openServeStore(ctx context.Context, g *globalFlags, sf *serveFlags, logger *slog.Logger, create bool) (*memory.Store, error) {
	var created func(string)
	if create {
		created = func(path string) { logger.Info("created database", "db", path) }
	}
	return openStoreWith(ctx, g, memory.Options{AgentScope: sf.agentScope}, created)
}

// dbPath is the database --db names, or the default path.
func dbPath(g *globalFlags) (string, error) {
	if g.db != "" {
		return g.db, nil
	}
	return memory.DefaultPath()
}

// openStoreWith opens the database. A SQLite file that does not exist is
// created only when created is not nil, which is then called with its path;
// otherwise it is refused with a message naming the path and what creates
// it. PostgreSQL URLs are opened as they are.
func openStoreWith(ctx context.Context, g *globalFlags, opts memory.Options, created func(path string)) (*memory.Store, error) {
	path, err := dbPath(g)
	if err != nil {
		return nil, err
	}
	isNew := false
	if !memory.IsPostgresURL(path) {
		_, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && created == nil:
			return nil, &exitError{code: 1, msg: fmt.Sprintf(
				"database %s does not exist (check --db or NEXUS_DB); `nexus-mcp serve`, `nexus-mcp import` or `nexus-mcp tenants create` create one", path)}
		case errors.Is(err, fs.ErrNotExist):
			isNew = true
		case err != nil:
			return nil, fmt.Errorf("database %s: %w", path, err)
		}
	}
	s, err := memory.Open(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	if isNew {
		created(path)
	}
	return s, nil
}

// stdioIdentity decides the identity of every request of a stdio server,
// once, at start-up: the key in NEXUS_API_KEY, or local single-user mode.
// Revocation, expiry and the kill switch are checked again on every call
// (stdioRecheck).
func stdioIdentity(ctx context.Context, store *memory.Store, logger *slog.Logger) (tenancy.RequestContext, error) {
	key := os.Getenv("NEXUS_API_KEY")
	if key == "" {
		if err := store.EnsureTenant(ctx, tenancy.DefaultTenant); err != nil {
			return tenancy.RequestContext{}, err
		}
		t, err := store.Tenant(ctx, tenancy.DefaultTenant)
		if err != nil {
			return tenancy.RequestContext{}, err
		}
		if t.Disabled {
			return tenancy.RequestContext{}, &exitError{code: 1, msg: "tenant \"default\" is disabled"}
		}
		logger.Info("NEXUS_API_KEY not set: local single-user mode, tenant \"default\"")
		return tenancy.RequestContext{TenantID: tenancy.DefaultTenant, AuthMethod: tenancy.AuthLocal, Scopes: tenancy.AllScopes}, nil
	}
	rc, _, err := tenancy.VerifyAPIKey(ctx, store, key, time.Now())
	switch {
	case errors.Is(err, tenancy.ErrUnauthenticated):
		return rc, &exitError{code: 1, msg: "NEXUS_API_KEY is not a valid key in database " + store.Location() + " (unknown, revoked or expired); refusing to start"}
	case errors.Is(err, tenancy.ErrForbidden):
		return rc, &exitError{code: 1, msg: "the tenant of NEXUS_API_KEY is disabled in database " + store.Location() + "; refusing to start"}
	case err != nil:
		return rc, fmt.Errorf("verify NEXUS_API_KEY: %w", err)
	}
	return rc, nil
}

// stdioRecheck verifies the stdio server's credential again before each
// tool call and resource read, so that keys revoke, key expiry and tenants
// disable reach a running server on its next call. It reads the database
// every time (one indexed lookup, about 20 µs on SQLite); no cache.
func stdioRecheck(store *memory.Store, rc tenancy.RequestContext) func(context.Context) error {
	key := os.Getenv("NEXUS_API_KEY")
	return func(ctx context.Context) error {
		return tenancy.Recheck(ctx, store, store, key, rc, time.Now())
	}
}

// newMCPServer builds the MCP server with every tool and resource; extra
// options (metrics, test recorders) come after the handlers' own. recheck
// is tools.Deps.Recheck (nil over HTTP, which verifies every request).
func newMCPServer(store *memory.Store, logger *slog.Logger, sf *serveFlags, recheck func(context.Context) error, extra ...server.ServerOption) *server.MCPServer {
	toolsets, _ := tools.ParseToolsets(sf.toolsets) // checked at start-up
	h := tools.New(tools.Deps{Store: store, Logger: logger, GraphBudget: sf.graphBudget, AgentScope: store.AgentScope(),
		MaxDepth: sf.trust.maxDepth, A2AAllowHosts: sf.trust.a2aAllowHosts, A2ATimeout: sf.trust.a2aTimeout,
		Toolsets: toolsets, ReadOnly: sf.readOnly, Embedder: sf.embed.queryEmbedder(), Recheck: recheck})
	opts := append(h.ServerOptions(), sf.mcpOptions...)
	opts = append(opts, tools.CallLog(logger))
	s := server.NewMCPServer("nexus-mcp", buildVersion(), append(opts, extra...)...)
	h.Register(s)
	return s
}

func serveStdio(ctx context.Context, g *globalFlags, sf *serveFlags, stdin io.Reader, stdout, stderr io.Writer) error {
	logger, err := newLogger(stderr, g)
	if err != nil {
		return err
	}
	// A key can only be valid in a database that exists: with one, a
	// missing file is a mistyped --db, not a new database.
	store, err := openServeStore(ctx, g, sf, logger, os.Getenv("NEXUS_API_KEY") == "")
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := sf.trust.validate(); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	if sf.http.shutdownTimeout <= 0 {
		return &exitError{code: 1, msg: "--shutdown-timeout must be positive"}
	}
	defer startTrustSweep(ctx, store, logger, sf.trust.sweepInterval)()
	rc, err := stdioIdentity(ctx, store, logger)
	if err != nil {
		return err
	}
	if err := importMemoryFile(ctx, store, rc, logger); err != nil {
		return err
	}
	if err := sf.embed.setup(logger); err != nil {
		return err
	}
	defer sf.embed.startIndexer(ctx, store, logger)()
	logger.Info("nexus-mcp starting", "version", buildVersion(), "db", store.Location(),
		"tenant", rc.TenantID, "user", rc.UserID, "transport", "stdio")

	s := newMCPServer(store, logger, sf, stdioRecheck(store, rc))
	return stdioserver.Serve(ctx, s, rc, stdin, stdout, stderr, sf.http.shutdownTimeout, logger)
}
