package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// Session handoffs, scoped by (tenant, project): end_session leaves the
// project's active handoff, begin_session consumes it exactly once.

// HandoffStore is the storage of the handoff tools and get_agent_context.
type HandoffStore interface {
	EndSession(ctx context.Context, e memory.EndSession) (memory.Handoff, error)
	BeginSession(ctx context.Context, agent, project string) (memory.HandoffSession, error)
	AgentContext(ctx context.Context, agent, project string, limit int) (memory.AgentContext, error)
}

type handoffLearningWire struct {
	Context    string   `json:"context" jsonschema:"the situation in which the lesson applies"`
	Lesson     string   `json:"lesson" jsonschema:"what was learned"`
	Confidence *float64 `json:"confidence,omitempty" jsonschema:"confidence from 0 to 1 (default 0.8)"`
}

type handoffWire struct {
	HandoffID  string                `json:"handoffId"`
	ProjectID  string                `json:"projectId"`
	FromAgent  string                `json:"fromAgent"`
	Summary    string                `json:"summary"`
	OpenItems  []string              `json:"openItems"`
	Learnings  []handoffLearningWire `json:"learnings"`
	Status     string                `json:"status"`
	CreatedAt  string                `json:"createdAt"`
	ConsumedAt string                `json:"consumedAt,omitempty"`
	ConsumedBy string                `json:"consumedBy,omitempty"`
}

// handoffToWire renders h; the user who ended the handoff session is kept for
// audit and not returned.
func handoffToWire(h *memory.Handoff) *handoffWire {
	if h == nil {
		return nil
	}
	w := &handoffWire{HandoffID: h.ID, ProjectID: h.ProjectID, FromAgent: h.FromAgent, Summary: h.Summary,
		OpenItems: h.OpenItems, Learnings: make([]handoffLearningWire, len(h.Learnings)), Status: h.Status,
		CreatedAt: h.CreatedAt, ConsumedAt: h.ConsumedAt, ConsumedBy: h.ConsumedBy}
	if w.OpenItems == nil {
		w.OpenItems = []string{}
	}
	for i, l := range h.Learnings {
		w.Learnings[i] = handoffLearningWire{Context: l.Context, Lesson: l.Lesson, Confidence: &l.Confidence}
	}
	return w
}

// endSessionArgs are the arguments of end_session.
type endSessionArgs struct {
	AgentID   string                `json:"agentId" jsonschema:"the agent ending its session" max:"256"`
	ProjectID string                `json:"projectId" jsonschema:"the project to hand over" max:"256"`
	Summary   string                `json:"summary" jsonschema:"what was done and where things stand"`
	OpenItems []string              `json:"openItems,omitempty" jsonschema:"what is left to do" max:"200"`
	Learnings []handoffLearningWire `json:"learnings,omitempty" jsonschema:"lessons for whoever continues; also recorded as the agent's learnings" max:"100"`
}

type endSessionResult struct {
	Status  string       `json:"status"`
	Handoff *handoffWire `json:"handoff"`
}

func (h *Handlers) endSession() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("end_session", "End Session",
			"End an agent's session on a project by leaving a handoff (summary, open items, learnings) for the next "+
				"session of any agent of your tenant; it replaces the project's previous unconsumed handoff. "+
				"Returns status session_ended and the handoff.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[endSessionArgs]()),
		Handler: handle(h, h.doEndSession),
	}
}

func (h *Handlers) doEndSession(ctx context.Context, args endSessionArgs) (any, error) {
	e := memory.EndSession{Agent: args.AgentID, Project: args.ProjectID, Summary: args.Summary, OpenItems: args.OpenItems,
		Learnings: make([]memory.NewLearning, len(args.Learnings))}
	for i, l := range args.Learnings {
		e.Learnings[i] = memory.NewLearning{Context: l.Context, Lesson: l.Lesson, Confidence: defaultConfidence}
		if l.Confidence != nil {
			e.Learnings[i].Confidence = *l.Confidence
		}
	}
	ho, err := h.store.EndSession(ctx, e)
	if err != nil {
		return nil, err
	}
	return endSessionResult{Status: "session_ended", Handoff: handoffToWire(&ho)}, nil
}

// beginSessionArgs are the arguments of begin_session.
type beginSessionArgs struct {
	AgentID   string `json:"agentId" jsonschema:"the agent starting a session" max:"256"`
	ProjectID string `json:"projectId" jsonschema:"the project to take over" max:"256"`
}

type sessionContextWire struct {
	Messages       []messageWire  `json:"messages"`
	UnreadCount    int            `json:"unreadCount"`
	Learnings      []learningWire `json:"learnings"`
	LearningsTotal int            `json:"learningsTotal"`
}

type beginSessionResult struct {
	Status  string             `json:"status"`
	Handoff *handoffWire       `json:"handoff"`
	Context sessionContextWire `json:"context"`
}

func (h *Handlers) beginSession() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("begin_session", "Begin Session",
			"Begin an agent's session on a project: takes the project's pending handoff (exactly once: of concurrent "+
				"callers one gets it, the others get handoff null). Returns status session_opened, the handoff, and "+
				"context with the agent's 10 newest unread messages and 10 most recent learnings.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[beginSessionArgs]()),
		Handler: handle(h, h.doBeginSession),
	}
}

func (h *Handlers) doBeginSession(ctx context.Context, args beginSessionArgs) (any, error) {
	s, err := h.store.BeginSession(ctx, args.AgentID, args.ProjectID)
	if err != nil {
		return nil, err
	}
	return beginSessionResult{Status: "session_opened", Handoff: handoffToWire(s.Handoff),
		Context: sessionContextWire{Messages: messagesToWire(s.Messages), UnreadCount: s.UnreadMessages,
			Learnings: learningsToWire(s.Learnings), LearningsTotal: s.LearningsTotal}}, nil
}
