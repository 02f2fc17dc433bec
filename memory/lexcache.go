package memory

import (
	"math/rand/v2"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Posting lists kept between ranked searches.
//
// Reading a term's postings costs about a microsecond per posting (most of
// it moving columns from the engine to Go), and a tenant's common words
// (a speaker's name, a project's) come back in query after query. The
// lists of recent terms are kept in memory, each tagged with the version
// of its tenant's index it was read at. Every change to a tenant's index
// gives it a new random version (addSearchStats, in the change's
// transaction), and a search uses a kept list only when its own snapshot
// shows the same version; so a list is never used after a change,
// whichever process made it, and a search never sees a list from a
// snapshot other than its own. A kept list is one tenant's rows, found
// only under that tenant's key.

// postingsKey names one tenant's posting list of one term: a struct, so
// no two (tenant, term) pairs can collide.
type postingsKey struct {
	tenant string
	term   string
}

// cachedPosting is a posting in the compact form a list is kept in.
type cachedPosting struct {
	id     int64
	counts [2 * numFields]int32 // tf per field, then length per field
}

// postingList is one kept list, by entity.
type postingList struct {
	version int64
	ps      []cachedPosting
}

const (
	// maxCachedPostings bounds the postings kept, across tenants (about
	// 40 bytes each).
	maxCachedPostings = 1 << 18
	// maxCachedList is the longest list kept.
	maxCachedList = maxCachedPostings / 4
	// maxCachedLists bounds the number of lists kept.
	maxCachedLists = 1 << 16
)

// postingsCache is a bounded LRU of posting lists, bounded by the number
// of postings they hold.
type postingsCache struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[postingsKey, *postingList]
	size int // postings held
}

func newPostingsCache() *postingsCache {
	c := &postingsCache{}
	l, err := simplelru.NewLRU(maxCachedLists, func(_ postingsKey, v *postingList) { c.size -= cost(v) })
	if err != nil {
		panic(err) // only for a size <= 0
	}
	c.lru = l
	return c
}

// cost is what a list counts against maxCachedPostings (an empty list
// counts one).
func cost(l *postingList) int { return max(1, len(l.ps)) }

// get returns the tenant's list of term read at version, if kept.
func (c *postingsCache) get(tenant, term string, version int64) ([]cachedPosting, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.lru.Get(postingsKey{tenant, term})
	if !ok || l.version != version {
		return nil, false
	}
	return l.ps, true
}

// add keeps the tenant's list of term read at version (ps is not copied
// and must not change).
func (c *postingsCache) add(tenant, term string, version int64, ps []cachedPosting) {
	l := &postingList{version: version, ps: ps}
	if len(ps) > maxCachedList {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := postingsKey{tenant, term}
	if old, ok := c.lru.Peek(k); ok {
		c.size -= cost(old)
	}
	c.lru.Add(k, l)
	c.size += cost(l)
	for c.size > maxCachedPostings {
		c.lru.RemoveOldest()
	}
}

// newIndexVersion returns a version for a tenant's changed index: random,
// so that no version recurs, in any process, even for a tenant deleted
// and created again.
func newIndexVersion() int64 {
	for {
		if v := rand.Int64(); v != 0 { // 0 is the version of indexes built before versions existed
			return v
		}
	}
}
