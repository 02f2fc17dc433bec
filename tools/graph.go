package tools

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// The nine knowledge-graph tools keep the names, input schemas, result
// shapes, annotations and semantics of @modelcontextprotocol/server-memory.

// GraphStore is the storage of the knowledge-graph tools.
type GraphStore interface {
	CreateEntities(ctx context.Context, entities []memory.Entity) ([]memory.Entity, error)
	CreateRelations(ctx context.Context, relations []memory.Relation) ([]memory.Relation, error)
	AddObservations(ctx context.Context, adds []memory.ObservationAdd) ([]memory.ObservationsAdded, error)
	DeleteEntities(ctx context.Context, names []string) error
	DeleteObservations(ctx context.Context, dels []memory.ObservationDeletion) error
	DeleteRelations(ctx context.Context, relations []memory.Relation) error
	ReadGraph(ctx context.Context, page memory.Page) (memory.Graph, error)
	SearchNodes(ctx context.Context, query string, page memory.Page) (memory.Graph, error)
	OpenNodes(ctx context.Context, names []string, page memory.Page) (memory.Graph, error)
	// Publish and OnChange carry "the graph of tenant T changed" to the
	// resource subscribers of every replica sharing the database.
	Publish(ctx context.Context, kind string) error
	OnChange(fn func(kind, tenant string))
	// WatchOtherProcesses makes changes published by other processes on
	// the same SQLite file reach OnChange too, until stop is called; it is
	// on while this process has resource subscribers.
	WatchOtherProcesses() (stop func())
}

// entityWire is an entity as the reference server sends and receives it.
type entityWire struct {
	Name         string   `json:"name" jsonschema:"The name of the entity" max:"512"`
	EntityType   string   `json:"entityType" jsonschema:"The type of the entity" max:"512"`
	Observations []string `json:"observations" jsonschema:"An array of observation contents associated with the entity"`
}

// createEntityWire is entityWire plus the optional nexus-mcp extras aliases
// and metadata, accepted and returned by create_entities only (sent back
// only when set).
type createEntityWire struct {
	Name         string         `json:"name" jsonschema:"The name of the entity" max:"512"`
	EntityType   string         `json:"entityType" jsonschema:"The type of the entity" max:"512"`
	Observations []string       `json:"observations" jsonschema:"An array of observation contents associated with the entity"`
	Aliases      []string       `json:"aliases,omitempty" jsonschema:"optional: other names of the entity" max:"100"`
	Metadata     map[string]any `json:"metadata,omitempty" jsonschema:"optional: free-form data stored with the entity"`
}

// relationWire is a relation as the reference server sends and receives it.
type relationWire struct {
	From         string `json:"from" jsonschema:"The name of the entity where the relation starts" max:"512"`
	To           string `json:"to" jsonschema:"The name of the entity where the relation ends" max:"512"`
	RelationType string `json:"relationType" jsonschema:"The type of the relation" max:"512"`
}

// graphWire is the result of read_graph, search_nodes and open_nodes.
// Total, NextOffset and Truncated appear only on a partial answer.
type graphWire struct {
	Entities   []entityWire   `json:"entities"`
	Relations  []relationWire `json:"relations"`
	Total      *int           `json:"total,omitempty" jsonschema:"number of matching entities, when the answer is partial or paged"`
	NextOffset *int           `json:"nextOffset,omitempty" jsonschema:"offset of the next page, when truncated"`
	Truncated  bool           `json:"truncated,omitempty" jsonschema:"true when entities were left off to respect limit or the size budget"`
	// offset is where the page started; touching is true when its
	// relations are those touching its entities (not only starting at them).
	offset   int
	touching bool
}

type statusWire struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

func entitiesToWire(es []memory.Entity) []entityWire {
	out := make([]entityWire, len(es))
	for i, e := range es {
		obs := e.Observations
		if obs == nil {
			obs = []string{}
		}
		out[i] = entityWire{Name: e.Name, EntityType: e.EntityType, Observations: obs}
	}
	return out
}

func relationsToWire(rs []memory.Relation) []relationWire {
	out := make([]relationWire, len(rs))
	for i, r := range rs {
		out[i] = relationWire{From: r.From, To: r.To, RelationType: r.RelationType}
	}
	return out
}

func relationsFromWire(rs []relationWire) []memory.Relation {
	out := make([]memory.Relation, len(rs))
	for i, r := range rs {
		out[i] = memory.Relation{From: r.From, To: r.To, RelationType: r.RelationType}
	}
	return out
}

// graphToWire renders g; paged reports whether the caller asked for a page,
// in which case total is always given.
func graphToWire(g memory.Graph, paged bool) graphWire {
	w := graphWire{Entities: entitiesToWire(g.Entities), Relations: relationsToWire(g.Relations)}
	if paged || g.Truncated {
		w.Total = ptr(g.Total)
	}
	if g.Truncated {
		w.NextOffset = ptr(g.NextOffset)
		w.Truncated = true
	}
	return w
}

// graphPage renders a page of a graph read that started at offset. A page
// that could not take even its first entity (that entity with its
// relations alone exceeds the budget) is refused, since continuing from it
// would return the same empty page forever.
func (h *Handlers) graphPage(g memory.Graph, offset int, paged, touching bool) (any, error) {
	if g.Truncated && len(g.Entities) == 0 {
		return nil, argErrorf("the entity at offset %d, with its relations, is larger than the %d-byte answer limit "+
			"and cannot be sent whole; continue with offset %d", offset, h.budget, offset+1)
	}
	w := graphToWire(g, paged)
	w.offset, w.touching = offset, touching
	return w, nil
}

// createEntitiesArgs are the arguments of create_entities.
type createEntitiesArgs struct {
	Entities []createEntityWire `json:"entities"`
}

type createEntitiesResult struct {
	Entities []createEntityWire `json:"entities"`
}

func (h *Handlers) createEntities() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("create_entities", "Create Entities",
			"Create multiple new entities in the knowledge graph",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[createEntitiesArgs](), outputSchema[createEntitiesResult]()),
		Handler: handle(h, h.doCreateEntities),
	}
}

func (h *Handlers) doCreateEntities(ctx context.Context, args createEntitiesArgs) (any, error) {
	in := make([]memory.Entity, len(args.Entities))
	for i, e := range args.Entities {
		in[i] = memory.Entity{Name: e.Name, EntityType: e.EntityType, Observations: e.Observations, Aliases: e.Aliases, Metadata: e.Metadata}
	}
	created, err := h.store.CreateEntities(ctx, in)
	if err != nil {
		return nil, err
	}
	h.graphChanged(ctx, len(created) > 0)
	out := createEntitiesResult{Entities: make([]createEntityWire, len(created))}
	for i, e := range created {
		obs := e.Observations
		if obs == nil {
			obs = []string{}
		}
		out.Entities[i] = createEntityWire{Name: e.Name, EntityType: e.EntityType, Observations: obs, Aliases: e.Aliases, Metadata: e.Metadata}
	}
	return out, nil
}

// createRelationWire is relationWire plus the optional nexus-mcp extra
// properties, accepted and returned by create_relations only.
type createRelationWire struct {
	From         string         `json:"from" jsonschema:"The name of the entity where the relation starts" max:"512"`
	To           string         `json:"to" jsonschema:"The name of the entity where the relation ends" max:"512"`
	RelationType string         `json:"relationType" jsonschema:"The type of the relation" max:"512"`
	Properties   map[string]any `json:"properties,omitempty" jsonschema:"optional: free-form data stored with the relation"`
}

// createRelationsArgs are the arguments of create_relations.
type createRelationsArgs struct {
	Relations []createRelationWire `json:"relations"`
}

type createRelationsResult struct {
	Relations []createRelationWire `json:"relations"`
}

func (h *Handlers) createRelations() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("create_relations", "Create Relations",
			"Create multiple new relations between entities in the knowledge graph. Relations should be in active voice",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[createRelationsArgs](), outputSchema[createRelationsResult]()),
		Handler: handle(h, h.doCreateRelations),
	}
}

func (h *Handlers) doCreateRelations(ctx context.Context, args createRelationsArgs) (any, error) {
	in := make([]memory.Relation, len(args.Relations))
	for i, r := range args.Relations {
		in[i] = memory.Relation{From: r.From, To: r.To, RelationType: r.RelationType, Properties: r.Properties}
	}
	created, err := h.store.CreateRelations(ctx, in)
	if err != nil {
		return nil, err
	}
	h.graphChanged(ctx, len(created) > 0)
	out := createRelationsResult{Relations: make([]createRelationWire, len(created))}
	for i, r := range created {
		out.Relations[i] = createRelationWire{From: r.From, To: r.To, RelationType: r.RelationType, Properties: r.Properties}
	}
	return out, nil
}

type observationAddWire struct {
	EntityName string   `json:"entityName" jsonschema:"The name of the entity to add the observations to" max:"512"`
	Contents   []string `json:"contents" jsonschema:"An array of observation contents to add"`
}

// addObservationsArgs are the arguments of add_observations.
type addObservationsArgs struct {
	Observations []observationAddWire `json:"observations"`
}

type observationsAddedWire struct {
	EntityName        string   `json:"entityName"`
	AddedObservations []string `json:"addedObservations"`
}

type addObservationsResult struct {
	Results []observationsAddedWire `json:"results"`
}

func (h *Handlers) addObservations() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("add_observations", "Add Observations",
			"Add new observations to existing entities in the knowledge graph",
			annotations{readOnly: false, destructive: false, idempotent: false},
			inputSchema[addObservationsArgs](), outputSchema[addObservationsResult]()),
		Handler: handle(h, h.doAddObservations),
	}
}

func (h *Handlers) doAddObservations(ctx context.Context, args addObservationsArgs) (any, error) {
	in := make([]memory.ObservationAdd, len(args.Observations))
	for i, o := range args.Observations {
		in[i] = memory.ObservationAdd{EntityName: o.EntityName, Contents: o.Contents}
	}
	res, err := h.store.AddObservations(ctx, in)
	if err != nil {
		return nil, err
	}
	out := addObservationsResult{Results: make([]observationsAddedWire, len(res))}
	changed := false
	for i, r := range res {
		out.Results[i] = observationsAddedWire{EntityName: r.EntityName, AddedObservations: r.Added}
		changed = changed || len(r.Added) > 0
	}
	h.graphChanged(ctx, changed)
	return out, nil
}

// deleteEntitiesArgs are the arguments of delete_entities.
type deleteEntitiesArgs struct {
	EntityNames []string `json:"entityNames" jsonschema:"An array of entity names to delete"`
}

func (h *Handlers) deleteEntities() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("delete_entities", "Delete Entities",
			"Delete multiple entities and their associated relations from the knowledge graph",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[deleteEntitiesArgs](), outputSchema[statusWire]()),
		Handler: handle(h, h.doDeleteEntities),
	}
}

func (h *Handlers) doDeleteEntities(ctx context.Context, args deleteEntitiesArgs) (any, error) {
	if err := h.store.DeleteEntities(ctx, args.EntityNames); err != nil {
		return nil, err
	}
	h.graphChanged(ctx, len(args.EntityNames) > 0)
	return statusWire{Success: true, Message: "Entities deleted successfully"}, nil
}

type observationDeletionWire struct {
	EntityName   string   `json:"entityName" jsonschema:"The name of the entity containing the observations" max:"512"`
	Observations []string `json:"observations" jsonschema:"An array of observations to delete"`
}

// deleteObservationsArgs are the arguments of delete_observations.
type deleteObservationsArgs struct {
	Deletions []observationDeletionWire `json:"deletions"`
}

func (h *Handlers) deleteObservations() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("delete_observations", "Delete Observations",
			"Delete specific observations from entities in the knowledge graph",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[deleteObservationsArgs](), outputSchema[statusWire]()),
		Handler: handle(h, h.doDeleteObservations),
	}
}

func (h *Handlers) doDeleteObservations(ctx context.Context, args deleteObservationsArgs) (any, error) {
	in := make([]memory.ObservationDeletion, len(args.Deletions))
	for i, d := range args.Deletions {
		in[i] = memory.ObservationDeletion{EntityName: d.EntityName, Observations: d.Observations}
	}
	if err := h.store.DeleteObservations(ctx, in); err != nil {
		return nil, err
	}
	h.graphChanged(ctx, len(in) > 0)
	return statusWire{Success: true, Message: "Observations deleted successfully"}, nil
}

// deleteRelationsArgs are the arguments of delete_relations.
type deleteRelationsArgs struct {
	Relations []relationWire `json:"relations" jsonschema:"An array of relations to delete"`
}

func (h *Handlers) deleteRelations() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("delete_relations", "Delete Relations",
			"Delete multiple relations from the knowledge graph",
			annotations{readOnly: false, destructive: true, idempotent: true},
			inputSchema[deleteRelationsArgs](), outputSchema[statusWire]()),
		Handler: handle(h, h.doDeleteRelations),
	}
}

func (h *Handlers) doDeleteRelations(ctx context.Context, args deleteRelationsArgs) (any, error) {
	if err := h.store.DeleteRelations(ctx, relationsFromWire(args.Relations)); err != nil {
		return nil, err
	}
	h.graphChanged(ctx, len(args.Relations) > 0)
	return statusWire{Success: true, Message: "Relations deleted successfully"}, nil
}

// readGraphArgs are the (optional, nexus-mcp only) arguments of read_graph.
type readGraphArgs struct {
	Limit  int `json:"limit,omitempty" jsonschema:"optional: at most this many entities (default: all that fit the size budget)"`
	Offset int `json:"offset,omitempty" jsonschema:"optional: skip this many entities (use nextOffset of a truncated answer)"`
}

func (h *Handlers) readGraph() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("read_graph", "Read Graph",
			"Read the entire knowledge graph. A graph too large for one message comes back in pages: "+
				"truncated is true and nextOffset is the offset of the next page.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[readGraphArgs](), outputSchema[graphWire]()),
		Handler: handle(h, h.doReadGraph),
	}
}

func (h *Handlers) doReadGraph(ctx context.Context, args readGraphArgs) (any, error) {
	if args.Limit < 0 || args.Offset < 0 {
		return nil, argErrorf("limit and offset must not be negative")
	}
	g, err := h.store.ReadGraph(ctx, memory.Page{Offset: args.Offset, Limit: args.Limit, MaxBytes: h.itemBudget()})
	if err != nil {
		return nil, err
	}
	return h.graphPage(g, args.Offset, args.Limit > 0 || args.Offset > 0, false)
}

// searchNodesArgs are the arguments of search_nodes.
type searchNodesArgs struct {
	Query  string `json:"query" jsonschema:"The search query to match against entity names, types, and observation content" max:"4096"`
	Offset int    `json:"offset,omitempty" jsonschema:"optional: skip this many matches (use nextOffset of a truncated answer)"`
}

func (h *Handlers) searchNodes() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("search_nodes", "Search Nodes",
			"Search for nodes in the knowledge graph based on a query",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[searchNodesArgs](), outputSchema[graphWire]()),
		Handler: handle(h, h.doSearchNodes),
	}
}

func (h *Handlers) doSearchNodes(ctx context.Context, args searchNodesArgs) (any, error) {
	if args.Offset < 0 {
		return nil, argErrorf("offset must not be negative")
	}
	g, err := h.store.SearchNodes(ctx, args.Query, memory.Page{Offset: args.Offset, MaxBytes: h.itemBudget()})
	if err != nil {
		return nil, err
	}
	return h.graphPage(g, args.Offset, args.Offset > 0, true)
}

// openNodesArgs are the arguments of open_nodes.
type openNodesArgs struct {
	Names  []string `json:"names" jsonschema:"An array of entity names to retrieve"`
	Offset int      `json:"offset,omitempty" jsonschema:"optional: skip this many of the entities found (use nextOffset of a truncated answer)"`
}

func (h *Handlers) openNodes() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("open_nodes", "Open Nodes",
			"Open specific nodes in the knowledge graph by their names",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchema[openNodesArgs](), outputSchema[graphWire]()),
		Handler: handle(h, h.doOpenNodes),
	}
}

func (h *Handlers) doOpenNodes(ctx context.Context, args openNodesArgs) (any, error) {
	if args.Offset < 0 {
		return nil, argErrorf("offset must not be negative")
	}
	g, err := h.store.OpenNodes(ctx, args.Names, memory.Page{Offset: args.Offset, MaxBytes: h.itemBudget()})
	if err != nil {
		return nil, err
	}
	return h.graphPage(g, args.Offset, args.Offset > 0, true)
}

// QueryEmbedder embeds search_entities queries (memory.Embedder's query
// side).
type QueryEmbedder interface {
	Model() string
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// DefaultEmbedTimeout bounds embedding one search query.
const DefaultEmbedTimeout = 10 * time.Second

// SearchStore is the storage of search_entities.
type SearchStore interface {
	SearchEntities(ctx context.Context, q memory.SearchQuery) (memory.SearchResult, error)
}

const (
	defaultSearchLimit = 10
	maxSearchLimit     = 200
)

// searchEntitiesArgs are the arguments of search_entities.
type searchEntitiesArgs struct {
	Query      string `json:"query" jsonschema:"words to look for in entity names, types and observations" max:"4096"`
	SearchType string `json:"searchType,omitempty" jsonschema:"hybrid (default): BM25 word ranking fused with embedding similarity when the server has an embedder, BM25 alone otherwise; semantic: embedding similarity only (an error when the server has no embedder); exact: case-insensitive substring; graph: word ranking plus the relations of the results"`
	Limit      int    `json:"limit,omitempty" jsonschema:"at most this many entities (default 10, at most 200)"`
	Offset     int    `json:"offset,omitempty" jsonschema:"skip this many entities (for the next page)"`
}

type searchHitWire struct {
	Name         string         `json:"name"`
	EntityType   string         `json:"entityType"`
	Observations []string       `json:"observations"`
	Aliases      []string       `json:"aliases,omitempty"`
	Metadata     map[string]any `json:"metadata,omitempty"`
	Score        float64        `json:"score"`
	MatchedWords int            `json:"matchedWords"`
	CreatedAt    string         `json:"createdAt"`
	UpdatedAt    string         `json:"updatedAt"`
}

type searchEntitiesResult struct {
	Entities   []searchHitWire `json:"entities"`
	Relations  []relationWire  `json:"relations,omitempty"`
	Total      int             `json:"total"`
	Offset     int             `json:"offset"`
	Limit      int             `json:"limit"`
	SearchType string          `json:"searchType"`
	Words      []string        `json:"words,omitempty"`
	// Semantic is true when embedding similarity took part in the ranking.
	Semantic   bool `json:"semantic"`
	NextOffset *int `json:"nextOffset,omitempty"`
}

func (h *Handlers) searchEntities() server.ServerTool {
	return server.ServerTool{
		Tool: newTool("search_entities", "Search Entities",
			"Ranked search of the knowledge graph for natural-language queries: an entity matches when any word of the "+
				"query (stemmed, common words ignored) is in its name, type, aliases or observations, ranked by BM25 "+
				"(rare words, name hits and short entities weigh most), ties most recently updated first. Returns a page of entities (10 unless limit says otherwise) with score, and total. "+
				"searchType hybrid (default) fuses this word ranking with embedding similarity when the server has an embedder, and semantic "+
				"ranks by embedding similarity alone (an error without one); the result's semantic field says whether embeddings were used.",
			annotations{readOnly: true, destructive: false, idempotent: true},
			inputSchemaWith[searchEntitiesArgs](map[string]prop{
				"searchType": {enum: memory.SearchModes, def: memory.SearchHybrid},
				"limit":      {def: defaultSearchLimit},
			}), outputSchema[searchEntitiesResult]()),
		Handler: handle(h, h.doSearchEntities),
	}
}

func (h *Handlers) doSearchEntities(ctx context.Context, args searchEntitiesArgs) (any, error) {
	limit, offset, err := page(args.Limit, args.Offset, defaultSearchLimit, maxSearchLimit)
	if err != nil {
		return nil, err
	}
	mode := args.SearchType
	if mode == "" {
		mode = memory.SearchHybrid
	}
	q := memory.SearchQuery{Query: args.Query, Mode: mode, Offset: offset, Limit: limit}
	if err := h.embedQuery(ctx, &q); err != nil {
		return nil, err
	}
	res, err := h.store.SearchEntities(ctx, q)
	if err != nil {
		return nil, err
	}
	out := searchEntitiesResult{Entities: make([]searchHitWire, len(res.Hits)), Total: res.Total, Offset: offset,
		Limit: limit, SearchType: mode, Words: res.Words, Semantic: res.Semantic}
	for i, e := range res.Hits {
		obs := e.Observations
		if obs == nil {
			obs = []string{}
		}
		out.Entities[i] = searchHitWire{Name: e.Name, EntityType: e.EntityType, Observations: obs, Aliases: e.Aliases,
			Metadata: e.Metadata, Score: e.Score, MatchedWords: e.MatchedWords, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	}
	if mode == memory.SearchGraph {
		out.Relations = relationsToWire(res.Relations)
	}
	if next := offset + len(res.Hits); next < res.Total {
		out.NextOffset = &next
	}
	return out, nil
}

// embedQuery sets q's vector for semantic and hybrid search. Semantic
// search without an embedder, or with one that fails, is an error the
// model can act on; hybrid search then runs on words alone and its result
// says so (semantic: false).
func (h *Handlers) embedQuery(ctx context.Context, q *memory.SearchQuery) error {
	if q.Mode != memory.SearchSemantic && q.Mode != memory.SearchHybrid {
		return nil
	}
	if h.embedder == nil {
		if q.Mode == memory.SearchSemantic {
			return &argError{msg: msgNoEmbedder}
		}
		return nil
	}
	if strings.TrimSpace(q.Query) == "" {
		return nil // the store refuses it
	}
	ectx, cancel := context.WithTimeout(ctx, h.embedTimeout)
	defer cancel()
	vecs, err := h.embedder.Embed(ectx, []string{q.Query})
	if err == nil && (len(vecs) != 1 || len(vecs[0]) == 0) {
		err = fmt.Errorf("embedder returned %d vectors for 1 query", len(vecs))
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rc, _ := tenancy.FromContext(ctx)
		h.log.WarnContext(ctx, "embedding a search query failed", "tenant", rc.TenantID, "mode", q.Mode, "err", err)
		if q.Mode == memory.SearchSemantic {
			return argErrorf(`the embedder did not answer, so semantic search is unavailable now; retry later or use searchType "hybrid" (word ranking)`)
		}
		return nil
	}
	q.Vector, q.Model = vecs[0], h.embedder.Model()
	return nil
}
