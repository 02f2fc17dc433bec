package memory

import (
	"context"
	"database/sql"
	"errors"
)

// ImportResult counts what Import changed.
type ImportResult struct {
	EntitiesCreated   int
	ObservationsAdded int
	RelationsCreated  int
	// DanglingRelations are the indexes (into the relations argument) of
	// relations skipped because an endpoint does not exist.
	DanglingRelations []int
}

// Import merges a graph into the caller's tenant in one transaction:
// new entities are created, observations missing from existing entities are
// added, new relations are created. Importing the same graph twice changes
// nothing the second time. progress, when not nil, is called after each
// 1,000 items.
func (s *Store) Import(ctx context.Context, entities []Entity, relations []Relation, progress func(done, total int)) (ImportResult, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return ImportResult{}, err
	}
	var res ImportResult
	total := len(entities) + len(relations)
	err = s.write(ctx, func(t *txn) error {
		res = ImportResult{}
		done := 0
		tick := func() {
			done++
			if progress != nil && done%1000 == 0 {
				progress(done, total)
			}
		}
		const chunk = 500 // entities per statement
		for start := 0; start < len(entities); start += chunk {
			part := entities[start:min(start+chunk, len(entities))]
			ids, err := insertEntities(t, tenant, part)
			if err != nil {
				return err
			}
			items := make([]entityObservations, len(part))
			for i, e := range part {
				id, created := ids[i]
				if created {
					res.EntitiesCreated++
				} else if id, err = entityID(t, tenant, e.Name); err != nil {
					return err
				}
				items[i] = entityObservations{id: id, contents: e.Observations}
			}
			added, err := insertObservations(t, tenant, items)
			if err != nil {
				return err
			}
			for i := range part {
				res.ObservationsAdded += len(added[i])
				tick()
			}
		}
		for i, r := range relations {
			from, errF := entityID(t, tenant, r.From)
			to, errT := entityID(t, tenant, r.To)
			if errors.Is(errF, ErrNotFound) || errors.Is(errT, ErrNotFound) {
				res.DanglingRelations = append(res.DanglingRelations, i)
				tick()
				continue
			}
			if err := errors.Join(errF, errT); err != nil {
				return err
			}
			var id int64
			err := t.queryRow(`INSERT INTO relations (tenant_id, from_id, to_id, relation_type, properties, created_at, updated_at)
				VALUES (?, ?, ?, ?, '{}', ?, ?) ON CONFLICT (tenant_id, from_id, to_id, relation_type) DO NOTHING RETURNING id`,
				tenant, from, to, r.RelationType, t.now, t.now).Scan(&id)
			switch {
			case err == sql.ErrNoRows:
			case err != nil:
				return err
			default:
				res.RelationsCreated++
			}
			tick()
		}
		return nil
	})
	return res, err
}

// Export streams the caller's whole graph: every entity in creation order,
// then every relation in creation order.
func (s *Store) Export(ctx context.Context, entity func(Entity) error, relation func(Relation) error) error {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	return s.read(ctx, func(t *txn) error {
		rows, err := t.query(`SELECT e.id, e.name, e.entity_type, e.created_at, e.updated_at, o.content
			FROM entities e LEFT JOIN observations o ON o.tenant_id = e.tenant_id AND o.entity_id = e.id
			WHERE e.tenant_id = ? ORDER BY e.id, o.id`, tenant)
		if err != nil {
			return err
		}
		es := newEntityStream(rows)
		for e := es.next(); e != nil; e = es.next() {
			if err := entity(e.Entity); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if es.err != nil {
			return es.err
		}
		rels, err := t.query(`SELECT f.name, t.name, r.relation_type, r.created_at FROM relations r
			JOIN entities f ON f.tenant_id = r.tenant_id AND f.id = r.from_id
			JOIN entities t ON t.tenant_id = r.tenant_id AND t.id = r.to_id
			WHERE r.tenant_id = ? ORDER BY r.id`, tenant)
		if err != nil {
			return err
		}
		defer rels.Close()
		for rels.Next() {
			var r Relation
			if err := rels.Scan(&r.From, &r.To, &r.RelationType, &r.CreatedAt); err != nil {
				return err
			}
			if err := relation(r); err != nil {
				return err
			}
		}
		return rels.Err()
	})
}
