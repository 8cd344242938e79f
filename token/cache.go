package token

import (
	"encoding/json"
	"hash/maphash"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
	"github.com/tollgate/tollgate/session"
)

// cache holds verified tokens by their exact text. A token that differs by a
// single character (another base64 spelling, a re-encoded signature) is a
// miss and goes through full verification, so the cache cannot be used to
// smuggle a variant past the checks.
//
// It is sharded to keep concurrent calls off one lock, and bounded by entries
// and by bytes; each shard evicts its least recently used entry. An entry is
// served only before its session's ValidUntil (no leeway: a cached answer is
// never more lenient than a fresh one) and only while its key is still in
// the current key set.
type cache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const cacheShards = 16

type cacheShard struct {
	mu         sync.Mutex
	entries    map[uint64]*cacheEntry
	head, tail *cacheEntry // most and least recently used
	bytes      int
	maxEntries int
	maxBytes   int
	pushes     uint64   // entries put at the front so far
	_          [64]byte // 128 bytes: no two shards share a cache line
}

type cacheEntry struct {
	hash       uint64
	pushedAt   uint64 // the shard's pushes when e was last put at the front
	token      string
	sess       *session.Session
	iss        *issuer // whose key set key must still be in
	key        *Key
	size       int
	prev, next *cacheEntry
}

func newCache(entries, bytes int) *cache {
	c := &cache{seed: maphash.MakeSeed()}
	perEntries := max(entries/cacheShards, 1)
	perBytes := max(bytes/cacheShards, 1)
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*cacheEntry)
		c.shards[i].maxEntries = perEntries
		c.shards[i].maxBytes = perBytes
	}
	return c
}

func (c *cache) shard(h uint64) *cacheShard { return &c.shards[h%cacheShards] }

// get returns the cached session for tok, or nil. An entry past its validity
// or whose key left its issuer's current key set is removed.
func (c *cache) get(tok string, now time.Time) *session.Session {
	h := maphash.String(c.seed, tok)
	sh := c.shard(h)
	sh.mu.Lock()
	e := sh.entries[h]
	if e == nil || e.token != tok {
		sh.mu.Unlock()
		return nil
	}
	if !now.Before(e.sess.ValidUntil()) || !e.iss.keys.Load().holds(e.key) {
		sh.remove(e)
		sh.mu.Unlock()
		return nil
	}
	sh.touch(e)
	sh.mu.Unlock()
	return e.sess
}

// put caches sess for tok, evicting least recently used entries while the
// shard is over its bounds. A token larger than a shard's byte budget is not
// cached.
func (c *cache) put(tok string, sess *session.Session, iss *issuer, key *Key) {
	size := len(tok) + sessionSize(sess)
	h := maphash.String(c.seed, tok)
	sh := c.shard(h)
	if size > sh.maxBytes {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.entries[h]; old != nil {
		sh.remove(old)
	}
	for len(sh.entries) >= sh.maxEntries || sh.bytes+size > sh.maxBytes {
		if sh.tail == nil {
			break
		}
		sh.remove(sh.tail)
	}
	e := &cacheEntry{hash: h, token: tok, sess: sess, iss: iss, key: key, size: size}
	sh.entries[h] = e
	sh.bytes += size
	sh.pushFront(e)
}

// purge removes every entry whose key drop reports true.
func (c *cache) purge(drop func(*issuer, *Key) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for e := sh.head; e != nil; {
			next := e.next
			if drop(e.iss, e.key) {
				sh.remove(e)
			}
			e = next
		}
		sh.mu.Unlock()
	}
}

// len returns the number of entries and bytes held.
func (c *cache) len() (entries, bytes int) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		entries += len(sh.entries)
		bytes += sh.bytes
		sh.mu.Unlock()
	}
	return entries, bytes
}

func (sh *cacheShard) remove(e *cacheEntry) {
	delete(sh.entries, e.hash)
	sh.bytes -= e.size
	sh.unlink(e)
}

func (sh *cacheShard) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (sh *cacheShard) pushFront(e *cacheEntry) {
	sh.pushes++
	e.pushedAt = sh.pushes
	e.prev, e.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = e
	}
	sh.head = e
	if sh.tail == nil {
		sh.tail = e
	}
}

// touch records a hit on e. An entry stands at most as far from the front
// as entries have been pushed since its own push, so one pushed within the
// last eighth of the shard's capacity is already among the most recently
// used and stays where it is: hits on a working set that fits write nothing
// but the lock, where moving the entry to the front each time would rewrite
// its neighbours' links (cache lines shared between cores) on every call.
// Eviction order is least recently used to within that eighth.
func (sh *cacheShard) touch(e *cacheEntry) {
	if sh.head == e || sh.pushes-e.pushedAt < uint64(max(sh.maxEntries/8, 1)) {
		return
	}
	sh.unlink(e)
	sh.pushFront(e)
}

// sessionSize estimates the bytes a session holds.
func sessionSize(sess *session.Session) int {
	s := sessionmint.Of(sess)
	// The strings are mostly parts of s.Text; counting both overstates a
	// little, never understates.
	n := sessionOverheadBytes + len(s.Text) + len(s.Subject) + len(s.Issuer) + len(s.ID) + len(s.SessionID) + len(s.AZP)
	for _, a := range s.Audience {
		n += len(a) + 16
	}
	for _, p := range s.Perms {
		n += 2*len(p) + 48
	}
	for _, c := range s.Claims {
		n += len(c.Name) + 48 + claimSize(c.Value)
	}
	n += 48 * len(s.ClaimMap)
	return n
}

// claimSize estimates the bytes a decoded custom claim holds. Arrays and
// objects count per element: a claim of a few thousand small numbers takes
// tens of times the bytes it had in the token, and the byte bound must see
// that.
func claimSize(v any) int {
	switch v := v.(type) {
	case string:
		return 16 + len(v)
	case json.Number:
		return 16 + len(v)
	case []any:
		n := 24
		for _, e := range v {
			n += 16 + claimSize(e)
		}
		return n
	case map[string]any:
		n := 48
		for k, e := range v {
			n += 48 + len(k) + claimSize(e)
		}
		return n
	}
	return 0
}
