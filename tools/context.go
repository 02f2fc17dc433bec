package tools

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
)

// get_agent_context and translate_path.

// Depths of get_agent_context: how many learnings and unread messages are
// considered before trimming to the token budget.
var contextDepths = map[string]int{"hot": 5, "warm": 20, "cold": 50}

const (
	defaultDepth     = "warm"
	defaultMaxTokens = 4000
	minMaxTokens     = 100
	maxMaxTokens     = 100000
)

// agentContextArgs are the arguments of get_agent_context.
type agentContextArgs struct {
	AgentID   string `json:"agentId" jsonschema:"the agent" max:"256"`
	ProjectID string `json:"projectId,omitempty" jsonschema:"include this project's handoff (read, not consumed)" max:"256"`
	Depth     string `json:"depth,omitempty" jsonschema:"how far back to look: hot (5 learnings and messages), warm (20), cold (50); default warm"`
	MaxTokens int    `json:"maxTokens,omitempty" jsonschema:"token budget of the answer (default 4000, 100 to 100000)"`
}

type contextOmitted struct {
	Handoff     bool `json:"handoff"`
	Preferences bool `json:"preferences"`
	Messages    int  `json:"messages"`
	Learnings   int  `json:"learnings"`
}

type agentContextResult struct {
	AgentID         string         `json:"agentId"`
	ProjectID       string         `json:"projectId,omitempty"`
	Depth           string         `json:"depth"`
	MaxTokens       int            `json:"maxTokens"`
	EstimatedTokens int            `json:"estimatedTokens"`
	Truncated       bool           `json:"truncated"`
	Handoff         *handoffWire   `json:"handoff,omitempty"`
	Preferences     map[string]any `json:"preferences,omitempty"`
	UnreadMessages  []messageWire  `json:"unreadMessages"`
	UnreadTotal     int            `json:"unreadTotal"`
	Learnings       []learningWire `json:"learnings"`
	LearningsTotal  int            `json:"learningsTotal"`
	Omitted         contextOmitted `json:"omitted"`
}

func (h *Handlers) getAgentContext() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("get_agent_context", "Get Agent Context",
			"Assemble what an agent needs to resume work: the project's handoff (read, not consumed), its preferences, "+
				"unread messages (most urgent first) and recent learnings, in that priority, trimmed to maxTokens "+
				"(estimated at 4 bytes per token). Returns the kept items with totals and what was omitted.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchemaWith[agentContextArgs](map[string]prop{
				"depth":     {enum: []string{"hot", "warm", "cold"}, def: defaultDepth},
				"maxTokens": {def: defaultMaxTokens},
			})),
		Handler: handle(h, h.doGetAgentContext),
	}
}

// tokens estimates the tokens v takes as JSON: 4 bytes per token.
func tokens(v any) int {
	b, _ := json.Marshal(v)
	return (len(b) + 3) / 4
}

var priorityRank = map[string]int{"urgent": 0, "high": 1, "normal": 2, "low": 3}

func (h *Handlers) doGetAgentContext(ctx context.Context, args agentContextArgs) (any, error) {
	if err := checkOptionalIDs(idArg{"agentId", args.AgentID}, idArg{"projectId", args.ProjectID}); err != nil {
		return nil, err
	}
	depth := args.Depth
	if depth == "" {
		depth = defaultDepth
	}
	n, ok := contextDepths[depth]
	if !ok {
		return nil, argErrorf("depth must be hot, warm or cold")
	}
	budget := args.MaxTokens
	if budget == 0 {
		budget = defaultMaxTokens
	}
	if budget < minMaxTokens || budget > maxMaxTokens {
		return nil, argErrorf("maxTokens must be between %d and %d", minMaxTokens, maxMaxTokens)
	}
	ac, err := h.store.AgentContext(ctx, args.AgentID, args.ProjectID, n)
	if err != nil {
		return nil, err
	}
	out := agentContextResult{AgentID: args.AgentID, ProjectID: args.ProjectID, Depth: depth, MaxTokens: budget,
		UnreadMessages: []messageWire{}, UnreadTotal: ac.UnreadTotal, Learnings: []learningWire{}, LearningsTotal: ac.LearningsTotal}
	used := tokens(out)
	fits := func(v any) bool {
		c := tokens(v) + 1
		if used+c > budget {
			out.Truncated = true
			return false
		}
		used += c
		return true
	}
	if ho := handoffToWire(ac.Handoff); ho != nil {
		if fits(ho) {
			out.Handoff = ho
		} else {
			out.Omitted.Handoff = true
		}
	}
	if len(ac.Preferences) > 0 {
		if fits(ac.Preferences) {
			out.Preferences = ac.Preferences
		} else {
			out.Omitted.Preferences = true
		}
	}
	msgs := slices.Clone(ac.Unread)
	slices.SortStableFunc(msgs, func(a, b memory.Message) int { return priorityRank[a.Priority] - priorityRank[b.Priority] })
	for _, m := range messagesToWire(msgs) {
		if fits(m) {
			out.UnreadMessages = append(out.UnreadMessages, m)
		} else {
			out.Omitted.Messages++
		}
	}
	for _, l := range learningsToWire(ac.Learnings) {
		if fits(l) {
			out.Learnings = append(out.Learnings, l)
		} else {
			out.Omitted.Learnings++
		}
	}
	out.EstimatedTokens = tokens(out)
	return out, nil
}

// translatePathArgs are the arguments of translate_path.
type translatePathArgs struct {
	Path         string `json:"path" jsonschema:"the path to translate" max:"4096"`
	FromPlatform string `json:"fromPlatform" jsonschema:"the platform the path is written for"`
	ToPlatform   string `json:"toPlatform" jsonschema:"the platform to write it for"`
	Distro       string `json:"distro,omitempty" jsonschema:"WSL distribution, needed to reach a WSL path outside /mnt from Windows" max:"128"`
}

type translatePathResult struct {
	Path         string `json:"path"`
	Translated   string `json:"translated"`
	FromPlatform string `json:"fromPlatform"`
	ToPlatform   string `json:"toPlatform"`
}

var platforms = []string{"windows", "wsl", "linux"}

func (h *Handlers) translatePath() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("translate_path", "Translate Path",
			"Translate a file path between windows, wsl and linux: C:\\x is /mnt/c/x in WSL, \\\\wsl$\\<distro>\\x and "+
				"\\\\wsl.localhost\\<distro>\\x are /x. Returns the translated path; nothing is read or written.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchemaWith[translatePathArgs](map[string]prop{
				"fromPlatform": {enum: platforms},
				"toPlatform":   {enum: platforms},
			})),
		Handler: handle(h, h.doTranslatePath),
	}
}

func (h *Handlers) doTranslatePath(_ context.Context, args translatePathArgs) (any, error) {
	out, err := translate(args.Path, args.FromPlatform, args.ToPlatform, args.Distro)
	if err != nil {
		return nil, err
	}
	return translatePathResult{Path: args.Path, Translated: out, FromPlatform: args.FromPlatform, ToPlatform: args.ToPlatform}, nil
}

var (
	windowsDrive = regexp.MustCompile(`^([A-Za-z]):(?:[\\/](.*))?$`)
	wslShare     = regexp.MustCompile(`(?i)^[\\/]{2}wsl(?:\$|\.localhost)[\\/]([^\\/]+)(?:[\\/](.*))?$`)
	mountPath    = regexp.MustCompile(`^/mnt/([A-Za-z])(?:/(.*))?$`)
)

// translate converts path between platforms. wsl and linux share the POSIX
// form; on plain linux, as in WSL, /mnt/<drive> is taken to be the drive.
func translate(path, from, to, distro string) (string, error) {
	if !slices.Contains(platforms, from) || !slices.Contains(platforms, to) {
		return "", argErrorf("fromPlatform and toPlatform must be windows, wsl or linux")
	}
	if path == "" {
		return "", argErrorf("path must not be empty")
	}
	if from == to || (from != "windows" && to != "windows") {
		return path, nil
	}
	if from == "windows" { // to POSIX
		if m := windowsDrive.FindStringSubmatch(path); m != nil {
			return strings.TrimSuffix("/mnt/"+strings.ToLower(m[1])+"/"+strings.ReplaceAll(m[2], `\`, "/"), "/"), nil
		}
		if m := wslShare.FindStringSubmatch(path); m != nil {
			return "/" + strings.ReplaceAll(m[2], `\`, "/"), nil
		}
		if strings.HasPrefix(path, `\\`) || strings.HasPrefix(path, "//") {
			return "", argErrorf("network path %q has no %s equivalent", path, to)
		}
		return strings.ReplaceAll(path, `\`, "/"), nil // relative
	}
	// POSIX to windows
	if m := mountPath.FindStringSubmatch(path); m != nil {
		return strings.ToUpper(m[1]) + `:\` + strings.ReplaceAll(m[2], "/", `\`), nil
	}
	if strings.HasPrefix(path, "/") {
		if distro == "" {
			return "", argErrorf("path %q is inside WSL; give distro (e.g. Ubuntu) to reach it from Windows", path)
		}
		return `\\wsl.localhost\` + distro + strings.ReplaceAll(path, "/", `\`), nil
	}
	return strings.ReplaceAll(path, "/", `\`), nil // relative
}
