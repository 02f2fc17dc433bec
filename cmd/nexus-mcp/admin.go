package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// withStore opens the existing database for one administrative command.
func withStore(cmd *cobra.Command, g *globalFlags, fn func(*memory.Store) error) error {
	return withStoreOptions(cmd, g, memory.Options{}, fn)
}

// withStoreOptions is withStore with store options.
func withStoreOptions(cmd *cobra.Command, g *globalFlags, opts memory.Options, fn func(*memory.Store) error) error {
	store, err := openStoreWith(cmd.Context(), g, opts, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(store)
}

// withNewStore opens the database for a command that may start one
// (`tenants create`, `import`), creating a SQLite file that does not exist
// and saying so on stderr.
func withNewStore(cmd *cobra.Command, g *globalFlags, fn func(*memory.Store) error) error {
	store, err := openStoreWith(cmd.Context(), g, memory.Options{}, func(path string) {
		fmt.Fprintf(cmd.ErrOrStderr(), "nexus-mcp: created database %s\n", path)
	})
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(store)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newTenantsCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "tenants", Short: "Manage tenants"}
	var name string
	create := &cobra.Command{
		Use: "create TENANT", Short: "Create a tenant", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNewStore(cmd, g, func(s *memory.Store) error {
				if err := s.CreateTenant(cmd.Context(), args[0], name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created tenant %s\n", args[0])
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "display name")
	list := &cobra.Command{
		Use: "list", Short: "List tenants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				ts, err := s.Tenants(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TENANT\tNAME\tSTATUS\tRPS\tBURST\tCREATED")
				for _, t := range ts {
					status := "enabled"
					if t.Disabled {
						status = "disabled"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%d\t%s\n", t.ID, orDash(t.Name), status, t.RateRPS, t.RateBurst, t.CreatedAt)
				}
				return tw.Flush()
			})
		},
	}
	toggle := func(use, short string, disabled bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " TENANT", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withStore(cmd, g, func(s *memory.Store) error {
					if err := s.SetTenantDisabled(cmd.Context(), args[0], disabled); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%sd tenant %s\n", use, args[0])
					return nil
				})
			},
		}
	}
	var rps float64
	var burst int
	limit := &cobra.Command{
		Use: "limit TENANT", Short: "Set a tenant's request rate limit (0 = server default)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				if err := s.SetTenantRateLimit(cmd.Context(), args[0], rps, burst); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: %g requests/s, burst %d\n", args[0], rps, burst)
				return nil
			})
		},
	}
	limit.Flags().Float64Var(&rps, "rps", 0, "requests per second")
	limit.Flags().IntVar(&burst, "burst", 0, "burst size")
	cmd.AddCommand(create, list,
		toggle("disable", "Disable a tenant (kill switch; effective on the next request)", true),
		toggle("enable", "Enable a disabled tenant", false),
		limit)
	return cmd
}

func newKeysCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage API keys"}
	var (
		nk            memory.NewKey
		keyAgentScope string
		scopes        []string
	)
	create := &cobra.Command{
		Use: "create", Short: "Create an API key; it is printed once and only its hash is stored", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nk.TenantID == "" {
				return fmt.Errorf("--tenant is required")
			}
			if cmd.Flags().Changed("scopes") {
				set, err := parseScopeFlag(scopes)
				if err != nil {
					return err
				}
				nk.Scopes = set
			}
			return withStoreOptions(cmd, g, memory.Options{AgentScope: keyAgentScope}, func(s *memory.Store) error {
				key, k, err := s.CreateAPIKey(cmd.Context(), nk)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), key)
				fmt.Fprintf(cmd.ErrOrStderr(), "created key %s for tenant %s (store it now: it is not shown again)\n", k.ID, k.TenantID)
				return nil
			})
		},
	}
	create.Flags().StringVar(&nk.TenantID, "tenant", "", "tenant (required)")
	create.Flags().StringVar(&nk.UserID, "user", "", "user the key acts as")
	create.Flags().StringVar(&nk.AgentID, "agent", "", "agent the key acts as; claims the id for the tenant (refused when another tenant owns it)")
	create.Flags().StringVar(&keyAgentScope, "agent-scope", memory.AgentScopeGlobal,
		"the servers' --agent-scope: global checks the --agent claim across tenants, tenant does not")
	create.Flags().StringVar(&nk.Env, "env", "", "environment the key is bound to (X-Env must match)")
	create.Flags().StringVar(&nk.Name, "name", "", "label")
	create.Flags().DurationVar(&nk.TTL, "expires", 0, "lifetime, e.g. 720h (default: never expires)")
	create.Flags().StringSliceVar(&scopes, "scopes", nil, "scopes of the key, comma-separated: "+strings.Join(tenancy.AllScopes.Names(), ",")+
		" (the nexus: prefix may be left out; default: all)")
	var tenant string
	list := &cobra.Command{
		Use: "list", Short: "List a tenant's keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				ks, err := s.APIKeys(cmd.Context(), tenant)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tUSER\tAGENT\tENV\tSCOPES\tCREATED\tEXPIRES\tREVOKED")
				for _, k := range ks {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, orDash(k.Name), orDash(k.UserID), orDash(k.AgentID),
						orDash(k.Env), strings.Join(k.Scopes.Names(), ","), k.CreatedAt, orDash(k.ExpiresAt), orDash(k.RevokedAt))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	_ = list.MarkFlagRequired("tenant")
	revoke := &cobra.Command{
		Use: "revoke KEY_ID", Short: "Revoke a key (effective on the next request)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				if err := s.RevokeAPIKey(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked key %s at %s\n", args[0], time.Now().UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// memberPrincipal is the principal named by members add/remove: the user
// with exactly one origin, --from-tenant (an API-key user of that tenant)
// or --issuer (a JWT user of that issuer); remove also takes --unresolved
// for a migrated row of unknown origin.
func memberPrincipal(user, fromTenant, issuer string, unresolved bool) (tenancy.Principal, error) {
	n := 0
	for _, set := range []bool{fromTenant != "", issuer != "", unresolved} {
		if set {
			n++
		}
	}
	if n != 1 {
		return tenancy.Principal{}, fmt.Errorf("say where user %q comes from with exactly one of --from-tenant TENANT (an API-key user of that tenant) or --issuer URL (a JWT user of that issuer)", user)
	}
	switch {
	case fromTenant != "":
		return tenancy.Principal{Kind: tenancy.PrincipalTenant, Source: fromTenant, UserID: user}, nil
	case issuer != "":
		return tenancy.Principal{Kind: tenancy.PrincipalIssuer, Source: issuer, UserID: user}, nil
	}
	return tenancy.Principal{Kind: memory.PrincipalUnresolved, UserID: user}, nil
}

// memberFrom renders a membership's origin for members list.
func memberFrom(m memory.Member) string {
	if m.Kind == memory.PrincipalUnresolved {
		return "unresolved (admits no one; re-add with --from-tenant or --issuer)"
	}
	return m.Kind + ":" + m.Source
}

// parseScopeFlag reads `keys create --scopes`: scope names, with or
// without the "nexus:" prefix; at least one; an unknown name is an error
// naming the valid ones.
func parseScopeFlag(names []string) (tenancy.ScopeSet, error) {
	var set tenancy.ScopeSet
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n != "" && !strings.HasPrefix(n, "nexus:") {
			n = "nexus:" + n
		}
		sc, ok := tenancy.ParseScope(n)
		if !ok {
			return 0, fmt.Errorf("--scopes: unknown scope %q (valid: %s)", n, strings.Join(tenancy.AllScopes.Names(), ", "))
		}
		set |= tenancy.ScopeSet(sc)
	}
	if set == 0 {
		return 0, errors.New("--scopes: give at least one scope")
	}
	return set, nil
}

func newMembersCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "members", Short: "Manage which users may act in a tenant other than their credential's"}
	var tenant, user, role, fromTenant, issuer string
	var unresolved bool
	add := &cobra.Command{
		Use: "add", Short: "Add a member (or change the role): a user with its tenant (--from-tenant) or JWT issuer (--issuer)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := memberPrincipal(user, fromTenant, issuer, false)
			if err != nil {
				return err
			}
			return withStore(cmd, g, func(s *memory.Store) error {
				if err := s.SetMember(cmd.Context(), tenant, p, role); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s (%s:%s) is %s of tenant %s\n", user, p.Kind, p.Source, role, tenant)
				return nil
			})
		},
	}
	add.Flags().StringVar(&role, "role", "member", "member or admin")
	remove := &cobra.Command{
		Use: "remove", Short: "Remove a member", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := memberPrincipal(user, fromTenant, issuer, unresolved)
			if err != nil {
				return err
			}
			return withStore(cmd, g, func(s *memory.Store) error {
				if err := s.RemoveMember(cmd.Context(), tenant, p); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed user %s (%s:%s) from tenant %s\n", user, p.Kind, p.Source, tenant)
				return nil
			})
		},
	}
	remove.Flags().BoolVar(&unresolved, "unresolved", false, "remove a migrated membership of unknown origin")
	for _, c := range []*cobra.Command{add, remove} {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
		c.Flags().StringVar(&user, "user", "", "user (required)")
		c.Flags().StringVar(&fromTenant, "from-tenant", "", "the user is an API-key user of this tenant")
		c.Flags().StringVar(&issuer, "issuer", "", "the user is the sub of JWTs from this issuer (its iss claim)")
		_ = c.MarkFlagRequired("tenant")
		_ = c.MarkFlagRequired("user")
	}
	list := &cobra.Command{
		Use: "list", Short: "List a tenant's members", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(s *memory.Store) error {
				ms, err := s.Members(cmd.Context(), tenant)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tFROM\tROLE\tSINCE")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.UserID, memberFrom(m), m.Role, m.CreatedAt)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	_ = list.MarkFlagRequired("tenant")
	cmd.AddCommand(add, remove, list)
	return cmd
}
