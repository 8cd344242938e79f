package throttle

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"
	"unsafe"
)

// Memory is a [Limiter] that keeps its buckets in this process. It implements
// the token bucket described in the package documentation exactly: every
// bucket is one theoretical arrival time in integer nanoseconds, advanced
// under a lock, so a Memory shared by many goroutines admits exactly what
// one caller calling in sequence would.
//
// Buckets are not shared between processes; use the Redis limiter for a
// limit that holds across the replicas of a service. A Memory suits a single
// replica, per-replica limits, and the local fallback of a [Failover].
//
// Time comes from the clock given with [WithMemoryClock] (time.Now by default). It
// is read as the duration since an instant taken at construction, so the
// monotonic clock is used when the clock provides it and changes of the wall
// clock do not move buckets. If the clock goes back, no tokens are created
// (see the package documentation); readings earlier than one second before
// construction count as that instant.
//
// Memory is bounded: it holds at most MaxKeys buckets ([WithMemoryMaxKeys]). A
// bucket is held from the first call admitted on it; a full bucket is the
// same as one never touched, so when room is needed Memory forgets full
// buckets first. When more than MaxKeys buckets are not full, it forgets the
// ones closest to full, and their consumers get a full burst back early:
// under that load the bound on memory wins over exactness. The bound is
// split evenly among the shards, and keys do not spread perfectly evenly, so
// forgetting starts a little before MaxKeys keys are active: of a million
// keys under the default bound, about 997,000 are held.
//
// Keys are held as 64-bit hashes of the consumer and the bucket name, never
// as strings. Two keys whose hashes collide share one bucket, which is
// stricter for both, never more lenient; among n active keys the chance that
// any two collide is about n²/2⁶⁵ (about 3·10⁻⁸ for a million keys). The
// hash seed is random per Memory.
//
// A Memory must be created with [NewMemory]; the zero value is not usable.
// It is safe for concurrent use; buckets are spread over independently
// locked shards so that calls for different keys rarely wait for each other.
type Memory struct {
	shards []shard
	shift  uint // h>>shift is the shard of hash h

	seedConsumer maphash.Seed
	seedBucket   maphash.Seed

	clock func() time.Time // nil: time.Now, read as time.Since(epoch)
	epoch time.Time        // instant 0 of the buckets' times
}

// Defaults of [NewMemory].
const (
	// DefaultMaxKeys is the bound on buckets of a [Memory] built without
	// [WithMemoryMaxKeys]. A million buckets take about 32 MB.
	DefaultMaxKeys = 1_000_000

	// maxShards is the number of independently locked shards of a Memory
	// (fewer when MaxKeys is smaller). A power of two, so that the high
	// bits of a key's hash pick its shard.
	maxShards = 64

	// evictScan is how many buckets an insertion into a full shard looks
	// at, at most, to find ones to forget. It bounds the cost of that
	// insertion; each scan starts at a place the new key's hash picks, so
	// successive insertions look at different buckets.
	evictScan = 64

	// cacheLine is the size the shards are padded to, so that two cores
	// locking neighbouring shards do not write the same cache line.
	cacheLine = 64

	// sourceMemory is Decision.Source for decisions of a Memory.
	sourceMemory = "memory"
)

type shardState struct {
	mu sync.Mutex
	bucketTable
	max int // buckets this shard may hold; at least 1
}

type shard struct {
	shardState
	_ [cacheLine - unsafe.Sizeof(shardState{})%cacheLine]byte
}

// MemoryOption configures [NewMemory].
type MemoryOption func(*memoryOptions)

type memoryOptions struct {
	clock    func() time.Time
	clockSet bool
	maxKeys  int
}

// WithMemoryClock makes the limiter read the time from clock instead of
// time.Now; tests use it to drive time by hand. The clock must be safe for
// concurrent use; a nil clock is refused by [NewMemory].
func WithMemoryClock(clock func() time.Time) MemoryOption {
	return func(o *memoryOptions) { o.clock, o.clockSet = clock, true }
}

// WithMemoryMaxKeys bounds the number of buckets the limiter holds to n
// (default [DefaultMaxKeys]). A bucket takes 16 bytes in tables kept 3/8 to
// 3/4 full, 20 to 45 bytes all told. [NewMemory] refuses n below 1.
func WithMemoryMaxKeys(n int) MemoryOption {
	return func(o *memoryOptions) { o.maxKeys = n }
}

// NewMemory returns a limiter with every bucket full. It returns an error,
// never a limiter with a substituted setting, for a nil clock or a bound on
// keys below 1.
func NewMemory(opts ...MemoryOption) (*Memory, error) {
	o := memoryOptions{maxKeys: DefaultMaxKeys}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.clockSet && o.clock == nil:
		return nil, errors.New("throttle: NewMemory: nil clock")
	case o.maxKeys < 1:
		return nil, fmt.Errorf("throttle: NewMemory: max keys %d must be at least 1", o.maxKeys)
	}
	start := time.Now()
	if o.clock != nil {
		start = o.clock()
	}

	// As many shards as possible up to maxShards, with at least one bucket
	// each, and shares that add up to exactly maxKeys.
	n, bits := 1, uint(0)
	for n*2 <= min(o.maxKeys, maxShards) {
		n, bits = n*2, bits+1
	}
	m := &Memory{
		shards:       make([]shard, n),
		shift:        64 - bits,
		seedConsumer: maphash.MakeSeed(),
		seedBucket:   maphash.MakeSeed(),
		clock:        o.clock,
		// One second before now, so that the first reading is positive:
		// gcra takes a tat of 0 for a bucket never touched.
		epoch: start.Add(-time.Second),
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.max = o.maxKeys / n
		if i < o.maxKeys%n {
			s.max++
		}
	}
	return m, nil
}

// Allow takes cost tokens from the bucket key under limit if it holds them
// now, and reports the decision with Source "memory". It never waits, and
// ctx is not used.
//
// A cost of 0 or less counts as 1. A cost above limit.Burst is never
// admitted (RetryAfter is -1). An invalid limit takes nothing and returns an
// error wrapping [ErrInvalidLimit]; no other error is returned.
//
// The limit is not stored with the bucket: calls naming the same key should
// pass the same limit. Passing a different one applies it to the tokens the
// bucket holds at that instant, as if the bucket had always had that limit.
func (m *Memory) Allow(_ context.Context, key Key, limit Limit, cost int) (d Decision, err error) {
	if err = limit.Validate(); err != nil {
		return Decision{}, err
	}
	now := m.now()
	h := m.hash(key)
	s := &m.shards[h>>m.shift]

	s.mu.Lock()
	i, held := s.find(h)
	var tat int64
	if held {
		tat = s.slots[i].tat
	}
	// Into the result: copying a Decision out of gcra costs more than
	// deciding.
	tat = gcraInto(&d, tat, now, limit, cost)
	// A denied call takes nothing, so only an admitted one changes the
	// bucket; and it always leaves the bucket short of full.
	switch {
	case !d.Allowed:
	case held:
		s.slots[i].tat = tat
	default:
		if s.n >= s.max {
			s.makeRoom(now, h)
		}
		s.insert(h, tat)
	}
	s.mu.Unlock()

	d.Source = sourceMemory
	return d, nil
}

// Refund gives back cost tokens that [Memory.Allow] took from the bucket key
// under limit: for a caller that reserves tokens before work it may not
// need to charge for. The guard reserves one of a peer's failed
// authentications before it checks a signature, and refunds it when the
// check succeeds, so that concurrent calls can never spend more than the
// budget on failures. A refund never makes a bucket fuller than full, and
// on a bucket not held it does nothing. An invalid limit returns an error
// wrapping [ErrInvalidLimit].
func (m *Memory) Refund(key Key, limit Limit, cost int) error {
	if err := limit.Validate(); err != nil {
		return err
	}
	if cost <= 0 {
		cost = 1
	}
	now := m.now()
	h := m.hash(key)
	s := &m.shards[h>>m.shift]
	s.mu.Lock()
	if i, held := s.find(h); held {
		// Back by cost intervals. A bucket that is full again holds no
		// information: it is dropped, as the package documentation allows
		// (a tat of 0 would mark the slot empty).
		if tat := s.slots[i].tat - int64(cost)*int64(limit.Interval()); tat > now {
			s.slots[i].tat = tat
		} else {
			s.deleteAt(i)
		}
	}
	s.mu.Unlock()
	return nil
}

// Len returns the number of buckets the limiter holds, at most MaxKeys.
// Buckets that have refilled are still counted until a new key needs their
// room.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// now returns the clock as nanoseconds since the epoch; readings before the
// epoch count as the epoch. It is never negative, because gcra takes a tat
// of 0 as a full bucket, which a negative now would see as one from the
// future.
func (m *Memory) now() int64 {
	var d time.Duration
	if m.clock == nil {
		// Same as time.Now().Sub(m.epoch), reading only the monotonic
		// clock: half the cost where reading a clock is a system call.
		d = time.Since(m.epoch)
	} else {
		d = m.clock().Sub(m.epoch)
	}
	return max(int64(d), 0)
}

// hash returns the hash the bucket key is held under. The consumer and the
// bucket are hashed with distinct seeds, so that swapping them, or moving
// bytes from one to the other, gives an unrelated hash.
func (m *Memory) hash(key Key) uint64 {
	return maphash.String(m.seedConsumer, key.Consumer) ^ maphash.String(m.seedBucket, key.Bucket)
}

// makeRoom forgets at least one bucket of a shard that holds its share, to
// make room for the new bucket h. It looks at up to evictScan buckets, from
// a place in the table that h picks at random, and forgets those that are
// full at now, which costs nothing in exactness; if none is, it forgets the
// one closest to full (the smallest tat) among them, whose consumer then
// gets back the few tokens it was missing.
//
// s.mu must be held.
func (s *shardState) makeRoom(now int64, h uint64) {
	var (
		forget    [evictScan]uint64
		n         int
		victim    uint64
		victimTat int64 = math.MaxInt64
		scanned   int
	)
	mask := len(s.slots) - 1
	// The bits of h above those that place it in the table or pick its
	// shard: independent of both.
	start := int(h >> 32)
	for j := 0; j <= mask && scanned < evictScan; j++ {
		sl := s.slots[(start+j)&mask]
		if sl.tat == 0 {
			continue
		}
		scanned++
		if sl.tat <= now {
			forget[n] = sl.hash
			n++
		} else if sl.tat < victimTat {
			victim, victimTat = sl.hash, sl.tat
		}
	}
	if n == 0 {
		forget[0] = victim
		n = 1
	}
	// Deleting moves slots, so the scan collects hashes and deletes after.
	for _, h := range forget[:n] {
		if i, ok := s.find(h); ok {
			s.deleteAt(i)
		}
	}
}

// bucketTable holds a shard's buckets: key hash → tat, in an open-addressing
// table with linear probing. A map[uint64]int64 would do, but an access to
// one goes through a header, a directory and a table before reaching the
// slot, and hashes the key again; here the slot is one load away from the
// shard's lock. Measured against the map (minimum of 20 interleaved runs),
// an Allow over 1024 keys took a fifth less time. The hashes come from a
// seeded maphash, so callers cannot choose keys that pile up in one run of
// slots.
//
// A slot whose tat is 0 is empty: a held tat is never 0, since the bucket
// was just charged at a now of at least 0.
type bucketTable struct {
	slots []slot // length a power of two, at most 3/4 used; nil until the first insertion
	n     int    // slots used
}

type slot struct {
	hash uint64
	tat  int64
}

// find returns the index of the slot holding h and true, or the index of
// the empty slot where h would go and false (-1 when the table has no
// slots).
func (t *bucketTable) find(h uint64) (int, bool) {
	if len(t.slots) == 0 {
		return -1, false
	}
	mask := len(t.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch sl := &t.slots[i]; {
		case sl.tat == 0:
			return i, false
		case sl.hash == h:
			return i, true
		}
	}
}

// insert adds h, which the table does not hold, with tat > 0, growing the
// table past 3/4 use.
func (t *bucketTable) insert(h uint64, tat int64) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	i, _ := t.find(h)
	t.slots[i] = slot{hash: h, tat: tat}
	t.n++
}

// grow doubles the table (to 8 slots at first) and places every slot anew.
func (t *bucketTable) grow() {
	old := t.slots
	t.slots = make([]slot, max(8, 2*len(old)))
	for _, sl := range old {
		if sl.tat != 0 {
			i, _ := t.find(sl.hash)
			t.slots[i] = sl
		}
	}
}

// deleteAt empties slot i, moving back the slots after it that could not
// be found past an empty slot otherwise (backward-shift deletion: no
// tombstones, so lookups never slow down with churn).
func (t *bucketTable) deleteAt(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].tat != 0; j = (j + 1) & mask {
		// The slot at j stays if its home lies cyclically in (i, j].
		home := int(t.slots[j].hash) & mask
		if (j-home)&mask < (j-i)&mask {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = slot{}
	t.n--
}
