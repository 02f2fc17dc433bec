package memory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Messages between agents of one tenant. An inbox is (tenant, to_agent);
// a send stores one row per recipient.

// Message types and priorities.
var (
	MessageTypes = []string{"info", "task", "query", "response", "collaboration"}
	Priorities   = []string{"low", "normal", "high", "urgent"}
)

const (
	// MaxRecipients bounds the recipients of one send.
	MaxRecipients   = 500
	maxMessageBytes = 65536
)

// Selection modes of a send.
const (
	SelectDirect       = "direct"
	SelectBroadcast    = "broadcast"
	SelectCapabilities = "capabilities"
)

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never happens on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Send is one send_ai_message. Exactly one selection applies:
// Capabilities (agents of the tenant having all of them), else Broadcast
// (every agent of the tenant), else To.
type Send struct {
	From         string
	To           string
	Capabilities []string
	Broadcast    bool
	ExcludeSelf  bool // broadcast and capability selection skip From
	Type         string
	Priority     string
	Content      string
}

// Sent reports a send. Recipients and MessageIDs are in the same order.
type Sent struct {
	Mode       string
	Recipients []string
	MessageIDs []string
	CreatedAt  string
	// RecipientRegistered reports, for a direct send, whether the caller's
	// tenant registered the recipient (broadcasts and capability sends
	// reach registered agents only).
	RecipientRegistered bool
}

// Message is one stored message.
type Message struct {
	ID        string
	From      string
	To        string
	Content   string
	Type      string
	Priority  string
	CreatedAt string
	ReadAt    string // "" unread
}

// MessageQuery selects messages of one inbox.
type MessageQuery struct {
	Agent      string
	Type       string // "" any
	Since      string // Stamp form; "" any
	UnreadOnly bool
	MarkAsRead bool // mark the returned page read
	Offset     int
	Limit      int
	// MaxBytes bounds the estimated size of the page sent to a client (as
	// for Page.MaxBytes); the page keeps at least one message. 0: no bound.
	MaxBytes int
}

// MessagePage is a page of an inbox, newest first.
type MessagePage struct {
	Messages []Message
	Total    int // matching the query, before paging
	Unread   int // unread in the whole inbox, after any marking
	Marked   int // marked read by this call
}

func checkSend(m Send) error {
	if err := checkAgentID(FieldSender, m.From); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(m.Content) == "":
		return errEmpty(FieldContent)
	case len(m.Content) > maxMessageBytes:
		return errTooLong(FieldContent, maxMessageBytes)
	case !slices.Contains(MessageTypes, m.Type):
		return errNotOneOf(FieldMessageType, MessageTypes)
	case !slices.Contains(Priorities, m.Priority):
		return errNotOneOf(FieldPriority, Priorities)
	}
	return nil
}

// SendMessage stores one message per selected recipient in the caller's
// tenant, in one transaction. Broadcast and capability selection choose
// among the agents the caller's tenant registered (in either scope: other
// tenants' agents cannot read this tenant's messages). No recipients is not
// an error: Sent.Recipients is empty and nothing is stored.
func (s *Store) SendMessage(ctx context.Context, m Send) (Sent, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Sent{}, err
	}
	if err := checkSend(m); err != nil {
		return Sent{}, err
	}
	caps, err := normCapabilities(m.Capabilities)
	if err != nil {
		return Sent{}, err
	}
	out := Sent{Mode: SelectDirect}
	switch {
	case len(caps) > 0:
		out.Mode = SelectCapabilities
	case m.Broadcast:
		out.Mode = SelectBroadcast
	default:
		if err := checkAgentID(FieldRecipient, m.To); err != nil {
			return Sent{}, err
		}
	}
	err = s.write(ctx, func(t *txn) error {
		out.Recipients, out.MessageIDs = []string{}, []string{}
		out.CreatedAt = t.now
		if out.Mode == SelectDirect {
			out.Recipients = append(out.Recipients, m.To)
			var n int
			if err := t.queryRow(`SELECT count(*) FROM agents WHERE tenant_id = ? AND agent_id = ?`, tenant, m.To).Scan(&n); err != nil {
				return err
			}
			out.RecipientRegistered = n > 0
		} else {
			rs, err := selectRecipients(t, tenant, caps, m)
			if err != nil {
				return err
			}
			out.Recipients = rs
		}
		for _, to := range out.Recipients {
			id := newUUID()
			if _, err := t.exec(`INSERT INTO messages (tenant_id, id, from_agent, to_agent, content, message_type, priority, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, tenant, id, m.From, to, m.Content, m.Type, m.Priority, out.CreatedAt); err != nil {
				return err
			}
			out.MessageIDs = append(out.MessageIDs, id)
		}
		if len(out.Recipients) > 0 {
			return touchAgent(t, tenant, m.From, "active")
		}
		return nil
	})
	if err != nil {
		return Sent{}, err
	}
	return out, nil
}

// selectRecipients returns the tenant's agents, by id, that have all caps,
// without m.From when m.ExcludeSelf.
func selectRecipients(t *txn, tenant string, caps []string, m Send) ([]string, error) {
	rows, err := t.query(`SELECT agent_id, capabilities FROM agents WHERE tenant_id = ? ORDER BY agent_id`, tenant)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id, capsJSON string
		if err := rows.Scan(&id, &capsJSON); err != nil {
			return nil, err
		}
		if m.ExcludeSelf && id == m.From {
			continue
		}
		var have []string
		if err := json.Unmarshal([]byte(capsJSON), &have); err != nil {
			return nil, err
		}
		if !hasCapabilities(have, caps) {
			continue
		}
		if len(out) == MaxRecipients {
			return nil, &Error{Kind: ErrInvalid, Code: CodeTooBroad, Field: FieldCapabilities, Limit: MaxRecipients}
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

const messageColumns = `id, from_agent, to_agent, content, message_type, priority, created_at, coalesce(read_at, '')`

func scanMessages(rows *sql.Rows) ([]Message, error) {
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.ID, &m.From, &m.To, &m.Content, &m.Type, &m.Priority, &m.CreatedAt, &m.ReadAt); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Messages returns a page of q.Agent's inbox in the caller's tenant, newest
// first, with the number matching and the number unread. With MarkAsRead
// the returned unread messages are marked read in the same transaction.
func (s *Store) Messages(ctx context.Context, q MessageQuery) (MessagePage, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return MessagePage{}, err
	}
	if err := checkAgentID(FieldAgent, q.Agent); err != nil {
		return MessagePage{}, err
	}
	if q.Type != "" && !slices.Contains(MessageTypes, q.Type) {
		return MessagePage{}, errNotOneOf(FieldMessageType, MessageTypes)
	}
	run := s.read
	if q.MarkAsRead {
		run = s.write
	}
	var p MessagePage
	err = run(ctx, func(t *txn) error {
		p = MessagePage{}
		const where = ` FROM messages WHERE tenant_id = ? AND to_agent = ?
			AND (? = '' OR message_type = ?) AND (? = '' OR created_at >= ?) AND (? = 0 OR read_at IS NULL)`
		unread := 0
		if q.UnreadOnly {
			unread = 1
		}
		args := []any{tenant, q.Agent, q.Type, q.Type, q.Since, q.Since, unread}
		if err := t.queryRow(`SELECT count(*)`+where, args...).Scan(&p.Total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+messageColumns+where+` ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`,
			append(args, q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		if p.Messages, err = scanMessages(rows); err != nil {
			return err
		}
		if q.MaxBytes > 0 {
			// Cut before marking: only messages that are sent are marked read.
			used := graphOverhead
			for i, m := range p.Messages {
				if used += messageCost(m); used > q.MaxBytes && i > 0 {
					p.Messages = p.Messages[:i]
					break
				}
			}
		}
		if q.MarkAsRead {
			now := t.now
			for i, m := range p.Messages {
				if m.ReadAt != "" {
					continue
				}
				if _, err := t.exec(`UPDATE messages SET read_at = ? WHERE tenant_id = ? AND id = ? AND read_at IS NULL`, now, tenant, m.ID); err != nil {
					return err
				}
				p.Messages[i].ReadAt = now
				p.Marked++
			}
		}
		return t.queryRow(`SELECT count(*) FROM messages WHERE tenant_id = ? AND to_agent = ? AND read_at IS NULL`,
			tenant, q.Agent).Scan(&p.Unread)
	})
	if err != nil {
		return MessagePage{}, err
	}
	return p, nil
}

// messageCost estimates the bytes m takes in an answer (see jsonStringCost).
func messageCost(m Message) int {
	return 2*160 + jsonStringCost(m.ID) + jsonStringCost(m.From) + jsonStringCost(m.To) + jsonStringCost(m.Content) +
		jsonStringCost(m.Type) + jsonStringCost(m.Priority) + jsonStringCost(m.CreatedAt) + jsonStringCost(m.ReadAt)
}

// MarkMessagesRead marks agent's unread messages read: those in ids, or all
// of them when ids is nil. Ids of other inboxes or tenants are ignored.
// It returns how many were marked.
func (s *Store) MarkMessagesRead(ctx context.Context, agent string, ids []string) (int, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return 0, err
	}
	if err := checkAgentID(FieldAgent, agent); err != nil {
		return 0, err
	}
	var n int64
	err = s.write(ctx, func(t *txn) error {
		var res sql.Result
		var err error
		if ids == nil {
			res, err = t.exec(`UPDATE messages SET read_at = ? WHERE tenant_id = ? AND to_agent = ? AND read_at IS NULL`,
				t.now, tenant, agent)
		} else {
			list, _ := json.Marshal(ids)
			res, err = t.exec(`UPDATE messages SET read_at = ? WHERE tenant_id = ? AND to_agent = ? AND read_at IS NULL
				AND id IN (SELECT value FROM `+t.s.d.textArray+`)`, t.now, tenant, agent, string(list))
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// unreadMessages returns agent's newest unread messages, at most limit, and
// how many are unread.
func unreadMessages(t *txn, tenant, agent string, limit int) ([]Message, int, error) {
	var n int
	if err := t.queryRow(`SELECT count(*) FROM messages WHERE tenant_id = ? AND to_agent = ? AND read_at IS NULL`,
		tenant, agent).Scan(&n); err != nil {
		return nil, 0, err
	}
	rows, err := t.query(`SELECT `+messageColumns+` FROM messages WHERE tenant_id = ? AND to_agent = ? AND read_at IS NULL
		ORDER BY created_at DESC, rowid DESC LIMIT ?`, tenant, agent, limit)
	if err != nil {
		return nil, 0, err
	}
	ms, err := scanMessages(rows)
	return ms, n, err
}
