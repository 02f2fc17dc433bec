package main

import "github.com/nexus-mcp/nexus-mcp/memory"

// The cross-tenant matrix table: one entry per tool returned by tools/list.
// A tool without an entry fails TestMatrixTenantIsolation, so a new tool
// joins the matrix by adding its row here.

// mxIDs are the ids and names a probe addresses: A's real ones, or random
// ones of the same shape for the existence-oracle comparison.
type mxIDs struct {
	Entity  string // A's entity name (a canary)
	Entity2 string // A's second entity name (a canary)
	Obs     string // an observation of Entity (a canary)
	RelType string // the relation type Entity -> Entity2 (a canary)
	MsgID   string // a message id in A's inbox of coder
	Solo    string // an agent id only A uses (has messages; registered by A only in tenant agent scope)
	Priv    string // an agent id only A registers, in tenant agent scope only
	Shared  string // an entity name both tenants use (A's created first)
	Project string // a project id only A uses (has a pending handoff)
	Deleg   string // A's delegation id
	Trace   string // A's delegation trace id
	Session string // A's trust session id
	User    string // A's user a1
	Canary  string // a canary string of A's, as a search query
}

// mxProbe is one call B makes against A's data. args builds the arguments
// from ids; with oracle set, the call is repeated with random ids of the
// same shape and both answers must be byte-identical after normalization.
// control marks a positive control: the answer must contain B's own canary.
type mxProbe struct {
	op      string
	args    func(a mxIDs, b *mxFixture) map[string]any
	oracle  bool
	control bool
	// settle waits until the servers' indexers have embedded every queued
	// entity, so that both calls of an oracle see the same vectors.
	settle bool
}

// mxEntry is a tool's row: whether A's fixture writes with it, and the
// probes B runs.
type mxEntry struct {
	writes bool
	probes []mxProbe
}

func mxArgs(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// mxTable maps every tool name to its matrix entry. planner and coder are
// agent ids both tenants use; "proj-1" is a project id both tenants use.
var mxTable = map[string]mxEntry{
	"create_entities": {writes: true, probes: []mxProbe{
		{op: "write", args: func(a mxIDs, b *mxFixture) map[string]any {
			return mxArgs("entities", []any{mxArgs("name", "b-extra-"+b.bCanary, "entityType", "t", "observations", []any{b.bCanary})})
		}},
	}},
	"create_relations": {writes: true, probes: []mxProbe{
		{op: "update", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("relations", []any{mxArgs("from", a.Entity, "to", a.Entity2, "relationType", a.RelType)})
		}},
	}},
	"add_observations": {writes: true, probes: []mxProbe{
		{op: "update", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("observations", []any{mxArgs("entityName", a.Entity, "contents", []any{"b-was-here"})})
		}},
	}},
	"delete_entities": {probes: []mxProbe{
		{op: "delete", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("entityNames", []any{a.Entity, a.Entity2})
		}},
	}},
	"delete_observations": {probes: []mxProbe{
		{op: "delete", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("deletions", []any{mxArgs("entityName", a.Entity, "observations", []any{a.Obs})})
		}},
	}},
	"delete_relations": {probes: []mxProbe{
		{op: "delete", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("relations", []any{mxArgs("from", a.Entity, "to", a.Entity2, "relationType", a.RelType)})
		}},
	}},
	"read_graph": {probes: []mxProbe{
		{op: "list", control: true, args: func(mxIDs, *mxFixture) map[string]any { return mxArgs() }},
		{op: "list-page", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("limit", 1, "offset", 1) }},
	}},
	"search_nodes": {probes: []mxProbe{
		{op: "search", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("query", a.Canary) }},
		{op: "search-name", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("query", a.Entity) }},
		{op: "search-own", control: true, args: func(_ mxIDs, b *mxFixture) map[string]any { return mxArgs("query", b.bCanary) }},
		// under three characters the search scans the tenant's entities
		{op: "search-short", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("query", "nr") }},
	}},
	"open_nodes": {probes: []mxProbe{
		{op: "open", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("names", []any{a.Entity, a.Entity2}) }},
		{op: "open-own", control: true, args: func(_ mxIDs, b *mxFixture) map[string]any { return mxArgs("names", []any{b.bEntity}) }},
	}},
	// The fixtures' servers have an embedder (fakeEmbedServer): hybrid
	// fuses B's word and vector rankings, semantic ranks B's vectors only.
	"search_entities": {probes: []mxProbe{
		{op: "search-hybrid", oracle: true, settle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("query", a.Canary) }},
		{op: "search-semantic", oracle: true, settle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("query", a.Canary+" "+a.Obs, "searchType", "semantic")
		}},
		{op: "search-semantic-name", oracle: true, settle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("query", a.Entity, "searchType", "semantic")
		}},
		{op: "search-exact", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("query", a.Canary, "searchType", "exact")
		}},
		{op: "search-graph", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("query", a.Entity, "searchType", "graph")
		}},
		{op: "search-own", control: true, settle: true, args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("query", b.bCanary, "searchType", "semantic")
		}},
	}},
	"send_ai_message": {writes: true, probes: []mxProbe{
		{op: "send-to-a-agent", oracle: true, args: func(a mxIDs, b *mxFixture) map[string]any {
			return mxArgs("from", "coder", "to", a.Solo, "content", "from b "+b.bCanary)
		}},
		{op: "send-shared-id", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("from", "coder", "to", "planner", "content", "from b "+b.bCanary)
		}},
		{op: "broadcast", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("from", b.bAgent, "broadcast", true, "content", "all b "+b.bCanary)
		}},
	}},
	"get_ai_messages": {writes: false, probes: []mxProbe{
		{op: "read-a-agent", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("agentId", a.Solo) }},
		{op: "read-shared-id", control: true, args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("agentId", "coder") }},
		{op: "replay-offset", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("agentId", "coder", "offset", 1, "limit", 1) }},
		{op: "read-mark", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("agentId", "coder", "markAsRead", true) }},
	}},
	"mark_messages_read": {probes: []mxProbe{
		{op: "update", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("agentId", "coder", "messageIds", []any{a.MsgID})
		}},
		{op: "update-a-agent", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("agentId", a.Solo) }},
	}},
	"register_agent": {writes: true, probes: []mxProbe{
		// global agent scope: the id is taken (documented); A's agent must not change
		{op: "update", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("agentId", "planner", "name", "B", "capabilities", []any{"b"}, "endpoint", "http://127.0.0.1:9/"+b.bCanary)
		}},
		// tenant agent scope: an id only A registered is new to B, like a
		// random one (global scope: a taken id, both times)
		{op: "register-a-private", oracle: true, args: func(a mxIDs, b *mxFixture) map[string]any {
			id := "planner"
			if b.scope == memory.AgentScopeTenant {
				id = a.Priv
			}
			return mxArgs("agentId", id, "name", "B", "capabilities", []any{"b"})
		}},
	}},
	"set_agent_identity": {writes: true, probes: []mxProbe{
		{op: "rename", args: func(mxIDs, *mxFixture) map[string]any {
			return mxArgs("currentAgentId", "planner", "newAgentId", "b-stolen", "autoRegister", false)
		}},
		{op: "update", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("newAgentId", "coder", "newName", "B", "metadata", mxArgs("b", b.bCanary))
		}},
	}},
	"get_agent_status": {probes: []mxProbe{
		{op: "open", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("agentId", "planner") }},
		{op: "open-a-agent", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("agentId", a.Solo) }},
		{op: "list", control: true, args: func(mxIDs, *mxFixture) map[string]any { return mxArgs() }},
		{op: "list-page", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("offset", 1, "limit", 1) }},
	}},
	"record_learning": {writes: true, probes: []mxProbe{
		{op: "write-shared-id", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("agentId", "planner", "context", "b", "lesson", "b lesson "+b.bCanary)
		}},
	}},
	"set_preferences": {writes: true, probes: []mxProbe{
		{op: "update-shared-id", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("agentId", "planner", "preferences", mxArgs("b", b.bCanary))
		}},
	}},
	"get_individual_memory": {probes: []mxProbe{
		{op: "read-a-agent", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("agentId", a.Solo) }},
		{op: "read-shared-id", control: true, args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("agentId", "planner") }},
	}},
	"end_session": {writes: true, probes: []mxProbe{
		{op: "write", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("agentId", "coder", "projectId", "proj-2", "summary", "b summary "+b.bCanary)
		}},
	}},
	"begin_session": {probes: []mxProbe{
		{op: "consume-a-handoff", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("agentId", "coder", "projectId", a.Project)
		}},
		{op: "consume-shared-project", control: true, args: func(mxIDs, *mxFixture) map[string]any {
			return mxArgs("agentId", "coder", "projectId", "proj-1")
		}},
	}},
	"get_agent_context": {probes: []mxProbe{
		{op: "read-a-project", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("agentId", a.Solo, "projectId", a.Project)
		}},
		{op: "read-shared-ids", control: true, args: func(mxIDs, *mxFixture) map[string]any {
			return mxArgs("agentId", "planner", "projectId", "proj-1", "depth", "cold")
		}},
	}},
	"translate_path": {probes: []mxProbe{
		{op: "call", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("path", `C:\`+a.Canary, "fromPlatform", "windows", "toPlatform", "linux")
		}},
	}},
	"prepare_agent_call": {writes: true, probes: []mxProbe{
		{op: "delegate-from-a-agent", args: func(mxIDs, *mxFixture) map[string]any {
			return mxArgs("calling_agent", "planner", "target_agent", "coder", "tool_name", "read_graph")
		}},
		{op: "reuse-a-trace", oracle: true, args: func(a mxIDs, b *mxFixture) map[string]any {
			return mxArgs("calling_agent", b.bAgent, "target_agent", "coder", "tool_name", "read_graph", "trace_id", a.Trace)
		}},
	}},
	"verify_agent_response": {probes: []mxProbe{
		{op: "verify", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("delegation_id", a.Deleg, "response", mxArgs("content", []any{}))
		}},
	}},
	"get_delegation_history": {probes: []mxProbe{
		{op: "list", control: true, args: func(mxIDs, *mxFixture) map[string]any { return mxArgs() }},
		{op: "filter-trace", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("trace_id", a.Trace) }},
		{op: "filter-agent", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("calling_agent", "planner") }},
	}},
	"revoke_delegation": {probes: []mxProbe{
		{op: "delete", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("delegation_id", a.Deleg) }},
	}},
	"call_agent_tool": {probes: []mxProbe{
		{op: "call-a-agent", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any {
			return mxArgs("calling_agent", a.Solo, "target_agent", a.Solo, "tool_name", "read_graph", "arguments", mxArgs())
		}},
		{op: "call-shared-id", args: func(mxIDs, *mxFixture) map[string]any {
			return mxArgs("calling_agent", "planner", "target_agent", "coder", "tool_name", "read_graph", "arguments", mxArgs())
		}},
	}},
	"create_trust_session": {writes: true, probes: []mxProbe{
		// names A's second user; revoke_trust_sessions_by_human below names a1
		{op: "write-a-user", args: func(_ mxIDs, b *mxFixture) map[string]any {
			return mxArgs("human_origin", mxArgs("user_id", "a2", "display_name", b.bCanary), "agent_id", "planner")
		}},
	}},
	"get_trust_session": {probes: []mxProbe{
		{op: "open", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("session_id", a.Session) }},
	}},
	"list_trust_sessions": {probes: []mxProbe{
		{op: "list", control: true, args: func(mxIDs, *mxFixture) map[string]any { return mxArgs("active_only", false) }},
	}},
	"revoke_trust_session": {probes: []mxProbe{
		{op: "delete", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("session_id", a.Session) }},
	}},
	"revoke_trust_sessions_by_human": {probes: []mxProbe{
		{op: "delete", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("user_id", a.User) }},
	}},
	"get_audit_log": {probes: []mxProbe{
		{op: "list", args: func(mxIDs, *mxFixture) map[string]any { return mxArgs() }},
		{op: "filter-agent", oracle: true, args: func(a mxIDs, _ *mxFixture) map[string]any { return mxArgs("agent", a.Solo) }},
	}},
}

// mxSelfAgent lists, per tool, every argument naming the agent acting now
// ("me"). With an agent-bound credential each must equal the bound agent or
// be omitted (then it defaults to it); base is a valid call without it.
// TestMatrixAgentBoundKeyActsAsItsAgent probes every entry.
var mxSelfAgent = map[string][]struct {
	arg  string
	base func() map[string]any
}{
	"send_ai_message":    {{"from", func() map[string]any { return mxArgs("to", "coder", "content", "hello") }}},
	"get_ai_messages":    {{"agentId", mxNoArgs}},
	"mark_messages_read": {{"agentId", mxNoArgs}},
	"register_agent":     {{"agentId", func() map[string]any { return mxArgs("name", "N", "capabilities", []any{"c"}) }}},
	"set_agent_identity": {
		{"newAgentId", func() map[string]any { return mxArgs("newName", "N") }},
		{"currentAgentId", func() map[string]any { return mxArgs("newAgentId", "planner") }},
	},
	"record_learning":       {{"agentId", func() map[string]any { return mxArgs("context", "c", "lesson", "l") }}},
	"set_preferences":       {{"agentId", func() map[string]any { return mxArgs("preferences", mxArgs("k", "v")) }}},
	"get_individual_memory": {{"agentId", mxNoArgs}},
	"end_session":           {{"agentId", func() map[string]any { return mxArgs("projectId", "p-self", "summary", "s") }}},
	"begin_session":         {{"agentId", func() map[string]any { return mxArgs("projectId", "p-self") }}},
	"get_agent_context":     {{"agentId", func() map[string]any { return mxArgs("projectId", "p-self") }}},
	"prepare_agent_call": {{"calling_agent", func() map[string]any {
		return mxArgs("target_agent", "coder", "tool_name", "read_graph")
	}}},
	"call_agent_tool": {{"calling_agent", func() map[string]any {
		return mxArgs("target_agent", "coder", "tool_name", "read_graph", "arguments", mxArgs())
	}}},
	"create_trust_session": {{"agent_id", func() map[string]any { return mxArgs("human_origin", mxArgs("display_name", "d")) }}},
}

// mxOtherAgent lists the arguments that name an agent other than the
// caller (a recipient, a target, a lookup, a filter), with the reason they
// are not the acting agent. Every agent-naming argument of every tool is
// in mxSelfAgent or here.
var mxOtherAgent = map[string]map[string]string{
	"send_ai_message":        {"to": "recipient", "agentId": "recipient (alias of to)"},
	"get_agent_status":       {"agentId": "registry lookup"},
	"prepare_agent_call":     {"target_agent": "the agent called"},
	"call_agent_tool":        {"target_agent": "the agent called"},
	"get_delegation_history": {"calling_agent": "filter", "target_agent": "filter"},
	"get_audit_log":          {"agent": "filter"},
}

func mxNoArgs() map[string]any { return mxArgs() }
