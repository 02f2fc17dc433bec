package memory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// The knowledge graph's types and writes; reads are in graphread.go,
// substring search in substring.go.

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
			if _, ok := ids[i]; !ok {
				continue
			}
			e.Observations = added[k]
			k++
			e.CreatedAt, e.UpdatedAt = t.now, t.now
			created = append(created, e)
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
			t.textChanged(tenant, id)
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
		t.textChanged(tenant, k.id)
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
		for i, a := range adds {
			out[i] = ObservationsAdded{EntityName: a.EntityName, Added: added[i]}
			if len(added[i]) > 0 {
				if _, err := t.exec(`UPDATE entities SET updated_at = ? WHERE tenant_id = ? AND id = ?`, t.now, tenant, items[i].id); err != nil {
					return err
				}
			}
		}
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
				t.textChanged(tenant, id)
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
