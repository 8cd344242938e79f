package throttle

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hourLimit refills a token an hour: on a fake clock moved by nanoseconds,
// or not at all, nothing refills during a test.
func hourLimit(burst int) Limit { return Limit{Rate: 1, Per: time.Hour, Burst: burst} }

// A call for a bucket already held takes no lock: it completes while the
// test holds every shard's lock. (Were it to take one, it would block for
// good, and the test binary's timeout would report where.)
func TestMemoryExistingKeyTakesNoLock(t *testing.T) {
	m, _ := newTestMemory()
	ctx := context.Background()
	key := Key{Consumer: "c", Bucket: "b"}
	limit := hourLimit(3)
	if d, _ := m.Allow(ctx, key, limit, 1); !d.Allowed {
		t.Fatal("first call denied")
	}
	for i := range m.shards {
		m.shards[i].mu.Lock()
	}
	d1, _ := m.Allow(ctx, key, limit, 1)
	d2, _ := m.Allow(ctx, key, limit, 1)
	d3, _ := m.Allow(ctx, key, limit, 1)
	for i := range m.shards {
		m.shards[i].mu.Unlock()
	}
	if !d1.Allowed || d1.Remaining != 1 || !d2.Allowed || d2.Remaining != 0 || d3.Allowed {
		t.Fatalf("without the lock: %+v, %+v, %+v; want 2 admitted, then denied", d1, d2, d3)
	}
}

// Many goroutines released at once on one bucket, on a clock that stands
// still: exactly floor(burst/cost) calls are admitted, and what is left in
// the bucket is the remainder, whatever the interleaving of the CASes and of
// the first calls, which race to insert the bucket.
func TestMemoryConcurrentSameKeyExact(t *testing.T) {
	const goroutines, calls = 8, 400
	for _, tc := range []struct{ burst, cost int }{{1000, 1}, {1000, 3}, {10, 4}, {7, 7}, {1, 1}} {
		t.Run(fmt.Sprintf("burst %d cost %d", tc.burst, tc.cost), func(t *testing.T) {
			m, _ := newTestMemory()
			ctx := context.Background()
			limit := hourLimit(tc.burst)
			key := Key{Consumer: "c", Bucket: "b"}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range goroutines {
				wg.Go(func() {
					<-start
					for range calls {
						d, err := m.Allow(ctx, key, limit, tc.cost)
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
			close(start)
			wg.Wait()
			if n, want := admitted.Load(), int64(tc.burst/tc.cost); n != want {
				t.Errorf("admitted %d of %d calls, want exactly %d", n, goroutines*calls, want)
			}
			left := 0
			for {
				if d, _ := m.Allow(ctx, key, limit, 1); !d.Allowed {
					break
				}
				left++
			}
			if left != tc.burst%tc.cost {
				t.Errorf("%d tokens left, want the remainder %d", left, tc.burst%tc.cost)
			}
		})
	}
}

// keysInShards returns n keys named prefix-i whose hashes fall in the given
// shards of m, at most perShard in each.
func keysInShards(m *Memory, prefix string, n, perShard int, shards ...uint64) []Key {
	count := map[uint64]int{}
	var keys []Key
	for i := 0; len(keys) < n; i++ {
		k := Key{Consumer: prefix + "-" + strconv.Itoa(i), Bucket: "b"}
		sh := m.hash(k) >> m.shift
		for _, want := range shards {
			if sh == want && count[sh] < perShard {
				count[sh]++
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// Goroutines charging a few hot buckets, every one all of them, while
// another inserts cold buckets into the same shards without end, so that
// their tables evict, drop tombstones in rebuilds and, for the larger bound,
// grow, under the charges. Every call admitted is a reservation, refunded
// at once as the guard refunds one, unless the workers keep it: they keep
// up to half the bucket's calls, or none, so that buckets go round between
// empty and full, the refunds to full removing them, for as long as the
// churn lasts.
//
// Cold buckets refill in a nanosecond and the clock moves a nanosecond
// before each; the workers charge the latest cold keys too, racing with
// their eviction. No shard holds as many hot keys as its share, and a cold
// bucket is always closer to full than a hot one, so evictions only forget
// full hot buckets, never others. Hot buckets refill a token an hour:
// nothing refills. So the calls a hot bucket has admitted and not been
// refunded can never exceed floor(burst/cost), and per hot key the calls
// kept plus those a sequential drain admits after are exactly that: a
// charge lost to another charge, a refund, a removal or a rebuild shows as
// more.
func TestMemoryConcurrentChurnExact(t *testing.T) {
	const (
		workers   = 4
		minRounds = 200  // over all hot keys, per worker, at least
		coldKeys  = 3000 // inserted at least once each, then again in turn
	)
	for _, tc := range []struct {
		name         string
		maxKeys      int // 64 shards of maxKeys/64 each
		burst, cost  int
		keepSomeCall bool // keep up to half the bucket's calls, or none
	}{
		{"4 a shard, rebuilds", 256, 20, 1, true},
		{"4 a shard, rebuilds, cost 3", 256, 20, 3, true},
		{"4 a shard, reservations only", 256, 2, 1, false},
		{"64 a shard, growth and bulk evictions", 4096, 20, 1, true},
		{"64 a shard, growth and bulk evictions, cost 3", 4096, 20, 3, true},
		{"64 a shard, reservations only, cost 3", 4096, 6, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A clock without a lock, so that the goroutines are not
			// queued behind one another on it.
			var elapsed atomic.Int64
			m := mustMemory(t, WithMemoryMaxKeys(tc.maxKeys), WithMemoryClock(func() time.Time {
				return clockBase.Add(time.Duration(elapsed.Load()))
			}))
			ctx := context.Background()
			if share := tc.maxKeys / len(m.shards); share <= 3 {
				t.Fatalf("a share of %d cannot hold 3 hot keys and a cold one", share)
			}
			hot := keysInShards(m, "hot", 6, 3, 0, 1)
			cold := keysInShards(m, "cold", coldKeys, coldKeys, 0, 1)
			hotLimit := hourLimit(tc.burst)
			coldLimit := Limit{Rate: 1_000_000_000, Per: time.Second, Burst: 1}
			calls := int64(tc.burst / tc.cost)
			keepAtMost := int64(0)
			if tc.keepSomeCall {
				keepAtMost = calls / 2
			}

			// taken counts a call from just after it is admitted to just
			// before it is refunded, so it is never above what the bucket
			// has given out and not been given back.
			taken := make([]atomic.Int64, len(hot))
			kept := make([]atomic.Int64, len(hot))
			var (
				wg       sync.WaitGroup
				churned  atomic.Bool
				latest   atomic.Int64 // cold keys inserted
				busy     atomic.Int64 // workers short of minRounds
				refunds  atomic.Int64
				rebuilds int
			)
			start := make(chan struct{})
			busy.Store(workers)
			for w := range workers {
				wg.Go(func() {
					<-start
					rng := rand.New(rand.NewSource(int64(w)))
					for i := 0; !churned.Load(); i++ {
						if i == minRounds {
							busy.Add(-1)
						}
						for range hot {
							// In random order, so that workers meet on a key
							// rather than walk the keys in step.
							k := rng.Intn(len(hot))
							d, err := m.Allow(ctx, hot[k], hotLimit, tc.cost)
							if err != nil {
								t.Error(err)
								return
							}
							if !d.Allowed {
								continue
							}
							if n := taken[k].Add(1); n > calls {
								t.Errorf("hot key %d: %d calls admitted and not refunded, more than %d", k, n, calls)
								return
							}
							if kept[k].Add(1) <= keepAtMost {
								continue
							}
							kept[k].Add(-1)
							taken[k].Add(-1)
							if err := m.Refund(hot[k], hotLimit, tc.cost); err != nil {
								t.Error(err)
								return
							}
							refunds.Add(1)
						}
						// Now and then a cold key of late, charged as its
						// shard evicts it, or inserted again after.
						if n := int(latest.Load()) - 1 - w; i%8 == 0 && n >= 0 {
							if _, err := m.Allow(ctx, cold[n%len(cold)], coldLimit, 1); err != nil {
								t.Error(err)
								return
							}
						}
					}
				})
			}
			wg.Go(func() { // cold buckets, each full a nanosecond after its call
				defer churned.Store(true)
				<-start
				tables := map[*[]slot]bool{}
				for i := 0; i < len(cold) || busy.Load() > 0; i++ {
					k := cold[i%len(cold)]
					elapsed.Add(1)
					d, err := m.Allow(ctx, k, coldLimit, 1)
					if err != nil || !d.Allowed {
						t.Errorf("new cold key %v: %+v, %v; want admitted", k, d, err)
						return
					}
					latest.Store(int64(i + 1))
					tables[m.shards[0].slots.Load()] = true
					tables[m.shards[1].slots.Load()] = true
				}
				rebuilds = len(tables)
			})
			close(start)
			wg.Wait()

			for k, key := range hot {
				drained := 0
				for {
					d, err := m.Allow(ctx, key, hotLimit, tc.cost)
					if err != nil {
						t.Fatal(err)
					}
					if !d.Allowed {
						break
					}
					drained++
				}
				if got, want := kept[k].Load()+int64(drained), calls; got != want {
					t.Errorf("hot key %d: %d calls kept, %d admitted after: %d in all, want exactly %d",
						k, kept[k].Load(), drained, got, want)
				}
			}
			if n := m.Len(); n > tc.maxKeys {
				t.Errorf("Len = %d > MaxKeys %d", n, tc.maxKeys)
			}
			// The test exercised what it claims to.
			if refunds.Load() < 100 || rebuilds < 10 {
				t.Errorf("%d refunds, %d arrays seen in the hot shards: the churn exercised too little", refunds.Load(), rebuilds)
			}
		})
	}
}

// The ABA case: a caller that found key h at a slot, then was slow, must not
// charge that slot once h was removed and another key, with the same tat (a
// frozen clock makes equal tats likely) and the same home slot, inserted.
// With tombstones the slot is dead, not reused, and its CAS fails.
func TestChargeRemovedSlotFails(t *testing.T) {
	var tab bucketTable
	const a, b = 1, 1 + 8<<20 // the same home slot in any array of up to 2^23 slots
	tab.insert(a, 100)
	sl, tat := tab.find(a)
	if !tab.remove(sl, tat) {
		t.Fatal("remove failed with no update in between")
	}
	tab.insert(b, 100)
	var d Decision
	if charge(&d, sl, tat, 0, hourLimit(10), 1) {
		t.Fatalf("charged a removed slot: %+v", d)
	}
	if _, got := tab.find(b); got != 100 {
		t.Errorf("key b: tat %d, want 100 untouched", got)
	}
	if sl, _ := tab.find(a); sl != nil {
		t.Error("key a found after its removal")
	}
}

// A removal judged on a value an update changed since fails, and the caller
// judges again; the update is kept.
func TestRemoveLosesToUpdate(t *testing.T) {
	var tab bucketTable
	tab.insert(5, 100)
	sl, judged := tab.find(5)
	var d Decision
	if !charge(&d, sl, judged, 0, hourLimit(10), 1) || !d.Allowed {
		t.Fatalf("charge: %+v", d)
	}
	if tab.remove(sl, judged) {
		t.Fatal("removed a bucket from a value an update had changed")
	}
	if _, tat := tab.find(5); tat != 100+int64(time.Hour) {
		t.Fatalf("tat %d, want the update's %d", tat, 100+int64(time.Hour))
	}
	if tab.n != 1 || tab.dead != 0 {
		t.Errorf("n %d, dead %d after a failed removal", tab.n, tab.dead)
	}
}

// A rebuild freezes the old array's slots: a caller still holding one cannot
// charge it, a probe of the old array sends it to the lock, and the new
// array holds what was charged before the freeze.
func TestRebuildFreezesOldSlots(t *testing.T) {
	var tab bucketTable
	tab.insert(5, 100)
	tab.insert(6, 200)
	old := tab.current()
	sl5, tat5 := tab.find(5)
	sl6, tat6 := tab.find(6)
	var d Decision
	if !charge(&d, sl6, tat6, 0, hourLimit(10), 1) { // before the freeze: carried over
		t.Fatal("charge before the rebuild failed")
	}
	tab.rebuild(len(old))
	if charge(&d, sl5, tat5, 0, hourLimit(10), 1) {
		t.Fatal("charged a frozen slot")
	}
	if sl, _ := lookup(old, 5); sl != nil {
		t.Fatal("lookup in the old array found a live slot")
	}
	if _, tat := tab.find(5); tat != 100 {
		t.Errorf("key 5: tat %d after the rebuild, want 100", tat)
	}
	if _, tat := tab.find(6); tat != 200+int64(time.Hour) {
		t.Errorf("key 6: tat %d after the rebuild, want the charge before it, %d", tat, 200+int64(time.Hour))
	}
}
