package delegation

import (
	"context"
	"errors"
	"testing"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

func TestCheckHumanOrigin(t *testing.T) {
	members := &fakeStore{admins: map[string]map[string]bool{"A": {"ann": true}}}
	as := func(user string) context.Context {
		return tenancy.NewContext(context.Background(), tenancy.RequestContext{TenantID: "A", UserID: user, AuthMethod: tenancy.AuthAPIKey})
	}
	tests := []struct {
		name     string
		user     string
		origin   map[string]any
		wantUser string
		wantErr  error
	}{
		{name: "own user", user: "bob", origin: map[string]any{"user_id": "bob"}, wantUser: "bob"},
		{name: "no user", user: "bob", origin: map[string]any{"display_name": "Bob"}},
		{name: "own tenant in every spelling", user: "bob", origin: map[string]any{"tenant_id": "A", "orgId": "A", "Organization": "A", "tenant.name": "A"}},
		{name: "admin names another user", user: "ann", origin: map[string]any{"userId": "bob"}, wantUser: "bob"},
		{name: "tenant_id of B", user: "bob", origin: map[string]any{"tenant_id": "B"}, wantErr: ErrOriginTenant},
		{name: "org_id of B", user: "bob", origin: map[string]any{"org_id": "B"}, wantErr: ErrOriginTenant},
		{name: "organisation of B", user: "bob", origin: map[string]any{"ORGANISATION": "B"}, wantErr: ErrOriginTenant},
		{name: "nested tenant of B", user: "bob", origin: map[string]any{"ctx": []any{map[string]any{"tenant": "B"}}}, wantErr: ErrOriginTenant},
		{name: "tenant not a string", user: "bob", origin: map[string]any{"tenant": map[string]any{"id": "A"}}, wantErr: ErrOriginTenant},
		{name: "another user, not admin", user: "bob", origin: map[string]any{"user_id": "carol"}, wantErr: ErrOriginUser},
		{name: "another user via human_id, not admin", user: "bob", origin: map[string]any{"Human-ID": "carol"}, wantErr: ErrOriginUser},
		{name: "any user, caller without user", user: "", origin: map[string]any{"user_id": "carol"}, wantErr: ErrOriginUser},
		{name: "user_id and human_id differ", user: "ann", origin: map[string]any{"user_id": "bob", "human_id": "carol"}, wantErr: ErrOriginShape},
		{name: "user_id not a string", user: "bob", origin: map[string]any{"user_id": 7}, wantErr: ErrOriginShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := CheckHumanOrigin(as(tt.user), tt.origin, members)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || user != tt.wantUser {
				t.Errorf("CheckHumanOrigin(%v) = %q, %v; want %q, %v", tt.origin, user, err, tt.wantUser, tt.wantErr)
			}
			if err != nil && !IsDenial(err) {
				t.Errorf("CheckHumanOrigin(%v) error %v is not a denial", tt.origin, err)
			}
		})
	}
	if _, err := CheckHumanOrigin(context.Background(), map[string]any{}, members); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Errorf("CheckHumanOrigin without tenant = %v, want ErrNoTenant", err)
	}
	members.err = errors.New("db down")
	if _, err := CheckHumanOrigin(as("bob"), map[string]any{"user_id": "carol"}, members); err == nil || IsDenial(err) {
		t.Errorf("CheckHumanOrigin with a failing lookup = %v, want a non-denial error", err)
	}
}
