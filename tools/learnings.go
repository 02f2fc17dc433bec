package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// Individual memory: learnings and the get_individual_memory view, scoped
// by (tenant, agent).

// LearningStore is the storage of the learning tools.
type LearningStore interface {
	RecordLearning(ctx context.Context, agent string, l memory.NewLearning) (memory.Learning, error)
	IndividualMemory(ctx context.Context, agent string) (memory.IndividualMemory, error)
}

const (
	defaultConfidence = 0.8
	defaultLearnings  = 20
	maxLearnings      = 50
)

type learningWire struct {
	LearningID string  `json:"learningId"`
	AgentID    string  `json:"agentId"`
	Context    string  `json:"context"`
	Lesson     string  `json:"lesson"`
	Confidence float64 `json:"confidence"`
	Source     string  `json:"source"`
	ProjectID  string  `json:"projectId,omitempty"`
	CreatedAt  string  `json:"createdAt"`
}

func learningsToWire(ls []memory.Learning) []learningWire {
	out := make([]learningWire, len(ls))
	for i, l := range ls {
		out[i] = learningWire{LearningID: l.ID, AgentID: l.AgentID, Context: l.Context, Lesson: l.Lesson,
			Confidence: l.Confidence, Source: l.Source, ProjectID: l.ProjectID, CreatedAt: l.CreatedAt}
	}
	return out
}

// recordLearningArgs are the arguments of record_learning.
type recordLearningArgs struct {
	Context    string   `json:"context" jsonschema:"the situation in which the lesson applies"`
	Lesson     string   `json:"lesson" jsonschema:"what was learned"`
	AgentID    string   `json:"agentId,omitempty" jsonschema:"the learning agent (default: the agent named by your credential)" max:"256"`
	Confidence *float64 `json:"confidence,omitempty" jsonschema:"confidence from 0 to 1 (default 0.8)"`
}

type recordLearningResult struct {
	Status   string       `json:"status"`
	Learning learningWire `json:"learning"`
}

func (h *Handlers) recordLearning() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("record_learning", "Record Learning",
			"Record a lesson an agent learned, with its context and a confidence, in the agent's individual memory. "+
				"Returns status recorded and the stored learning.",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchemaWith[recordLearningArgs](map[string]prop{"confidence": {def: defaultConfidence}})),
		Handler: handle(h, h.doRecordLearning),
	}
}

func (h *Handlers) doRecordLearning(ctx context.Context, args recordLearningArgs) (any, error) {
	agent, err := agentOrDefault(ctx, args.AgentID, "agentId")
	if err != nil {
		return nil, err
	}
	conf := defaultConfidence
	if args.Confidence != nil {
		conf = *args.Confidence
	}
	l, err := h.store.RecordLearning(ctx, agent, memory.NewLearning{Context: args.Context, Lesson: args.Lesson, Confidence: conf})
	if err != nil {
		return nil, err
	}
	return recordLearningResult{Status: "recorded", Learning: learningsToWire([]memory.Learning{l})[0]}, nil
}

// individualMemoryArgs are the arguments of get_individual_memory.
type individualMemoryArgs struct {
	AgentID string `json:"agentId,omitempty" jsonschema:"the agent (default: the agent named by your credential)" max:"256"`
	Limit   int    `json:"limit,omitempty" jsonschema:"at most this many recent learnings (default 20, at most 50)"`
}

type individualMemoryResult struct {
	AgentID        string         `json:"agentId"`
	Preferences    map[string]any `json:"preferences"`
	Learnings      []learningWire `json:"learnings"`
	LearningsTotal int            `json:"learningsTotal"`
	Capabilities   []string       `json:"capabilities"`
}

func (h *Handlers) getIndividualMemory() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_individual_memory", "Get Individual Memory",
			"Read an agent's individual memory: its preferences, its most recent learnings (default 20, at most 50) "+
				"with learningsTotal, and its capabilities if your tenant registered it.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchemaWith[individualMemoryArgs](map[string]prop{"limit": {def: defaultLearnings}})),
		Handler: handle(h, h.doGetIndividualMemory),
	}
}

func (h *Handlers) doGetIndividualMemory(ctx context.Context, args individualMemoryArgs) (any, error) {
	agent, err := agentOrDefault(ctx, args.AgentID, "agentId")
	if err != nil {
		return nil, err
	}
	limit, _, err := page(args.Limit, 0, defaultLearnings, maxLearnings)
	if err != nil {
		return nil, err
	}
	m, err := h.store.IndividualMemory(ctx, agent)
	if err != nil {
		return nil, err
	}
	ls := m.Learnings
	if len(ls) > limit {
		ls = ls[:limit]
	}
	return individualMemoryResult{AgentID: agent, Preferences: m.Preferences, Learnings: learningsToWire(ls),
		LearningsTotal: m.LearningsTotal, Capabilities: m.Capabilities}, nil
}
