package memory

import (
	"context"
	"errors"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

var (
	_ tenancy.TenantLookup     = (*Store)(nil)
	_ tenancy.MembershipLookup = (*Store)(nil)
)

// TenantStatus implements tenancy.TenantLookup: the kill switch and rate
// overrides of tenantID, read on every HTTP request so that `tenants
// disable` takes effect on the next one. An unknown tenant is
// TenantStatus{Exists: false} with a nil error.
func (s *Store) TenantStatus(ctx context.Context, tenantID string) (tenancy.TenantStatus, error) {
	t, err := s.Tenant(ctx, tenantID)
	switch {
	case errors.Is(err, ErrNotFound):
		return tenancy.TenantStatus{}, nil
	case err != nil:
		return tenancy.TenantStatus{}, err
	}
	return tenancy.TenantStatus{Exists: true, Disabled: t.Disabled, RPS: t.RateRPS, Burst: t.RateBurst}, nil
}
