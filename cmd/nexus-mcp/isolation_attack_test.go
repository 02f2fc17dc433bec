package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// TestHTTPDisabledHomeTenantJWTCannotSwitchTenant: a credential whose home
// tenant is disabled is refused everywhere, also when X-Tenant-Id selects
// another tenant its user is a member of — a JWT the same as an API key.
func TestHTTPDisabledHomeTenantJWTCannotSwitchTenant(t *testing.T) {
	e := startHTTP(t, httpTestOpts{})
	ctx := context.Background()
	keyAlpha := e.newKey(t, memory.NewKey{TenantID: "alpha", UserID: "alice"})
	keyBeta := e.newKey(t, memory.NewKey{TenantID: "beta", UserID: "bob"})
	tokBeta := testJWT(t, "beta", "bob")
	addMember(t, e.store, "alpha", "bob", "beta", "")
	addMember(t, e.store, "alpha", "bob", "", "test-issuer")

	cases := []struct {
		name string
		hdr  map[string]string
	}{
		{"beta jwt into alpha", with(bearer(tokBeta), tenancy.HeaderTenantID, "alpha")},
		{"beta api key into alpha", with(bearer(keyBeta), tenancy.HeaderTenantID, "alpha")},
		{"beta jwt at home", bearer(tokBeta)},
		{"beta api key at home", bearer(keyBeta)},
	}
	status := func(hdr map[string]string) int {
		return rawDo(t, http.MethodPost, e.url, hdr, strings.NewReader(rawInitialize)).status
	}
	// Positive control: beta enabled, every path admitted.
	for _, c := range cases {
		if got := status(c.hdr); got != http.StatusOK {
			t.Errorf("%s with beta enabled = %d, want 200 (control)", c.name, got)
		}
	}
	if err := e.store.SetTenantDisabled(ctx, "beta", true); err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for _, c := range cases {
		if got := status(c.hdr); got != http.StatusForbidden {
			admitted++
			t.Errorf("%s with beta disabled = %d, want 403", c.name, got)
		}
	}
	// alpha itself is unaffected (control).
	if got := status(bearer(keyAlpha)); got != http.StatusOK {
		t.Errorf("alpha's own key with beta disabled = %d, want 200 (control)", got)
	}
	t.Logf("metric disabled_home_admitted=%d", admitted)
}

// addMember admits a principal to tenant: fromTenant for an API-key user,
// issuer for a JWT user.
func addMember(t *testing.T, store *memory.Store, tenant, user, fromTenant, issuer string) {
	t.Helper()
	if err := store.SetMember(context.Background(), tenant, user, "member"); err != nil {
		t.Fatal(err)
	}
}
