package delegation

import (
	"context"
	"fmt"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Refusals of CheckHumanOrigin. They are trust denials (IsDenial) and hold
// no request values.
var (
	ErrOriginTenant = fmt.Errorf("%w: human origin names another tenant", ErrUntrusted)
	ErrOriginUser   = fmt.Errorf("%w: human origin names another user, which needs an admin membership", ErrUntrusted)
	ErrOriginShape  = fmt.Errorf("%w: human origin user_id and human_id must be strings naming one user", ErrUntrusted)
)

// CheckHumanOrigin is the one rule for a human origin, whether it came in
// X-EATP-Human-Origin or as a human_origin argument, for the caller in ctx:
//
//   - every key that names a tenant (tenancy.NamesTenant), at any depth,
//     has a string value equal to the caller's tenant (ErrOriginTenant);
//   - the keys that name its user (tenancy.NamesUser) are strings naming
//     one user (ErrOriginShape);
//   - a user other than the caller's own needs tenancy.IsAdmin, with
//     lookup for memberships (ErrOriginUser).
//
// It returns the user the origin names ("" when none). A lookup failure is
// returned wrapped and is not a denial.
func CheckHumanOrigin(ctx context.Context, origin map[string]any, lookup tenancy.MembershipLookup) (string, error) {
	rc, ok := tenancy.FromContext(ctx)
	if !ok || rc.TenantID == "" {
		return "", fmt.Errorf("check human origin: %w", tenancy.ErrNoTenant)
	}
	if !originTenantMatches(origin, rc.TenantID, 0) {
		return "", ErrOriginTenant
	}
	user := ""
	for k, v := range origin {
		if !tenancy.NamesUser(k) {
			continue
		}
		s, ok := v.(string)
		if !ok || s == "" || (user != "" && s != user) {
			return "", ErrOriginShape
		}
		user = s
	}
	if user == "" || user == rc.UserID {
		return user, nil
	}
	admin, err := tenancy.IsAdmin(ctx, rc, lookup)
	if err != nil {
		return "", fmt.Errorf("check human origin: membership: %w", err)
	}
	if !admin {
		return "", ErrOriginUser
	}
	return user, nil
}

// originTenantMatches reports whether every tenant-naming key in v, at any
// depth (bounded by maxJSONNesting, as parsing bounds it), names tenant.
func originTenantMatches(v any, tenant string, depth int) bool {
	if depth > maxJSONNesting {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if tenancy.NamesTenant(k) {
				if s, ok := val.(string); !ok || s != tenant {
					return false
				}
			}
			if !originTenantMatches(val, tenant, depth+1) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !originTenantMatches(e, tenant, depth+1) {
				return false
			}
		}
	}
	return true
}
