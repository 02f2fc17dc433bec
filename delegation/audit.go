package delegation

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// GenesisHash is the PrevHash of the first audit row of a tenant.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditEvent is the content of one audit row. It never holds secrets,
// tokens or key material: ContentHash stands in for payloads.
type AuditEvent struct {
	Time        time.Time
	TenantID    string
	UserID      string
	APIKeyID    string
	AgentID     string
	TraceID     string
	SessionID   string // the trust session (X-EATP-Session-ID), not the MCP session
	Tool        string
	Action      string
	Outcome     string
	ContentHash string
	Detail      string
}

// ChainedEvent is an audit row as stored: its event, the hash of the
// previous row of the tenant (GenesisHash for the first) and its own hash,
// ChainHash(PrevHash, Event).
type ChainedEvent struct {
	Seq      int64
	Event    AuditEvent
	PrevHash string
	Hash     string
}

// CanonicalJSON returns v as canonical JSON: v is marshalled with
// encoding/json, decoded into any with numbers kept as json.Number (their
// text is preserved), and re-encoded with object keys sorted, no
// insignificant whitespace and no HTML escaping. Equal JSON values with
// different key order or spacing give the same bytes. (It is not RFC 8785:
// numbers keep their text and keys sort by bytes.)
func CanonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	d, err := decodeUseNumber(b)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil { // maps encode with sorted keys
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// HashJSON returns the hex SHA-256 of v's canonical JSON.
func HashJSON(v any) (string, error) {
	b, err := CanonicalJSON(v)
	if err != nil {
		return "", err
	}
	return sha256Hex(b), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// canonicalEvent is the canonical content of an audit event: its fields as
// a JSON object with snake_case keys, the time in UTC as RFC 3339 with
// nanoseconds (trailing zeros dropped). Storage must keep Time at least at
// the precision it was hashed with (or truncate before hashing).
func canonicalEvent(ev AuditEvent) []byte {
	m := map[string]string{
		"time":         ev.Time.UTC().Format(time.RFC3339Nano),
		"tenant_id":    ev.TenantID,
		"user_id":      ev.UserID,
		"api_key_id":   ev.APIKeyID,
		"agent_id":     ev.AgentID,
		"trace_id":     ev.TraceID,
		"session_id":   ev.SessionID,
		"tool":         ev.Tool,
		"action":       ev.Action,
		"outcome":      ev.Outcome,
		"content_hash": ev.ContentHash,
		"detail":       ev.Detail,
	}
	// Encoding a map of strings cannot fail; the result equals CanonicalJSON(m).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// ChainHash returns the hash of an audit row: hex SHA-256 of prevHash, a
// newline, and the canonical content of ev.
func ChainHash(prevHash string, ev AuditEvent) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write([]byte{'\n'})
	h.Write(canonicalEvent(ev))
	return hex.EncodeToString(h.Sum(nil))
}

// CheckLink is the one rule of an audit chain: it returns why row e
// cannot follow prev, or "" when it can. The first row of a tenant's chain
// (prev nil) must have Seq 1 and PrevHash GenesisHash; every other row
// Seq prev.Seq+1 and PrevHash prev.Hash; every row a time, and a Hash equal
// to ChainHash(PrevHash, Event). (Removing rows from the end of a chain is
// not detectable from the chain alone.)
func CheckLink(prev *ChainedEvent, e ChainedEvent) string {
	wantSeq, wantPrev := int64(1), GenesisHash
	if prev != nil {
		wantSeq, wantPrev = prev.Seq+1, prev.Hash
	}
	switch {
	case e.Seq != wantSeq:
		return fmt.Sprintf("seq %d follows %d (rows missing or inserted)", e.Seq, wantSeq-1)
	case e.PrevHash != wantPrev:
		return "prev_hash does not match the previous row's hash"
	case e.Event.Time.IsZero():
		return "time is not an RFC 3339 time"
	case e.Hash != ChainHash(e.PrevHash, e.Event):
		return "hash does not match the row's content"
	}
	return ""
}
