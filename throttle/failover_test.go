package throttle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakeclock"
)

// stubPrimary is a primary limiter whose answers a test sets. It counts its
// calls. While hold is set, calls wait for hold to close or their context to
// end, and announce themselves on entered.
type stubPrimary struct {
	calls atomic.Int64

	mu      sync.Mutex
	err     error
	hold    chan struct{}
	entered chan struct{}
}

var errStoreDown = errors.New("store down")

func (p *stubPrimary) set(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *stubPrimary) Allow(ctx context.Context, _ Key, limit Limit, _ int) (Decision, error) {
	p.calls.Add(1)
	p.mu.Lock()
	err, hold, entered := p.err, p.hold, p.entered
	p.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		}
	}
	if err != nil {
		return Decision{}, err
	}
	return Decision{Allowed: true, Limit: limit, Remaining: 7, Source: "primary"}, nil
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

var failoverLimit = Limit{Rate: 1, Per: time.Hour, Burst: 3}

// newTestFailover returns a Failover of a stub primary, with a fake clock
// and its transitions logged.
func newTestFailover(t *testing.T, policy Policy, opts ...FailoverOption) (*Failover, *stubPrimary, *fakeClock, *stateLog) {
	t.Helper()
	p, c, log := &stubPrimary{}, fakeclock.New(clockBase), &stateLog{}
	opts = append([]FailoverOption{WithFailoverClock(c.Now), WithFailoverStateChange(log.record)}, opts...)
	f, err := NewFailover(p, policy, opts...)
	if err != nil {
		t.Fatalf("NewFailover: %v", err)
	}
	return f, p, c, log
}

func TestPolicyNames(t *testing.T) {
	for _, p := range []Policy{FailOpen, FailClosed, FailLocal} {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if FailOpen.String() != "open" || FailClosed.String() != "closed" || FailLocal.String() != "local" {
		t.Errorf("names %v %v %v, want open closed local", FailOpen, FailClosed, FailLocal)
	}
	if got := Policy(0).String(); got != "Policy(0)" {
		t.Errorf("Policy(0).String() = %q", got)
	}
	for _, s := range []string{"", "Open", "fail-open", "closed ", "Policy(1)"} {
		if p, err := ParsePolicy(s); err == nil {
			t.Errorf("ParsePolicy(%q) = %v, want an error", s, p)
		}
	}
}

func TestNewFailoverRejects(t *testing.T) {
	p := &stubPrimary{}
	for _, tc := range []struct {
		name    string
		primary Limiter
		policy  Policy
		opts    []FailoverOption
	}{
		{"nil primary", nil, FailOpen, nil},
		{"zero policy", p, 0, nil},
		{"unknown policy", p, FailLocal + 1, nil},
		{"zero timeout", p, FailOpen, []FailoverOption{WithFailoverTimeout(0)}},
		{"negative timeout", p, FailOpen, []FailoverOption{WithFailoverTimeout(-time.Second)}},
		{"zero failures", p, FailOpen, []FailoverOption{WithFailoverBreaker(0, time.Second)}},
		{"zero cooldown", p, FailOpen, []FailoverOption{WithFailoverBreaker(3, 0)}},
		{"nil local", p, FailLocal, []FailoverOption{WithFailoverLocal(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := NewFailover(tc.primary, tc.policy, tc.opts...); err == nil || f != nil {
				t.Fatalf("NewFailover = %v, %v; want an error", f, err)
			}
		})
	}
}

func TestFailoverHealthyPrimary(t *testing.T) {
	for _, policy := range []Policy{FailOpen, FailClosed, FailLocal} {
		f, p, _, log := newTestFailover(t, policy)
		for range 10 {
			d, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
			want := Decision{Allowed: true, Limit: failoverLimit, Remaining: 7, Source: "primary"}
			if err != nil || d != want {
				t.Fatalf("%v: Allow = %+v, %v; want the primary's %+v", policy, d, err, want)
			}
		}
		if p.calls.Load() != 10 || log.String() != "[]" {
			t.Fatalf("%v: %d primary calls, transitions %v; want 10, none", policy, p.calls.Load(), log)
		}
	}
}

// TestFailoverPolicies fails the primary and checks each policy's decisions,
// before and after the breaker opens.
func TestFailoverPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy  Policy
		allowed []bool // the decisions of 5 calls of cost 1 under a burst of 3
		source  string
		err     error
	}{
		{FailOpen, []bool{true, true, true, true, true}, "fail-open", nil},
		{FailClosed, []bool{false, false, false, false, false}, "fail-closed", ErrUnavailable},
		{FailLocal, []bool{true, true, true, false, false}, "local", nil},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			local, _ := newTestMemory()
			f, p, _, _ := newTestFailover(t, tc.policy, WithFailoverLocal(local))
			p.set(errStoreDown)
			for i, want := range tc.allowed {
				d, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
				if d.Allowed != want || d.Source != tc.source || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
					t.Fatalf("call %d: %+v, %v; want allowed %v from %s, error %v", i+1, d, err, want, tc.source, tc.err)
				}
				// Until the breaker opens the store's error is the cause;
				// after, the breaker is.
				if tc.err != nil && i < DefaultBreakerFailures && !errors.Is(err, errStoreDown) {
					t.Fatalf("call %d: %v does not carry the store's error", i+1, err)
				}
				if tc.policy == FailLocal && d.Remaining != max(2-i, 0) {
					t.Fatalf("call %d: local Remaining %d, want %d", i+1, d.Remaining, max(2-i, 0))
				}
			}
			if got := p.calls.Load(); got != DefaultBreakerFailures {
				t.Fatalf("primary called %d times, want %d (then the breaker opens)", got, DefaultBreakerFailures)
			}
		})
	}
}

func TestFailoverDefaultLocal(t *testing.T) {
	f, p, _, _ := newTestFailover(t, FailLocal)
	p.set(errStoreDown)
	admitted := 0
	for range 10 {
		d, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
		if err != nil || d.Source != "local" {
			t.Fatalf("Allow = %+v, %v; want a local decision", d, err)
		}
		if d.Allowed {
			admitted++
		}
	}
	if admitted != failoverLimit.Burst {
		t.Fatalf("default local limiter admitted %d, want the burst %d", admitted, failoverLimit.Burst)
	}
}

func TestFailoverInvalidLimit(t *testing.T) {
	f, p, _, log := newTestFailover(t, FailOpen)

	// Checked before the primary, and never turned into an admission.
	if _, err := f.Allow(t.Context(), Key{"c", "b"}, Limit{Rate: 0, Per: time.Second, Burst: 1}, 1); !errors.Is(err, ErrInvalidLimit) {
		t.Fatalf("invalid limit: %v, want ErrInvalidLimit", err)
	}
	if p.calls.Load() != 0 {
		t.Fatal("an invalid limit reached the primary")
	}

	// A limit only the primary rejects passes through, and is no failure.
	p.set(fmt.Errorf("too long for this store: %w", ErrInvalidLimit))
	for i := range 2 * DefaultBreakerFailures {
		d, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
		if !errors.Is(err, ErrInvalidLimit) || d.Allowed {
			t.Fatalf("call %d: %+v, %v; want the primary's ErrInvalidLimit", i+1, d, err)
		}
	}
	if p.calls.Load() != 2*DefaultBreakerFailures || log.String() != "[]" {
		t.Fatalf("primary calls %d, transitions %v: ErrInvalidLimit counted as a failure", p.calls.Load(), log)
	}
}

// TestFailoverBreaker walks the breaker through its states with a fake
// clock.
func TestFailoverBreaker(t *testing.T) {
	const cooldown = 10 * time.Second
	f, p, clock, log := newTestFailover(t, FailOpen, WithFailoverBreaker(3, cooldown))
	allow := func() Decision {
		t.Helper()
		d, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	expect := func(calls int64, transitions string) {
		t.Helper()
		if got := p.calls.Load(); got != calls || log.String() != transitions {
			t.Fatalf("primary calls %d, transitions %v; want %d, %s", got, log, calls, transitions)
		}
	}

	// Failures must be consecutive: a success in between resets the count.
	for _, err := range []error{errStoreDown, errStoreDown, nil, errStoreDown, errStoreDown} {
		p.set(err)
		allow()
	}
	expect(5, "[]")

	// The third consecutive failure opens the breaker; calls then skip the
	// primary.
	allow()
	expect(6, "[true]")
	for range 100 {
		if d := allow(); d.Source != "fail-open" {
			t.Fatalf("open breaker: %+v, want the policy", d)
		}
	}
	expect(6, "[true]")

	// Within the cooldown, still open.
	clock.Advance(cooldown - 1)
	allow()
	expect(6, "[true]")

	// After it, one probe; it fails, so the breaker stays open for another
	// cooldown from then, without a transition.
	clock.Advance(1)
	allow()
	expect(7, "[true]")
	allow()
	clock.Advance(cooldown - 1)
	allow()
	expect(7, "[true]")

	// The next probe succeeds: the breaker closes, and the primary decides
	// again.
	clock.Advance(1)
	p.set(nil)
	if d := allow(); d.Source != "primary" {
		t.Fatalf("successful probe returned %+v, want the primary's decision", d)
	}
	expect(8, "[true false]")
	allow()
	expect(9, "[true false]")

	// Closed again, it takes a fresh run of failures to open it.
	p.set(errStoreDown)
	allow()
	allow()
	expect(11, "[true false]")
	allow()
	expect(12, "[true false true]")
}

// TestFailoverSingleProbe holds the half-open probe in the primary while
// other calls arrive: they get the policy, and only the probe reaches the
// primary.
func TestFailoverSingleProbe(t *testing.T) {
	for _, probeErr := range []error{nil, errStoreDown} {
		t.Run(fmt.Sprint("probe error ", probeErr), func(t *testing.T) {
			f, p, clock, log := newTestFailover(t, FailClosed, WithFailoverTimeout(time.Hour), WithFailoverBreaker(1, time.Second))
			p.set(errStoreDown)
			if _, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("first failure: %v", err)
			}
			clock.Advance(time.Second)

			hold, entered := make(chan struct{}), make(chan struct{}, 32)
			p.mu.Lock()
			p.err, p.hold, p.entered = probeErr, hold, entered
			p.mu.Unlock()
			probeDone := make(chan error)
			go func() {
				_, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
				probeDone <- err
			}()
			<-entered

			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					// Bounded, so that a call wrongly let through to the
					// held primary ends, to be counted, instead of hanging.
					ctx, cancel := context.WithTimeout(t.Context(), time.Second)
					defer cancel()
					d, err := f.Allow(ctx, Key{"c", "b"}, failoverLimit, 1)
					if !errors.Is(err, ErrUnavailable) || d.Source != "fail-closed" {
						t.Errorf("call during the probe: %+v, %v; want the policy", d, err)
					}
				})
			}
			wg.Wait()
			if got := p.calls.Load(); got != 2 {
				t.Fatalf("primary calls %d during the probe, want 2 (the failure, the probe)", got)
			}

			p.mu.Lock()
			p.hold = nil
			p.mu.Unlock()
			close(hold)
			err := <-probeDone
			if (err == nil) != (probeErr == nil) {
				t.Fatalf("probe returned %v, want the primary's error %v", err, probeErr)
			}
			wantLog := "[true false]"
			if probeErr != nil {
				wantLog = "[true]"
			}
			if log.String() != wantLog {
				t.Fatalf("transitions %v, want %s", log, wantLog)
			}
		})
	}
}

// TestFailoverConcurrentFailures fails the primary under concurrent calls:
// the breaker opens once, and few calls reach the primary.
func TestFailoverConcurrentFailures(t *testing.T) {
	const goroutines = 8
	f, p, _, log := newTestFailover(t, FailOpen, WithFailoverBreaker(3, time.Hour))
	p.set(errStoreDown)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range 100 {
				if d, err := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1); err != nil || !d.Allowed {
					t.Errorf("Allow = %+v, %v; want fail-open", d, err)
				}
			}
		})
	}
	wg.Wait()
	if log.String() != "[true]" {
		t.Fatalf("transitions %v, want one opening", log)
	}
	// Calls that reached the primary before it opened may finish after.
	if got := p.calls.Load(); got < 3 || got > 3+goroutines-1 {
		t.Fatalf("primary calls %d, want 3 to %d", got, 3+goroutines-1)
	}
}

// TestFailoverTimeout gives the primary a deadline: the timeout, or the
// caller's when sooner. A primary that would answer later is cut there, and
// its failure applies the policy.
func TestFailoverTimeout(t *testing.T) {
	const timeout = 20 * time.Millisecond
	var seen atomic.Int64 // the primary's deadline, ns from the call's start
	var start time.Time
	slow := limiterFunc(func(ctx context.Context, _ Key, _ Limit, _ int) (Decision, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return Decision{}, errors.New("no deadline")
		}
		seen.Store(int64(dl.Sub(start)))
		<-ctx.Done() // an answer that never comes in time
		return Decision{}, ctx.Err()
	})
	f, err := NewFailover(slow, FailOpen, WithFailoverTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		deadline time.Duration // the caller's; 0 for none
		want     time.Duration
	}{
		{"no caller deadline", 0, timeout},
		{"later caller deadline", time.Hour, timeout},
		{"sooner caller deadline", 5 * time.Millisecond, 5 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			start = time.Now()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, start.Add(tc.deadline))
				defer cancel()
			}
			d, err := f.Allow(ctx, Key{"c", "b"}, failoverLimit, 1)
			elapsed := time.Since(start)
			if err != nil || d.Source != "fail-open" {
				t.Fatalf("Allow = %+v, %v; want fail-open", d, err)
			}
			// The caller's deadline is passed on as it is; the timeout
			// starts a moment after the start, by however long this
			// busy machine takes to get there.
			got := time.Duration(seen.Load())
			if tc.deadline > 0 && tc.deadline < timeout && got != tc.want || got < tc.want || got >= 2*tc.want {
				t.Fatalf("primary's deadline %v after the start, want %v", got, tc.want)
			}
			if elapsed < tc.want || elapsed > tc.want+200*time.Millisecond {
				t.Fatalf("Allow took %v, want about %v", elapsed, tc.want)
			}
		})
	}
}

// TestFailoverCallerGaveUp checks that calls whose caller canceled, or
// whose context had ended, never open the breaker, and still get the policy.
func TestFailoverCallerGaveUp(t *testing.T) {
	var (
		calls  atomic.Int64
		cancel context.CancelFunc // the current call's
	)
	// A primary during whose call the caller goes away.
	primary := limiterFunc(func(ctx context.Context, _ Key, _ Limit, _ int) (Decision, error) {
		calls.Add(1)
		cancel()
		<-ctx.Done()
		return Decision{}, ctx.Err()
	})
	log := &stateLog{}
	f, err := NewFailover(primary, FailClosed, WithFailoverStateChange(log.record))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * DefaultBreakerFailures {
		ctx, c := context.WithCancel(t.Context())
		cancel = c
		_, err := f.Allow(ctx, Key{"c", "b"}, failoverLimit, 1)
		c()
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v, want ErrUnavailable for a canceled call", i+1, err)
		}
	}
	if calls.Load() != 2*DefaultBreakerFailures {
		t.Fatalf("primary calls %d, want %d: the breaker opened", calls.Load(), 2*DefaultBreakerFailures)
	}

	ended, cancelEnded := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancelEnded()
	if _, err := f.Allow(ended, Key{"c", "b"}, failoverLimit, 1); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with an ended context: %v, want ErrUnavailable", err)
	}
	if calls.Load() != 2*DefaultBreakerFailures {
		t.Fatal("a call whose context had ended reached the primary")
	}
	if log.String() != "[]" {
		t.Fatalf("transitions %v: the callers' cancellations opened the breaker", log)
	}
}

// TestFailoverLateFailure finishes a call that reached the primary before the
// breaker opened after it did: its failure must neither reopen the breaker
// nor push back the probe.
func TestFailoverLateFailure(t *testing.T) {
	var calls atomic.Int64
	release, entered := make(chan struct{}), make(chan struct{})
	primary := limiterFunc(func(context.Context, Key, Limit, int) (Decision, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return Decision{}, errStoreDown
	})
	clock, log := fakeclock.New(clockBase), &stateLog{}
	f, err := NewFailover(primary, FailOpen, WithFailoverBreaker(1, time.Minute), WithFailoverTimeout(time.Hour),
		WithFailoverClock(clock.Now), WithFailoverStateChange(log.record))
	if err != nil {
		t.Fatal(err)
	}
	late := make(chan struct{})
	go func() {
		defer close(late)
		_, _ = f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
	}()
	<-entered
	_, _ = f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1) // opens the breaker
	clock.Advance(30 * time.Second)
	close(release)
	<-late
	if log.String() != "[true]" {
		t.Fatalf("transitions %v, want one opening", log)
	}
	clock.Advance(30 * time.Second)
	_, _ = f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
	if calls.Load() != 3 {
		t.Fatalf("primary calls %d, want 3: the probe is due a cooldown after the opening", calls.Load())
	}
}

// unreachableStore stands for a shared store that is down (a
// redisstore.Limiter whose Redis does not answer).
type unreachableStore struct{}

func (unreachableStore) Allow(context.Context, Key, Limit, int) (Decision, error) {
	return Decision{}, errors.New("connection refused")
}

// A Failover around a shared store (in production a redisstore.Limiter)
// says what happens while the store is away: here each replica enforces the
// limit on its own traffic, and three failures in a row stop the store
// being asked for a second.
func ExampleNewFailover() {
	limiter, err := NewFailover(unreachableStore{}, FailLocal,
		WithFailoverTimeout(50*time.Millisecond),
		WithFailoverBreaker(3, time.Second),
		WithFailoverStateChange(func(open bool) { fmt.Println("shared limiter breaker open:", open) }))
	if err != nil {
		panic(err)
	}
	for range 3 {
		d, err := limiter.Allow(context.Background(), Key{Consumer: "billing", Bucket: "orders"}, PerSecond(5, 10), 1)
		fmt.Println(d.Allowed, d.Source, err)
	}
	// Output:
	// true local <nil>
	// true local <nil>
	// shared limiter breaker open: true
	// true local <nil>
}
