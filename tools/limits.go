package tools

// Per-call bounds of a state-changing tool. One call is one write
// transaction on the single writer, so these bound how long one tenant can
// hold the writer and make other tenants' writes wait (benchmark:
// BenchmarkNeighbourWrites in cmd/nexus-mcp).
const (
	// MaxWriteBytes bounds the text of one write call's arguments: the
	// bytes of every string and object key, at any depth. It holds one
	// string at the schemas' longest (64 KiB) with room for its entity.
	MaxWriteBytes = 80 << 10
	// MaxWriteItems bounds the array elements of one write call's
	// arguments, at any depth (for create_entities: the entities plus all
	// their observations).
	MaxWriteItems = 500
)

// checkWriteSize refuses the arguments of a write call that exceed
// MaxWriteBytes or MaxWriteItems, naming the limit, before any work.
func checkWriteSize(raw any) error {
	bytes, items := argumentWeight(raw)
	switch {
	case bytes > MaxWriteBytes:
		return argErrorf("too large: this call carries %d bytes of text, a write call may carry at most %d (MaxWriteBytes); split it into several calls",
			bytes, MaxWriteBytes)
	case items > MaxWriteItems:
		return argErrorf("too many items: this call carries %d array items, a write call may carry at most %d (MaxWriteItems); split it into several calls",
			items, MaxWriteItems)
	}
	return nil
}

// argumentWeight returns the text bytes (strings and keys) and array
// elements in v. v has passed checkIdentity, so its depth is bounded.
func argumentWeight(v any) (bytes, items int) {
	switch x := v.(type) {
	case string:
		return len(x), 0
	case map[string]any:
		for k, val := range x {
			b, n := argumentWeight(val)
			bytes, items = bytes+len(k)+b, items+n
		}
	case []any:
		items = len(x)
		for _, e := range x {
			b, n := argumentWeight(e)
			bytes, items = bytes+b, items+n
		}
	}
	return bytes, items
}
