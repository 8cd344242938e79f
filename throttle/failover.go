package throttle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrUnavailable reports that a [Failover] with policy [FailClosed] could not
// reach its primary limiter, so the call is refused. The interceptors map it
// to gRPC Unavailable.
var ErrUnavailable = errors.New("throttle: limiter unavailable")

// errBreakerOpen is the cause given for decisions taken while the breaker
// keeps the primary out of use.
var errBreakerOpen = errors.New("circuit breaker open")

// Policy says what a [Failover] does with a call its primary limiter could
// not decide. The zero Policy is not valid.
type Policy int

const (
	// FailOpen admits the call: availability over the limit.
	FailOpen Policy = iota + 1
	// FailClosed refuses the call with an error wrapping [ErrUnavailable]:
	// the limit over availability.
	FailClosed
	// FailLocal decides with a limiter in this process, so each replica
	// enforces the limit on its own share of the traffic.
	FailLocal
)

// String returns "open", "closed" or "local", the names [ParsePolicy] reads.
func (p Policy) String() string {
	switch p {
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	case FailLocal:
		return "local"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy returns the policy named "open", "closed" or "local", and an
// error for any other string.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{FailOpen, FailClosed, FailLocal} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("throttle: unknown fail policy %q: want open, closed or local", s)
}

// Sources of the decisions a Failover takes itself (Decision.Source): a
// decision with one of them is one the primary did not take, because it
// failed, timed out, or the breaker kept it out of use. An observer counts
// these as limiter errors even when the policy hides the error.
const (
	SourceFailOpen   = "fail-open"
	SourceFailClosed = "fail-closed"
	SourceLocal      = "local"
)

// Failover is a [Limiter] that decides with a primary limiter, usually
// the Redis limiter (redisstore.Limiter), and applies a [Policy] when the
// primary cannot decide: when it returns an error other than
// [ErrInvalidLimit], or does not answer within the timeout.
//
// A circuit breaker keeps a dead store from costing a timeout on every call.
// After a number of consecutive failures the breaker opens: calls skip the
// primary and get the policy at once. When the cooldown has passed, one call
// probes the primary (the others keep getting the policy); if it succeeds
// the breaker closes, otherwise it stays open for another cooldown. Nothing
// runs in the background: the breaker moves only when calls arrive.
//
// Decisions of the policy carry Source "fail-open", "fail-closed" or
// "local". A fail-open decision admits and knows nothing else: its
// Remaining, RetryAfter and ResetAfter are zero.
//
// A Failover must be created with [NewFailover]. It is safe for concurrent
// use.
type Failover struct {
	primary       Limiter
	local         Limiter
	policy        Policy
	timeout       time.Duration
	threshold     int
	cooldown      time.Duration
	now           func() time.Time
	onStateChange func(open bool)

	mu       sync.Mutex
	failures int       // consecutive failures while closed
	open     bool      // the breaker keeps calls off the primary
	retryAt  time.Time // while open: when the next probe may go
	probing  bool      // while open: a probe is in flight
}

// Defaults of [NewFailover].
const (
	DefaultFailoverTimeout = 50 * time.Millisecond
	DefaultBreakerFailures = 3
	DefaultBreakerCooldown = time.Second
)

// FailoverOption configures [NewFailover].
type FailoverOption func(*failoverOptions)

type failoverOptions struct {
	timeout       time.Duration
	local         Limiter
	localSet      bool
	failures      int
	cooldown      time.Duration
	now           func() time.Time
	onStateChange func(open bool)
}

// WithFailoverTimeout bounds the time one decision may take on the primary (default
// 50 ms). The caller's context deadline applies too, whichever comes first.
// The primary must return when its context is done; redisstore.Limiter does.
func WithFailoverTimeout(d time.Duration) FailoverOption {
	return func(o *failoverOptions) { o.timeout = d }
}

// WithFailoverLocal sets the limiter that decides under [FailLocal] (default a new
// [Memory]). Other policies do not use it.
func WithFailoverLocal(l Limiter) FailoverOption {
	return func(o *failoverOptions) { o.local, o.localSet = l, true }
}

// WithFailoverBreaker opens the circuit breaker after the given number of
// consecutive failures of the primary, for cooldown before a probe (default
// 3 failures, 1 s).
func WithFailoverBreaker(failures int, cooldown time.Duration) FailoverOption {
	return func(o *failoverOptions) { o.failures, o.cooldown = failures, cooldown }
}

// WithFailoverClock makes the breaker read the time from now instead of
// time.Now; tests use it to pass cooldowns by hand. A nil clock means
// time.Now. The timeout always runs on the real clock.
func WithFailoverClock(now func() time.Time) FailoverOption {
	return func(o *failoverOptions) { o.now = now }
}

// WithFailoverStateChange calls fn with true when the breaker opens and with false
// when it closes again, for logs and metrics. A probe that fails leaves the
// breaker open and calls nothing. fn runs while the breaker's lock is held,
// so that calls come in order: it must be quick and must not call the
// Failover.
func WithFailoverStateChange(fn func(open bool)) FailoverOption {
	return func(o *failoverOptions) { o.onStateChange = fn }
}

// NewFailover returns a limiter that decides with primary and applies policy
// when primary cannot decide. It returns an error for a nil primary, an
// unknown policy, a timeout, failure count or cooldown that is not positive,
// or a nil local limiter under [FailLocal].
func NewFailover(primary Limiter, policy Policy, opts ...FailoverOption) (*Failover, error) {
	o := failoverOptions{
		timeout:  DefaultFailoverTimeout,
		failures: DefaultBreakerFailures,
		cooldown: DefaultBreakerCooldown,
	}
	for _, opt := range opts {
		opt(&o)
	}
	const badFailover = "throttle: NewFailover: "
	switch {
	case primary == nil:
		return nil, errors.New(badFailover + "primary limiter is nil")
	case policy < FailOpen || policy > FailLocal:
		return nil, fmt.Errorf(badFailover+"unknown policy %v", policy)
	case o.timeout <= 0:
		return nil, fmt.Errorf(badFailover+"timeout %v must be positive", o.timeout)
	case o.failures < 1:
		return nil, fmt.Errorf(badFailover+"breaker failures %d must be at least 1", o.failures)
	case o.cooldown <= 0:
		return nil, fmt.Errorf(badFailover+"breaker cooldown %v must be positive", o.cooldown)
	case policy == FailLocal && o.localSet && o.local == nil:
		return nil, errors.New(badFailover + "local limiter is nil")
	}
	if policy == FailLocal && o.local == nil {
		m, err := NewMemory()
		if err != nil {
			return nil, err
		}
		o.local = m
	}
	if o.now == nil {
		o.now = time.Now
	}
	return &Failover{
		primary:       primary,
		local:         o.local,
		policy:        policy,
		timeout:       o.timeout,
		threshold:     o.failures,
		cooldown:      o.cooldown,
		now:           o.now,
		onStateChange: o.onStateChange,
	}, nil
}

// Allow decides with the primary limiter, or by the policy when the primary
// fails or the breaker is open.
//
// An invalid limit returns an error wrapping [ErrInvalidLimit], as does a
// limit the primary rejects as invalid; neither counts as a failure. Under
// [FailClosed] a call the primary could not decide returns an error wrapping
// [ErrUnavailable] and the reason. Under [FailLocal] the local limiter's
// decision is returned, with Source "local".
//
// A failure counts toward opening the breaker unless the caller's context
// was canceled or had ended before the call: that says nothing about the
// store. A decision cut by the timeout may still have been applied by the
// store, which then took the tokens of a call it did not answer.
func (f *Failover) Allow(ctx context.Context, key Key, limit Limit, cost int) (Decision, error) {
	if err := limit.Validate(); err != nil {
		return Decision{}, err
	}
	if err := ctx.Err(); err != nil {
		return f.fallback(ctx, key, limit, cost, err)
	}
	use, probe := f.acquire()
	if !use {
		return f.fallback(ctx, key, limit, cost, errBreakerOpen)
	}

	pctx, cancel := context.WithTimeout(ctx, f.timeout)
	d, err := f.primary.Allow(pctx, key, limit, cost)
	cancel()
	switch {
	case err == nil:
		f.record(probe, outcomeSuccess)
		return d, nil
	case errors.Is(err, ErrInvalidLimit):
		f.record(probe, outcomeNeutral)
		return d, err
	case errors.Is(ctx.Err(), context.Canceled):
		f.record(probe, outcomeNeutral)
	default:
		f.record(probe, outcomeFailure)
	}
	return f.fallback(ctx, key, limit, cost, err)
}

// fallback applies the policy to a call the primary did not decide because
// of cause.
func (f *Failover) fallback(ctx context.Context, key Key, limit Limit, cost int, cause error) (Decision, error) {
	switch f.policy {
	case FailOpen:
		return Decision{Allowed: true, Limit: limit, Source: SourceFailOpen}, nil
	case FailClosed:
		return Decision{Limit: limit, Source: SourceFailClosed}, fmt.Errorf("%w: %w", ErrUnavailable, cause)
	}
	d, err := f.local.Allow(ctx, key, limit, cost)
	d.Source = SourceLocal
	return d, err
}

// outcome is what a call to the primary says about its health.
type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeFailure
	outcomeNeutral // says nothing: an invalid limit, a canceled caller
)

// acquire reports whether a call may use the primary, and whether it is the
// probe of an open breaker whose cooldown has passed.
func (f *Failover) acquire() (use, probe bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open {
		return true, false
	}
	if f.probing || f.now().Before(f.retryAt) {
		return false, false
	}
	f.probing = true
	return true, true
}

// record moves the breaker by the outcome of a call to the primary.
func (f *Failover) record(probe bool, o outcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if probe {
		f.probing = false
		switch o {
		case outcomeSuccess:
			f.open = false
			f.notify(false)
		case outcomeFailure:
			f.retryAt = f.now().Add(f.cooldown)
		}
		return
	}
	if f.open {
		// A call that started before the breaker opened: the probe decides.
		return
	}
	switch o {
	case outcomeSuccess:
		f.failures = 0
	case outcomeFailure:
		f.failures++
		if f.failures >= f.threshold {
			f.open, f.failures = true, 0
			f.retryAt = f.now().Add(f.cooldown)
			f.notify(true)
		}
	}
}

// notify reports a change of the breaker. f.mu must be held.
func (f *Failover) notify(open bool) {
	if f.onStateChange != nil {
		f.onStateChange(open)
	}
}

// BreakerOpen reports whether the circuit breaker keeps calls off the
// primary now (also while its probe is in flight), for a metrics gauge that
// reads the state rather than following [WithFailoverStateChange].
func (f *Failover) BreakerOpen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}
