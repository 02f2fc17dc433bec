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
	err = s.write(ctx, func(t *txn) error {
		var err error
		res, err = importGraph(t, tenant, entities, relations, progress)
		return err
	})
	return res, err
}

// importGraph merges a graph into tenant inside t (see Import).
func importGraph(t *txn, tenant string, entities []Entity, relations []Relation, progress func(done, total int)) (ImportResult, error) {
	var res ImportResult
	total := len(entities) + len(relations)
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
			return res, err
		}
		items := make([]entityObservations, len(part))
		for i, e := range part {
			id, created := ids[i]
			if created {
				res.EntitiesCreated++
			} else if id, err = entityID(t, tenant, e.Name); err != nil {
				return res, err
			}
			items[i] = entityObservations{id: id, contents: e.Observations}
		}
		added, err := insertObservations(t, tenant, items)
		if err != nil {
			return res, err
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
			return res, err
		}
		var id int64
		err := t.queryRow(`INSERT INTO relations (tenant_id, from_id, to_id, relation_type, properties, created_at, updated_at)
			VALUES (?, ?, ?, ?, '{}', ?, ?) ON CONFLICT (tenant_id, from_id, to_id, relation_type) DO NOTHING RETURNING id`,
			tenant, from, to, r.RelationType, t.now, t.now).Scan(&id)
		switch {
		case err == sql.ErrNoRows:
		case err != nil:
			return res, err
		default:
			res.RelationsCreated++
		}
		tick()
	}
	return res, nil
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

// ImportOnce imports a graph read from source (a file path; sum is the
// SHA-256 of its content) into the caller's tenant, like Import, unless
// source was imported into the tenant before: then it changes nothing and
// returns the time of that import. The import and its record are one
// transaction.
func (s *Store) ImportOnce(ctx context.Context, source, sum string, entities []Entity, relations []Relation) (res ImportResult, importedAt string, err error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return ImportResult{}, "", err
	}
	err = s.write(ctx, func(t *txn) error {
		err := t.queryRow(`SELECT imported_at FROM memory_file_imports WHERE tenant_id = ? AND source = ?`, tenant, source).Scan(&importedAt)
		if err == nil {
			return nil
		}
		if err != sql.ErrNoRows {
			return err
		}
		if res, err = importGraph(t, tenant, entities, relations, nil); err != nil {
			return err
		}
		_, err = t.exec(`INSERT INTO memory_file_imports (tenant_id, source, sha256, imported_at) VALUES (?, ?, ?, ?)`,
			tenant, source, sum, t.now)
		return err
	})
	return res, importedAt, err
}
