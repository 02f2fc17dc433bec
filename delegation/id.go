package delegation

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDBytes is the longest accepted id: agent, project, trace, session,
// delegation, chain entry. Ids travel in HTTP headers, so the bound is in
// bytes, not characters.
const MaxIDBytes = 256

// IDError says why a value is not an acceptable id. Reason reads after the
// name of the argument or header that carried it ("agentId" + " " + Reason).
type IDError struct {
	Reason string
}

func (e *IDError) Error() string { return "id " + e.Reason }

// The reasons CheckID gives.
const (
	IDBlank    = "must not be blank"
	IDTooLong  = "is longer than 256 bytes" // MaxIDBytes
	IDNotUTF8  = "is not valid UTF-8"
	IDBadRune  = "contains control or invisible characters"
	IDPadSpace = "must not begin or end with white space"
)

// CheckID is the one id syntax of nexus-mcp, applied wherever an id enters
// (tool arguments, EATP headers, the admin CLI): not blank, at most
// MaxIDBytes bytes of valid UTF-8, no control (C0, DEL, C1) or invisible
// format characters (bidi overrides, zero-width) — which could forge log
// lines or make two ids look alike — and no leading or trailing white space
// (header values are trimmed, so such an id could not be named in one).
// It returns nil or an *IDError.
func CheckID(s string) error {
	reason := ""
	switch {
	case strings.TrimSpace(s) == "":
		reason = IDBlank
	case len(s) > MaxIDBytes:
		reason = IDTooLong
	case !utf8.ValidString(s):
		reason = IDNotUTF8
	case strings.IndexFunc(s, badIDRune) >= 0:
		reason = IDBadRune
	case strings.TrimSpace(s) != s:
		reason = IDPadSpace
	}
	if reason == "" {
		return nil
	}
	return &IDError{Reason: reason}
}

// IDReason returns CheckID's reason for s, or "" when s is acceptable.
func IDReason(s string) string {
	if err := CheckID(s); err != nil {
		return err.(*IDError).Reason
	}
	return ""
}

// badIDRune reports control (C0, DEL, C1) and invisible format characters
// (bidi overrides, zero-width), which could forge log lines or ids.
func badIDRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}
