package redisstore

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/tollgate/tollgate/internal/redistest"
)

// BenchmarkRedisLimiter compares a decision of the Redis limiter with one of
// go-redis/redis_rate, the usual choice, on the same redis-server, keys,
// client options and concurrency. Both scripts implement GCRA in one round
// trip. The limit, a million a second per key, admits every call, so both
// take the write path; a finer one would not be fair: redis_rate computes in
// float seconds since 2017, where a nanosecond interval is lost to rounding
// and its script then skips the write (and admits without counting).
//
// Each reports decisions/s, the commands its client sent per decision once
// its connections are open, and the time Redis spent running the script per
// decision (from INFO commandstats).
func BenchmarkRedisLimiter(b *testing.B) {
	const (
		keys = 1024
		rate = 1_000_000
	)
	s := redistest.Start(b)
	admin := s.Client()
	names := make([]Key, keys)
	for i := range names {
		names[i] = Key{Consumer: "bench", Bucket: "k" + strconv.Itoa(i)}
	}

	// run calls decide from 32 goroutines per core, each cycling through the
	// keys from its own starting point.
	run := func(b *testing.B, sent *commandCounter, decide func(ctx context.Context, key Key) error) {
		ctx := context.Background()
		// Open the pool's connections first: their handshakes are
		// commands too, but not the decisions'.
		var wg sync.WaitGroup
		for i := range 32 * runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				if err := decide(ctx, names[i%keys]); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()

		var starts atomic.Int64
		before, usec := sent.n.Load(), scriptUsec(b, admin)
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := starts.Add(97)
			for pb.Next() {
				i++
				if err := decide(ctx, names[i%keys]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		b.ReportMetric(float64(sent.n.Load()-before)/float64(b.N), "roundtrips/decision")
		b.ReportMetric(float64(scriptUsec(b, admin)-usec)/float64(b.N), "server-us/decision")
	}

	b.Run("tollgate", func(b *testing.B) {
		c, sent := countedClient(s)
		r := newRedis(b, c)
		limit := PerSecond(rate, rate)
		run(b, sent, func(ctx context.Context, key Key) error {
			d, err := r.Allow(ctx, key, limit, 1)
			if err == nil && !d.Allowed {
				err = errDenied
			}
			return err
		})
	})

	b.Run("redis_rate", func(b *testing.B) {
		c, sent := countedClient(s)
		rl := redis_rate.NewLimiter(c)
		limit := redis_rate.Limit{Rate: rate, Burst: rate, Period: time.Second}
		run(b, sent, func(ctx context.Context, key Key) error {
			res, err := rl.AllowN(ctx, key.Consumer+":"+key.Bucket, limit, 1)
			if err == nil && res.Allowed != 1 {
				err = errDenied
			}
			return err
		})
	})
}

// errDenied fails a benchmark whose generous limit denied a call: it would
// not measure the write path.
var errDenied = errors.New("a generous limit denied a call")

// scriptUsec returns the microseconds Redis has spent in EVALSHA.
func scriptUsec(b *testing.B, admin *redis.Client) int64 {
	info, err := admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	_, stats, _ := strings.Cut(info, "cmdstat_evalsha:")
	_, stats, _ = strings.Cut(stats, "usec=")
	usec, _, _ := strings.Cut(stats, ",")
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil {
		b.Fatalf("INFO commandstats: no EVALSHA time in %q", info)
	}
	return n
}
