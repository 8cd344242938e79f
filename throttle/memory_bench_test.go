package throttle

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tollgate/tollgate/internal/benchpair"
)

// benchLimit admits everything the benchmarks can send: a token every
// nanosecond, a second's worth of burst.
var benchLimit = Limit{Rate: 1_000_000_000, Per: time.Second, Burst: 1_000_000_000}

// benchKeys are the keys of the parallel benchmarks, made once so that
// building them is not measured.
var benchKeys = func() []Key {
	keys := make([]Key, 1024)
	for i := range keys {
		keys[i] = Key{Consumer: "consumer-" + strconv.Itoa(i), Bucket: "quotes"}
	}
	return keys
}()

// benchStart spreads the goroutines of RunParallel over benchKeys.
var benchStart atomic.Int64

// BenchmarkMemory measures Memory.Allow on the real clock.
//
// The million-consumers cases insert a million keys each and report the
// memory held (MB-held) and the buckets kept (keys), not a time. They are
// meant to run once, and make bench runs them so, apart from the timed
// cases:
//
//	go test -run='^$' -bench='Memory/million' -benchtime=1x ./throttle
//
// Each run takes a few seconds, so even without -benchtime=1x the testing
// package runs them once.
func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()

	b.Run("existing-key", func(b *testing.B) {
		m := mustMemory(b)
		key := benchKeys[0]
		m.Allow(ctx, key, benchLimit, 1)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := m.Allow(ctx, key, benchLimit, 1); !d.Allowed {
				b.Fatal("denied")
			}
		}
	})

	// The claim against the hand-written baseline: batches of 1000 calls on
	// one existing key, Memory and x/time/rate in tight alternation.
	b.Run("existing-key-vs-xtimerate", func(b *testing.B) {
		const batch = 1000
		m := mustMemory(b)
		x := &xrate{limiters: map[string]*rate.Limiter{}}
		key := benchKeys[0]
		m.Allow(ctx, key, benchLimit, 1)
		x.allow(key, benchLimit, 1)
		benchpair.Alternate(b, batch, "call", func() {
			for range batch {
				if d, _ := m.Allow(ctx, key, benchLimit, 1); !d.Allowed {
					b.Fatal("denied")
				}
			}
		}, func() {
			for range batch {
				if !x.allow(key, benchLimit, 1) {
					b.Fatal("denied")
				}
			}
		})
	})

	// The same on a clock that does not move: what the limiter itself costs,
	// apart from reading the time (a system call on some virtual machines).
	b.Run("existing-key-frozen-clock", func(b *testing.B) {
		frozen := time.Now()
		m := mustMemory(b, WithMemoryClock(func() time.Time { return frozen }))
		key := benchKeys[0]
		m.Allow(ctx, key, benchLimit, 1)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := m.Allow(ctx, key, benchLimit, 1); !d.Allowed {
				b.Fatal("denied")
			}
		}
	})

	// The single-threaded baseline of the parallel benchmarks: the same
	// 1024 existing keys, cycled by one goroutine.
	b.Run("existing-keys-cycled", func(b *testing.B) {
		m := mustMemory(b)
		for _, k := range benchKeys {
			m.Allow(ctx, k, benchLimit, 1)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i = (i + 1) % len(benchKeys)
			if d, _ := m.Allow(ctx, benchKeys[i], benchLimit, 1); !d.Allowed {
				b.Fatal("denied")
			}
		}
	})

	// Each goroutine cycles keys of its own (consumers served on different
	// cores): no bucket's cache line moves between cores, only the locks of
	// shards two goroutines happen to share.
	b.Run("existing-keys-parallel-disjoint", func(b *testing.B) {
		m := mustMemory(b)
		for _, k := range benchKeys {
			m.Allow(ctx, k, benchLimit, 1)
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Goroutine g owns keys g, g+stride, g+2*stride, ...
			const stride = 8
			g := int(next.Add(1)-1) % stride
			i := g
			for pb.Next() {
				i += stride
				if i >= len(benchKeys) {
					i = g
				}
				if d, _ := m.Allow(ctx, benchKeys[i], benchLimit, 1); !d.Allowed {
					b.Error("denied")
					return
				}
			}
		})
	})

	// The 2-core scaling claim, in tight alternation: slices of batch calls
	// on the same 1024 existing keys, made by one goroutine cycling them all
	// (baseline) or by two goroutines each cycling 512 of their own
	// (candidate, timed from their common start to the later end). Both
	// sides make batch calls per slice, so the ratio of times per call is
	// the inverse of the speed-up: ≤ 0.625 is ≥ 1.6× the throughput.
	b.Run("disjoint-2-vs-1", func(b *testing.B) {
		const batch = 4096
		m := mustMemory(b)
		for _, k := range benchKeys {
			m.Allow(ctx, k, benchLimit, 1)
		}
		cycle := func(keys []Key, n int) func() {
			return func() {
				for i := range n {
					if d, _ := m.Allow(ctx, keys[i%len(keys)], benchLimit, 1); !d.Allowed {
						b.Error("denied")
						return
					}
				}
			}
		}
		half := len(benchKeys) / 2
		mine, theirs := cycle(benchKeys[:half], batch/2), cycle(benchKeys[half:], batch/2)
		alone := cycle(benchKeys, batch)
		p := newPairRunner()
		defer p.stop()
		benchpair.AlternateTimed(b, batch, "op", func() time.Duration {
			return p.run(mine, theirs)
		}, func() time.Duration {
			start := time.Now()
			alone()
			return time.Since(start)
		})
	})

	// Every goroutine cycles all the keys: each bucket's cache line moves
	// between the cores that update it, as for a consumer whose calls land
	// on any core.
	b.Run("existing-key-parallel", func(b *testing.B) {
		m := mustMemory(b)
		for _, k := range benchKeys {
			m.Allow(ctx, k, benchLimit, 1)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(benchStart.Add(1) * 397)
			for pb.Next() {
				i = (i + 1) % len(benchKeys)
				if d, _ := m.Allow(ctx, benchKeys[i], benchLimit, 1); !d.Allowed {
					b.Error("denied")
					return
				}
			}
		})
	})

	for _, bc := range []struct {
		name    string
		maxKeys int
	}{
		{"million-consumers", 1_000_000},
		{"million-consumers-bounded", 100_000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const consumers = 1_000_000
			limit := Limit{Rate: 1, Per: time.Hour, Burst: 10}
			frozen := time.Now()
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)

				m := mustMemory(b, WithMemoryMaxKeys(bc.maxKeys), WithMemoryClock(func() time.Time { return frozen }))
				for i := range consumers {
					m.Allow(ctx, Key{Consumer: "consumer-" + strconv.Itoa(i), Bucket: "quotes"}, limit, 1)
				}

				runtime.GC()
				runtime.ReadMemStats(&after)
				n := m.Len()
				runtime.KeepAlive(m)
				if n > bc.maxKeys {
					b.Fatalf("Len = %d > MaxKeys %d", n, bc.maxKeys)
				}
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MB-held")
				b.ReportMetric(float64(n), "keys")
			}
		})
	}
}

// xrate is what a service writes by hand with golang.org/x/time/rate: a
// limiter per key in a map behind a mutex, keyed by a concatenated string.
type xrate struct {
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func (x *xrate) allow(key Key, limit Limit, cost int) bool {
	k := key.Consumer + "|" + key.Bucket
	x.mu.Lock()
	l, ok := x.limiters[k]
	if !ok {
		l = rate.NewLimiter(rate.Every(limit.Interval()), limit.Burst)
		x.limiters[k] = l
	}
	x.mu.Unlock()
	return l.AllowN(time.Now(), cost)
}

// BenchmarkXTimeRate is the baseline of BenchmarkMemory: same keys, same
// pattern, with x/time/rate limiters.
func BenchmarkXTimeRate(b *testing.B) {
	b.Run("existing-key", func(b *testing.B) {
		x := &xrate{limiters: map[string]*rate.Limiter{}}
		key := benchKeys[0]
		x.allow(key, benchLimit, 1)
		b.ReportAllocs()
		for b.Loop() {
			if !x.allow(key, benchLimit, 1) {
				b.Fatal("denied")
			}
		}
	})

	b.Run("existing-key-parallel", func(b *testing.B) {
		x := &xrate{limiters: map[string]*rate.Limiter{}}
		for _, k := range benchKeys {
			x.allow(k, benchLimit, 1)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(benchStart.Add(1) * 397)
			for pb.Next() {
				i = (i + 1) % len(benchKeys)
				if !x.allow(benchKeys[i], benchLimit, 1) {
					b.Error("denied")
					return
				}
			}
		})
	})
}

// pairRunner runs work on a second goroutine that spins between runs, so
// that two goroutines can be timed from a common start without timing the
// wake-up of the second. It spins rather than parks so that both sides of
// an alternation run with both cores busy: with it parked, the core it woke
// on ran slower for a while, and pure arithmetic split over the two
// goroutines read 0.66–0.75 of one goroutine instead of about 0.5, which
// would measure the machine's wake-ups, not the code's scaling.
type pairRunner struct {
	theirs     func()
	gen, ended atomic.Int64
	quit       atomic.Bool
}

func newPairRunner() *pairRunner {
	p := &pairRunner{}
	go func() {
		seen := int64(0)
		for !p.quit.Load() {
			if g := p.gen.Load(); g != seen {
				seen = g
				p.theirs()
				p.ended.Store(g)
			}
		}
	}()
	return p
}

// run calls mine on the caller's goroutine and theirs on the runner's, and
// returns the time from their common start to the later end.
func (p *pairRunner) run(mine, theirs func()) time.Duration {
	p.theirs = theirs
	start := time.Now()
	g := p.gen.Add(1)
	mine()
	for p.ended.Load() != g {
	}
	return time.Since(start)
}

// stop ends the runner's goroutine.
func (p *pairRunner) stop() { p.quit.Store(true) }
