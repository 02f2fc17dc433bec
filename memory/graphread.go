package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf8"
)

// Reading the graph: ReadGraph and OpenNodes stream entities and their
// relations into pages bounded by a count and by the size of the answer
// (Page.MaxBytes, estimated with jsonStringCost as the client will see it).

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
