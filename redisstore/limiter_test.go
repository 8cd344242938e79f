package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/throttle"
)

// Short names for the throttle types these tests use throughout.
type (
	Key      = throttle.Key
	Limit    = throttle.Limit
	Decision = throttle.Decision
)

var (
	PerSecond       = throttle.PerSecond
	ErrInvalidLimit = throttle.ErrInvalidLimit
)

// commandCounter is a go-redis hook that counts the commands a client sends,
// alone or in pipelines.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// countedClient returns a new client of s and the counter of its commands.
func countedClient(s *redistest.Server) (*redis.Client, *commandCounter) {
	c := s.Client()
	n := new(commandCounter)
	c.AddHook(n)
	return c, n
}

func newRedis(t testing.TB, c redis.UniversalClient, opts ...Option) *Limiter {
	t.Helper()
	r, err := NewLimiter(c, opts...)
	if err != nil {
		t.Fatalf("NewLimiter: %v", err)
	}
	return r
}

// commandCalls returns the calls of each command from INFO commandstats.
func commandCalls(t testing.TB, c *redis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, stats, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(stats, ",")
		calls[name], err = strconv.ParseInt(n, 10, 64)
		if err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
	}
	return calls
}

// redisHourly refills so slowly that the time a test takes never adds a
// token.
var redisHourly = Limit{Rate: 1, Per: time.Hour, Burst: 10}

func TestNewLimiterRejects(t *testing.T) {
	ignoresDeadlines := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer ignoresDeadlines.Close()
	honours := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer honours.Close()

	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		opts   []Option
		ok     bool
	}{
		{"nil client", nil, nil, false},
		{"nil *redis.Client", (*redis.Client)(nil), nil, false},
		{"client ignoring deadlines", ignoresDeadlines, nil, false},
		{"empty prefix", honours, []Option{WithKeyPrefix("")}, false},
		{"prefix with a brace", honours, []Option{WithKeyPrefix("a{b")}, false},
		{"defaults", honours, nil, true},
		{"prefix", honours, []Option{WithKeyPrefix("svc")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewLimiter(tc.client, tc.opts...)
			if (err == nil) != tc.ok || (r != nil) != tc.ok {
				t.Fatalf("NewLimiter = %v, %v; want ok %v", r, err, tc.ok)
			}
		})
	}
}

func TestRedisKey(t *testing.T) {
	r := newRedis(t, redis.NewClient(&redis.Options{ContextTimeoutEnabled: true}))
	svc := newRedis(t, redis.NewClient(&redis.Options{ContextTimeoutEnabled: true}), WithKeyPrefix("svc"))
	for _, tc := range []struct {
		r    *Limiter
		key  Key
		want string
	}{
		{r, Key{Consumer: "billing", Bucket: "orders"}, "tollgate:{billing}:orders"},
		{svc, Key{Consumer: "billing", Bucket: "orders"}, "svc:{billing}:orders"},
		{r, Key{Consumer: "", Bucket: "orders"}, "tollgate:{}:orders"},
		{r, Key{Consumer: "a}:b", Bucket: "c"}, "tollgate:{a%7D:b}:c"},
		{r, Key{Consumer: "a", Bucket: "b}:c"}, "tollgate:{a}:b}:c"},
		{r, Key{Consumer: "{x}", Bucket: "y"}, "tollgate:{%7Bx%7D}:y"},
		{r, Key{Consumer: "%7B", Bucket: "y"}, "tollgate:{%257B}:y"},
		{r, Key{Consumer: "[::1]:5000", Bucket: "public"}, "tollgate:{[::1]:5000}:public"},
	} {
		got := tc.r.key(tc.key)
		if got != tc.want {
			t.Errorf("key(%q) = %q, want %q", tc.key, got, tc.want)
		}
		// The Redis Cluster hash tag, the text between the first "{" and
		// the next "}", must be the whole (escaped) consumer.
		open := strings.IndexByte(got, '{')
		tag, _, _ := strings.Cut(got[open+1:], "}")
		if tag != consumerEscaper.Replace(tc.key.Consumer) {
			t.Errorf("key(%q) has hash tag %q, not its consumer", tc.key, tag)
		}
	}
}

// TestRedisBurst is the doc example: a limit of 5 a second with a burst of
// 10 admits exactly 10 calls at once, counting Remaining down, and tells the
// 11th to retry within one token's interval.
func TestRedisBurst(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	key := Key{Consumer: "billing", Bucket: "orders"}
	limit := PerSecond(5, 10)

	for i := range 10 {
		d, err := r.Allow(ctx, key, limit, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed || d.Remaining != 9-i || d.Source != "redis" || d.Limit != limit || d.RetryAfter != 0 {
			t.Fatalf("call %d: %+v, want allowed with %d remaining from redis", i+1, d, 9-i)
		}
	}
	d, err := r.Allow(ctx, key, limit, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 200*time.Millisecond || d.Remaining != 0 {
		t.Fatalf("call 11: %+v, want denied with RetryAfter in (0, 200ms]", d)
	}
}

// TestRedisMatchesGCRA runs sequences of costs through Redis and requires,
// to the nanosecond, the decisions of the memory limiter (the throttle
// package's statement of the algorithm) driven by a fake clock set to the
// server's clock at each call. That clock is read back from each decision:
// the stored tat minus ResetAfter must be a whole microsecond (TIME's
// resolution) within the wall-clock time of the call. Equal decisions at
// equal instants mean equal buckets: both store now + ResetAfter.
func TestRedisMatchesGCRA(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	admin := s.Client()
	costs := []int{1, 3, 0, 11, 2, -1, 4, 1, 1, 5, 2, 1, 10, 1}
	for i, limit := range []Limit{
		{Rate: 1, Per: time.Hour, Burst: 10},
		{Rate: 7, Per: time.Hour, Burst: 10},                  // interval not a whole µs
		{Rate: 3, Per: 1000 * time.Hour, Burst: 7},            // a long span
		{Rate: 1, Per: 24 * time.Hour, Burst: 100},            // exactly MaxSpan
		{Rate: 1_000_003, Per: 1000 * time.Hour, Burst: 1000}, // interval not a whole µs
	} {
		t.Run(limit.String(), func(t *testing.T) {
			key := Key{Consumer: "c", Bucket: strconv.Itoa(i)}
			var prevNow int64 // the server's last now
			var clock *fakeclock.Clock
			var model *throttle.Memory // created at the server's first now
			for j, cost := range costs {
				before := time.Now().UnixNano() / 1000 * 1000
				got, err := r.Allow(ctx, key, limit, cost)
				if err != nil {
					t.Fatal(err)
				}
				after := time.Now().UnixNano()
				stored, err := admin.Get(ctx, r.key(key)).Int64()
				if err != nil {
					t.Fatalf("call %d: reading the bucket: %v", j+1, err)
				}
				now := stored - int64(got.ResetAfter)
				if now%1000 != 0 || now < prevNow || now < before || now > after {
					t.Fatalf("call %d: stored tat %d - ResetAfter %v = %d: not a whole µs in [%d, %d] after %d",
						j+1, stored, got.ResetAfter, now, before, after, prevNow)
				}
				prevNow = now

				if model == nil {
					clock = fakeclock.New(time.Unix(0, now))
					model, err = throttle.NewMemory(throttle.WithMemoryClock(clock.Now))
					if err != nil {
						t.Fatal(err)
					}
				}
				clock.Set(time.Unix(0, now))
				want, err := model.Allow(ctx, key, limit, cost)
				if err != nil {
					t.Fatal(err)
				}
				want.Source = Source
				if got != want {
					t.Fatalf("call %d (cost %d) at %d:\nredis  %+v, tat %d\nmemory %+v", j+1, cost, now, got, stored, want)
				}
			}
		})
	}
}

// TestRedisStoredTat decides on buckets whose tat is set by hand: in the
// past (a bucket refilled, kept by the rounding of its expiry or by anyone
// writing the key), partly refilled, and beyond a full span ahead (the
// server's clock stepped back after the bucket was written).
func TestRedisStoredTat(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	admin := s.Client()
	interval := redisHourly.Interval()
	span := interval * time.Duration(redisHourly.Burst)
	for _, tc := range []struct {
		name          string
		tat           time.Duration // relative to the server's now
		wantAllowed   bool
		wantRemaining int
		full          bool // a full bucket: the decision takes one interval exactly
	}{
		{"refilled long ago", -24 * time.Hour, true, 9, true},
		{"refilled just now", -time.Microsecond, true, 9, true},
		{"three tokens short", 3 * interval, true, 6, false},
		{"one token short, nearly refilled", interval/2 + time.Microsecond, true, 8, false},
		{"clock stepped back", span + 5*interval, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := Key{Consumer: "c", Bucket: tc.name}
			now, err := admin.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			admin.Set(ctx, r.key(key), now.Add(tc.tat).UnixNano(), 0)
			d, err := r.Allow(ctx, key, redisHourly, 1)
			if err != nil || d.Allowed != tc.wantAllowed || d.Remaining != tc.wantRemaining {
				t.Fatalf("Allow: %+v, %v; want allowed %v with %d remaining", d, err, tc.wantAllowed, tc.wantRemaining)
			}
			if tc.full && d.ResetAfter != interval {
				t.Fatalf("ResetAfter %v, want one interval, %v: a refilled bucket holds no debt", d.ResetAfter, interval)
			}
		})
	}
}

func TestRedisCostAboveBurst(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	key := Key{Consumer: "c", Bucket: "big"}
	d, err := r.Allow(ctx, key, redisHourly, 11)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.RetryAfter != -1 || d.Remaining != 10 || d.ResetAfter != 0 {
		t.Fatalf("cost 11 of burst 10: %+v, want denied, RetryAfter -1, 10 remaining", d)
	}
	if n := s.Client().Exists(ctx, r.key(key)).Val(); n != 0 {
		t.Fatal("a denied call wrote its bucket")
	}
	// The bucket is untouched: the whole burst is still there.
	if d, _ := r.Allow(ctx, key, redisHourly, 10); !d.Allowed {
		t.Fatalf("cost 10 after a denied cost 11: %+v, want allowed", d)
	}
}

func TestRedisInvalidLimit(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	c, n := countedClient(s)
	r := newRedis(t, c)
	for _, l := range []Limit{
		{Rate: 0, Per: time.Second, Burst: 1},
		{Rate: -1, Per: time.Second, Burst: 1},
		{Rate: 1, Per: 0, Burst: 1},
		{Rate: 1, Per: time.Second, Burst: 0},
		{Rate: 2, Per: time.Nanosecond, Burst: 1},
		{Rate: 1, Per: 24 * time.Hour, Burst: 101}, // over MaxSpan
		{Rate: 1, Per: time.Hour, Burst: 1 << 62},  // span overflows int64
		{Rate: 1, Per: 1<<63 - 1, Burst: 2},        // as does this one
		{Rate: 1, Per: MaxSpan + time.Nanosecond, Burst: 1},
	} {
		_, err := r.Allow(ctx, Key{Consumer: "c", Bucket: "b"}, l, 1)
		if !errors.Is(err, ErrInvalidLimit) {
			t.Errorf("Allow with %+v: %v, want ErrInvalidLimit", l, err)
		}
	}
	if got := n.n.Load(); got != 0 {
		t.Fatalf("invalid limits sent %d commands to Redis, want 0", got)
	}
}

// TestRedisKeyAndTTL checks what a decision leaves in Redis: the bucket key,
// holding the instant it is full again, and expiring then.
func TestRedisKeyAndTTL(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	admin := s.Client()
	for _, tc := range []struct {
		opts []Option
		key  Key
		want string
	}{
		{nil, Key{Consumer: "billing", Bucket: "orders"}, "tollgate:{billing}:orders"},
		{[]Option{WithKeyPrefix("svc")}, Key{Consumer: "billing", Bucket: "orders"}, "svc:{billing}:orders"},
		{nil, Key{Consumer: "a}{b", Bucket: "x"}, "tollgate:{a%7D%7Bb}:x"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			r := newRedis(t, s.Client(), tc.opts...)
			limit := Limit{Rate: 2, Per: time.Minute, Burst: 5} // 30 s a token
			d, err := r.Allow(ctx, tc.key, limit, 3)
			if err != nil || !d.Allowed || d.ResetAfter != 90*time.Second {
				t.Fatalf("Allow: %+v, %v; want allowed, full again in 90s", d, err)
			}
			pttl, err := admin.PTTL(ctx, tc.want).Result()
			if err != nil {
				t.Fatal(err)
			}
			if pttl <= 0 || pttl > d.ResetAfter || pttl < d.ResetAfter-time.Second {
				t.Fatalf("PTTL %v of %s, want just under ResetAfter %v", pttl, tc.want, d.ResetAfter)
			}
			// The value is the instant the bucket is full: ResetAfter after
			// the server's now.
			tat, err := admin.Get(ctx, tc.want).Int64()
			if err != nil {
				t.Fatal(err)
			}
			now, err := admin.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			if left := time.Duration(tat - now.UnixNano()); left > d.ResetAfter || left < d.ResetAfter-time.Second {
				t.Fatalf("stored tat is %v after now, want just under %v", left, d.ResetAfter)
			}
			if keys := admin.Keys(ctx, "*").Val(); len(keys) != 1 {
				t.Fatalf("keys %q, want exactly %s", keys, tc.want)
			}
			admin.FlushAll(ctx)
		})
	}
}

// TestRedisBracesKeepBucketsApart checks that escaping keeps consumers whose
// escaped forms could meet on distinct buckets.
func TestRedisBracesKeepBucketsApart(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	one := Limit{Rate: 1, Per: time.Hour, Burst: 1}
	for _, c := range []string{"{", "%7B", "%257B", "}", "a}:b"} {
		if d, err := r.Allow(ctx, Key{Consumer: c, Bucket: "x"}, one, 1); err != nil || !d.Allowed {
			t.Fatalf("first call of consumer %q: %+v, %v; want allowed", c, d, err)
		}
	}
	if d, _ := r.Allow(ctx, Key{Consumer: "a", Bucket: "b}:x"}, one, 1); !d.Allowed {
		t.Fatal(`consumer "a" with bucket "b}:x" shares consumer "a}:b"'s bucket "x"`)
	}
}

// TestRedisTwoReplicas plays two replicas of a service, each with its own
// client, sharing one bucket: together they admit the burst exactly.
func TestRedisTwoReplicas(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	replicas := []*Limiter{newRedis(t, s.Client()), newRedis(t, s.Client())}
	key := Key{Consumer: "billing", Bucket: "orders"}
	admitted := make([]int, 2)
	for i := range 30 {
		d, err := replicas[i%2].Allow(ctx, key, redisHourly, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			admitted[i%2]++
		}
	}
	if admitted[0] != 5 || admitted[1] != 5 {
		t.Fatalf("replicas admitted %v, want [5 5]: 10 in total, taken in turn", admitted)
	}
}

// TestRedisConcurrent hammers one key from 8 goroutines over two clients:
// the script's atomicity must admit exactly the burst.
func TestRedisConcurrent(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	replicas := []*Limiter{newRedis(t, s.Client()), newRedis(t, s.Client())}
	limit := Limit{Rate: 1, Per: time.Hour, Burst: 100}
	var admitted, denied atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 200 {
				d, err := replicas[g%2].Allow(ctx, Key{Consumer: "c", Bucket: "hot"}, limit, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				} else {
					denied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 100 || denied.Load() != 1500 {
		t.Fatalf("admitted %d, denied %d; want 100 and 1500", admitted.Load(), denied.Load())
	}
}

// TestRedisOneRoundTrip counts what 1000 decisions cost: one command each on
// the client, one EVALSHA each on the server.
func TestRedisOneRoundTrip(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	c, n := countedClient(s)
	r := newRedis(t, c)
	admin := s.Client()
	limit := PerSecond(1000, 1000)
	if _, err := r.Allow(ctx, Key{Consumer: "c", Bucket: "warm"}, limit, 1); err != nil { // loads the script
		t.Fatal(err)
	}

	before, sent := commandCalls(t, admin), n.n.Load()
	const decisions = 1000
	for i := range decisions {
		if _, err := r.Allow(ctx, Key{Consumer: "c", Bucket: strconv.Itoa(i % 10)}, limit, 1); err != nil {
			t.Fatal(err)
		}
	}
	after := commandCalls(t, admin)
	if got := n.n.Load() - sent; got != decisions {
		t.Errorf("client sent %d commands for %d decisions", got, decisions)
	}
	if got := after["evalsha"] - before["evalsha"]; got != decisions {
		t.Errorf("server ran EVALSHA %d times for %d decisions", got, decisions)
	}
	if got := after["eval"] - before["eval"]; got != 0 {
		t.Errorf("server ran EVAL %d times with the script cached", got)
	}
}

// TestRedisNoScript flushes the server's script cache between two decisions:
// the second reloads the script and still sees the bucket.
func TestRedisNoScript(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	admin := s.Client()
	key := Key{Consumer: "c", Bucket: "b"}
	if d, err := r.Allow(ctx, key, redisHourly, 4); err != nil || d.Remaining != 6 {
		t.Fatalf("first decision: %+v, %v; want 6 remaining", d, err)
	}
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := commandCalls(t, admin)
	d, err := r.Allow(ctx, key, redisHourly, 1)
	if err != nil || !d.Allowed || d.Remaining != 5 {
		t.Fatalf("decision after SCRIPT FLUSH: %+v, %v; want allowed with 5 remaining", d, err)
	}
	if got := commandCalls(t, admin)["eval"] - before["eval"]; got != 1 {
		t.Fatalf("EVAL ran %d times after the flush, want 1 (the reload)", got)
	}
	loaded, err := admin.ScriptExists(ctx, gcraScript.Hash()).Result()
	if err != nil || !loaded[0] {
		t.Fatalf("script not cached again after the reload: %v, %v", loaded, err)
	}
}

func TestRedisErrors(t *testing.T) {
	ctx := t.Context()
	s := redistest.Start(t)
	r := newRedis(t, s.Client())
	admin := s.Client()
	key := Key{Consumer: "c", Bucket: "b"}

	// A key of another type (someone else's data under our prefix).
	admin.HSet(ctx, r.key(key), "f", "v")
	if _, err := r.Allow(ctx, key, redisHourly, 1); err == nil || errors.Is(err, ErrInvalidLimit) {
		t.Fatalf("Allow on a hash key: %v, want a Redis error", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Allow(canceled, Key{Consumer: "c", Bucket: "other"}, redisHourly, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a canceled context: %v, want context.Canceled", err)
	}
}
