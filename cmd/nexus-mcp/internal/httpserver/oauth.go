package httpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

// OAuth resource server (MCP authorization) at the edge: the RFC 9728
// metadata endpoints, the JSON answers of unknown paths, and the per-call
// scope check.

// resourceName is the resource_name of the metadata.
const resourceName = "nexus-mcp"

// wellKnown routes the RFC 9728 metadata paths and hands every other path
// to next. With OAuth it serves the metadata (mcp-go's handler) at the
// bare well-known path and at the one suffixed with the resource's path;
// without, those paths answer a JSON 404 saying the server uses API keys,
// so that a client probing for OAuth fails with words a person can act on.
// The metadata is public and the same for everyone, so it is outside the
// Origin check (the handler sends its own CORS headers).
func (a *Server) wellKnown(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	if rs := a.cfg.Auth.OAuth; rs != nil {
		meta := server.NewProtectedResourceMetadataHandler(server.ProtectedResourceMetadataConfig{
			Resource:               rs.Resource(),
			AuthorizationServers:   rs.Issuers(),
			ScopesSupported:        tenancy.AllScopes.Names(),
			BearerMethodsSupported: []string{"header"},
			ResourceName:           resourceName,
		})
		mux.Handle(tenancy.WellKnownProtectedResource, meta)
		if p := server.ProtectedResourceMetadataPath(rs.Resource()); p != tenancy.WellKnownProtectedResource {
			mux.Handle(p, meta)
		}
		return mux
	}
	// Outside the Origin check like the metadata, so browser clients read it.
	mux.HandleFunc(tenancy.WellKnownProtectedResource, a.notFound)
	mux.HandleFunc(tenancy.WellKnownProtectedResource+"/", a.notFound)
	return mux
}

// The JSON 404 bodies. Without OAuth, clients that got a 401 probe the
// OAuth paths (metadata, then /register for dynamic client registration)
// and print what they find there, so every unknown path says what to do
// about the key.
const (
	bodyNoOAuth  = `{"error":"not_found","error_description":"this MCP server does not use OAuth: it authenticates with API keys, and the request had a missing or invalid one. Send Authorization: Bearer nxk_… (ask the server's operator for a key)"}`
	bodyNotFound = `{"error":"not_found","error_description":"no such path on this MCP server; the MCP endpoint is /mcp and its authorization servers are listed at /.well-known/oauth-protected-resource"}`
)

// notFound answers every path the server does not serve with JSON, so
// that a client shows words rather than a text/plain page.
func (a *Server) notFound(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.Auth.OAuth == nil {
		writeJSON(w, http.StatusNotFound, bodyNoOAuth)
		return
	}
	writeJSON(w, http.StatusNotFound, bodyNotFound)
}

// scopeCheck refuses, with 403 insufficient_scope (RFC 6750), a POST
// whose JSON-RPC request (or any request of a batch) needs a scope the
// credential lacks: tools/call by the tool's scope (tools.RequiredScope),
// reading or subscribing to the graph resource by tools.ResourceScope.
// The refusal is audited. Credentials with every scope pass untouched;
// the tools enforce the same table again on every call (any transport).
func (a *Server) scopeCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, _ := tenancy.FromContext(r.Context())
		if rc.Scopes == tenancy.AllScopes || r.Method != http.MethodPost || r.Body == nil {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				w.Header().Set("Connection", "close")
				writeJSON(w, http.StatusRequestEntityTooLarge, `{"error":"request body too large"}`)
				return
			}
			writeJSON(w, http.StatusBadRequest, `{"error":"cannot read request body"}`)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		for _, need := range neededScopes(body) {
			if rc.Scopes.Has(need) {
				continue
			}
			reason := "insufficient_scope " + need.String()
			a.cfg.Logger.Info("request denied", "reason", reason, "status", http.StatusForbidden, "tenant", rc.TenantID, "user", rc.UserID, "auth", string(rc.AuthMethod))
			a.denied(r, rc, "insufficient_scope", http.StatusForbidden)
			a.auditDenial(r, rc, "scope.denied", reason, http.StatusForbidden)
			metaURL := ""
			if a.cfg.Auth.OAuth != nil {
				metaURL = a.cfg.Auth.OAuth.MetadataURL()
			}
			tenancy.WriteInsufficientScope(w, metaURL, rc.Scopes, need)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// neededScopes lists the scopes the JSON-RPC message (or batch) in body
// needs, decoded as mcp-go decodes it. A body that does not parse needs
// none here: mcp-go answers it with a parse error.
func neededScopes(body []byte) []tenancy.Scope {
	type message struct {
		Method mcp.MCPMethod `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	var msgs []message
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		if json.Unmarshal(b, &msgs) != nil {
			return nil
		}
	} else {
		var m message
		if json.Unmarshal(body, &m) != nil {
			return nil
		}
		msgs = []message{m}
	}
	var out []tenancy.Scope
	for _, m := range msgs {
		switch {
		case m.Method == mcp.MethodToolsCall:
			if s, ok := tools.RequiredScope(m.Params.Name); ok {
				out = append(out, s)
			}
		case m.Method == mcp.MethodResourcesRead, m.Method == mcp.MethodResourcesSubscribe,
			m.Method == mcp.MethodSubscriptionsListen:
			out = append(out, tools.ResourceScope)
		}
	}
	return out
}
