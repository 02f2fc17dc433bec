package tenancy

import (
	"context"
	"errors"
	"strings"
)

// IsAdmin reports whether the caller rc may act for other users of its
// tenant: local single-user mode, an admin role established by the edge,
// or an admin membership of the caller's own principal (looked up with lookup;
// a nil lookup finds none). A dev-header user is never an admin.
func IsAdmin(ctx context.Context, rc RequestContext, lookup MembershipLookup) (bool, error) {
	switch {
	case rc.AuthMethod == AuthLocal, rc.Role == "admin":
		return true, nil
	case rc.UserID == "" || rc.DevOverride || lookup == nil:
		return false, nil
	}
	role, err := lookup.Membership(ctx, rc.TenantID, rc.Principal())
	if errors.Is(err, ErrForbidden) {
		return false, nil
	}
	return role == "admin", err
}

// NamesTenant reports whether a key of a client-supplied object (a human
// origin) names a tenant: compared ignoring case and the separators "_",
// "-", "." and " ", it is tenant, org or organization (organisation),
// alone or followed by id or name ("tenant_id", "tenantId", "orgId",
// "Organization-ID", "org.name"...).
func NamesTenant(key string) bool {
	k := strings.ToLower(keySeparators.Replace(key))
	for _, suffix := range []string{"id", "name"} {
		if base, ok := strings.CutSuffix(k, suffix); ok && tenantWords[base] {
			return true
		}
	}
	return tenantWords[k]
}

var (
	keySeparators = strings.NewReplacer("_", "", "-", "", ".", "", " ", "")
	tenantWords   = map[string]bool{"tenant": true, "org": true, "organization": true, "organisation": true}
)

// NamesUser reports whether a key of a human origin names its user:
// user_id or EATP's human_id, any case or separator ("userId", "User-ID").
func NamesUser(key string) bool {
	switch strings.ToLower(keySeparators.Replace(key)) {
	case "userid", "humanid":
		return true
	}
	return false
}
