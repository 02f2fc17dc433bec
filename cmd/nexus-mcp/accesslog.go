package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
)

// tenantLogKeys are the log attributes that hold a tenant id.
var tenantLogKeys = map[string]bool{"tenant": true, "owner_tenant": true}

// tenantHash is the opaque short form of a tenant id in logs: the same
// tenant always gets the same value, so lines can be correlated without
// writing tenant names into logs (pass --log-tenant-names for names).
func tenantHash(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("nexus-mcp tenant\x00" + id))
	return "t-" + hex.EncodeToString(sum[:6])
}

// newLogger is the process logger on w: --log-level, --log-format (text or
// json) and, unless --log-tenant-names, every tenant attribute replaced by
// its tenantHash.
func newLogger(w io.Writer, g *globalFlags) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: l}
	if !g.logTenantNames {
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if tenantLogKeys[a.Key] && a.Value.Kind() == slog.KindString {
				a.Value = slog.StringValue(tenantHash(a.Value.String()))
			}
			return a
		}
	}
	switch g.logFormat {
	case "text", "": // "": the flag's default when globalFlags is built in code
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q (want text or json)", g.logFormat)
}
