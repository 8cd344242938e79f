package redisstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/throttle"
)

// Short names for the throttle failover API these tests use.
type (
	Failover       = throttle.Failover
	FailoverOption = throttle.FailoverOption
	Policy         = throttle.Policy
)

const (
	FailOpen   = throttle.FailOpen
	FailClosed = throttle.FailClosed
	FailLocal  = throttle.FailLocal

	DefaultBreakerFailures = throttle.DefaultBreakerFailures
	DefaultBreakerCooldown = throttle.DefaultBreakerCooldown
)

var (
	NewFailover             = throttle.NewFailover
	WithFailoverTimeout     = throttle.WithFailoverTimeout
	WithFailoverClock       = throttle.WithFailoverClock
	WithFailoverLocal       = throttle.WithFailoverLocal
	WithFailoverStateChange = throttle.WithFailoverStateChange
	ErrUnavailable          = throttle.ErrUnavailable
)

// clockBase is where the breakers' fake clocks start.
var clockBase = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestMemory is a memory limiter on a fake clock, a replica's local
// fallback.
func newTestMemory(t testing.TB) *throttle.Memory {
	t.Helper()
	m, err := throttle.NewMemory(throttle.WithMemoryClock(fakeclock.New(clockBase).Now))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stateLog records the breaker's transitions.
type stateLog struct {
	mu   sync.Mutex
	seen []bool
}

func (l *stateLog) record(open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, open)
}

func (l *stateLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.seen)
}

// TestFailoverRedisFaults runs Failovers of Redis limiters against a real
// redis-server that hangs, dies and comes back: the policies decide while it
// is away, the breaker keeps it from costing a timeout per call, and the same
// limiters share buckets again once it is back. Nothing may outlive the
// test.
func TestFailoverFaults(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Run("scenario", testRedisFaults)
	goleak.VerifyNone(t, before)
}

func testRedisFaults(t *testing.T) {
	const timeout = 50 * time.Millisecond
	// margin is what a call may take beyond the timeout: scheduling on a
	// busy machine (the race detector, packages tested in parallel on two
	// cores has shown 50 ms), not I/O. It stays well below what the
	// go-redis defaults would cost a call that ignored the deadline: 400 ms
	// of dial retries, a 3 s read timeout.
	const margin = 100 * time.Millisecond

	ctx := t.Context()
	s := redistest.Start(t)
	ca, sent := countedClient(s) // replica a's client
	cb := s.Client()             // replica b's
	ra, rb := newRedis(t, ca), newRedis(t, cb)
	clock := fakeclock.New(clockBase)
	log := &stateLog{}
	newFailover := func(r *Limiter, p Policy, opts ...FailoverOption) *Failover {
		t.Helper()
		opts = append([]FailoverOption{WithFailoverTimeout(timeout), WithFailoverClock(clock.Now)}, opts...)
		f, err := NewFailover(r, p, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	localA := newTestMemory(t)
	localB := newTestMemory(t)
	open := newFailover(ra, FailOpen, WithFailoverStateChange(log.record))
	closed := newFailover(ra, FailClosed)
	replicaA := newFailover(ra, FailLocal, WithFailoverLocal(localA))
	replicaB := newFailover(rb, FailLocal, WithFailoverLocal(localB))
	all := []*Failover{open, closed, replicaA, replicaB}
	limit := Limit{Rate: 1, Per: time.Hour, Burst: 5}

	var slowest time.Duration
	allow := func(f *Failover, key string) (Decision, error) {
		start := time.Now()
		d, err := f.Allow(ctx, Key{Consumer: "c", Bucket: key}, limit, 1)
		slowest = max(slowest, time.Since(start))
		return d, err
	}
	// breakerOpen checks that f's breaker is open: 100 calls skip Redis
	// and take next to no time.
	breakerOpen := func(f *Failover, key string) {
		t.Helper()
		n, start := sent.n.Load(), time.Now()
		for range 100 {
			_, _ = allow(f, key)
		}
		if elapsed := time.Since(start); elapsed > 50*time.Millisecond {
			t.Fatalf("100 calls with the breaker open took %v, want under 50ms", elapsed)
		}
		if got := sent.n.Load() - n; got != 0 {
			t.Fatalf("%d commands sent with the breaker open, want 0", got)
		}
	}

	// Healthy: Redis decides.
	for _, f := range all {
		if d, err := allow(f, "healthy"); err != nil || d.Source != "redis" {
			t.Fatalf("healthy Redis: %+v, %v; want a Redis decision", d, err)
		}
	}

	// Hung: calls are cut at the timeout until the breaker opens.
	s.Pause()
	for i := range DefaultBreakerFailures {
		start := time.Now()
		_, err := allow(closed, "hung")
		if elapsed := time.Since(start); !errors.Is(err, ErrUnavailable) || elapsed < timeout {
			t.Fatalf("call %d to a hung Redis: %v after %v; want ErrUnavailable at the timeout", i+1, err, elapsed)
		}
	}
	breakerOpen(closed, "hung")
	s.Resume()

	// Dead: each policy decides, then the breaker takes Redis out of the
	// path.
	s.Stop()
	for i := range 10 {
		if d, err := allow(open, "dead"); err != nil || !d.Allowed || d.Source != "fail-open" {
			t.Fatalf("fail-open call %d: %+v, %v", i+1, d, err)
		}
	}
	breakerOpen(open, "dead")
	if log.String() != "[true]" {
		t.Fatalf("fail-open transitions %v, want [true]", log)
	}
	for i := range 10 {
		if d, err := allow(closed, "dead"); !errors.Is(err, ErrUnavailable) || d.Allowed {
			t.Fatalf("fail-closed call %d: %+v, %v; want ErrUnavailable", i+1, d, err)
		}
	}
	// Each replica enforces the limit alone on its local bucket.
	for _, f := range []*Failover{replicaA, replicaB} {
		admitted := 0
		for i := range 10 {
			d, err := allow(f, "dead")
			if err != nil || d.Source != "local" {
				t.Fatalf("fail-local call %d: %+v, %v", i+1, d, err)
			}
			if d.Allowed {
				if d.Remaining != limit.Burst-1-admitted {
					t.Fatalf("fail-local call %d: Remaining %d, want %d", i+1, d.Remaining, limit.Burst-1-admitted)
				}
				admitted++
			}
		}
		if admitted != limit.Burst {
			t.Fatalf("local bucket admitted %d, want %d", admitted, limit.Burst)
		}
		breakerOpen(f, "dead")
	}
	if slowest > timeout+margin {
		t.Fatalf("slowest call took %v, over the timeout %v plus %v", slowest, timeout, margin)
	}

	// Back: once the cooldown has passed, a probe finds Redis and the very
	// same limiters share buckets again.
	s.Restart()
	clock.Advance(DefaultBreakerCooldown)
	for _, f := range all {
		if d, err := allow(f, "probe"); err != nil || d.Source != "redis" {
			t.Fatalf("probe after the restart: %+v, %v; want a Redis decision", d, err)
		}
	}
	if log.String() != "[true false]" {
		t.Fatalf("fail-open transitions %v, want [true false]", log)
	}
	admitted := 0
	for i := range 20 {
		d, err := allow([]*Failover{replicaA, replicaB}[i%2], "back")
		if err != nil || d.Source != "redis" {
			t.Fatalf("call %d after recovery: %+v, %v; want a Redis decision", i+1, d, err)
		}
		if d.Allowed {
			admitted++
		}
	}
	if admitted != limit.Burst {
		t.Fatalf("replicas admitted %d together, want the shared burst %d", admitted, limit.Burst)
	}
	t.Logf("slowest call %v (timeout %v)", slowest, timeout)
}
