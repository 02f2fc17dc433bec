package memory

import (
	"context"
	"reflect"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// TestMigrationMemberPrincipals runs migration 0008 over membership rows of
// the old shape (tenant, bare user id): a user id with API keys in exactly
// one tenant becomes that tenant's user; an id used by keys of several
// tenants, or by none (JWT users), becomes an unresolved row that admits
// no one.
func TestMigrationMemberPrincipals(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, memtest.DSN(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, id := range []string{"alpha", "beta", "gamma"} {
		if err := s.CreateTenant(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []NewKey{{TenantID: "beta", UserID: "bob"}, {TenantID: "gamma", UserID: "bob"},
		{TenantID: "beta", UserID: "carol"}, {TenantID: "alpha", UserID: "alice"}} {
		if _, _, err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// Back to the old table, with old rows.
	dir, strict := "migrations", " STRICT"
	if s.pg != nil {
		dir, strict = "migrations/postgres", ""
	}
	old := []string{
		`DROP TABLE members`,
		`CREATE TABLE members (tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, user_id TEXT NOT NULL,
			role TEXT NOT NULL CHECK (role IN ('member', 'admin')), created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
			PRIMARY KEY (tenant_id, user_id))` + strict,
		`INSERT INTO members VALUES ('alpha', 'bob', 'member', 't0', 't0'), ('alpha', 'carol', 'admin', 't0', 't0'),
			('alpha', 'alice', 'admin', 't0', 't0'), ('alpha', 'jwt-sub', 'member', 't0', 't0')`,
	}
	body, err := migrationFS.ReadFile(dir + "/0008_member_principals.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(old, string(body)) {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ms, err := s.Members(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	var got [][4]string
	for _, m := range ms {
		got = append(got, [4]string{m.UserID, m.Kind, m.Source, m.Role})
	}
	want := [][4]string{
		{"alice", "tenant", "alpha", "admin"},
		{"bob", PrincipalUnresolved, "", "member"},
		{"carol", "tenant", "beta", "admin"},
		{"jwt-sub", PrincipalUnresolved, "", "member"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("migrated members = %v, want %v", got, want)
	}
	p := func(kind, src, u string) tenancy.Principal {
		return tenancy.Principal{Kind: kind, Source: src, UserID: u}
	}
	for _, c := range []struct {
		p    tenancy.Principal
		want string
	}{
		{p(tenancy.PrincipalTenant, "beta", "carol"), "admin"},
		{p(tenancy.PrincipalTenant, "alpha", "alice"), "admin"},
		{p(tenancy.PrincipalTenant, "beta", "bob"), ""},
		{p(tenancy.PrincipalTenant, "gamma", "bob"), ""},
		{p(tenancy.PrincipalIssuer, "https://issuer.test", "jwt-sub"), ""},
		{p(PrincipalUnresolved, "", "bob"), ""},
	} {
		if role, err := s.Membership(ctx, "alpha", c.p); err != nil || role != c.want {
			t.Errorf("Membership(alpha, %v) = %q, %v; want %q", c.p, role, err, c.want)
		}
	}
}
