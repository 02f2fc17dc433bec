package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// Handoffs: a handoff session is an agent's stretch of work on a project,
// from begin_session to end_session (neither an MCP session nor a trust
// session). At its end the agent leaves the project's active handoff; the
// next begin_session on that project consumes it, exactly once. Scoped by
// (tenant, project), not by agent or user.

const (
	maxOpenItems      = 200
	maxHandoffLearned = 100
	// sessionContextItems bounds the messages and learnings begin_session
	// returns with a handoff session.
	sessionContextItems = 10
)

// Handoff is a stored handoff.
type Handoff struct {
	ID         string
	ProjectID  string
	FromAgent  string
	UserID     string // who ended the handoff session, for audit only
	Summary    string
	OpenItems  []string
	Learnings  []NewLearning
	Status     string // "active", "consumed" or "superseded"
	CreatedAt  string
	ConsumedAt string
	ConsumedBy string
}

// EndSession is an end_session request.
type EndSession struct {
	Agent     string
	Project   string
	Summary   string
	OpenItems []string
	Learnings []NewLearning
}

// HandoffSession is what BeginSession returns: the handoff it consumed
// (nil when there was none, or another handoff session took it first) and
// the agent's context.
type HandoffSession struct {
	Handoff        *Handoff
	Messages       []Message // newest unread first, at most 10
	UnreadMessages int
	Learnings      []Learning // newest first, at most 10
	LearningsTotal int
}

// EndSession stores the active handoff of (tenant, project), superseding
// the previous active one, records its learnings as the agent's own
// learnings, and marks the agent (if the tenant registered it) inactive.
func (s *Store) EndSession(ctx context.Context, e EndSession) (Handoff, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Handoff{}, err
	}
	if err := checkAgentID(FieldAgent, e.Agent); err != nil {
		return Handoff{}, err
	}
	if err := checkAgentID(FieldProject, e.Project); err != nil {
		return Handoff{}, err
	}
	switch {
	case strings.TrimSpace(e.Summary) == "":
		return Handoff{}, errEmpty(FieldSummary)
	case len(e.Summary) > maxMessageBytes:
		return Handoff{}, errTooLong(FieldSummary, maxMessageBytes)
	case len(e.OpenItems) > maxOpenItems:
		return Handoff{}, errTooMany(FieldOpenItems, maxOpenItems)
	case len(e.Learnings) > maxHandoffLearned:
		return Handoff{}, errTooMany(FieldHandoffLearn, maxHandoffLearned)
	}
	for _, l := range e.Learnings {
		if err := checkLearning(l); err != nil {
			return Handoff{}, err
		}
	}
	rc, _ := tenancy.FromContext(ctx)
	h := Handoff{ID: newUUID(), ProjectID: e.Project, FromAgent: e.Agent, UserID: rc.UserID, Summary: e.Summary,
		OpenItems: e.OpenItems, Learnings: e.Learnings, Status: "active"}
	if h.OpenItems == nil {
		h.OpenItems = []string{}
	}
	if h.Learnings == nil {
		h.Learnings = []NewLearning{}
	}
	items, _ := json.Marshal(h.OpenItems)
	learned, _ := json.Marshal(learningsToJSON(h.Learnings))
	err = s.write(ctx, func(t *txn) error {
		h.CreatedAt = t.now
		if _, err := t.exec(`UPDATE handoffs SET status = 'superseded' WHERE tenant_id = ? AND project_id = ? AND status = 'active'`,
			tenant, e.Project); err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO handoffs (tenant_id, id, project_id, from_agent, user_id, summary, open_items, learnings, status, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)`,
			tenant, h.ID, e.Project, e.Agent, h.UserID, e.Summary, string(items), string(learned), h.CreatedAt); err != nil {
			return err
		}
		for _, l := range e.Learnings {
			if _, err := insertLearning(t, tenant, e.Agent, l, "handoff", e.Project); err != nil {
				return err
			}
		}
		if len(e.Learnings) > 0 {
			if err := agentChanged(t, tenant, e.Agent); err != nil {
				return err
			}
		}
		return touchAgent(t, tenant, e.Agent, "inactive")
	})
	if len(e.Learnings) > 0 {
		s.collab.invalidate(tenant, e.Agent) // error or not: see agentChanged
	}
	if err != nil {
		return Handoff{}, err
	}
	return h, nil
}

// learningJSON is a handoff learning as stored in handoffs.learnings.
type learningJSON struct {
	Context    string  `json:"context"`
	Lesson     string  `json:"lesson"`
	Confidence float64 `json:"confidence"`
}

func learningsToJSON(ls []NewLearning) []learningJSON {
	out := make([]learningJSON, len(ls))
	for i, l := range ls {
		out[i] = learningJSON(l)
	}
	return out
}

const handoffColumns = `id, project_id, from_agent, user_id, summary, open_items, learnings, status, created_at,
	coalesce(consumed_at, ''), coalesce(consumed_by, '')`

func scanHandoff(sc scanner) (Handoff, error) {
	var (
		h                Handoff
		items, learnings string
	)
	if err := sc.Scan(&h.ID, &h.ProjectID, &h.FromAgent, &h.UserID, &h.Summary, &items, &learnings, &h.Status,
		&h.CreatedAt, &h.ConsumedAt, &h.ConsumedBy); err != nil {
		return Handoff{}, err
	}
	h.OpenItems = []string{}
	if err := json.Unmarshal([]byte(items), &h.OpenItems); err != nil {
		return Handoff{}, err
	}
	var ls []learningJSON
	if err := json.Unmarshal([]byte(learnings), &ls); err != nil {
		return Handoff{}, err
	}
	h.Learnings = make([]NewLearning, len(ls))
	for i, l := range ls {
		h.Learnings[i] = NewLearning(l)
	}
	return h, nil
}

// BeginSession consumes the active handoff of (tenant, project) — exactly
// once: a single conditional UPDATE ... WHERE status = 'active' RETURNING,
// so of concurrent callers one gets it and the others get a nil Handoff —
// and returns it with agent's unread messages and recent learnings. The
// agent, if the tenant registered it, is marked active.
//
// On SQLite the UPDATE runs in the writer's IMMEDIATE transaction. On
// PostgreSQL it needs no lock to be exactly-once, on any number of
// replicas: a second UPDATE of the row waits for the first transaction,
// then (READ COMMITTED) re-checks status = 'active' on the row it
// committed and matches nothing. The tenant's advisory lock, which every
// write holds, serializes the callers as well.
func (s *Store) BeginSession(ctx context.Context, agent, project string) (HandoffSession, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return HandoffSession{}, err
	}
	if err := checkAgentID(FieldAgent, agent); err != nil {
		return HandoffSession{}, err
	}
	if err := checkAgentID(FieldProject, project); err != nil {
		return HandoffSession{}, err
	}
	var out HandoffSession
	err = s.write(ctx, func(t *txn) error {
		out = HandoffSession{}
		h, err := scanHandoff(t.queryRow(`UPDATE handoffs SET status = 'consumed', consumed_at = ?, consumed_by = ?
			WHERE tenant_id = ? AND project_id = ? AND status = 'active'
			RETURNING `+handoffColumns, t.now, agent, tenant, project))
		switch {
		case err == nil:
			out.Handoff = &h
		case err != sql.ErrNoRows:
			return err
		}
		if out.Messages, out.UnreadMessages, err = unreadMessages(t, tenant, agent, sessionContextItems); err != nil {
			return err
		}
		if out.Learnings, out.LearningsTotal, err = recentLearnings(t, tenant, agent, sessionContextItems); err != nil {
			return err
		}
		return touchAgent(t, tenant, agent, "active")
	})
	if err != nil {
		return HandoffSession{}, err
	}
	return out, nil
}

// ProjectHandoff returns, without consuming it, the active handoff of
// (tenant, project), or else the most recent one; nil when the project has
// none.
func projectHandoff(t *txn, tenant, project string) (*Handoff, error) {
	h, err := scanHandoff(t.queryRow(`SELECT `+handoffColumns+` FROM handoffs WHERE tenant_id = ? AND project_id = ?
		ORDER BY status = 'active' DESC, created_at DESC, rowid DESC LIMIT 1`, tenant, project))
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// AgentContext is everything get_agent_context may show, before trimming.
type AgentContext struct {
	Preferences    map[string]any
	Learnings      []Learning // newest first
	LearningsTotal int
	Unread         []Message // newest first
	UnreadTotal    int
	Handoff        *Handoff // the project's handoff, when a project was given
}

// AgentContext reads, in one snapshot, agent's preferences, at most limit
// recent learnings and unread messages, and (when project is not "") the
// project's active or else latest handoff, without consuming it.
func (s *Store) AgentContext(ctx context.Context, agent, project string, limit int) (AgentContext, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return AgentContext{}, err
	}
	if err := checkAgentID(FieldAgent, agent); err != nil {
		return AgentContext{}, err
	}
	var out AgentContext
	err = s.read(ctx, func(t *txn) error {
		out = AgentContext{}
		p, err := preferencesJSON(t, tenant, agent)
		if err != nil {
			return err
		}
		if out.Preferences, err = prefsObject(p); err != nil {
			return err
		}
		if out.Learnings, out.LearningsTotal, err = recentLearnings(t, tenant, agent, limit); err != nil {
			return err
		}
		if out.Unread, out.UnreadTotal, err = unreadMessages(t, tenant, agent, limit); err != nil {
			return err
		}
		if project != "" {
			out.Handoff, err = projectHandoff(t, tenant, project)
		}
		return err
	})
	return out, err
}
