package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// Messages between the agents of one tenant. The argument names and
// aliases are those of the TypeScript server these tools replace.

// MessageStore is the storage of the message tools.
type MessageStore interface {
	SendMessage(ctx context.Context, m memory.Send) (memory.Sent, error)
	Messages(ctx context.Context, q memory.MessageQuery) (memory.MessagePage, error)
	MarkMessagesRead(ctx context.Context, agent string, ids []string) (int, error)
}

// Page bounds of the message list.
const (
	defaultMessages = 20
	maxMessages     = 100
)

// prop adds JSON-schema keywords a struct tag cannot express to one
// top-level property of an input schema.
type prop struct {
	enum []string
	def  any
}

// inputSchemaWith is inputSchema[T] plus enum and default keywords, so that
// the schema check in handle refuses values outside an enum.
func inputSchemaWith[T any](props map[string]prop) mcp.ToolOption {
	var s jsonschema.Schema
	if err := json.Unmarshal(mustSchema[T](true), &s); err != nil {
		panic(fmt.Sprintf("schema for %T: %v", *new(T), err))
	}
	for name, p := range props {
		ps := s.Properties[name]
		if ps == nil {
			panic(fmt.Sprintf("schema for %T: no property %q", *new(T), name))
		}
		for _, e := range p.enum {
			ps.Enum = append(ps.Enum, e)
		}
		if p.def != nil {
			b, err := json.Marshal(p.def)
			if err != nil {
				panic(err)
			}
			ps.Default = b
		}
	}
	raw, err := json.Marshal(&s)
	if err != nil {
		panic(fmt.Sprintf("schema for %T: %v", *new(T), err))
	}
	return func(t *mcp.Tool) {
		t.InputSchema = mcp.ToolInputSchema{}
		t.RawInputSchema = raw
	}
}

// alias returns the value of a field that has an alias; both given and
// different is an argument error.
func alias(name, v, aliasName, av string) (string, error) {
	switch {
	case v == "":
		return av, nil
	case av != "" && av != v:
		return "", argErrorf("%s and its alias %s differ; give one", name, aliasName)
	}
	return v, nil
}

// messageWire is a message as tools return it.
type messageWire struct {
	MessageID   string `json:"messageId"`
	From        string `json:"from"`
	To          string `json:"to"`
	Content     string `json:"content"`
	MessageType string `json:"messageType"`
	Priority    string `json:"priority"`
	CreatedAt   string `json:"createdAt"`
	Read        bool   `json:"read"`
	ReadAt      string `json:"readAt,omitempty"`
}

func messagesToWire(ms []memory.Message) []messageWire {
	out := make([]messageWire, len(ms))
	for i, m := range ms {
		out[i] = messageWire{MessageID: m.ID, From: m.From, To: m.To, Content: m.Content, MessageType: m.Type,
			Priority: m.Priority, CreatedAt: m.CreatedAt, Read: m.ReadAt != "", ReadAt: m.ReadAt}
	}
	return out
}

// sendMessageArgs are the arguments of send_ai_message.
type sendMessageArgs struct {
	Content        string   `json:"content,omitempty" jsonschema:"message text (required, or its alias message)" max:"65536"`
	Message        string   `json:"message,omitempty" jsonschema:"alias of content" max:"65536"`
	From           string   `json:"from,omitempty" jsonschema:"sending agent ID (default: the agent named by your credential)" max:"256"`
	To             string   `json:"to,omitempty" jsonschema:"recipient agent ID, or * for every agent registered by your tenant" max:"256"`
	AgentID        string   `json:"agentId,omitempty" jsonschema:"alias of to" max:"256"`
	ToCapabilities []string `json:"toCapabilities,omitempty" jsonschema:"send to every agent of your tenant having all these capabilities (case-insensitive)" max:"100"`
	Capabilities   []string `json:"capabilities,omitempty" jsonschema:"alias of toCapabilities" max:"100"`
	Broadcast      bool     `json:"broadcast,omitempty" jsonschema:"send to every agent registered by your tenant (default false)"`
	ExcludeSelf    *bool    `json:"excludeSelf,omitempty" jsonschema:"leave the sender out of a broadcast or capability selection (default true)"`
	MessageType    string   `json:"messageType,omitempty" jsonschema:"kind of message (default info)"`
	Priority       string   `json:"priority,omitempty" jsonschema:"priority (default normal)"`
}

type messageIDWire struct {
	To        string `json:"to"`
	MessageID string `json:"messageId"`
}

type selectionWire struct {
	Mode         string   `json:"mode"`
	To           string   `json:"to,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	ExcludeSelf  *bool    `json:"excludeSelf,omitempty"`
	Matched      int      `json:"matched"`
}

type sendMessageResult struct {
	Status     string   `json:"status"`
	Recipients []string `json:"recipients"`
	// RecipientRegistered is set on a direct send: false when your tenant
	// never registered the recipient (a typo, or an agent yet to register).
	RecipientRegistered *bool           `json:"recipientRegistered,omitempty"`
	SentCount           int             `json:"sentCount"`
	MessageIDs          []messageIDWire `json:"messageIds"`
	Selection           selectionWire   `json:"selection"`
	CreatedAt           string          `json:"createdAt"`
}

func (h *Handlers) sendAIMessage() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("send_ai_message", "Send AI Message",
			"Send a message to another agent of your tenant (to), to every agent your tenant registered (to \"*\" or broadcast), "+
				"or to those having all of toCapabilities (broadcasts and capability sends reach only agents that called "+
				"register_agent). One message is stored per recipient. Returns status sent or no_recipients, the recipients, "+
				"one messageId per recipient, and for a direct send recipientRegistered (false: no such registered agent; "+
				"the message is stored anyway).",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchemaWith[sendMessageArgs](map[string]prop{
				"messageType": {enum: memory.MessageTypes, def: "info"},
				"priority":    {enum: memory.Priorities, def: "normal"},
				"broadcast":   {def: false},
				"excludeSelf": {def: true},
			})),
		Handler: handle(h, h.doSendAIMessage),
	}
}

func (h *Handlers) doSendAIMessage(ctx context.Context, args sendMessageArgs) (any, error) {
	content, err := alias("content", args.Content, "message", args.Message)
	if err != nil {
		return nil, err
	}
	if content == "" {
		return nil, argErrorf("content is required (or its alias message)")
	}
	if err := checkOptionalIDs(idArg{"to", args.To}, idArg{"agentId", args.AgentID}); err != nil {
		return nil, err
	}
	to, err := alias("to", args.To, "agentId", args.AgentID)
	if err != nil {
		return nil, err
	}
	caps := args.ToCapabilities
	if len(caps) == 0 {
		caps = args.Capabilities
	} else if len(args.Capabilities) > 0 {
		return nil, argErrorf("give toCapabilities or its alias capabilities, not both")
	}
	from, err := agentOrDefault(ctx, args.From, "from")
	if err != nil {
		return nil, err
	}
	broadcast := args.Broadcast || to == "*"
	switch {
	case len(caps) > 0 && to != "" && to != "*":
		return nil, argErrorf("give either to or toCapabilities, not both")
	case args.Broadcast && to != "" && to != "*":
		return nil, argErrorf("broadcast sends to every agent; leave out to (or use to \"*\")")
	case len(caps) == 0 && !broadcast && to == "":
		return nil, argErrorf("to is required (or agentId, toCapabilities, or broadcast)")
	}
	excludeSelf := args.ExcludeSelf == nil || *args.ExcludeSelf
	m := memory.Send{From: from, To: to, Capabilities: caps, Broadcast: broadcast, ExcludeSelf: excludeSelf,
		Type: args.MessageType, Priority: args.Priority, Content: content}
	if m.Type == "" {
		m.Type = "info"
	}
	if m.Priority == "" {
		m.Priority = "normal"
	}
	sent, err := h.store.SendMessage(ctx, m)
	if err != nil {
		return nil, err
	}
	out := sendMessageResult{Status: "sent", Recipients: sent.Recipients, SentCount: len(sent.Recipients),
		MessageIDs: make([]messageIDWire, len(sent.Recipients)), CreatedAt: sent.CreatedAt,
		Selection: selectionWire{Mode: sent.Mode, Matched: len(sent.Recipients)}}
	if len(sent.Recipients) == 0 {
		out.Status = "no_recipients"
	}
	for i, r := range sent.Recipients {
		out.MessageIDs[i] = messageIDWire{To: r, MessageID: sent.MessageIDs[i]}
	}
	switch sent.Mode {
	case memory.SelectDirect:
		out.Selection.To = to
		out.RecipientRegistered = &sent.RecipientRegistered
	case memory.SelectCapabilities:
		out.Selection.Capabilities = caps
		out.Selection.ExcludeSelf = &excludeSelf
	default:
		out.Selection.ExcludeSelf = &excludeSelf
	}
	return out, nil
}

// getMessagesArgs are the arguments of get_ai_messages.
type getMessagesArgs struct {
	AgentID     string `json:"agentId" jsonschema:"the agent whose inbox to read" max:"256"`
	Limit       int    `json:"limit,omitempty" jsonschema:"at most this many messages (default 20, at most 100)"`
	Offset      int    `json:"offset,omitempty" jsonschema:"skip this many messages (for the next page)"`
	MessageType string `json:"messageType,omitempty" jsonschema:"only messages of this type"`
	Since       string `json:"since,omitempty" jsonschema:"only messages sent at or after this RFC 3339 time" max:"64"`
	UnreadOnly  bool   `json:"unreadOnly,omitempty" jsonschema:"only unread messages (default false)"`
	MarkAsRead  bool   `json:"markAsRead,omitempty" jsonschema:"mark the returned messages read (default false)"`
}

type getMessagesResult struct {
	AgentID     string        `json:"agentId"`
	Messages    []messageWire `json:"messages"`
	Count       int           `json:"count"`
	Total       int           `json:"total"`
	UnreadCount int           `json:"unreadCount"`
	MarkedRead  int           `json:"markedRead"`
	Offset      int           `json:"offset"`
	Limit       int           `json:"limit"`
	NextOffset  *int          `json:"nextOffset,omitempty"`
}

func (h *Handlers) getAIMessages() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_ai_messages", "Get AI Messages",
			"Read an agent's inbox in your tenant, newest first, optionally filtered by type, time or unread state. "+
				"Returns a page of messages (default 20, at most 100) with total, unreadCount and nextOffset; "+
				"with markAsRead the returned messages are marked read.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchemaWith[getMessagesArgs](map[string]prop{
				"messageType": {enum: memory.MessageTypes},
				"limit":       {def: defaultMessages},
				"unreadOnly":  {def: false},
				"markAsRead":  {def: false},
			})),
		Handler: handle(h, h.doGetAIMessages),
	}
}

func (h *Handlers) doGetAIMessages(ctx context.Context, args getMessagesArgs) (any, error) {
	limit, offset, err := page(args.Limit, args.Offset, defaultMessages, maxMessages)
	if err != nil {
		return nil, err
	}
	q := memory.MessageQuery{Agent: args.AgentID, Type: args.MessageType, UnreadOnly: args.UnreadOnly,
		MarkAsRead: args.MarkAsRead, Offset: offset, Limit: limit, MaxBytes: h.itemBudget()}
	if args.Since != "" {
		ts, err := time.Parse(time.RFC3339Nano, args.Since)
		if err != nil {
			return nil, argErrorf("since must be an RFC 3339 time such as 2025-01-02T15:04:05Z")
		}
		q.Since = memory.Stamp(ts)
	}
	p, err := h.store.Messages(ctx, q)
	if err != nil {
		return nil, err
	}
	out := getMessagesResult{AgentID: args.AgentID, Messages: messagesToWire(p.Messages), Count: len(p.Messages),
		Total: p.Total, UnreadCount: p.Unread, MarkedRead: p.Marked, Offset: offset, Limit: limit}
	if next := offset + len(p.Messages); next < p.Total {
		out.NextOffset = &next
	}
	return out, nil
}

// markReadArgs are the arguments of mark_messages_read.
type markReadArgs struct {
	AgentID    string   `json:"agentId" jsonschema:"the agent whose messages to mark read" max:"256"`
	MessageIDs []string `json:"messageIds,omitempty" jsonschema:"the messages to mark (default: every unread message of the agent)" max:"1000"`
}

type markReadResult struct {
	AgentID string `json:"agentId"`
	Marked  int    `json:"marked"`
}

func (h *Handlers) markMessagesRead() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("mark_messages_read", "Mark Messages Read",
			"Mark an agent's messages read: the given messageIds, or all its unread messages. "+
				"Returns how many were marked (ids of other inboxes are ignored).",
			annotations{readOnly: false, destructive: false, idempotent: true},
			inputSchema[markReadArgs]()),
		Handler: handle(h, h.doMarkMessagesRead),
	}
}

func (h *Handlers) doMarkMessagesRead(ctx context.Context, args markReadArgs) (any, error) {
	n, err := h.store.MarkMessagesRead(ctx, args.AgentID, args.MessageIDs)
	if err != nil {
		return nil, err
	}
	return markReadResult{AgentID: args.AgentID, Marked: n}, nil
}
