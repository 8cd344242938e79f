package throttle

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Memory is a [Limiter] that keeps its buckets in this process. It implements
// the token bucket described in the package documentation exactly: every
// bucket is one theoretical arrival time in integer nanoseconds, advanced
// by an atomic compare-and-swap from the value it was decided on, so a
// Memory shared by many goroutines admits exactly what one caller calling
// in sequence would (table.go gives the argument).
//
// Buckets are not shared between processes; use redisstore.Limiter for a
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
// It is safe for concurrent use. A call on a bucket already held takes no
// lock, so calls on different keys do not write a shared cache line; a
// call that creates or forgets a bucket locks one of independently locked
// shards.
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
// (default [DefaultMaxKeys]). A bucket takes a 16-byte slot in tables at
// most 3/4 used (counting the slots of buckets forgotten since the table
// was last rebuilt) and more than 5/16 full when they grow: 21 to 52 bytes
// all told. [NewMemory] refuses n below 1.
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
	// A bucket already held is charged without the lock (see table.go);
	// the lock is taken for a new bucket, or when the table was changing.
	// Into the result: copying a Decision out of gcra costs more than
	// deciding.
	if sl, tat := lookup(s.current(), h); sl == nil || !charge(&d, sl, tat, now, limit, cost) {
		s.allowLocked(&d, h, now, limit, cost)
	}
	d.Source = sourceMemory
	return d, nil
}

// allowLocked is Allow under the shard's lock, for a bucket the lock-free
// path did not find live.
func (s *shardState) allowLocked(d *Decision, h uint64, now int64, limit Limit, cost int) {
	s.mu.Lock()
	if sl, tat := s.find(h); sl != nil {
		// Inserted or moved meanwhile; live as long as the lock is held.
		charge(d, sl, tat, now, limit, cost)
	} else if tat := gcraInto(d, 0, now, limit, cost); d.Allowed {
		// A denied call takes nothing, so only an admitted one creates a
		// bucket; and it always leaves the bucket short of full.
		if s.n >= s.max {
			s.makeRoom(now, h)
		}
		s.insert(h, tat)
	}
	s.mu.Unlock()
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
	// Back by cost intervals, by a CAS from the tat refunded, like a
	// charge, without the lock. A bucket that is full again holds no
	// information: it is dropped, as the package documentation allows, and
	// dropping takes the lock.
	back := int64(cost) * int64(limit.Interval())
	if sl, tat := lookup(s.current(), h); sl != nil {
		for tat-back > now {
			if atomic.CompareAndSwapInt64(&sl.tat, tat, tat-back) {
				return nil
			}
			if tat = atomic.LoadInt64(&sl.tat); tat <= 0 {
				break // dead or frozen
			}
		}
	}
	s.mu.Lock()
	if sl, tat := s.find(h); sl != nil {
		for {
			if tat-back > now {
				if atomic.CompareAndSwapInt64(&sl.tat, tat, tat-back) {
					break
				}
			} else if s.remove(sl, tat) {
				break
			}
			tat = atomic.LoadInt64(&sl.tat) // an update got in first; still live, as only the lock holder removes
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
