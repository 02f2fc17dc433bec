package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// jsonlLine is one line of the reference server's memory.jsonl.
type jsonlLine struct {
	Type         string   `json:"type"`
	Name         string   `json:"name,omitempty"`
	EntityType   string   `json:"entityType,omitempty"`
	Observations []string `json:"observations,omitempty"`
	From         string   `json:"from,omitempty"`
	To           string   `json:"to,omitempty"`
	RelationType string   `json:"relationType,omitempty"`
}

// parseJSONL reads a whole memory.jsonl. A malformed line is an error naming
// its number; relLines[i] is the line number of relations[i].
func parseJSONL(r io.Reader) (entities []memory.Entity, relations []memory.Relation, relLines []int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var l jsonlLine
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&l); err != nil {
			return nil, nil, nil, fmt.Errorf("line %d: not a JSON object: %v", n, err)
		}
		switch l.Type {
		case "entity":
			if l.Name == "" {
				return nil, nil, nil, fmt.Errorf("line %d: entity without a name", n)
			}
			if l.Observations == nil {
				l.Observations = []string{}
			}
			entities = append(entities, memory.Entity{Name: l.Name, EntityType: l.EntityType, Observations: l.Observations})
		case "relation":
			if l.From == "" || l.To == "" || l.RelationType == "" {
				return nil, nil, nil, fmt.Errorf("line %d: relation needs from, to and relationType", n)
			}
			relations = append(relations, memory.Relation{From: l.From, To: l.To, RelationType: l.RelationType})
			relLines = append(relLines, n)
		default:
			return nil, nil, nil, fmt.Errorf("line %d: unknown type %q (want entity or relation)", n, l.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return entities, relations, relLines, nil
}

// adminContext is the RequestContext of an administrative command acting on tenant.
func adminContext(cmd *cobra.Command, tenant string) (*cobra.Command, error) {
	if tenant == "" {
		return nil, fmt.Errorf("--tenant is required")
	}
	cmd.SetContext(tenancy.NewContext(cmd.Context(), tenancy.RequestContext{TenantID: tenant, AuthMethod: tenancy.AuthLocal}))
	return cmd, nil
}

func newImportCmd(g *globalFlags) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "import --tenant T FILE|-",
		Short: "Import a reference memory.jsonl (or stdin with -) into a tenant (idempotent, all or nothing)",
		Long: "Import a reference memory.jsonl (or stdin with -) into a tenant, in one transaction.\n" +
			"Creates the database if it does not exist (said on stderr), and tenant \"default\"\n" +
			"(the tenant of local single-user mode) if needed; other tenants must exist.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := adminContext(cmd, tenant); err != nil {
				return err
			}
			in, name := cmd.InOrStdin(), "stdin"
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in, name = f, args[0]
			}
			entities, relations, relLines, err := parseJSONL(in)
			if err != nil {
				return fmt.Errorf("%s: %w; nothing imported", name, err)
			}
			stderr := cmd.ErrOrStderr()
			return withNewStore(cmd, g, func(s *memory.Store) error {
				if tenant == tenancy.DefaultTenant {
					if err := s.EnsureTenant(cmd.Context(), tenant); err != nil {
						return err
					}
				}
				if _, err := s.Tenant(cmd.Context(), tenant); errors.Is(err, memory.ErrNotFound) {
					return &exitError{code: 1, msg: fmt.Sprintf("tenant %q not found in database %s; create it with `nexus-mcp tenants create %s`; nothing imported", tenant, s.Location(), tenant)}
				} else if err != nil {
					return err
				}
				var progress func(done, total int)
				if len(entities)+len(relations) >= 10000 {
					progress = func(done, total int) { fmt.Fprintf(stderr, "import: %d/%d\n", done, total) }
				}
				res, err := s.Import(cmd.Context(), entities, relations, progress)
				if err != nil {
					return err
				}
				for _, i := range res.DanglingRelations {
					fmt.Fprintf(stderr, "import: line %d: relation skipped: an endpoint entity does not exist\n", relLines[i])
				}
				fmt.Fprintf(cmd.OutOrStdout(), "imported into %s: %d entities created, %d observations added, %d relations created, %d relations skipped\n",
					tenant, res.EntitiesCreated, res.ObservationsAdded, res.RelationsCreated, len(res.DanglingRelations))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	return cmd
}

func newExportCmd(g *globalFlags) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "export --tenant T [FILE]",
		Short: "Export a tenant's graph as memory.jsonl (to FILE or stdout)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := adminContext(cmd, tenant); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var f *os.File
			if len(args) == 1 {
				var err error
				if f, err = os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			w := bufio.NewWriter(out)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			err := withStore(cmd, g, func(s *memory.Store) error {
				if _, err := s.Tenant(cmd.Context(), tenant); err != nil {
					return err
				}
				return s.Export(cmd.Context(),
					func(e memory.Entity) error {
						obs := e.Observations
						if obs == nil {
							obs = []string{}
						}
						return enc.Encode(struct {
							Type         string   `json:"type"`
							Name         string   `json:"name"`
							EntityType   string   `json:"entityType"`
							Observations []string `json:"observations"`
						}{"entity", e.Name, e.EntityType, obs})
					},
					func(r memory.Relation) error {
						return enc.Encode(jsonlLine{Type: "relation", From: r.From, To: r.To, RelationType: r.RelationType})
					})
			})
			if err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if f != nil {
				return f.Close()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	return cmd
}
