package throttle

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakeclock"
)

// fakeClock is a clock that moves only when told. Safe for concurrent use.
type fakeClock = fakeclock.Clock

var clockBase = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestMemory(opts ...MemoryOption) (*Memory, *fakeClock) {
	c := fakeclock.New(clockBase)
	m, err := NewMemory(append([]MemoryOption{WithMemoryClock(c.Now)}, opts...)...)
	if err != nil {
		panic(err) // the tests' options are valid; TestNewMemoryRefuses covers the others
	}
	return m, c
}

// mustMemory is NewMemory for options a test knows to be valid.
func mustMemory(tb testing.TB, opts ...MemoryOption) *Memory {
	tb.Helper()
	m, err := NewMemory(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// step is one call in a scripted sequence: advance the clock, then Allow.
type step struct {
	advance time.Duration
	cost    int

	allowed   bool
	remaining int
	retry     time.Duration
	reset     time.Duration
}

func runSteps(t *testing.T, m *Memory, c *fakeClock, key Key, limit Limit, steps []step) {
	t.Helper()
	for i, s := range steps {
		c.Advance(s.advance)
		d, err := m.Allow(context.Background(), key, limit, s.cost)
		if err != nil {
			t.Fatalf("step %d: Allow: %v", i, err)
		}
		want := Decision{Allowed: s.allowed, Limit: limit, Remaining: s.remaining, RetryAfter: s.retry, ResetAfter: s.reset, Source: "memory"}
		if d != want {
			t.Fatalf("step %d (advance %v, cost %d):\n got %+v\nwant %+v", i, s.advance, s.cost, d, want)
		}
	}
}

func TestMemoryBucketMath(t *testing.T) {
	const ms = time.Millisecond
	limit := PerSecond(5, 10) // a token every 200ms, 2s to refill from empty

	// drain10 is ten calls of cost 1 at one instant on a full bucket.
	var drain10 []step
	for i := range 10 {
		drain10 = append(drain10, step{cost: 1, allowed: true, remaining: 9 - i, reset: time.Duration(i+1) * 200 * ms})
	}
	then := func(steps ...step) []step { return append(append([]step(nil), drain10...), steps...) }

	tests := []struct {
		name  string
		steps []step
	}{
		{"burst at one instant, then one token per interval", then(
			step{cost: 1, retry: 200 * ms, reset: 2000 * ms},
			step{advance: 199 * ms, cost: 1, retry: 1 * ms, reset: 1801 * ms},
			step{advance: 1 * ms, cost: 1, allowed: true, reset: 2000 * ms},
			step{cost: 1, retry: 200 * ms, reset: 2000 * ms},
			step{advance: 200 * ms, cost: 1, allowed: true, reset: 2000 * ms},
		)},
		{"partial refill", then(
			step{advance: 1000 * ms, cost: 1, allowed: true, remaining: 4, reset: 1200 * ms},
			step{advance: 100 * ms, cost: 1, allowed: true, remaining: 3, reset: 1300 * ms},
		)},
		{"cost 3 of burst 10", []step{
			{cost: 3, allowed: true, remaining: 7, reset: 600 * ms},
			{cost: 3, allowed: true, remaining: 4, reset: 1200 * ms},
			{cost: 3, allowed: true, remaining: 1, reset: 1800 * ms},
			{cost: 3, remaining: 1, retry: 400 * ms, reset: 1800 * ms},
			{advance: 399 * ms, cost: 3, remaining: 2, retry: 1 * ms, reset: 1401 * ms},
			{advance: 1 * ms, cost: 3, allowed: true, reset: 2000 * ms},
			{cost: 1, retry: 200 * ms, reset: 2000 * ms},
		}},
		{"cost above burst is denied for good", []step{
			{cost: 11, remaining: 10, retry: -1},
			{cost: 1, allowed: true, remaining: 9, reset: 200 * ms},
			{cost: 11, remaining: 9, retry: -1, reset: 200 * ms},
			{advance: time.Hour, cost: 11, remaining: 10, retry: -1},
			{cost: 10, allowed: true, reset: 2000 * ms},
		}},
		{"cost 0 and negative count as 1", []step{
			{cost: 0, allowed: true, remaining: 9, reset: 200 * ms},
			{cost: -5, allowed: true, remaining: 8, reset: 400 * ms},
		}},
		{"cost equal to burst", []step{
			{cost: 10, allowed: true, reset: 2000 * ms},
			{advance: 1800 * ms, cost: 10, remaining: 9, retry: 200 * ms, reset: 200 * ms},
			{advance: 200 * ms, cost: 10, allowed: true, reset: 2000 * ms},
		}},
		{"long idle refills to burst, never above", then(
			step{advance: time.Hour, cost: 1, allowed: true, remaining: 9, reset: 200 * ms},
			step{cost: 9, allowed: true, reset: 2000 * ms},
			step{cost: 1, retry: 200 * ms, reset: 2000 * ms},
		)},
		{"clock back a little creates no tokens", then(
			step{advance: -500 * ms, cost: 1, retry: 700 * ms, reset: 2500 * ms},
			step{advance: 500 * ms, cost: 1, retry: 200 * ms, reset: 2000 * ms},
			step{advance: 200 * ms, cost: 1, allowed: true, reset: 2000 * ms},
		)},
		{"clock back before construction creates no tokens", then(
			// Readings before epoch (construction - 1s) count as the epoch:
			// 1s back as far as the buckets can tell.
			step{advance: -10 * time.Second, cost: 1, retry: 1200 * ms, reset: 3000 * ms},
			step{advance: 10 * time.Second, cost: 1, retry: 200 * ms, reset: 2000 * ms},
			step{advance: 200 * ms, cost: 1, allowed: true, reset: 2000 * ms},
			step{cost: 1, retry: 200 * ms, reset: 2000 * ms},
		)},
		{"clock back then forward refills from the later instant", then(
			step{advance: -10 * time.Second, cost: 1, retry: 1200 * ms, reset: 3000 * ms},
			step{advance: 10*time.Second + time.Second, cost: 1, allowed: true, remaining: 4, reset: 1200 * ms},
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, c := newTestMemory()
			runSteps(t, m, c, Key{Consumer: "billing", Bucket: "quotes"}, limit, tt.steps)
		})
	}
}

// A step back of the clock may make the bucket look emptier, never fuller:
// wherever the clock steps back to, no more calls are admitted there than
// the bucket held before the step.
func TestMemoryClockBackNeverCreatesTokens(t *testing.T) {
	limit := PerSecond(5, 10)
	key := Key{Consumer: "c", Bucket: "b"}
	for _, used := range []int{0, 1, 5, 9, 10} {
		for _, back := range []time.Duration{time.Nanosecond, 100 * time.Millisecond, time.Second, time.Hour} {
			m, c := newTestMemory()
			c.Advance(time.Minute)
			for range used {
				if d, _ := m.Allow(context.Background(), key, limit, 1); !d.Allowed {
					t.Fatalf("used %d: call denied on a fresh bucket", used)
				}
			}
			c.Advance(-back)
			admitted := 0
			for {
				d, err := m.Allow(context.Background(), key, limit, 1)
				if err != nil {
					t.Fatal(err)
				}
				if d.Remaining < 0 || d.Remaining > limit.Burst {
					t.Fatalf("used %d, back %v: Remaining %d outside [0, burst]", used, back, d.Remaining)
				}
				if !d.Allowed {
					break
				}
				admitted++
			}
			if admitted > limit.Burst-used {
				t.Errorf("used %d, back %v: %d admitted after the step back, bucket held %d", used, back, admitted, limit.Burst-used)
			}
		}
	}
}

func TestMemoryInvalidLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
	}{
		{"rate 0", Limit{Rate: 0, Per: time.Second, Burst: 1}},
		{"rate negative", Limit{Rate: -1, Per: time.Second, Burst: 1}},
		{"per 0", Limit{Rate: 1, Per: 0, Burst: 1}},
		{"per negative", Limit{Rate: 1, Per: -time.Second, Burst: 1}},
		{"burst 0", Limit{Rate: 1, Per: time.Second, Burst: 0}},
		{"burst negative", Limit{Rate: 1, Per: time.Second, Burst: -3}},
		{"finer than a nanosecond", Limit{Rate: 2_000_000_000, Per: time.Second, Burst: 1}},
		{"zero", Limit{}},
		{"refill span overflows", Limit{Rate: 1, Per: 1000 * time.Hour, Burst: 1 << 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newTestMemory()
			d, err := m.Allow(context.Background(), Key{Consumer: "c", Bucket: "b"}, tt.limit, 1)
			if !errors.Is(err, ErrInvalidLimit) {
				t.Fatalf("err = %v, want ErrInvalidLimit", err)
			}
			if d != (Decision{}) {
				t.Errorf("decision = %+v, want the zero Decision", d)
			}
			if n := m.Len(); n != 0 {
				t.Errorf("Len = %d after an invalid limit, want 0", n)
			}
		})
	}
}

// The largest limits Validate accepts still decide exactly: no overflow.
func TestMemoryLargestLimit(t *testing.T) {
	span := time.Duration(math.MaxInt64 / 4)
	limit := Limit{Rate: 1, Per: span / 1000, Burst: 1000}
	if err := limit.Validate(); err != nil {
		t.Fatalf("Validate(%v) = %v, want nil", limit, err)
	}
	m, c := newTestMemory()
	key := Key{Consumer: "c", Bucket: "b"}
	runSteps(t, m, c, key, limit, []step{
		{cost: 1000, allowed: true, reset: limit.Interval() * 1000},
		{cost: 1, retry: limit.Interval(), reset: limit.Interval() * 1000},
		{advance: limit.Interval(), cost: 1, allowed: true, reset: limit.Interval() * 1000},
	})
}

// refBucket is the token bucket as a textbook states it: tokens as a float,
// refilled by the time since the last call. TestMemoryMatchesReference
// drives it with times and limits for which its float arithmetic is exact.
type refBucket struct {
	tokens  float64
	last    time.Duration
	started bool
}

func (r *refBucket) allow(now time.Duration, l Limit, cost int) Decision {
	if cost <= 0 {
		cost = 1
	}
	interval := float64(l.Per) / float64(l.Rate)
	burst := float64(l.Burst)
	if !r.started {
		r.tokens, r.started = burst, true
	} else {
		r.tokens = math.Min(burst, r.tokens+float64(now-r.last)/interval)
	}
	r.last = now
	d := Decision{Limit: l, Source: "memory"}
	switch {
	case cost > l.Burst:
		d.RetryAfter = -1
	case r.tokens >= float64(cost):
		r.tokens -= float64(cost)
		d.Allowed = true
	default:
		d.RetryAfter = time.Duration((float64(cost) - r.tokens) * interval)
	}
	d.Remaining = int(math.Floor(r.tokens))
	d.ResetAfter = time.Duration((burst - r.tokens) * interval)
	return d
}

// TestMemoryMatchesReference compares Memory with refBucket over random
// sequences of (advance, cost). The intervals are 2^k µs and the clock moves
// by whole µs, so every token count is a multiple of 2^-k and the float
// reference is exact: any difference is a bug, not rounding.
func TestMemoryMatchesReference(t *testing.T) {
	const steps = 10_000
	limits := []Limit{
		{Rate: 15625, Per: time.Second, Burst: 100},            // 64µs
		{Rate: 125, Per: 128 * time.Millisecond, Burst: 10},    // 1024µs
		{Rate: 1000, Per: 64 * time.Millisecond, Burst: 50},    // 64µs
		{Rate: 3, Per: 768 * time.Microsecond, Burst: 7},       // 256µs
		{Rate: 1, Per: (1 << 20) * time.Microsecond, Burst: 1}, // 2^20µs
	}
	rng := rand.New(rand.NewSource(20260102))
	for _, limit := range limits {
		t.Run(limit.String(), func(t *testing.T) {
			if limit.Per%time.Duration(limit.Rate) != 0 {
				t.Fatalf("interval of %v is not whole ns", limit)
			}
			m, c := newTestMemory()
			var ref refBucket
			var now time.Duration
			key := Key{Consumer: "c", Bucket: limit.String()}
			intervalUS := int64(limit.Interval() / time.Microsecond)
			admitted, denied := 0, 0
			for i := range steps {
				var adv time.Duration
				switch p := rng.Intn(100); {
				case p < 35: // several calls at one instant
				case p < 95: // within a few intervals
					adv = time.Duration(rng.Int63n(3*intervalUS+1)) * time.Microsecond
				default: // long idle, beyond a full refill
					adv = time.Duration(rng.Int63n(2*int64(limit.Burst)*intervalUS+1)) * time.Microsecond
				}
				var cost int
				switch p := rng.Intn(100); {
				case p < 60:
					cost = 1
				case p < 65:
					cost = 0
				case p < 68:
					cost = limit.Burst + 1
				default:
					cost = 1 + rng.Intn(limit.Burst)
				}
				now += adv
				c.Advance(adv)
				want := ref.allow(now, limit, cost)
				got, err := m.Allow(context.Background(), key, limit, cost)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("step %d (t=%v, advance %v, cost %d):\n got %+v\nwant %+v", i, now, adv, cost, got, want)
				}
				if got.Allowed {
					admitted++
				} else {
					denied++
				}
			}
			// Both outcomes must be exercised, or the comparison proves little.
			if admitted < steps/10 || denied < steps/10 {
				t.Errorf("admitted %d, denied %d of %d: sequence does not exercise both", admitted, denied, steps)
			}
		})
	}
}

func TestMemoryKeys(t *testing.T) {
	tests := []struct {
		name   string
		a, b   Key
		shared bool
	}{
		{"same key", Key{"billing", "quotes"}, Key{"billing", "quotes"}, true},
		{"other consumer", Key{"billing", "quotes"}, Key{"search", "quotes"}, false},
		{"other bucket", Key{"billing", "quotes"}, Key{"billing", "orders"}, false},
		{"consumer and bucket swapped", Key{"x", "y"}, Key{"y", "x"}, false},
		{"bytes moved across the boundary", Key{"ab", "c"}, Key{"a", "bc"}, false},
		{"empty bucket", Key{"billing", ""}, Key{"billing", "quotes"}, false},
		{"empty consumer", Key{"", "quotes"}, Key{"billing", "quotes"}, false},
		{"both empty", Key{}, Key{}, true},
	}
	limit := Limit{Rate: 1, Per: time.Hour, Burst: 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newTestMemory()
			if d, _ := m.Allow(context.Background(), tt.a, limit, 1); !d.Allowed {
				t.Fatalf("first call on %+v denied", tt.a)
			}
			d, _ := m.Allow(context.Background(), tt.b, limit, 1)
			if shared := !d.Allowed; shared != tt.shared {
				t.Errorf("%+v then %+v: shared = %v, want %v", tt.a, tt.b, shared, tt.shared)
			}
		})
	}
}

func TestMemoryConcurrentSameKey(t *testing.T) {
	const goroutines, calls, burst = 8, 1000, 100
	m, _ := newTestMemory() // frozen: nothing refills
	limit := Limit{Rate: 1, Per: time.Hour, Burst: burst}
	key := Key{Consumer: "c", Bucket: "b"}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				d, err := m.Allow(context.Background(), key, limit, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != burst {
		t.Errorf("admitted %d of %d calls, want exactly %d", n, goroutines*calls, burst)
	}
}

func TestMemoryConcurrentKeys(t *testing.T) {
	const goroutines, calls, keys, burst = 8, 1000, 64, 100
	m, _ := newTestMemory()
	limit := Limit{Rate: 1, Per: time.Hour, Burst: burst}
	var admitted [keys]atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			// Every goroutine cycles through all keys from its own start, so
			// each key is hit concurrently by several goroutines.
			for i := range calls {
				k := (g*keys/goroutines + i) % keys
				d, err := m.Allow(context.Background(), Key{Consumer: "consumer-" + strconv.Itoa(k), Bucket: "b"}, limit, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 8000 calls over 64 keys: 125 each, of which exactly the burst pass.
	for k := range admitted {
		if n := admitted[k].Load(); n != burst {
			t.Errorf("key %d: admitted %d, want %d", k, n, burst)
		}
	}
	if n := m.Len(); n != keys {
		t.Errorf("Len = %d, want %d", n, keys)
	}
}

func TestMemoryNoAllocationForExistingKey(t *testing.T) {
	m, c := newTestMemory()
	limit := Limit{Rate: 1000, Per: time.Millisecond, Burst: 1000}
	key := Key{Consumer: "billing", Bucket: "quotes"}
	ctx := context.Background()
	if d, _ := m.Allow(ctx, key, limit, 1); !d.Allowed {
		t.Fatal("first call denied")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		c.Advance(time.Microsecond)
		if d, _ := m.Allow(ctx, key, limit, 1); !d.Allowed {
			t.Fatal("call denied")
		}
	})
	if allocs != 0 {
		t.Errorf("Allow on an existing key allocates %v times per call, want 0", allocs)
	}
}

func TestMemoryBounded(t *testing.T) {
	const keys = 100_000
	tests := []struct {
		name    string
		maxKeys int
		advance time.Duration // per new key
		full    bool          // whether Len must reach maxKeys exactly
	}{
		// A bucket refills 1s after its call, i.e. 1000 keys later: old
		// buckets are full by the time the shards are at their share.
		{"refilling", 1000, time.Millisecond, false},
		// Nothing ever refills: every insertion evicts a live bucket.
		{"frozen", 1000, 0, true},
		{"fewer keys than shards", 3, 0, true},
		{"one key", 1, 0, true},
		{"not a multiple of the shards", 1000 + 37, 0, true},
	}
	limit := Limit{Rate: 1, Per: time.Second, Burst: 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, c := newTestMemory(WithMemoryMaxKeys(tt.maxKeys))
			for i := range keys {
				c.Advance(tt.advance)
				d, err := m.Allow(context.Background(), Key{Consumer: strconv.Itoa(i), Bucket: "b"}, limit, 1)
				if err != nil {
					t.Fatal(err)
				}
				// A new key is admitted whatever was evicted to hold it.
				if !d.Allowed {
					t.Fatalf("key %d: first call denied", i)
				}
				if i%1000 == 0 {
					if n := m.Len(); n > tt.maxKeys {
						t.Fatalf("after %d keys: Len = %d > MaxKeys %d", i+1, n, tt.maxKeys)
					}
				}
			}
			n := m.Len()
			if n > tt.maxKeys || tt.full && n != tt.maxKeys {
				t.Errorf("Len = %d, MaxKeys %d", n, tt.maxKeys)
			}
		})
	}
}

// Under the bound, the latest key is held and exact: eviction only ever
// touches other keys.
func TestMemoryBoundedKeepsNewKey(t *testing.T) {
	m, _ := newTestMemory(WithMemoryMaxKeys(100))
	limit := Limit{Rate: 1, Per: time.Hour, Burst: 1}
	for i := range 10_000 {
		key := Key{Consumer: strconv.Itoa(i), Bucket: "b"}
		if d, _ := m.Allow(context.Background(), key, limit, 1); !d.Allowed {
			t.Fatalf("key %d: first call denied", i)
		}
		if d, _ := m.Allow(context.Background(), key, limit, 1); d.Allowed {
			t.Fatalf("key %d: second call admitted, bucket forgotten right after insertion", i)
		}
	}
}

// shardWith returns a shard holding tats, at its share.
func shardWith(tats map[uint64]int64) *shardState {
	s := &shardState{max: len(tats)}
	for h, tat := range tats {
		s.insert(h, tat)
	}
	return s
}

// contents returns what t holds, found through find.
func (t *bucketTable) contents(hashes []uint64) map[uint64]int64 {
	got := map[uint64]int64{}
	for _, h := range hashes {
		if sl, tat := t.find(h); sl != nil {
			got[h] = tat
		}
	}
	return got
}

func TestMakeRoom(t *testing.T) {
	const now = 1000
	tests := []struct {
		name      string
		tats      map[uint64]int64
		remaining []uint64 // keys left after makeRoom
	}{
		{"forgets every full bucket and nothing else", map[uint64]int64{1: 500, 2: 1000, 3: 1001, 4: 2000, 5: 999}, []uint64{3, 4}},
		{"forgets the closest to full when none is full", map[uint64]int64{1: 3000, 2: 1500, 3: 1001, 4: 2000}, []uint64{1, 2, 4}},
		{"one bucket, not full", map[uint64]int64{7: 5000}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := shardWith(tt.tats)
			s.makeRoom(now, 0xdeadbeef<<32)
			var all []uint64
			for h := range tt.tats {
				all = append(all, h)
			}
			got := s.contents(all)
			if len(got) != len(tt.remaining) || s.n != len(tt.remaining) {
				t.Fatalf("left %v (n %d), want keys %v", got, s.n, tt.remaining)
			}
			for _, h := range tt.remaining {
				if got[h] != tt.tats[h] {
					t.Fatalf("left %v, want keys %v", got, tt.remaining)
				}
			}
		})
	}
}

// makeRoom looks at a bounded number of buckets however large the shard.
func TestMakeRoomScansBounded(t *testing.T) {
	tats := map[uint64]int64{}
	for h := range uint64(10_000) {
		tats[h*0x9e3779b97f4a7c15] = 1 // all full at now
	}
	s := shardWith(tats)
	s.makeRoom(2, 12345<<32)
	if freed := 10_000 - s.n; freed != evictScan {
		t.Errorf("makeRoom freed %d buckets, want %d", freed, evictScan)
	}
}

// The table against a Go map, through random insertions, updates and
// removals, with hashes crowded into few home slots so that probe runs are
// long, wrap around the end and run through tombstones; the counts of live
// and dead slots match the array, which is never more than 3/4 used.
func TestBucketTable(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, homes := range []uint64{1, 3, 16, 1 << 20} {
		var tab bucketTable
		ref := map[uint64]int64{}
		var hashes []uint64
		rebuilds := 0
		for i := range 20_000 {
			// The low bits pick the home slot, counted down from the last slot
			// so that runs wrap around; the rest make hashes distinct.
			h := (1<<20-1-uint64(rng.Int63n(int64(homes))))&(1<<20-1) | uint64(rng.Intn(64))<<40
			_, inRef := ref[h]
			sl, tat := tab.find(h)
			if found := sl != nil; found != inRef {
				t.Fatalf("homes %d, op %d: find(%#x) found=%v, map has it=%v", homes, i, h, found, inRef)
			}
			before := tab.slots.Load()
			switch {
			case sl != nil && tat != ref[h]:
				t.Fatalf("homes %d, op %d: find(%#x) tat %d, map says %d", homes, i, h, tat, ref[h])
			case sl != nil && rng.Intn(2) == 0:
				if !tab.remove(sl, tat) {
					t.Fatalf("homes %d, op %d: remove(%#x) failed with no update in between", homes, i, h)
				}
				delete(ref, h)
			case sl != nil:
				if !atomic.CompareAndSwapInt64(&sl.tat, tat, int64(i+1)) {
					t.Fatalf("homes %d, op %d: CAS on %#x failed", homes, i, h)
				}
				ref[h] = int64(i + 1)
			case len(ref) < 48: // a small, full table: long runs
				tab.insert(h, int64(i+1))
				ref[h] = int64(i + 1)
				hashes = append(hashes, h)
			}
			if after := tab.slots.Load(); after != before && before != nil && len(*after) == len(*before) {
				rebuilds++ // to drop tombstones, not to grow
			}
			live, dead := 0, 0
			slots := tab.current()
			for j := range slots {
				switch v := slots[j].tat; {
				case v > 0:
					live++
				case v == slotDead:
					dead++
				case v != slotEmpty:
					t.Fatalf("homes %d, op %d: slot %d of the current array is %d", homes, i, j, v)
				}
			}
			if tab.n != len(ref) || live != tab.n || dead != tab.dead || (live+dead)*4 > len(slots)*3 {
				t.Fatalf("homes %d, op %d: n %d, dead %d; the array of %d has %d live, %d dead; map holds %d",
					homes, i, tab.n, tab.dead, len(slots), live, dead, len(ref))
			}
		}
		got := tab.contents(hashes)
		if len(got) != len(ref) {
			t.Fatalf("homes %d: table holds %d, map %d", homes, len(got), len(ref))
		}
		for h, tat := range ref {
			if got[h] != tat {
				t.Fatalf("homes %d: %#x -> %d, map says %d", homes, h, got[h], tat)
			}
		}
		if homes <= 16 && rebuilds == 0 {
			t.Errorf("homes %d: no rebuild dropped tombstones", homes)
		}
		if len(tab.current()) > 128 {
			t.Errorf("homes %d: %d slots for at most 48 buckets: the table grows instead of dropping tombstones", homes, len(tab.current()))
		}
	}
}

func TestNewMemoryShards(t *testing.T) {
	tests := []struct{ maxKeys, shards int }{
		{1, 1}, {2, 2}, {3, 2}, {63, 32}, {64, 64}, {65, 64}, {1000, 64}, {DefaultMaxKeys, 64},
	}
	for _, tt := range tests {
		m := mustMemory(t, WithMemoryMaxKeys(tt.maxKeys))
		total := 0
		for i := range m.shards {
			if m.shards[i].max < 1 {
				t.Errorf("WithMemoryMaxKeys(%d): shard %d holds %d", tt.maxKeys, i, m.shards[i].max)
			}
			total += m.shards[i].max
		}
		want := tt.maxKeys
		if len(m.shards) != tt.shards || total != want {
			t.Errorf("WithMemoryMaxKeys(%d): %d shards holding %d, want %d holding %d", tt.maxKeys, len(m.shards), total, tt.shards, want)
		}
	}
}

// Bad settings are refused, never replaced by a default.
func TestNewMemoryRefuses(t *testing.T) {
	for name, opts := range map[string][]MemoryOption{
		"zero max keys":     {WithMemoryMaxKeys(0)},
		"negative max keys": {WithMemoryMaxKeys(-1)},
		"nil clock":         {WithMemoryClock(nil)},
	} {
		if m, err := NewMemory(opts...); err == nil || m != nil {
			t.Errorf("%s: NewMemory = %v, %v; want an error and no limiter", name, m, err)
		}
	}
}
