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
	"log/slog"
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
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
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
	db       string
	logLevel string
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
	root.PersistentFlags().StringVar(&g.db, "db", "", "database file (default $XDG_DATA_HOME/nexus-mcp/nexus.db)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
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

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
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
