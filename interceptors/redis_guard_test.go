package interceptors

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/throttle"
)

// Tests of the guard with limits shared through a real redis-server: two
// harnesses are two replicas of one service (one key, one Redis, a client
// and a limiter each). Without redis-server the tests skip, loudly, unless
// TOLLGATE_REQUIRE_REDIS=1 (redistest).

var redisLimit = throttle.Limit{Rate: 1, Per: time.Hour, Burst: 10}

// replicas returns two harnesses verifying tokens of one key, each
// throttling every method by redisLimit with its own limiter, and a token
// of consumer "a" they both accept.
func replicas(t *testing.T, l1, l2 throttle.Limiter) (h1, h2 *harness, tok string) {
	t.Helper()
	key := newTestKey(t, testKID)
	h1 = newHarness(t, withKeys(key.key), withGuardOptions(WithLimiter(l1), WithDefaultThrottle(redisLimit)))
	h2 = newHarness(t, withKeys(key.key), withGuardOptions(WithLimiter(l2), WithDefaultThrottle(redisLimit)))
	c := claims(t0)
	c.AuthorizedParty = "a"
	return h1, h2, key.sign(t, c)
}

func newRedisLimiter(t *testing.T, srv *redistest.Server) *throttle.Redis {
	t.Helper()
	r, err := throttle.NewRedis(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newFailover(t *testing.T, primary throttle.Limiter, p throttle.Policy, opts ...throttle.FailoverOption) *throttle.Failover {
	t.Helper()
	f, err := throttle.NewFailover(primary, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// wantRedisLimited checks a refusal decided by Redis: the contract of
// wantRateLimited, with a retry delay from the Redis clock, so within a
// minute of the hour an empty bucket of redisLimit needs.
func wantRedisLimited(t testing.TB, err error) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != codes.ResourceExhausted || st.Message() != msgLimited {
		t.Fatalf("got %v, want ResourceExhausted %q", err, msgLimited)
	}
	var retry time.Duration = -1
	var reason, bucket, subject string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason, bucket = d.GetReason(), d.GetMetadata()["bucket"]
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		case *errdetails.QuotaFailure:
			if v := d.GetViolations(); len(v) == 1 {
				subject = v[0].GetSubject()
			}
		}
	}
	if reason != ReasonRateLimited || bucket != methodGet || subject != "azp:a" || len(st.Details()) != 3 {
		t.Fatalf("details %v, want RATE_LIMITED on %s for a", st.Details(), methodGet)
	}
	if retry <= time.Hour-time.Minute || retry > time.Hour {
		t.Fatalf("retry delay %v, want just under an hour", retry)
	}
}

// wantUnavailableWithin checks that a call was refused with Unavailable,
// without details, and took less than limit.
func wantUnavailableWithin(t testing.TB, call func() error, limit time.Duration) {
	t.Helper()
	start := time.Now()
	err := call()
	if d := time.Since(start); d > limit {
		t.Fatalf("call took %v, want at most %v", d, limit)
	}
	wantCodeOnly(t, err, codes.Unavailable, msgLimiterDn)
}

// Two replicas, one Redis: a consumer alternating between them gets the
// burst once in total, not once per replica.
func TestRedisSharedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	h1, h2, tok := replicas(t, newRedisLimiter(t, srv), newRedisLimiter(t, srv))
	for i := range 20 {
		h := []*harness{h1, h2}[i%2]
		err := h.get(t, tok)
		if i < 10 {
			if err != nil {
				t.Fatalf("call %d (replica %d): %v", i+1, i%2+1, err)
			}
			continue
		}
		wantRedisLimited(t, err)
	}
	if h1.reached() != 5 || h2.reached() != 5 {
		t.Fatalf("replicas admitted %d and %d, want 5 and 5", h1.reached(), h2.reached())
	}
}

// The fail policies with Redis down, each replica with its own Failover
// (timeout 100 ms) on a fake breaker clock.
func TestRedisFailover(t *testing.T) {
	const timeout = 100 * time.Millisecond
	// What a call may take beyond the timeout on a loaded machine.
	const margin = 400 * time.Millisecond

	t.Run("fail closed, stopped, then restarted", func(t *testing.T) {
		srv := redistest.Start(t)
		fc := newFakeClock()
		opts := []throttle.FailoverOption{throttle.WithFailoverTimeout(timeout), throttle.WithFailoverClock(fc.Now)}
		h1, h2, tok := replicas(t,
			newFailover(t, newRedisLimiter(t, srv), throttle.FailClosed, opts...),
			newFailover(t, newRedisLimiter(t, srv), throttle.FailClosed, opts...))
		both := []*harness{h1, h2}
		for _, h := range both {
			if err := h.get(t, tok); err != nil {
				t.Fatalf("before the outage: %v", err)
			}
		}

		srv.Stop()
		for i := range 10 {
			h := both[i%2]
			wantUnavailableWithin(t, func() error { return h.get(t, tok) }, timeout+margin)
		}
		if h1.reached()+h2.reached() != 2 {
			t.Fatalf("handlers reached %d times during the outage", h1.reached()+h2.reached()-2)
		}

		// Back, empty, on the same address: once the breakers' cooldown
		// has passed, each replica probes Redis and uses it again, with
		// nothing rebuilt. A probe may meet a pooled connection to the
		// dead server; the next cooldown retries.
		srv.Restart()
		admitted := 0
		back := [2]bool{}
		for round := 0; round < 5 && !(back[0] && back[1]); round++ {
			fc.Advance(throttle.DefaultBreakerCooldown)
			for i, h := range both {
				if back[i] {
					continue
				}
				if err := h.get(t, tok); err == nil {
					back[i] = true
					admitted++
				} else {
					wantCodeOnly(t, err, codes.Unavailable, msgLimiterDn)
				}
			}
		}
		if !back[0] || !back[1] {
			t.Fatalf("replicas back after 5 cooldowns: %v", back)
		}
		// Shared again: ten in total across both, from the empty Redis.
		for i := 0; admitted < 10; i++ {
			if i == 20 {
				t.Fatalf("only %d calls admitted", admitted)
			}
			if err := both[i%2].get(t, tok); err != nil {
				t.Fatalf("call %d after the restart, %d admitted: %v", i+1, admitted, err)
			}
			admitted++
		}
		for i := range 4 {
			wantRedisLimited(t, both[i%2].get(t, tok))
		}
	})

	t.Run("fail closed, hung", func(t *testing.T) {
		srv := redistest.Start(t)
		f := newFailover(t, newRedisLimiter(t, srv), throttle.FailClosed, throttle.WithFailoverTimeout(timeout))
		key := newTestKey(t, testKID)
		h := newHarness(t, withKeys(key.key), withGuardOptions(WithLimiter(f), WithDefaultThrottle(redisLimit)))
		tok := key.sign(t, claims(t0))
		if err := h.get(t, tok); err != nil {
			t.Fatal(err)
		}
		srv.Pause()
		defer srv.Resume()
		// The first calls wait for the timeout; once the breaker opens
		// they are refused at once. None waits longer.
		for range 2 * throttle.DefaultBreakerFailures {
			wantUnavailableWithin(t, func() error { return h.get(t, tok) }, timeout+margin)
		}
		if h.reached() != 1 {
			t.Fatalf("handler reached %d times", h.reached())
		}
	})

	t.Run("fail open", func(t *testing.T) {
		srv := redistest.Start(t)
		h1, h2, tok := replicas(t,
			newFailover(t, newRedisLimiter(t, srv), throttle.FailOpen, throttle.WithFailoverTimeout(timeout)),
			newFailover(t, newRedisLimiter(t, srv), throttle.FailOpen, throttle.WithFailoverTimeout(timeout)))
		srv.Stop()
		for i := range 30 {
			if err := []*harness{h1, h2}[i%2].get(t, tok); err != nil {
				t.Fatalf("call %d with Redis down, failing open: %v", i+1, err)
			}
		}
		if h1.reached()+h2.reached() != 30 {
			t.Fatalf("handlers reached %d times, want 30", h1.reached()+h2.reached())
		}
	})

	t.Run("fail local", func(t *testing.T) {
		srv := redistest.Start(t)
		local := func() throttle.FailoverOption { return throttle.WithFailoverLocal(mustMemory(t)) }
		h1, h2, tok := replicas(t,
			newFailover(t, newRedisLimiter(t, srv), throttle.FailLocal, throttle.WithFailoverTimeout(timeout), local()),
			newFailover(t, newRedisLimiter(t, srv), throttle.FailLocal, throttle.WithFailoverTimeout(timeout), local()))
		srv.Stop()
		// Each replica enforces the limit on its own.
		for _, h := range []*harness{h1, h2} {
			for i := range 10 {
				if err := h.get(t, tok); err != nil {
					t.Fatalf("local call %d: %v", i+1, err)
				}
			}
			err := h.get(t, tok)
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != msgLimited {
				t.Fatalf("11th local call: %v", err)
			}
		}
	})
}
