// Command nexus-mcp is an MCP server for agent memory and coordination: a
// knowledge graph compatible with @modelcontextprotocol/server-memory, over
// stdio (and streamable HTTP), on an embedded SQLite database.
//
// This package is the composition root: configuration from flags and
// environment, wiring, serving, signals, and the end-to-end tests.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set with -ldflags "-X main.version=..."; otherwise it comes
// from the module's build info.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi)
}

// versionOf is the version the build info names: the module version
// (`go install ...@v1.2.3` records v1.2.3), else the VCS revision a build
// from a checkout records, else "dev".
func versionOf(bi *debug.BuildInfo) string {
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	v := "dev+" + rev[:min(12, len(rev))]
	if modified == "true" {
		v += ".dirty"
	}
	return v
}

// exitError carries a process exit code and a one-line message for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			fmt.Fprintln(stderr, "nexus-mcp: "+ee.msg)
			return ee.code
		}
		fmt.Fprintln(stderr, "nexus-mcp: "+err.Error())
		return 1
	}
	return 0
}

// globalFlags are the flags every command shares.
type globalFlags struct {
	db             string
	logLevel       string
	logFormat      string // text or json
	logTenantNames bool   // tenant ids in logs as they are, not hashed
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globalFlags{}
	sf := &serveFlags{}
	serve := newServeCmd(g, sf, stdin, stdout, stderr)
	root := &cobra.Command{
		Use:           "nexus-mcp",
		Short:         "MCP server for agent memory and coordination",
		Long:          "nexus-mcp serves a knowledge graph and agent coordination tools over MCP.\nWithout a command it runs `serve` (stdio).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          serveArgs(sf),
		RunE:          serve.RunE,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd)
		},
	}
	root.PersistentFlags().StringVar(&g.db, "db", "", "database: a SQLite file path or a PostgreSQL URL postgres://... (default $XDG_DATA_HOME/nexus-mcp/nexus.db)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().BoolVar(&g.logTenantNames, "log-tenant-names", false, "write tenant ids into logs (default: an opaque short hash of each)")
	addServeFlags(root.Flags(), sf)
	root.AddCommand(serve, newTenantsCmd(g), newKeysCmd(g), newMembersCmd(g),
		newImportCmd(g), newExportCmd(g), newReindexCmd(g), newVersionCmd())
	root.AddCommand(newTrustCmd(g), newAuditCmd(g), newAgentsCmd(g)) // EATP trust (trust.go)
	return root
}

// flagsFromEnv sets every flag not given on the command line from
// NEXUS_<FLAG> (upper case, dashes as underscores), when that is set.
func flagsFromEnv(cmd *cobra.Command) error {
	var errs []error
	set := func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "NEXUS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			f.Changed = true
		}
	}
	cmd.Flags().VisitAll(set)
	cmd.InheritedFlags().VisitAll(set)
	return errors.Join(errs...)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "nexus-mcp", buildVersion())
			return err
		},
	}
}
