package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// OAuth resource server wiring (MCP authorization): the --oauth-issuer and
// --resource-url flags, the RFC 9728 metadata endpoints, the JSON answers
// of unknown paths, and the per-call scope check of the HTTP edge.

// oauthFlags are the OAuth flags of serve --http.
type oauthFlags struct {
	issuers     []string
	resourceURL string
}

func addOAuthFlags(fs *pflag.FlagSet, f *oauthFlags) {
	fs.StringSliceVar(&f.issuers, "oauth-issuer", nil, "issuer URL of a trusted OAuth authorization server (https; http only on loopback); repeatable. Turns on OAuth access tokens and the /.well-known/oauth-protected-resource metadata")
	fs.StringVar(&f.resourceURL, "resource-url", "", "canonical URL of this server's MCP endpoint as clients reach it, e.g. https://nexus.example/mcp (required with --oauth-issuer; tokens must name it in aud)")
}

// resourceServer builds the OAuth resource server of the flags, or nil
// without --oauth-issuer. It does no I/O.
func (f *httpFlags) resourceServer() (*tenancy.ResourceServer, error) {
	o := f.oauth
	switch {
	case len(o.issuers) == 0 && o.resourceURL == "":
		return nil, nil
	case len(o.issuers) == 0:
		return nil, errors.New("--resource-url needs --oauth-issuer")
	case o.resourceURL == "":
		return nil, errors.New("--oauth-issuer needs --resource-url (this server's MCP URL as clients reach it, e.g. https://nexus.example/mcp)")
	}
	leeway := f.jwtLeeway
	if leeway == 0 {
		leeway = -1 // ResourceServerConfig reads 0 as the default
	}
	rs, err := tenancy.NewResourceServer(tenancy.ResourceServerConfig{
		Issuers:     o.issuers,
		Resource:    o.resourceURL,
		TenantClaim: f.jwtTenantClaim,
		Leeway:      leeway,
	})
	if err != nil {
		return nil, fmt.Errorf("%w; refusing to start", err)
	}
	return rs, nil
}
