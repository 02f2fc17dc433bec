package tenancy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRecheck: a long-lived connection's credential is refused once its key
// is revoked or expired or its tenant disabled; the valid key and the
// enabled local tenant are the controls.
func TestRecheck(t *testing.T) {
	ctx := context.Background()
	tenants := newFakeTenants("acme", "globex", DefaultTenant)
	keys := &fakeKeys{tenants: tenants}
	valid := keys.add(t, StoredKey{ID: "k1", TenantID: "acme", UserID: "u1"})
	other := keys.add(t, StoredKey{ID: "k2", TenantID: "globex", UserID: "u1"})
	revoked := keys.add(t, StoredKey{ID: "k3", TenantID: "acme", RevokedAt: testNow.Add(-time.Second)})
	expired := keys.add(t, StoredKey{ID: "k4", TenantID: "acme", ExpiresAt: testNow})
	rc := RequestContext{TenantID: "acme", UserID: "u1", APIKeyID: "k1", AuthMethod: AuthAPIKey}
	local := RequestContext{TenantID: DefaultTenant, AuthMethod: AuthLocal}
	cases := []struct {
		name string
		key  string
		rc   RequestContext
		want error
	}{
		{"valid key (control)", valid, rc, nil},
		{"local mode (control)", "", local, nil},
		{"revoked", revoked, RequestContext{TenantID: "acme", APIKeyID: "k3", AuthMethod: AuthAPIKey}, ErrUnauthenticated},
		{"expired", expired, RequestContext{TenantID: "acme", APIKeyID: "k4", AuthMethod: AuthAPIKey}, ErrUnauthenticated},
		{"another key than the identity's", other, rc, ErrUnauthenticated},
	}
	for _, c := range cases {
		if err := Recheck(ctx, keys, tenants, c.key, c.rc, testNow); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: Recheck = %v, want %v", c.name, err, c.want)
		}
	}
	tenants.set("acme", TenantStatus{Exists: true, Disabled: true})
	tenants.set(DefaultTenant, TenantStatus{Exists: true, Disabled: true})
	if err := Recheck(ctx, keys, tenants, valid, rc, testNow); !errors.Is(err, ErrForbidden) {
		t.Errorf("disabled tenant: Recheck = %v, want ErrForbidden", err)
	}
	if err := Recheck(ctx, keys, tenants, "", local, testNow); !errors.Is(err, ErrForbidden) {
		t.Errorf("disabled local tenant: Recheck = %v, want ErrForbidden", err)
	}
}
