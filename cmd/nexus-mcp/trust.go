package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/httpserver"
	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

// EATP trust wiring: the serve flags, the expired-session sweep, and the
// CLI commands `trust`, `audit` and `agents credential`. The trust
// middleware of the HTTP edge is httpserver's.

// trustFlags are the EATP flags of serve.
type trustFlags struct {
	mode               string
	exempt             []string
	requireHumanOrigin bool
	maxDepth           int
	a2aAllowHosts      []string
	a2aTimeout         time.Duration
	sweepInterval      time.Duration
}

func addTrustFlags(fs *pflag.FlagSet, f *trustFlags) {
	fs.StringVar(&f.mode, "eatp-mode", string(delegation.DefaultMode), "EATP trust middleware on /mcp: disabled, permissive (verify and log) or enforcing (refuse)")
	fs.StringSliceVar(&f.exempt, "eatp-exempt", nil, "paths the trust middleware skips: exact (/x) or a prefix and below (/x/*)")
	fs.BoolVar(&f.requireHumanOrigin, "eatp-require-human-origin", false, "refuse (enforcing) requests without X-EATP-Human-Origin")
	fs.IntVar(&f.maxDepth, "eatp-max-depth", delegation.DefaultMaxDepth, "longest delegation chain accepted and prepared")
	fs.StringSliceVar(&f.a2aAllowHosts, "a2a-allow-hosts", nil, "hosts (host or host:port) call_agent_tool may connect to; none by default")
	fs.DurationVar(&f.a2aTimeout, "a2a-timeout", tools.DefaultA2ATimeout, "bound of one call_agent_tool round trip to the target agent")
	fs.DurationVar(&f.sweepInterval, "trust-sweep-interval", 10*time.Minute, "how often expired trust sessions are removed")
}

// validate checks the trust flags at start-up.
func (f *trustFlags) validate() (delegation.Mode, error) {
	mode, err := delegation.ParseMode(f.mode)
	if err != nil {
		return "", fmt.Errorf("--eatp-mode: %w", err)
	}
	if f.a2aTimeout <= 0 {
		return "", fmt.Errorf("--a2a-timeout must be positive")
	}
	if f.maxDepth < 1 || f.maxDepth > delegation.MaxChainEntries {
		return "", fmt.Errorf("--eatp-max-depth must be between 1 and %d", delegation.MaxChainEntries)
	}
	for _, p := range f.exempt {
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("--eatp-exempt %q: paths start with /", p)
		}
	}
	if f.sweepInterval <= 0 {
		return "", errors.New("--trust-sweep-interval must be positive")
	}
	return mode, nil
}

// startTrustSweep removes expired trust sessions every interval until ctx
// ends or the returned stop is called; stop waits for the sweeper to exit.
func startTrustSweep(ctx context.Context, store *memory.Store, logger *slog.Logger, interval time.Duration) (stop func()) {
	return httpserver.Every(context.WithoutCancel(ctx), interval, func(ctx context.Context) {
		n, err := store.DeleteExpiredTrustSessions(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("trust session sweep failed", "err", err)
		case n > 0:
			logger.Info("removed expired trust sessions", "count", n)
		}
	})
}

// cliContext acts as tenant for an administrative command, with an audit
// intent naming the command, so the change is audited in its transaction.
func cliContext(ctx context.Context, tenant, command string) context.Context {
	ctx = tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: tenant, AuthMethod: tenancy.AuthLocal})
	return memory.WithAudit(ctx, memory.AuditIntent{Tool: "cli:" + command})
}

// readSecretLine reads one non-empty line (a final newline is dropped) from r.
func readSecretLine(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read %s from stdin: %w", what, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("stdin must hold the %s on one line", what)
	}
	return s, nil
}

// Trust key material as the CLI prints and reads it: "<alg>:<base64url>",
// the Ed25519 private key as its 64 bytes, the public key as
// "ed25519-public:<base64url>".
const algEd25519Public = "ed25519-public"

func keyMaterial(k delegation.TrustKey) (private, public string) {
	enc := base64.RawURLEncoding.EncodeToString
	switch k.Algorithm {
	case delegation.AlgHMACSHA256:
		return delegation.AlgHMACSHA256 + ":" + enc(k.Secret), ""
	case delegation.AlgEd25519:
		return delegation.AlgEd25519 + ":" + enc(k.PrivateKey), algEd25519Public + ":" + enc(k.PublicKey)
	}
	return "", ""
}

func parseKeyMaterial(s string) (delegation.TrustKey, error) {
	alg, data, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return delegation.TrustKey{}, errors.New("key material must be <algorithm>:<base64url>")
	}
	b, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return delegation.TrustKey{}, errors.New("key material is not base64url")
	}
	switch alg {
	case delegation.AlgHMACSHA256:
		return delegation.TrustKey{Algorithm: alg, Secret: b}, nil
	case delegation.AlgEd25519:
		return delegation.TrustKey{Algorithm: alg, PrivateKey: ed25519.PrivateKey(b)}, nil
	case algEd25519Public:
		return delegation.TrustKey{Algorithm: delegation.AlgEd25519, PublicKey: ed25519.PublicKey(b)}, nil
	}
	return delegation.TrustKey{}, fmt.Errorf("unknown key algorithm %q", alg)
}

func newTrustCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Manage EATP trust: signing keys and trust sessions"}
	key := &cobra.Command{Use: "key", Short: "Manage a tenant's X-EATP-Signature key"}
	var tenant, alg string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create (or replace) a tenant's trust key; its material is printed once",
		Long: "Create a tenant's trust key (replacing any previous one). Requests to the tenant must then carry a valid\n" +
			"X-EATP-Signature. The key material is printed once: install it where calls are signed (call_agent_tool on\n" +
			"another nexus-mcp: `nexus-mcp trust key import`) or verified (the public key, for ed25519).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				k, err := s.CreateTrustKey(cliContext(cmd.Context(), tenant, "trust key create"), tenant, alg)
				if err != nil {
					return err
				}
				priv, pub := keyMaterial(k)
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "created trust key %s (%s) for tenant %s\n", k.ID, k.Algorithm, tenant)
				fmt.Fprintln(out, "key material (shown once; `nexus-mcp trust key import` reads it from stdin):")
				fmt.Fprintln(out, priv)
				if pub != "" {
					fmt.Fprintln(out, "public key (enough to verify):")
					fmt.Fprintln(out, pub)
				}
				return nil
			})
		},
	}
	create.Flags().StringVar(&alg, "alg", delegation.AlgHMACSHA256, "hmac-sha256 or ed25519")
	importCmd := &cobra.Command{
		Use:   "import",
		Short: "Set a tenant's trust key from key material on stdin (as `trust key create` prints it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := readSecretLine(cmd.InOrStdin(), "key material")
			if err != nil {
				return err
			}
			k, err := parseKeyMaterial(line)
			if err != nil {
				return err
			}
			return withStore(cmd, g, func(s *memory.Store) error {
				if err := s.ImportTrustKey(cliContext(cmd.Context(), tenant, "trust key import"), tenant, k); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "imported a %s trust key for tenant %s\n", k.Algorithm, tenant)
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{create, importCmd} {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
		_ = c.MarkFlagRequired("tenant")
	}
	key.AddCommand(create, importCmd)

	cleanup := &cobra.Command{
		Use: "cleanup", Short: "Remove expired trust sessions of every tenant", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				n, err := s.DeleteExpiredTrustSessions(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %d expired trust sessions\n", n)
				return nil
			})
		},
	}
	cmd.AddCommand(key, cleanup)
	return cmd
}

func newAuditCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check and read the tamper-evident audit log"}
	var tenant, since, agent string
	var limit int
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the audit hash chains and name the first broken row",
		Long: "Recompute the hash chain of one tenant (--tenant) or of every tenant, including the \"" +
			memory.UnauthenticatedTenant + "\" chain\nof requests refused before a tenant was known. Exits 1 when a chain is broken.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				tenants := []string{tenant}
				if tenant == "" {
					var err error
					if tenants, err = s.AuditTenants(cmd.Context()); err != nil {
						return err
					}
				}
				broken := 0
				for _, tn := range tenants {
					res, err := s.VerifyAudit(cmd.Context(), tn)
					if err != nil {
						return err
					}
					if res.OK {
						fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: ok (%d rows)\n", tn, res.Rows)
						continue
					}
					broken++
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: BROKEN at seq %d: %s\n", tn, res.BrokenSeq, res.Reason)
				}
				if broken > 0 {
					return &exitError{code: 1, msg: fmt.Sprintf("audit chain broken in %d tenant(s)", broken)}
				}
				return nil
			})
		},
	}
	verify.Flags().StringVar(&tenant, "tenant", "", "only this tenant (default: every tenant)")
	list := &cobra.Command{
		Use: "list", Short: "List a tenant's audit rows, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := memory.AuditFilter{Agent: agent, Limit: limit}
			if since != "" {
				t, err := time.Parse(time.RFC3339, since)
				if err != nil {
					return fmt.Errorf("--since %q: want an RFC 3339 time", since)
				}
				f.Since = t
			}
			return withStore(cmd, g, func(s *memory.Store) error {
				ctx := tenancy.NewContext(cmd.Context(), tenancy.RequestContext{TenantID: tenant, AuthMethod: tenancy.AuthLocal})
				rows, total, err := s.AuditLog(ctx, f)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME\tUSER\tAGENT\tTRACE\tTOOL\tACTION\tOUTCOME\tDETAIL")
				for _, r := range rows {
					e := r.Event
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, e.Time.Format(time.RFC3339Nano), orDash(e.UserID),
						orDash(e.AgentID), orDash(e.TraceID), orDash(e.Tool), e.Action, e.Outcome, orDash(e.Detail))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d rows\n", len(rows), total)
				return nil
			})
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	_ = list.MarkFlagRequired("tenant")
	list.Flags().StringVar(&since, "since", "", "only rows at or after this RFC 3339 time")
	list.Flags().StringVar(&agent, "agent", "", "only rows of this agent")
	list.Flags().IntVar(&limit, "limit", memory.DefaultAuditLimit, fmt.Sprintf("rows to show (at most %d)", memory.MaxAuditLimit))
	cmd.AddCommand(verify, list)
	return cmd
}

// newAgentsCmd is `agents credential set`: the credential nexus-mcp
// presents when call_agent_tool calls that agent.
func newAgentsCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "agents", Short: "Manage how nexus-mcp reaches registered agents"}
	cred := &cobra.Command{Use: "credential", Short: "Manage outbound credentials for call_agent_tool"}
	var tenant, agent string
	set := &cobra.Command{
		Use:   "set",
		Short: "Store the credential (read from stdin) presented as a bearer token when calling an agent",
		Long: "Store the credential nexus-mcp presents (Authorization: Bearer) when tenant --tenant calls agent\n" +
			"--agent with call_agent_tool. It is read from stdin (one line) and never printed or returned.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, err := readSecretLine(bufio.NewReader(cmd.InOrStdin()), "credential")
			if err != nil {
				return err
			}
			return withStore(cmd, g, func(s *memory.Store) error {
				if err := s.SetAgentCredential(cliContext(cmd.Context(), tenant, "agents credential set"), tenant, agent, secret); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stored the credential for agent %s of tenant %s\n", agent, tenant)
				return nil
			})
		},
	}
	set.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	set.Flags().StringVar(&agent, "agent", "", "agent (required)")
	_ = set.MarkFlagRequired("tenant")
	_ = set.MarkFlagRequired("agent")
	cred.AddCommand(set)
	cmd.AddCommand(cred)
	return cmd
}
