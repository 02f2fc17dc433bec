package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/server"
)

// PreferenceStore is the storage of set_preferences.
type PreferenceStore interface {
	SetPreferences(ctx context.Context, agent string, patch map[string]any) (map[string]any, error)
}

// setPreferencesArgs are the arguments of set_preferences.
type setPreferencesArgs struct {
	Preferences map[string]any `json:"preferences" jsonschema:"preferences to merge in; nested objects merge, a null value removes the key"`
	AgentID     string         `json:"agentId,omitempty" jsonschema:"the agent (default: the agent named by your credential)" max:"256"`
}

type setPreferencesResult struct {
	Status      string         `json:"status"`
	AgentID     string         `json:"agentId"`
	Preferences map[string]any `json:"preferences"`
}

func (h *Handlers) setPreferences() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("set_preferences", "Set Preferences",
			"Merge preferences into an agent's stored preferences (one record per agent; keys not given are kept, "+
				"a null value removes a key). Returns status updated and the merged preferences.",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[setPreferencesArgs]()),
		Handler: handle(h, h.doSetPreferences),
	}
}

func (h *Handlers) doSetPreferences(ctx context.Context, args setPreferencesArgs) (any, error) {
	agent, err := agentOrDefault(ctx, args.AgentID, "agentId")
	if err != nil {
		return nil, err
	}
	p, err := h.store.SetPreferences(ctx, agent, args.Preferences)
	if err != nil {
		return nil, err
	}
	return setPreferencesResult{Status: "updated", AgentID: agent, Preferences: p}, nil
}
