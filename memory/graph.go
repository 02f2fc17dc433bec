package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Entity is a node of the knowledge graph.
type Entity struct {
	Name         string
	EntityType   string
	Observations []string
	Aliases      []string
	Metadata     map[string]any
	CreatedAt    string
	UpdatedAt    string
}

// Relation is a directed, typed edge between two entities, by name.
type Relation struct {
	From         string
	To           string
	RelationType string
	Properties   map[string]any
	CreatedAt    string
}

// Graph is a set of entities and the relations that touch them.
type Graph struct {
	Entities  []Entity
	Relations []Relation
	// Total is the number of entities the query matched before paging.
	// Set by ReadGraph, and by SearchNodes when Truncated.
	Total int
	// NextOffset is the offset of the next page when Truncated.
	NextOffset int
	// Truncated is true when entities were left off to keep the result
	// within Page.Limit or Page.MaxBytes.
	Truncated bool
}

// Page bounds a graph read.
type Page struct {
	Offset int
	Limit  int // 0: no limit
	// MaxBytes bounds the estimated size of the result when sent to a client
	// as JSON twice (structured content plus its text copy); 0: no bound.
	MaxBytes int
}

// ObservationAdd adds Contents to the entity named EntityName.
type ObservationAdd struct {
	EntityName string
	Contents   []string
}

// ObservationsAdded reports what AddObservations stored for one entity.
type ObservationsAdded struct {
	EntityName string
	Added      []string
}

// ObservationDeletion removes Observations from the entity named EntityName.
type ObservationDeletion struct {
	EntityName   string
	Observations []string
}

func entityNotFound(name string) error {
	return errNotFound(FieldEntity, name)
}

func marshalJSON(v any, empty string) (string, error) {
	if v == nil {
		return empty, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", errBadValue(FieldMetadata, fmt.Sprintf("cannot be encoded as JSON (a %T)", v))
	}
	return string(b), nil
}

// CreateEntities stores the entities whose names are new in the caller's
// tenant and returns exactly those; an existing name is skipped, not merged.
// A name repeated within entities is created once.
func (s *Store) CreateEntities(ctx context.Context, entities []Entity) ([]Entity, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var created []Entity
	err = s.write(ctx, func(t *txn) error {
		created = created[:0]
		ids, err := insertEntities(t, tenant, entities)
		if err != nil {
			return fmt.Errorf("create entities: %w", err)
		}
		var adds []entityObservations
		for i, e := range entities {
			if id, ok := ids[i]; ok {
				adds = append(adds, entityObservations{id: id, contents: e.Observations})
			}
		}
		added, err := insertObservations(t, tenant, adds)
		if err != nil {
			return fmt.Errorf("create entities: %w", err)
		}
		k := 0
		for i, e := range entities {
			id, ok := ids[i]
			if !ok {
				continue
			}
			e.Observations = added[k]
			k++
			e.CreatedAt, e.UpdatedAt = t.now, t.now
			created = append(created, e)
			t.indexChanged(tenant, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

// Writes go through few statements on purpose: FTS5 flushes its pending
// index data at every statement of a transaction that writes it, so one
// statement per row would turn every row into an index segment to merge.

// insertEntities inserts, in one statement, the entities whose names do not
// exist yet, and returns the new row ids by index into es. For a name
// repeated in es only the first is inserted.
func insertEntities(t *txn, tenant string, es []Entity) (map[int]int64, error) {
	type row struct {
		Name     string `json:"n"`
		Type     string `json:"t"`
		Aliases  string `json:"a"`
		Metadata string `json:"m"`
	}
	rows := make([]row, len(es))
	for i, e := range es {
		aliases, metadata := "[]", "{}"
		var err error
		if e.Aliases != nil {
			if aliases, err = marshalJSON(e.Aliases, "[]"); err != nil {
				return nil, err
			}
		}
		if e.Metadata != nil {
			if metadata, err = marshalJSON(e.Metadata, "{}"); err != nil {
				return nil, err
			}
		}
		rows[i] = row{e.Name, e.EntityType, aliases, metadata}
	}
	list, err := json.Marshal(rows)
	if err != nil {
		return nil, err
	}
	res, err := t.query(`INSERT INTO entities (tenant_id, name, entity_type, aliases, metadata, created_at, updated_at)
		SELECT ?, value->>'n', value->>'t', value->>'a', value->>'m', ?, ? FROM `+t.s.d.jsonArray+` WHERE true
		ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id, name`, tenant, t.now, t.now, string(list))
	if err != nil {
		return nil, err
	}
	defer res.Close()
	byName := map[string]int64{}
	for res.Next() {
		var id int64
		var name string
		if err := res.Scan(&id, &name); err != nil {
			return nil, err
		}
		byName[name] = id
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	ids := make(map[int]int64, len(byName))
	for i, e := range es {
		if id, ok := byName[e.Name]; ok {
			ids[i] = id
			t.embedChanged(tenant, id)
			delete(byName, e.Name) // a repeated name belongs to its first occurrence
		}
	}
	return ids, nil
}

// entityObservations are contents to add to one entity.
type entityObservations struct {
	id       int64
	contents []string
}

// insertObservations adds, in one statement, every item's contents to its
// entity, and returns per item the contents that were not already present,
// in order and without repeats.
func insertObservations(t *txn, tenant string, items []entityObservations) ([][]string, error) {
	out := make([][]string, len(items))
	var pairs [][2]any
	for _, it := range items {
		for _, c := range it.contents {
			pairs = append(pairs, [2]any{it.id, c})
		}
	}
	if len(pairs) == 0 {
		for i := range out {
			out[i] = []string{}
		}
		return out, nil
	}
	list, err := json.Marshal(pairs)
	if err != nil {
		return nil, err
	}
	res, err := t.query(`INSERT INTO observations (tenant_id, entity_id, content, created_at)
		SELECT ?, CAST(value->>0 AS BIGINT), value->>1, ? FROM `+t.s.d.jsonArray+` WHERE true
		ON CONFLICT (tenant_id, entity_id, content) DO NOTHING RETURNING entity_id, content`, tenant, t.now, string(list))
	if err != nil {
		return nil, err
	}
	defer res.Close()
	type key struct {
		id      int64
		content string
	}
	inserted := map[key]bool{}
	for res.Next() {
		var k key
		if err := res.Scan(&k.id, &k.content); err != nil {
			return nil, err
		}
		inserted[k] = true
		t.embedChanged(tenant, k.id)
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	for i, it := range items {
		out[i] = []string{}
		for _, c := range it.contents {
			k := key{it.id, c}
			if inserted[k] {
				out[i] = append(out[i], c)
				delete(inserted, k) // a repeated content is added once
			}
		}
	}
	return out, nil
}

func entityID(t *txn, tenant, name string) (int64, error) {
	var id int64
	err := t.queryRow(`SELECT id FROM entities WHERE tenant_id = ? AND name = ?`, tenant, name).Scan(&id)
	if err == sql.ErrNoRows {
		return 0, entityNotFound(name)
	}
	return id, err
}

// CreateRelations stores the relations that are new and returns exactly
// those. A relation whose endpoint does not exist fails the whole call with
// "Entity with name X not found" and nothing is written.
func (s *Store) CreateRelations(ctx context.Context, relations []Relation) ([]Relation, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var created []Relation
	err = s.write(ctx, func(t *txn) error {
		created = created[:0]
		for _, r := range relations {
			from, err := entityID(t, tenant, r.From)
			if err != nil {
				return err
			}
			to, err := entityID(t, tenant, r.To)
			if err != nil {
				return err
			}
			props, err := marshalJSON(r.Properties, "{}")
			if err != nil {
				return err
			}
			if r.Properties == nil {
				props = "{}"
			}
			var id int64
			err = t.queryRow(`INSERT INTO relations (tenant_id, from_id, to_id, relation_type, properties, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, from_id, to_id, relation_type) DO NOTHING RETURNING id`,
				tenant, from, to, r.RelationType, props, t.now, t.now).Scan(&id)
			if err == sql.ErrNoRows {
				continue
			}
			if err != nil {
				return fmt.Errorf("create relation: %w", err)
			}
			r.CreatedAt = t.now
			created = append(created, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

// AddObservations adds observations to existing entities and reports, per
// item, those that were new. An unknown entity fails the whole call with
// "Entity with name X not found" and nothing is written.
func (s *Store) AddObservations(ctx context.Context, adds []ObservationAdd) ([]ObservationsAdded, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var out []ObservationsAdded
	err = s.write(ctx, func(t *txn) error {
		items := make([]entityObservations, len(adds))
		for i, a := range adds {
			id, err := entityID(t, tenant, a.EntityName)
			if err != nil {
				return err
			}
			items[i] = entityObservations{id: id, contents: a.Contents}
		}
		added, err := insertObservations(t, tenant, items)
		if err != nil {
			return fmt.Errorf("add observations: %w", err)
		}
		out = make([]ObservationsAdded, len(adds))
		var changed []int64
		for i, a := range adds {
			out[i] = ObservationsAdded{EntityName: a.EntityName, Added: added[i]}
			if len(added[i]) > 0 {
				if _, err := t.exec(`UPDATE entities SET updated_at = ? WHERE tenant_id = ? AND id = ?`, t.now, tenant, items[i].id); err != nil {
					return err
				}
				if !slices.Contains(changed, items[i].id) {
					changed = append(changed, items[i].id)
				}
			}
		}
		t.indexChanged(tenant, changed...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteEntities deletes the named entities with their observations and
// every relation touching them. Absent names are ignored.
func (s *Store) DeleteEntities(ctx context.Context, names []string) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	list, err := json.Marshal(names)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		rows, err := t.query(`DELETE FROM entities WHERE tenant_id = ? AND name IN (SELECT value FROM `+t.s.d.textArray+`) RETURNING id`, tenant, string(list))
		ids, err := collect(rows, err, scanOne[int64])
		if err != nil {
			return err
		}
		t.indexChanged(tenant, ids...)
		return nil
	})
}

// DeleteObservations removes the given observations. Absent entities and
// observations are ignored.
func (s *Store) DeleteObservations(ctx context.Context, dels []ObservationDeletion) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		for _, d := range dels {
			list, err := json.Marshal(d.Observations)
			if err != nil {
				return err
			}
			res, err := t.exec(`DELETE FROM observations WHERE tenant_id = ?
				AND entity_id = (SELECT id FROM entities WHERE tenant_id = ? AND name = ?)
				AND content IN (SELECT value FROM `+t.s.d.textArray+`)`, tenant, tenant, d.EntityName, string(list))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				var id int64
				if err := t.queryRow(`UPDATE entities SET updated_at = ? WHERE tenant_id = ? AND name = ? RETURNING id`,
					t.now, tenant, d.EntityName).Scan(&id); err != nil {
					return err
				}
				t.embedChanged(tenant, id)
				t.indexChanged(tenant, id)
			}
		}
		return nil
	})
}

// DeleteRelations removes the given relations. Absent ones are ignored.
func (s *Store) DeleteRelations(ctx context.Context, relations []Relation) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		for _, r := range relations {
			_, err := t.exec(`DELETE FROM relations WHERE tenant_id = ?
				AND from_id = (SELECT id FROM entities WHERE tenant_id = ? AND name = ?)
				AND to_id = (SELECT id FROM entities WHERE tenant_id = ? AND name = ?)
				AND relation_type = ?`, tenant, tenant, r.From, tenant, r.To, r.RelationType)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// entityRow is an entity with its row id, as loaded for a result.
type entityRow struct {
	id int64
	Entity
}

// ReadGraph returns the caller's entities in creation order, from
// page.Offset, each with the relations that start at it, stopping at
// page.Limit entities or when page.MaxBytes would be exceeded. Total is the
// number of entities in the tenant.
func (s *Store) ReadGraph(ctx context.Context, page Page) (Graph, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Graph{}, err
	}
	var g Graph
	err = s.read(ctx, func(t *txn) error {
		g = Graph{}
		if err := t.queryRow(`SELECT count(*) FROM entities WHERE tenant_id = ?`, tenant).Scan(&g.Total); err != nil {
			return err
		}
		limit := page.Limit
		if limit <= 0 {
			limit = math.MaxInt64 // no limit; LIMIT -1 is SQLite only
		}
		rels, err := t.query(`SELECT r.from_id, f.name, t.name, r.relation_type, r.created_at
			FROM relations r
			JOIN entities f ON f.tenant_id = r.tenant_id AND f.id = r.from_id
			JOIN entities t ON t.tenant_id = r.tenant_id AND t.id = r.to_id
			WHERE r.tenant_id = ? AND r.from_id IN (SELECT id FROM entities WHERE tenant_id = ? ORDER BY id LIMIT ? OFFSET ?)
			ORDER BY r.from_id, r.id`, tenant, tenant, limit, page.Offset)
		if err != nil {
			return err
		}
		defer rels.Close()
		nextRel := relRows(rels)
		if s.d.oneQueryPerConn {
			// A PostgreSQL connection runs one query at a time: read the
			// page's relations before streaming its entities.
			nextRel, err = buffered(nextRel)
			if err != nil {
				return err
			}
		}
		ents, err := t.query(`SELECT e.id, e.name, e.entity_type, e.created_at, e.updated_at, o.content
			FROM (SELECT id, name, entity_type, created_at, updated_at FROM entities
			      WHERE tenant_id = ? ORDER BY id LIMIT ? OFFSET ?) e
			LEFT JOIN observations o ON o.tenant_id = ? AND o.entity_id = e.id
			ORDER BY e.id, o.id`, tenant, limit, page.Offset, tenant)
		if err != nil {
			return err
		}
		defer ents.Close()
		return g.fill(newEntityStream(ents), nextRel, page)
	})
	if err != nil {
		return Graph{}, err
	}
	if page.Offset+len(g.Entities) < g.Total {
		g.Truncated = true
		g.NextOffset = page.Offset + len(g.Entities)
	}
	return g, nil
}

// entityStream groups rows of (id, name, type, created, updated, content)
// ordered by id into entities.
type entityStream struct {
	rows    *sql.Rows
	pending *entityRow
	err     error
}

func newEntityStream(rows *sql.Rows) *entityStream { return &entityStream{rows: rows} }

// next returns the next whole entity, or nil at the end.
func (es *entityStream) next() *entityRow {
	for es.rows.Next() {
		var (
			id                         int64
			name, typ, created, update string
			content                    sql.NullString
		)
		if err := es.rows.Scan(&id, &name, &typ, &created, &update, &content); err != nil {
			es.err = err
			return nil
		}
		if es.pending != nil && es.pending.id != id {
			done := es.pending
			es.pending = &entityRow{id: id, Entity: Entity{Name: name, EntityType: typ, CreatedAt: created, UpdatedAt: update, Observations: []string{}}}
			if content.Valid {
				es.pending.Observations = append(es.pending.Observations, content.String)
			}
			return done
		}
		if es.pending == nil {
			es.pending = &entityRow{id: id, Entity: Entity{Name: name, EntityType: typ, CreatedAt: created, UpdatedAt: update, Observations: []string{}}}
		}
		if content.Valid {
			es.pending.Observations = append(es.pending.Observations, content.String)
		}
	}
	if es.err == nil {
		es.err = es.rows.Err()
	}
	done := es.pending
	es.pending = nil
	return done
}

// relRow is a relation with the row id of its source entity.
type relRow struct {
	from int64
	Relation
}

// relRows reads rows of (from_id, from, to, type, created): each call
// returns the next, or nil at the end.
func relRows(rows *sql.Rows) func() (*relRow, error) {
	done := false
	return func() (*relRow, error) {
		if done || !rows.Next() {
			done = true
			return nil, rows.Err()
		}
		var r relRow
		if err := rows.Scan(&r.from, &r.From, &r.To, &r.RelationType, &r.CreatedAt); err != nil {
			return nil, err
		}
		return &r, nil
	}
}

// buffered reads next to the end and returns a reader of what it read.
func buffered(next func() (*relRow, error)) (func() (*relRow, error), error) {
	var buf []relRow
	for {
		r, err := next()
		if err != nil {
			return nil, err
		}
		if r == nil {
			break
		}
		buf = append(buf, *r)
	}
	return func() (*relRow, error) {
		if len(buf) == 0 {
			return nil, nil
		}
		r := &buf[0]
		buf = buf[1:]
		return r, nil
	}, nil
}

// fill appends entities from es, each with its outgoing relations from
// nextRel (ordered by from_id), until page bounds are reached.
func (g *Graph) fill(es *entityStream, nextRel func() (*relRow, error), page Page) error {
	g.Entities = []Entity{}
	g.Relations = []Relation{}
	used := graphOverhead
	rel, err := nextRel()
	if err != nil {
		return err
	}
	for {
		e := es.next()
		if e == nil {
			return es.err
		}
		cost := entityCost(e.Entity)
		var own []Relation
		for rel != nil && rel.from <= e.id {
			if rel.from == e.id {
				own = append(own, rel.Relation)
				cost += relationCost(rel.Relation)
			}
			if rel, err = nextRel(); err != nil {
				return err
			}
		}
		if page.MaxBytes > 0 && used+cost > page.MaxBytes {
			g.Truncated = true
			return nil
		}
		used += cost
		g.Entities = append(g.Entities, e.Entity)
		g.Relations = append(g.Relations, own...)
	}
}

// jsonStringCost estimates the bytes s takes on the wire: once JSON-encoded
// in structured content and again, escaped, inside the JSON text copy.
func jsonStringCost(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			n += 2
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 6
		case c < utf8.RuneSelf:
			n++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				n += 6
			} else {
				n += size
			}
			i += size
			continue
		}
		i++
	}
	// the text copy escapes every quote and backslash of the encoded form again
	return 2*n + 2 + strings.Count(s, `"`)*2 + strings.Count(s, `\`)*2
}

func entityCost(e Entity) int {
	n := 2*60 + jsonStringCost(e.Name) + jsonStringCost(e.EntityType)
	for _, o := range e.Observations {
		n += jsonStringCost(o) + 2
	}
	return n
}

func relationCost(r Relation) int {
	return 2*50 + jsonStringCost(r.From) + jsonStringCost(r.To) + jsonStringCost(r.RelationType)
}

// SearchNodes returns the entities whose name, type or any observation
// contains query, case-insensitively, in creation order from page.Offset,
// plus every relation with either endpoint among them (a relation between
// two pages comes back with both). The page stops at page.Limit entities
// or where the entities and their relations would exceed page.MaxBytes;
// Total is the number of matches. Queries of three or more characters use
// the trigram index; shorter ones scan the tenant's entities.
func (s *Store) SearchNodes(ctx context.Context, query string, page Page) (Graph, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Graph{}, err
	}
	lq := strings.ToLower(query)
	match := func(e Entity) bool {
		if strings.Contains(strings.ToLower(e.Name), lq) || strings.Contains(strings.ToLower(e.EntityType), lq) {
			return true
		}
		for _, o := range e.Observations {
			if strings.Contains(strings.ToLower(o), lq) {
				return true
			}
		}
		return false
	}
	var g Graph
	err = s.read(ctx, func(t *txn) error {
		g = Graph{Entities: []Entity{}, Relations: []Relation{}}
		rows, err := s.substringCandidates(t, tenant, query)
		if err != nil || rows == nil {
			return err
		}
		defer rows.Close()
		es := newEntityStream(rows)
		var cands []entityRow
		used, full := graphOverhead, false
		for e := es.next(); e != nil; e = es.next() {
			if !match(e.Entity) {
				continue
			}
			g.Total++
			if g.Total <= page.Offset || full {
				continue
			}
			// Entities alone bound the candidates; fitGraph adds the relations.
			cost := entityCost(e.Entity)
			if (page.MaxBytes > 0 && used+cost > page.MaxBytes) || (page.Limit > 0 && len(cands) >= page.Limit) {
				full = true
				continue
			}
			used += cost
			cands = append(cands, *e)
		}
		if es.err != nil {
			return es.err
		}
		return g.fitTouching(t, tenant, cands, page.MaxBytes)
	})
	if err != nil {
		return Graph{}, err
	}
	g.pageEnd(page.Offset)
	return g, nil
}

// graphOverhead is the estimated size of an empty graph answer.
const graphOverhead = 64

// fitTouching sets g's entities to the longest prefix of cands that fits
// maxBytes (0: no bound) together with every relation touching it, and
// g's relations to those relations.
func (g *Graph) fitTouching(t *txn, tenant string, cands []entityRow, maxBytes int) error {
	ids := make([]int64, len(cands))
	for i, e := range cands {
		ids[i] = e.id
	}
	rels, err := relationsTouching(t, tenant, ids)
	if err != nil {
		return err
	}
	byEnd := map[int64][]int{}
	for i, r := range rels {
		byEnd[r.from] = append(byEnd[r.from], i)
		if r.to != r.from {
			byEnd[r.to] = append(byEnd[r.to], i)
		}
	}
	counted := make([]bool, len(rels))
	kept := map[int64]bool{}
	used := graphOverhead
	for _, e := range cands {
		cost := entityCost(e.Entity)
		for _, i := range byEnd[e.id] {
			if !counted[i] {
				counted[i] = true
				cost += relationCost(rels[i].Relation)
			}
		}
		if maxBytes > 0 && used+cost > maxBytes {
			break
		}
		used += cost
		kept[e.id] = true
		g.Entities = append(g.Entities, e.Entity)
	}
	g.Relations = []Relation{}
	for _, r := range rels {
		if kept[r.from] || kept[r.to] {
			g.Relations = append(g.Relations, r.Relation)
		}
	}
	return nil
}

// pageEnd sets Truncated and NextOffset of a page that started at offset,
// from Total.
func (g *Graph) pageEnd(offset int) {
	if next := offset + len(g.Entities); next < g.Total {
		g.Truncated = true
		g.NextOffset = next
	}
}

// substringCandidates returns the rows (id, name, type, created, updated,
// content), ordered by id, of the tenant's entities that may contain query
// in their name, type or an observation, case-insensitively: a superset
// the caller re-checks exactly. rows is nil when nothing can match.
//
// SQLite asks the trigram FTS tables for the rarest trigrams of query
// among the tenant's rows (trigramMatch); queries under three characters
// scan the tenant.
// PostgreSQL asks the pg_trgm indexes with ILIKE (ilikePattern).
func (s *Store) substringCandidates(t *txn, tenant, query string) (*sql.Rows, error) {
	q, args, err := s.substringQuery(t, tenant, query)
	if err != nil || q == "" {
		return nil, err
	}
	if q := s.d.substringSetup; q != "" {
		if _, err := t.exec(q); err != nil {
			return nil, err
		}
	}
	if s.onSubstringQuery != nil {
		s.onSubstringQuery(t, q, args)
	}
	return t.query(q, args...)
}

// substringQuery returns substringCandidates' statement and arguments, or
// "" when nothing can match.
func (s *Store) substringQuery(t *txn, tenant, query string) (string, []any, error) {
	const cols = `SELECT e.id, e.name, e.entity_type, e.created_at, e.updated_at, o.content`
	const scan = cols + ` FROM entities e LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
		WHERE e.tenant_id = ? ORDER BY e.id, o.id`
	if s.d.trigramILIKE {
		if strings.ContainsRune(query, 0) {
			return "", nil, nil // PostgreSQL text cannot hold NUL
		}
		p := ilikePattern(query)
		if p == "%" {
			return scan, []any{tenant}, nil
		}
		return `WITH hits(id) AS (
				SELECT id FROM entities WHERE tenant_id = ? AND (name ILIKE ? OR entity_type ILIKE ?)
				UNION
				SELECT entity_id FROM observations WHERE tenant_id = ? AND content ILIKE ?)
			` + cols + ` FROM hits h JOIN entities e ON e.id = h.id AND e.tenant_id = ?
			LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			ORDER BY e.id, o.id`, []any{tenant, p, p, tenant, p, tenant}, nil
	}
	lo, hi, ok, err := substringRange(t, tenant)
	if err != nil || !ok {
		return "", nil, err // the tenant never had an entity: nothing can match
	}
	entMatch, entOK, err := s.trigramMatch(t, "entities_fts", lo, hi, query)
	if err != nil {
		return "", nil, err
	}
	obsMatch, obsOK, err := s.trigramMatch(t, "observations_fts", lo, hi, query)
	if err != nil {
		return "", nil, err
	}
	switch {
	case entOK && obsOK && entMatch == "" && obsMatch == "":
		return "", nil, nil // some trigram of the query is in none of the tenant's rows
	case entOK && obsOK:
		// CROSS JOIN makes SQLite drive from the index hits instead of
		// scanning the tenant's rows and probing the hit list.
		return `WITH hits(id) AS (
				SELECT e.id FROM (SELECT rowid - ? AS id FROM entities_fts WHERE entities_fts MATCH ? AND rowid BETWEEN ? AND ?) f
				CROSS JOIN entities e ON e.id = f.id WHERE e.tenant_id = ?
				UNION
				SELECT o.entity_id FROM (SELECT rowid - ? AS id FROM observations_fts WHERE observations_fts MATCH ? AND rowid BETWEEN ? AND ?) f
				CROSS JOIN observations o ON o.id = f.id WHERE o.tenant_id = ?)
			` + cols + ` FROM hits h CROSS JOIN entities e ON e.id = h.id AND e.tenant_id = ?
			LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			ORDER BY e.id, o.id`, []any{lo, orNothing(entMatch), lo, hi, tenant, lo, orNothing(obsMatch), lo, hi, tenant, tenant}, nil
	default:
		return scan, []any{tenant}, nil
	}
}

// ilikePattern is an ILIKE pattern for the candidates of a substring
// search for q: every text that contains q under Go's strings.ToLower (the
// exact re-check) must match it. %, _ and \ are escaped (the default LIKE
// escape is \). ASCII characters and characters without case stand for
// themselves: ILIKE folds ASCII in every locale (but I in Turkish ones,
// see below). Any other character
// becomes %, so that the candidates do not depend on how the database's
// locale or collation provider folds it (ICU, for one, lowers İ to i plus
// a combining dot). Two ASCII letters have non-ASCII upper cases in Go,
// U+0130 (İ) for i and U+212A (Kelvin) for k; glibc UTF-8 locales fold them
// too, C/POSIX and Turkish locales do not. They are kept literal anyway:
// i is too common to give up its trigrams, and SQLite's trigram index does
// not fold U+0130 either.
func ilikePattern(q string) string {
	var b strings.Builder
	b.WriteByte('%')
	wild := true          // the pattern ends with an unescaped %
	for _, r := range q { // an invalid byte is U+FFFD, as for strings.ToLower
		switch {
		case r == '%' || r == '_' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
			wild = false
		case ilikeLiteral(r):
			b.WriteRune(r)
			wild = false
		case !wild:
			b.WriteByte('%')
			wild = true
		}
	}
	if !wild {
		b.WriteByte('%')
	}
	return b.String()
}

// ilikeLiteral reports whether r can stand for itself in ilikePattern.
func ilikeLiteral(r rune) bool {
	if r < utf8.RuneSelf {
		return true
	}
	return unicode.SimpleFold(r) == r && unicode.ToLower(r) == r && unicode.ToUpper(r) == r && unicode.ToTitle(r) == r
}

// nothingMatch stands for "no candidates from this table" in a query that
// still asks the other table; a document that does contain it is only a
// false candidate, removed by the exact re-check.
const nothingMatch = "\"\x01\x01\x01\""

func orNothing(m string) string {
	if m == "" {
		return nothingMatch
	}
	return m
}

// maxPlanTrigrams is how many of the query's trigrams are asked of the index.
const maxPlanTrigrams = 3

// substringRange returns the rowid range of tenant's rows in the trigram
// indexes (migration 0015: (n << 40) + id for the tenant's number n), or
// ok=false when the tenant has never had an entity.
func substringRange(t *txn, tenant string) (lo, hi int64, ok bool, err error) {
	var n int64
	switch err := t.queryRow(`SELECT n FROM substring_fts_tenants WHERE tenant_id = ?`, tenant).Scan(&n); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, 0, false, nil
	case err != nil:
		return 0, 0, false, err
	}
	return n << 40, (n+1)<<40 - 1, true, nil
}

// trigramMatch plans a substring query against a trigram FTS table among
// the tenant's rows, rowids lo to hi (substringRange): it returns an FTS
// expression ANDing the rarest few of query's trigrams in those rows, or
// "" when some trigram of query is in none of them (nothing can match),
// and ok=false when the query is too short for the index (under three
// characters, or containing NUL). Every candidate is re-checked exactly by
// the caller, so the choice of trigrams only affects speed; both the counts
// that choose and the rows the expression reaches are the tenant's only
// (TestSubstringSearchWorkIsPerTenant).
//
// Counts come from a bounded cache keyed by the tenant's range. A cached
// count may be stale; that only makes a plan slower. Zero is never cached,
// so "the tenant has no document with this trigram" is always decided on
// fresh data.
func (s *Store) trigramMatch(t *txn, table string, lo, hi int64, query string) (match string, ok bool, err error) {
	runes := []rune(strings.ToLower(query))
	if len(runes) < 3 || strings.ContainsRune(query, 0) {
		return "", false, nil
	}
	type tri struct {
		text string
		df   int
	}
	seen := map[string]bool{}
	var tris []tri
	for i := 0; i+3 <= len(runes); i++ {
		text := string(runes[i : i+3])
		if seen[text] {
			continue
		}
		seen[text] = true
		key := fmt.Sprintf("%s\x00%d\x00%s", table, lo, text)
		df, cached := s.trigramDF.Get(key)
		if !cached {
			if err := t.queryRow(`SELECT count(*) FROM `+table+` WHERE `+table+` MATCH ? AND rowid BETWEEN ? AND ?`, quoteFTS(text), lo, hi).Scan(&df); err != nil {
				return "", false, err
			}
			if df == 0 {
				return "", true, nil
			}
			s.trigramDF.Add(key, df)
		}
		tris = append(tris, tri{text, df})
	}
	sort.Slice(tris, func(i, j int) bool { return tris[i].df < tris[j].df })
	parts := make([]string, 0, maxPlanTrigrams)
	for i := 0; i < len(tris) && i < maxPlanTrigrams; i++ {
		parts = append(parts, quoteFTS(tris[i].text))
	}
	return strings.Join(parts, " AND "), true, nil
}

// quoteFTS makes s one FTS5 string token.
func quoteFTS(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// OpenNodes returns the named entities that exist, in creation order from
// page.Offset, plus every relation with either endpoint among them; the
// page stops where the entities and their relations would exceed
// page.MaxBytes. Total is the number of named entities that exist.
func (s *Store) OpenNodes(ctx context.Context, names []string, page Page) (Graph, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return Graph{}, err
	}
	list, err := json.Marshal(names)
	if err != nil {
		return Graph{}, err
	}
	var g Graph
	err = s.read(ctx, func(t *txn) error {
		g = Graph{Entities: []Entity{}}
		rows, err := t.query(`SELECT e.id, e.name, e.entity_type, e.created_at, e.updated_at, o.content
			FROM (SELECT DISTINCT value FROM `+t.s.d.textArray+`) n
			CROSS JOIN entities e
			LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			WHERE e.tenant_id = ? AND e.name = n.value
			ORDER BY e.id, o.id`, string(list), tenant)
		if err != nil {
			return err
		}
		defer rows.Close()
		es := newEntityStream(rows)
		var cands []entityRow
		for e := es.next(); e != nil; e = es.next() {
			g.Total++
			if g.Total > page.Offset && (page.Limit <= 0 || len(cands) < page.Limit) {
				cands = append(cands, *e)
			}
		}
		if es.err != nil {
			return es.err
		}
		return g.fitTouching(t, tenant, cands, page.MaxBytes)
	})
	if err != nil {
		return Graph{}, err
	}
	g.pageEnd(page.Offset)
	return g, nil
}

// relEnds is a relation with the row ids of its endpoints.
type relEnds struct {
	from, to int64
	Relation
}

// relationsTouching returns the relations with either endpoint in ids, in
// creation order.
func relationsTouching(t *txn, tenant string, ids []int64) ([]relEnds, error) {
	out := []relEnds{}
	if len(ids) == 0 {
		return out, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.query(`WITH ids(id) AS (SELECT CAST(value AS BIGINT) FROM `+t.s.d.textArray+`),
		touching(id) AS (
			SELECT r.id FROM ids CROSS JOIN relations r WHERE r.tenant_id = ? AND r.from_id = ids.id
			UNION
			SELECT r.id FROM ids CROSS JOIN relations r WHERE r.tenant_id = ? AND r.to_id = ids.id)
		SELECT r.from_id, r.to_id, f.name, t.name, r.relation_type, r.created_at FROM touching x
		CROSS JOIN relations r
		JOIN entities f ON f.tenant_id = r.tenant_id AND f.id = r.from_id
		JOIN entities t ON t.tenant_id = r.tenant_id AND t.id = r.to_id
		WHERE r.id = x.id AND r.tenant_id = ?
		ORDER BY r.id`, string(list), tenant, tenant, tenant)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r relEnds
		if err := rows.Scan(&r.from, &r.to, &r.From, &r.To, &r.RelationType, &r.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
