package throttle

import (
	"math"
	"sync/atomic"
)

// A shard's buckets, and why charging one without the shard's lock never
// admits more than charging it under the lock did.
//
// The buckets live in an open-addressing table with linear probing: an
// array of slots, each a key hash and a tat. The shard's lock serialises
// the operations that decide which key a slot holds or which array is
// current: insert, remove (a refund back to full, makeRoom) and rebuild.
// Updating a bucket already held takes no lock: a charge (Allow, the hot
// path) loads the slot's tat atomically, decides with gcra, and stores the
// new tat with a compare-and-swap (CAS) from the very value it decided on;
// when the CAS fails it loads the tat again and decides again. A refund
// that leaves the bucket short of full does the same.
//
// The tat word is the slot's state:
//
//	0           empty: never used in this array
//	> 0         live: the tat of the bucket whose hash the slot holds
//	slotDead    removed; a tombstone, which probes pass over
//	slotFrozen  copied into a newer array by a rebuild
//
// 1. A slot never changes owner. In one array a slot goes from empty to
// live to dead or frozen, each step at most once, and never back. Only the
// lock holder fills an empty slot: it writes the hash, then publishes the
// first tat with an atomic store, so whoever loads a live tat reads the hash
// written before it. (A fresh array is filled before it is published by an
// atomic store of its pointer, which orders its plain writes the same way.)
// Dead and frozen are final: removal leaves a tombstone instead of moving
// later slots back, and tombstones are not reused; only a rebuild, into a
// fresh array, drops them. So a caller that saw slot i live with hash h,
// and later loads any live value at i, is reading h's bucket. Equal tats of
// different keys, which a frozen clock makes likely, cannot fool a CAS: the
// slot can hold no other key in this array, ever.
//
// 2. A removal and an update cannot both win. Whoever changes a live slot
// does so by a CAS from the value it judged: an update from the tat it
// decided on, a removal from the tat it judged full (for Refund, refunded
// to full; for makeRoom's victim, closest to full), a rebuild's freeze from
// the tat it copies. Of two CASes from one value exactly one succeeds; the
// other caller loads the new value and judges again. An update that lost to
// a removal or a freeze loads dead or frozen and goes to the locked path,
// which finds the bucket in the current array or, if it was removed,
// creates it full: a removed bucket was full, or forgotten to make room as
// documented on [Memory]. A removal that lost to an update judges the
// updated value: makeRoom forgets it only if it is still full, Refund
// refunds from it, a rebuild copies it. No admitted charge is overwritten,
// and no removal undoes a charge it did not see.
//
// 3. A replaced array holds no live slot. A rebuild freezes every live slot
// of the old array, each by a CAS from the value it copies, before it
// publishes the new array, and holds the lock throughout. A caller still
// probing the old array either wins its CAS before the freeze, and the
// freeze copies its result, or loads frozen and takes the lock, which it
// gets once the new array is published. Empty slots of an old array are
// never filled (insertions go to the current array), so a probe of it that
// ends at one has found nothing, and takes the lock too.
//
// Together: at every instant a held bucket has exactly one live slot that
// callers can reach (in the current array, or in the old one while a
// rebuild has yet to freeze it; between its freeze and the publication it
// has none, and callers wait on the lock), and every decision is taken on
// that slot's value: an admitted call at its successful CAS, a denied one
// at its load, a call that creates its bucket at the insertion, under the
// lock, after finding no live slot in the current array. Ordered by those
// instants, each call sees every call before it, so a Memory admits exactly
// what one caller calling in sequence would, as under a lock; and only the
// lock holder inserts, so two calls for a new key cannot both create it.
//
// Live and dead slots together are kept to 3/4 of the array, so every probe
// meets an empty slot: past that, an insertion rebuilds the array, at twice
// the size when more than 5/8 of it would be live, otherwise at the same
// size. A same-size rebuild leaves at least 1/8 of the array to fill before
// the next, so rebuilding costs at most 8 slot copies an insertion, and
// probes are as short as the 3/4 bound made them before tombstones. The
// hashes come from a seeded maphash, so callers cannot choose keys that
// pile up in one run of slots.

// slot is one bucket of a table: 16 bytes.
type slot struct {
	hash uint64 // the key's hash; written once, before the first live tat
	tat  int64  // the state word above; atomic once the array is published
}

// States of a slot's tat word other than live (> 0). A live tat is never 0
// or negative: it was just charged at a now of at least 0.
const (
	slotEmpty  int64 = 0
	slotDead   int64 = -1
	slotFrozen int64 = -2
)

// bucketTable holds a shard's buckets: key hash → tat. A map[uint64]int64
// under the lock would do, but an access to one goes through a header, a
// directory and a table before reaching the slot, and hashes the key again;
// and it could not be read without the lock.
type bucketTable struct {
	slots atomic.Pointer[[]slot] // current array, length a power of two; nil until the first insertion
	n     int                    // live slots; under the lock
	dead  int                    // dead slots of the current array; under the lock
}

// current returns the current array, nil before the first insertion.
func (t *bucketTable) current() []slot {
	if p := t.slots.Load(); p != nil {
		return *p
	}
	return nil
}

// lookup returns the live slot of h in slots and the tat it loaded there, or
// nil when the probe met an empty slot (h is not in slots) or a frozen one
// (slots is being replaced): either way the caller takes the lock. It needs
// no lock. Under the lock, in the current array, no slot is frozen, so nil
// means h is not held.
func lookup(slots []slot, h uint64) (*slot, int64) {
	if len(slots) == 0 {
		return nil, 0
	}
	mask := len(slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		sl := &slots[i]
		tat := atomic.LoadInt64(&sl.tat)
		if tat > 0 {
			if sl.hash == h {
				return sl, tat
			}
		} else if tat != slotDead {
			return nil, 0 // empty, or frozen
		}
	}
}

// find returns the live slot of h in the current array and its tat, or nil
// when h is not held. The lock must be held.
func (t *bucketTable) find(h uint64) (*slot, int64) { return lookup(t.current(), h) }

// charge applies one decision of gcra to the live slot sl, from its tat as
// loaded, into *d. An admitted call is stored by a CAS from that tat; when
// another caller changed the slot first, charge loads it again and decides
// again. It reports false, with *d meaningless, when the slot is no longer
// live: the caller takes the lock and looks the key up again. Under the
// lock it always reports true, since only the lock holder removes.
func charge(d *Decision, sl *slot, tat, now int64, limit Limit, cost int) bool {
	for {
		newTat := gcraInto(d, tat, now, limit, cost)
		// A denied call takes nothing: it is decided at the load of tat.
		if !d.Allowed || atomic.CompareAndSwapInt64(&sl.tat, tat, newTat) {
			return true
		}
		if tat = atomic.LoadInt64(&sl.tat); tat <= 0 {
			return false // dead or frozen; never empty again
		}
	}
}

// insert adds h, which the table does not hold, with tat > 0, rebuilding
// the array first when live and dead slots would pass 3/4 of it. The lock
// must be held.
func (t *bucketTable) insert(h uint64, tat int64) {
	slots := t.current()
	if (t.n+t.dead+1)*4 > len(slots)*3 {
		size := max(8, len(slots))
		if (t.n+1)*8 > size*5 {
			size *= 2
		}
		slots = t.rebuild(size)
	}
	mask := len(slots) - 1
	i := int(h) & mask
	for atomic.LoadInt64(&slots[i].tat) != slotEmpty {
		i = (i + 1) & mask
	}
	slots[i].hash = h
	atomic.StoreInt64(&slots[i].tat, tat)
	t.n++
}

// rebuild copies the live buckets into a fresh array of size slots,
// freezing each old slot by a CAS from the value it copies, and publishes
// the fresh array, which holds no tombstone. It returns the fresh array.
// The lock must be held.
func (t *bucketTable) rebuild(size int) []slot {
	fresh := make([]slot, size)
	mask := size - 1
	for i, old := 0, t.current(); i < len(old); i++ {
		sl := &old[i]
		tat := atomic.LoadInt64(&sl.tat)
		for tat > 0 && !atomic.CompareAndSwapInt64(&sl.tat, tat, slotFrozen) {
			// An update got in first: copy its result. The slot is
			// still live, since only the lock holder removes.
			tat = atomic.LoadInt64(&sl.tat)
		}
		if tat <= 0 {
			continue // empty or dead
		}
		j := int(sl.hash) & mask
		for fresh[j].tat != slotEmpty {
			j = (j + 1) & mask
		}
		fresh[j] = slot{hash: sl.hash, tat: tat}
	}
	t.slots.Store(&fresh)
	t.dead = 0
	return fresh
}

// remove makes the live slot sl dead if it still holds tat, the value its
// caller judged, and reports whether it did. When it did not, an update
// changed the bucket meanwhile, and the caller judges the new value. The
// lock must be held.
func (t *bucketTable) remove(sl *slot, tat int64) bool {
	if !atomic.CompareAndSwapInt64(&sl.tat, tat, slotDead) {
		return false
	}
	t.n--
	t.dead++
	return true
}

// makeRoom forgets at least one bucket of a shard that holds its share, to
// make room for the new bucket h. It looks at up to evictScan buckets, from
// a place in the table that h picks at random, and forgets those that are
// full at now, which costs nothing in exactness; if none is, it forgets the
// one closest to full (the smallest tat) among them, whose consumer then
// gets back the few tokens it was missing.
//
// Each removal is a CAS from the value judged. A full bucket that an update
// charged between the judgement and the removal is judged again, and kept
// unless still full; the victim is forgotten whatever an update did to it
// meanwhile, as any bucket forgotten early is, and the update, which got
// in first, stays admitted.
//
// s.mu must be held.
func (s *shardState) makeRoom(now int64, h uint64) {
	var (
		freed     int
		victim    *slot
		victimTat int64 = math.MaxInt64
		scanned   int
	)
	slots := s.current()
	mask := len(slots) - 1
	// The bits of h above those that place it in the table or pick its
	// shard: independent of both.
	start := int(h >> 32)
	for j := 0; j <= mask && scanned < evictScan; j++ {
		sl := &slots[(start+j)&mask]
		tat := atomic.LoadInt64(&sl.tat)
		if tat <= 0 {
			continue // empty or dead
		}
		scanned++
		for tat <= now && !s.remove(sl, tat) {
			tat = atomic.LoadInt64(&sl.tat)
		}
		switch {
		case tat <= now:
			freed++
		case tat < victimTat:
			victim, victimTat = sl, tat
		}
	}
	if freed > 0 {
		return
	}
	// s.n >= s.max >= 1, so the scan met a live bucket, and kept it.
	for !s.remove(victim, victimTat) {
		victimTat = atomic.LoadInt64(&victim.tat)
	}
}
