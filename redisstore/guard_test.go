package redisstore_test

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/redisstore"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Tests of the guard with limits shared through a real redis-server: two
// harnesses are two replicas of one service (one key, one Redis, a client
// and a limiter each), called over loopback TCP. Without redis-server the
// tests skip, loudly, unless TOLLGATE_REQUIRE_REDIS=1 (redistest). This is
// an external test package: interceptors must never import go-redis, not
// even in its tests.

const (
	testIss   = "https://auth.tollgate.test"
	testAud   = "tollgate-test"
	methodGet = "/tollgate.testpb.v1.TestService/Get"

	msgLimited   = "rate limit exceeded"
	msgLimiterDn = "rate limiter unavailable"
)

// t0 is where the verifiers' clock stands.
var t0 = time.Unix(1_800_000_000, 0).UTC()

var redisLimit = throttle.Limit{Rate: 1, Per: time.Hour, Burst: 10}

// getServer answers TestService.Get and counts the calls that reach it.
type getServer struct {
	testpb.UnimplementedTestServiceServer
	n atomic.Int64
}

func (s *getServer) Get(_ context.Context, req *testpb.GetRequest) (*testpb.GetResponse, error) {
	s.n.Add(1)
	return &testpb.GetResponse{Id: req.GetId()}, nil
}

// harness is one replica: a guarded server on loopback TCP and a client.
type harness struct {
	srv    *getServer
	client testpb.TestServiceClient
}

func (h *harness) reached() int64 { return h.srv.n.Load() }

// get calls Get with tok as the bearer token.
func (h *harness) get(t testing.TB, tok string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	_, err := h.client.Get(ctx, &testpb.GetRequest{Id: "item-1"})
	return err
}

// newHarness starts a replica verifying tokens of key, throttling every
// method by redisLimit with lim.
func newHarness(t *testing.T, key *token.Key, lim throttle.Limiter) *harness {
	t.Helper()
	ks, err := token.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(fakeclock.New(t0).Now))
	if err != nil {
		t.Fatal(err)
	}
	g, err := interceptors.NewGuard(v, interceptors.WithLimiter(lim), interceptors.WithDefaultThrottle(redisLimit))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	h := &harness{srv: &getServer{}}
	srv := grpc.NewServer(g.ServerOptions()...)
	testpb.RegisterTestServiceServer(srv, h.srv)
	if err := g.Init(srv); err != nil {
		t.Fatal(err)
	}
	h.client = testpb.NewTestServiceClient(loopback.Serve(t, srv))
	return h
}

// newKey returns a fresh HS256 key and a signer of it.
func newKey(t *testing.T) (*token.Key, *token.Signer) {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	k, err := token.NewHMACKey("k1", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, s
}

// replicas returns two harnesses verifying tokens of one key, each
// throttling every method by redisLimit with its own limiter, and a token
// of consumer "a" they both accept.
func replicas(t *testing.T, l1, l2 throttle.Limiter) (h1, h2 *harness, tok string) {
	t.Helper()
	key, signer := newKey(t)
	tok, err := signer.Sign(token.Claims{
		Issuer: testIss, Subject: "alice", AuthorizedParty: "a", Audience: []string{testAud},
		IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute), Permissions: []string{"test.read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return newHarness(t, key, l1), newHarness(t, key, l2), tok
}

func newRedisLimiter(t *testing.T, srv *redistest.Server) *redisstore.Limiter {
	t.Helper()
	r, err := redisstore.NewLimiter(srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantCodeOnly checks a status with code and message and no details.
func wantCodeOnly(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code || st.Message() != msg || len(st.Details()) != 0 {
		t.Fatalf("got %v (details %v), want %v %q without details", err, st.Details(), code, msg)
	}
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
	if reason != interceptors.ReasonRateLimited || bucket != methodGet || subject != "azp:a" || len(st.Details()) != 3 {
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
		fc := fakeclock.New(t0)
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
		h, _, tok := replicas(t, f, mustMemory(t))
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

// mustMemory is a fresh in-memory limiter.
func mustMemory(t testing.TB) *throttle.Memory {
	t.Helper()
	m, err := throttle.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
