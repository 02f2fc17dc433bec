package tools

// The paged answers render may cut to fit the answer budget (see
// pageable in handle.go). Each sets the continuation its tool documents.

func nextAfter(offset, n int) *int { return ptr(offset + n) }

func (g graphWire) pageLen() int { return len(g.Entities) }

// firstN keeps the first n entities and the relations of the kept ones:
// those starting at one (read_graph) or touching one (search_nodes,
// open_nodes).
func (g graphWire) firstN(n int) any {
	kept := make(map[string]bool, n)
	for _, e := range g.Entities[:n] {
		kept[e.Name] = true
	}
	out := g
	out.Entities = g.Entities[:n]
	out.Relations = []relationWire{}
	for _, r := range g.Relations {
		if kept[r.From] || (g.touching && kept[r.To]) {
			out.Relations = append(out.Relations, r)
		}
	}
	out.Truncated, out.NextOffset = true, nextAfter(g.offset, n)
	if out.Total == nil {
		out.Total = ptr(g.offset + len(g.Entities))
	}
	return out
}

func (r getMessagesResult) pageLen() int { return len(r.Messages) }

func (r getMessagesResult) firstN(n int) any {
	r.Messages, r.Count, r.NextOffset = r.Messages[:n], n, nextAfter(r.Offset, n)
	return r
}

func (r agentStatusList) pageLen() int { return len(r.Agents) }

func (r agentStatusList) firstN(n int) any {
	r.Agents, r.NextOffset = r.Agents[:n], nextAfter(r.Offset, n)
	return r
}

func (r searchEntitiesResult) pageLen() int { return len(r.Entities) }

func (r searchEntitiesResult) firstN(n int) any {
	if r.Relations != nil {
		kept := make(map[string]bool, n)
		for _, e := range r.Entities[:n] {
			kept[e.Name] = true
		}
		rels := []relationWire{}
		for _, rel := range r.Relations {
			if kept[rel.From] || kept[rel.To] {
				rels = append(rels, rel)
			}
		}
		r.Relations = rels
	}
	r.Entities, r.NextOffset = r.Entities[:n], nextAfter(r.Offset, n)
	return r
}

func (r getAuditLogResult) pageLen() int { return len(r.Rows) }

func (r getAuditLogResult) firstN(n int) any {
	r.Rows, r.NextOffset = r.Rows[:n], nextAfter(r.Offset, n)
	return r
}

func (r delegationHistoryResult) pageLen() int { return len(r.Delegations) }

func (r delegationHistoryResult) firstN(n int) any {
	r.Delegations, r.NextOffset = r.Delegations[:n], nextAfter(r.Offset, n)
	return r
}

func (r listTrustSessionsResult) pageLen() int { return len(r.Sessions) }

func (r listTrustSessionsResult) firstN(n int) any {
	r.Sessions, r.NextOffset = r.Sessions[:n], nextAfter(r.Offset, n)
	return r
}

// nextOffset is the continuation of a page of n rows from offset out of
// total: nil on the last page.
func nextOffset(offset, n, total int) *int {
	if offset+n < total {
		return ptr(offset + n)
	}
	return nil
}
