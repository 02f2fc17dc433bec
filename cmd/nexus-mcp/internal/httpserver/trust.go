package httpserver

import (
	"context"
	"net/http"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// installTrust completes the EATP middleware's configuration (Config.Trust)
// with the server's logger and audit hooks, and makes every refusal of the edge —
// authentication (401/403), trust (401/403) and rate limit (429) — write
// one audit row, next to the hooks already installed.
func (a *Server) installTrust() {
	trust := &a.cfg.Trust
	trust.Logger = a.cfg.Logger
	trust.OnDenied = func(r *http.Request, reason string, status int) {
		rc, _ := tenancy.FromContext(r.Context())
		// Record what the refused request claimed (Extract bounds and
		// cleans the ids).
		tc, _ := delegation.Extract(r.Header, nil)
		tc.Raw, tc.Signature = nil, ""
		rc.Trust = tc
		a.auditDenial(r, rc, "trust.denied", reason, status)
	}
	trust.OnOriginDropped = func(r *http.Request, reason string) {
		rc, _ := tenancy.FromContext(r.Context())
		a.auditDenial(r, rc, "trust.origin_dropped", reason, http.StatusOK)
	}

	authDenied := a.cfg.Auth.OnDenied
	a.cfg.Auth.OnDenied = func(r *http.Request, rc tenancy.RequestContext, reason string, status int) {
		if authDenied != nil {
			authDenied(r, rc, reason, status)
		}
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			if rc.TenantID == "" {
				a.sources.Failed(r)
			}
			a.auditDenial(r, rc, "auth.denied", reason, status)
		}
	}
	a.sources.OnLimited = func(r *http.Request, _ string) {
		a.metrics.limited(r, tenancy.RequestContext{})
		a.denials.add(r, "source.limited", "too many refused authentications", http.StatusTooManyRequests)
	}
	limited := a.limiter.OnLimited
	a.limiter.OnLimited = func(r *http.Request, rc tenancy.RequestContext) {
		if limited != nil {
			limited(r, rc)
		}
		a.auditDenial(r, rc, "rate.limited", "rate limited", http.StatusTooManyRequests)
	}
}

// auditDenial writes the audit row of a refused HTTP request. It outlives
// the client: a disconnect must not lose the row. A refusal that
// established no tenant is counted in the unauthenticated tallies
// instead (one row per source and reason per interval).
func (a *Server) auditDenial(r *http.Request, rc tenancy.RequestContext, action, reason string, status int) {
	if rc.TenantID == "" {
		a.denials.add(r, action, reason, status)
		return
	}
	ctx := context.WithoutCancel(r.Context())
	d := Denial{Action: action, Reason: reason, Status: status, Method: r.Method, Path: r.URL.Path}
	if err := a.cfg.Store.AuditDenial(ctx, rc, d); err != nil {
		a.cfg.Logger.Error("audit of a refused request failed", "action", action, "status", status, "err", err)
	}
}
