package interceptors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/testpb"
	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Tests of the guard's throttling over real gRPC: per-consumer buckets,
// streams, public methods by peer, the per-peer budget of failed
// authentications (security.md cases 28 and 29), the draft rate-limit
// headers, limiter errors, shadow mode, and throttle rules declared in a
// .proto (a descriptor built here, since test.proto declares none).

const (
	methodList   = "/tollgate.testpb.v1.TestService/List"
	methodGetAll = "/tollgate.testpb.v1.TestService/GetAll"
	msgLimited   = "rate limit exceeded"
	msgLimiterDn = "rate limiter unavailable"
	peerLoopback = "peer:127.0.0.1"
)

// lateClock reads the harness's fake clock once the harness exists, and t0
// (where every harness clock starts) before: a limiter is an option of the
// guard, so it is built before the harness and its clock.
type lateClock struct{ c atomic.Pointer[fakeClock] }

func (l *lateClock) Now() time.Time {
	if c := l.c.Load(); c != nil {
		return c.Now()
	}
	return t0
}

// newThrottleHarness returns a harness whose guard throttles every method
// without a rule of its own by lim, with a Memory limiter driven by the
// harness clock. opts come after, so they may replace the limiter.
func newThrottleHarness(t *testing.T, lim throttle.Limit, opts ...Option) *harness {
	t.Helper()
	lc := &lateClock{}
	mem := mustMemory(t, throttle.WithMemoryClock(lc.Now))
	h := newHarness(t, withGuardOptions(append([]Option{WithLimiter(mem), WithDefaultThrottle(lim)}, opts...)...))
	lc.c.Store(h.clock)
	return h
}

// azp sets the consumer claim of a token.
func azp(name string) func(*token.Claims) {
	return func(c *token.Claims) { c.AuthorizedParty = name }
}

func (h *harness) get(t testing.TB, tok string, opts ...grpc.CallOption) error {
	t.Helper()
	_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "item-1"}, opts...)
	return err
}

// wantRateLimited checks a throttled call's status in full: the code, the
// fixed message, and exactly ErrorInfo{RATE_LIMITED, bucket}, RetryInfo and
// a QuotaFailure naming subject, in that order.
func wantRateLimited(t testing.TB, err error, bucket, subject string, lim throttle.Limit, retry time.Duration) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	if st.Code() != codes.ResourceExhausted || st.Message() != msgLimited {
		t.Fatalf("got %v %q, want ResourceExhausted %q", st.Code(), st.Message(), msgLimited)
	}
	want := []proto.Message{
		&errdetails.ErrorInfo{Reason: ReasonRateLimited, Domain: "tollgate", Metadata: map[string]string{"bucket": bucket}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     subject,
			Description: "token bucket " + bucket + " (" + lim.String() + ") is empty",
		}}},
	}
	var got []proto.Message
	for _, d := range st.Details() {
		m, ok := d.(proto.Message)
		if !ok {
			t.Fatalf("detail %T is not a message: %v", d, d)
		}
		got = append(got, m)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("details (-want +got):\n%s", diff)
	}
}

// wantCodeOnly checks a status with no details: code and exact message.
func wantCodeOnly(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code || st.Message() != msg || len(st.Details()) != 0 {
		t.Fatalf("got %v (details %v), want %v %q with no details", err, st.Details(), code, msg)
	}
}

// A consumer (azp "a") gets Burst calls, then ResourceExhausted with the
// whole contract; another consumer is unaffected; the fake clock refills
// one token per interval (one minute at 1/min), never earlier.
func TestThrottlePerConsumer(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Minute, Burst: 3}
	h := newThrottleHarness(t, lim)
	a, b := h.token(t, azp("a")), h.token(t, azp("b"))
	for i := range 3 {
		if err := h.get(t, a); err != nil {
			t.Fatalf("call %d of a: %v", i+1, err)
		}
	}
	// Three tokens taken at one instant: the next is a minute away.
	wantRateLimited(t, h.get(t, a), methodGet, "azp:a", lim, time.Minute)
	if h.reached() != 3 {
		t.Fatalf("handler reached %d times, want 3: a refused call reached it", h.reached())
	}
	for i := range 3 {
		if err := h.get(t, b); err != nil {
			t.Fatalf("call %d of b: %v", i+1, err)
		}
	}
	wantRateLimited(t, h.get(t, b), methodGet, "azp:b", lim, time.Minute)

	h.clock.Advance(59 * time.Second)
	wantRateLimited(t, h.get(t, a), methodGet, "azp:a", lim, time.Second)
	h.clock.Advance(time.Second)
	if err := h.get(t, a); err != nil {
		t.Fatalf("after one interval: %v", err)
	}
	wantRateLimited(t, h.get(t, a), methodGet, "azp:a", lim, time.Minute)
	if h.reached() != 7 {
		t.Fatalf("handler reached %d times, want 7", h.reached())
	}
}

// The throttling identity is azp, falling back to sub; WithConsumerClaim
// keys on a claim of choice, falling back to the consumer without it.
func TestThrottleConsumerIdentity(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}
	sub := func(s string) func(*token.Claims) { return func(c *token.Claims) { c.Subject = s } }
	tenant := func(v string) func(*token.Claims) {
		return func(c *token.Claims) { c.Extra = map[string]any{"owner_id": "o1", "tenant": v} }
	}
	spend := func(t *testing.T, h *harness, toks ...string) {
		t.Helper()
		for i, tok := range toks {
			if err := h.get(t, tok); err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
	}

	t.Run("azp over sub", func(t *testing.T) {
		h := newThrottleHarness(t, lim)
		u1 := h.token(t, sub("u1"), azp("svc"))
		u2 := h.token(t, sub("u2"), azp("svc"))
		spend(t, h, u1, u2, u1)
		wantRateLimited(t, h.get(t, u2), methodGet, "azp:svc", lim, time.Hour)
		// u1's subject has a bucket of its own only without an azp.
		spend(t, h, h.token(t, sub("u1")))
	})
	t.Run("sub without azp", func(t *testing.T) {
		h := newThrottleHarness(t, lim)
		carol := h.token(t, sub("carol"))
		spend(t, h, carol, carol, carol)
		wantRateLimited(t, h.get(t, carol), methodGet, "sub:carol", lim, time.Hour)
		spend(t, h, h.token(t, sub("dave")))
	})
	// A subject that happens to carry a service's name is not that service:
	// keys say which claim they came from.
	t.Run("sub and azp never share a bucket", func(t *testing.T) {
		h := newThrottleHarness(t, lim)
		user := h.token(t, sub("orders"))
		spend(t, h, user, user, user)
		wantRateLimited(t, h.get(t, user), methodGet, "sub:orders", lim, time.Hour)
		service := h.token(t, sub("svc-account"), azp("orders"))
		spend(t, h, service, service, service)
		wantRateLimited(t, h.get(t, service), methodGet, "azp:orders", lim, time.Hour)
	})
	t.Run("WithConsumerClaim", func(t *testing.T) {
		h := newThrottleHarness(t, lim, WithConsumerClaim("tenant"))
		a := h.token(t, azp("a"), tenant("t1"))
		b := h.token(t, azp("b"), tenant("t1"))
		spend(t, h, a, b, a)
		wantRateLimited(t, h.get(t, b), methodGet, "claim:tenant:t1", lim, time.Hour)
		// Without the claim: the consumer, azp "a", with a full bucket.
		noTenant := h.token(t, azp("a"))
		spend(t, h, noTenant, noTenant, noTenant)
		wantRateLimited(t, h.get(t, noTenant), methodGet, "azp:a", lim, time.Hour)
		// Another tenant, same azp: its own bucket.
		spend(t, h, h.token(t, azp("a"), tenant("t2")))
	})
}

// Item 1 of the hardening issue: a server stream takes one token when it
// opens, however many messages it sends; a client or bidi stream pays for
// its first message with its opening and for every later message it
// receives. With a burst of 5 the fifth message empties the bucket, the
// sixth ends the stream with the whole RATE_LIMITED contract before the
// handler sees it, and the next stream is refused when it opens. Each kind
// has its own bucket (its method).
func TestThrottleStreamMessages(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 5}
	h := newThrottleHarness(t, lim)
	tok := h.token(t, azp("a"))
	list := func(n int32) (int, error) {
		stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: n})
		if err != nil {
			return 0, err
		}
		got := 0
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			got++
		}
	}
	upload := func(n int) (int, error) {
		stream, err := h.client.Upload(bearer(t, tok))
		if err != nil {
			return 0, err
		}
		for i := range n {
			if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, Id: fmt.Sprint(i)}); err != nil {
				break // the status comes from CloseAndRecv
			}
		}
		resp, err := stream.CloseAndRecv()
		return int(resp.GetCount()), err
	}
	chat := func(n int) (int, error) {
		stream, err := h.client.Chat(bearer(t, tok))
		if err != nil {
			return 0, err
		}
		got := 0
		for i := range n {
			if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: fmt.Sprint(i)}); err != nil {
				break
			}
			if _, err := stream.Recv(); err != nil {
				return got, err
			}
			got++
		}
		if err := stream.CloseSend(); err != nil {
			return got, err
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			return got, err
		}
		return got, nil
	}

	for _, k := range []struct {
		name, method string
		run          func(n int) (int, error)
		// messages the handler gets from a stream of 100, and the streams
		// of 1 that pass after it
		first, more int
	}{
		{"server stream List", methodList, func(n int) (int, error) { return list(int32(n)) }, 100, 4},
		{"client stream Upload", methodUpload, upload, 5, 0},
		{"bidi Chat", methodChat, chat, 5, 0},
	} {
		t.Run(k.name, func(t *testing.T) {
			before := h.reached()
			got, err := k.run(100)
			if k.first == 100 {
				if err != nil || got != 100 {
					t.Fatalf("server stream of 100: %d messages, %v", got, err)
				}
			} else {
				wantRateLimited(t, err, k.method, "azp:a", lim, time.Hour)
			}
			for i := range k.more {
				if n, err := k.run(1); err != nil || n != 1 {
					t.Fatalf("stream %d of 1: %d messages, %v", i+2, n, err)
				}
			}
			n, err := k.run(1)
			wantRateLimited(t, err, k.method, "azp:a", lim, time.Hour)
			if n != 0 {
				t.Fatalf("refused stream carried %d messages", n)
			}
			if n := h.reached() - before; n != int64(1+k.more) {
				t.Fatalf("handler reached %d times, want %d", n, 1+k.more)
			}
		})
	}
	uploads, chats, _ := h.server.recorded()
	if len(uploads) != 5 || len(chats) != 5 {
		t.Fatalf("handlers received %d uploads and %d chat messages, want 5 each: a refused message must never reach them", len(uploads), len(chats))
	}
}

// A public method is throttled by the caller's address: every connection
// from 127.0.0.1 shares one bucket, token or not.
func TestThrottlePublicPerPeer(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}
	h := newThrottleHarness(t, lim)
	conn2, err := grpc.NewClient(h.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn2.Close() })
	c2 := testpb.NewTestServiceClient(conn2)
	for i, c := range []testpb.TestServiceClient{h.client, h.client, c2} {
		if _, err := c.Ping(ctxWith(t), &testpb.PingRequest{}); err != nil {
			t.Fatalf("ping %d: %v", i+1, err)
		}
	}
	_, err = c2.Ping(ctxWith(t), &testpb.PingRequest{})
	wantRateLimited(t, err, methodPing, peerLoopback, lim, time.Hour)
	// A token changes nothing on a public method.
	_, err = h.client.Ping(bearer(t, h.token(t, azp("a"))), &testpb.PingRequest{})
	wantRateLimited(t, err, methodPing, peerLoopback, lim, time.Hour)
	if h.reached() != 3 {
		t.Fatalf("handler reached %d times, want 3", h.reached())
	}
	// Other methods keep their own buckets.
	if err := h.get(t, h.token(t, azp("a"))); err != nil {
		t.Fatalf("Get after Ping's bucket is empty: %v", err)
	}
}

// reasonCounter is a slog handler counting the guard's records by their
// "reason" attribute.
type reasonCounter struct {
	mu     sync.Mutex
	counts map[string]int
	causes map[string]int
}

func (c *reasonCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *reasonCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *reasonCounter) WithGroup(string) slog.Handler            { return c }

func (c *reasonCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts, c.causes = map[string]int{}, map[string]int{}
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "reason":
			c.counts[a.Value.String()]++
		case "cause":
			c.causes[a.Value.String()]++
		}
		return true
	})
	return nil
}

func (c *reasonCounter) count(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[reason]
}

func (c *reasonCounter) cause(cause string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.causes[cause]
}

// Case 28: 1,000 forged tokens from one peer. The first 5 are checked and
// refused as TOKEN_INVALID; every later one is refused with RATE_LIMITED
// before its signature is checked: the verifier logged exactly 5 failures,
// and a valid token the guard has never seen from that peer is refused too,
// which it would not be had it been verified. One refill interval later the
// valid token passes; from then on it is known (cached), so the peer's spent
// budget no longer touches it, while new forgeries are still refused
// unchecked.
func TestCase28AuthFailureBudget(t *testing.T) {
	budget := throttle.Limit{Rate: 1, Per: time.Minute, Burst: 5}
	var logs reasonCounter
	// Every denial logged: the log lines count the verifications.
	h := newHarness(t, withGuardOptions(WithAuthFailureLimit(budget), WithLogger(slog.New(&logs)), WithLogLimit(throttle.Limit{})))
	forged := newTestKey(t, testKID).sign(t, claims(h.clock.Now())) // same kid, other secret
	valid := h.token(t)

	for i := range 1000 {
		err := h.get(t, forged)
		if i < 5 {
			wantInvalid(t, err)
			continue
		}
		wantRateLimited(t, err, authFailureBucket, peerLoopback, budget, time.Minute)
	}
	if n := logs.count(ReasonTokenInvalid); n != 5 {
		t.Fatalf("%d tokens reached signature verification, want 5", n)
	}
	if n := logs.cause("peer exhausted its failed-authentication budget"); n != 995 {
		t.Fatalf("%d refusals before verification, want 995", n)
	}
	// Refused before verification: a valid token is refused as well.
	wantRateLimited(t, h.get(t, valid), authFailureBucket, peerLoopback, budget, time.Minute)
	h.wantNotReached(t)

	h.clock.Advance(time.Minute) // one failure refilled
	for i := range 2 {
		// Two: an admitted call is not charged.
		if err := h.get(t, valid); err != nil {
			t.Fatalf("valid call %d after a refill interval: %v", i+1, err)
		}
	}
	wantInvalid(t, h.get(t, forged)) // takes the refilled token
	wantRateLimited(t, h.get(t, forged), authFailureBucket, peerLoopback, budget, time.Minute)
	// The budget is spent again, but the valid token is known now.
	if err := h.get(t, valid); err != nil {
		t.Fatalf("a verified token refused for the peer's failures: %v", err)
	}
	if n := logs.count(ReasonTokenInvalid); n != 6 {
		t.Fatalf("%d verification failures, want 6", n)
	}
	if h.reached() != 3 {
		t.Fatalf("handler reached %d times, want 3", h.reached())
	}
}

// Item 3 of the hardening issue: behind a NAT or a sidecar every consumer
// shares one address. Forged tokens at full speed from that address must not
// lock out a valid consumer behind it: its verified (cached) token keeps 100
// % success on every RPC kind, while the forgeries still buy no signature
// check past the peer's budget.
func TestNeighbourFloodDoesNotLockOutVerifiedCaller(t *testing.T) {
	budget := throttle.Limit{Rate: 1, Per: time.Minute, Burst: 5}
	var logs reasonCounter
	h := newHarness(t, withGuardOptions(WithAuthFailureLimit(budget), WithLogger(slog.New(&logs)), WithLogLimit(throttle.Limit{})))
	valid := h.token(t)
	if err := h.get(t, valid); err != nil { // verified once, before the flood
		t.Fatal(err)
	}
	forgedKey := newTestKey(t, testKID)

	stop := make(chan struct{})
	var forgedSent atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 { // two forgers keep both cores busy
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// A new forgery every time: none of them is ever cached.
				c := claims(h.clock.Now())
				c.ID = fmt.Sprintf("forged-%d-%d", w, i)
				err := h.get(t, forgedKey.sign(t, c))
				if code := status.Code(err); code != codes.Unauthenticated && code != codes.ResourceExhausted {
					t.Errorf("forged token: %v", err)
					return
				}
				forgedSent.Add(1)
			}
		})
	}
	// Wait until the flood has spent the budget, then call through it.
	for logs.cause("peer exhausted its failed-authentication budget") < 50 {
		runtime.Gosched()
	}
	const calls = 100
	for i := range calls {
		if err := h.get(t, valid); err != nil {
			t.Errorf("valid call %d during the flood: %v", i+1, err)
		}
		stream, err := h.client.Chat(bearer(t, valid))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "hi"}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Errorf("valid stream %d during the flood: %v", i+1, err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("valid stream %d end: %v", i+1, err)
		}
	}
	close(stop)
	wg.Wait()
	if n := logs.count(ReasonTokenInvalid); n != 5 {
		t.Fatalf("%d forged tokens reached signature verification, want the budget of 5 (%d sent)", n, forgedSent.Load())
	}
	if h.reached() != 2*calls+1 {
		t.Fatalf("handlers reached %d times, want %d", h.reached(), 2*calls+1)
	}
}

// Case 28: calls without a token, or with one that is not even a token,
// are failures too; a peer that spent its budget on them is refused on
// every kind of call. Failed authorizations are not authentication
// failures and are never charged.
func TestCase28MissingAndMalformedCharged(t *testing.T) {
	budget := throttle.Limit{Rate: 1, Per: time.Minute, Burst: 5}

	t.Run("missing and malformed", func(t *testing.T) {
		h := newHarness(t, withGuardOptions(WithAuthFailureLimit(budget)))
		for range 3 {
			_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{})
			wantMissing(t, err)
		}
		for _, v := range []string{"Bearer not-a-token", "Basic abc"} {
			_, err := h.client.Get(ctxWith(t, "authorization", v), &testpb.GetRequest{})
			wantInvalid(t, err)
		}
		_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{})
		wantRateLimited(t, err, authFailureBucket, peerLoopback, budget, time.Minute)
		valid := h.token(t)
		wantRateLimited(t, h.get(t, valid), authFailureBucket, peerLoopback, budget, time.Minute)
		stream, err := h.client.Chat(bearer(t, valid))
		if err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		wantRateLimited(t, err, authFailureBucket, peerLoopback, budget, time.Minute)
		h.wantNotReached(t)
	})

	t.Run("permission denied is not charged", func(t *testing.T) {
		h := newHarness(t, withGuardOptions(WithAuthFailureLimit(budget)))
		tok := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.read"} })
		for range 20 {
			_, err := h.client.GetAll(bearer(t, tok), &testpb.GetAllRequest{})
			wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
		}
		// The whole budget is left.
		forged := newTestKey(t, testKID).sign(t, claims(h.clock.Now()))
		for range 5 {
			wantInvalid(t, h.get(t, forged))
		}
		wantRateLimited(t, h.get(t, forged), authFailureBucket, peerLoopback, budget, time.Minute)
	})
}

// countingLimiter records every key the guard asks its limiter about.
type countingLimiter struct {
	inner throttle.Limiter
	mu    sync.Mutex
	keys  []throttle.Key
}

func (c *countingLimiter) Allow(ctx context.Context, key throttle.Key, l throttle.Limit, cost int) (throttle.Decision, error) {
	c.mu.Lock()
	c.keys = append(c.keys, key)
	c.mu.Unlock()
	return c.inner.Allow(ctx, key, l, cost)
}

func (c *countingLimiter) asked() []throttle.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]throttle.Key(nil), c.keys...)
}

// Case 29: a consumer's bucket is charged only for calls whose token
// verified. Forged tokens claiming the victim's sub and azp never reach the
// limiter, and the victim keeps its whole burst.
func TestCase29OnlyVerifiedAuthorizedCallsCharged(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}
	newH := func(t *testing.T) (*harness, *countingLimiter) {
		lc := &lateClock{}
		cl := &countingLimiter{inner: mustMemory(t, throttle.WithMemoryClock(lc.Now))}
		h := newHarness(t, withGuardOptions(WithLimiter(cl), WithDefaultThrottle(lim)))
		lc.c.Store(h.clock)
		return h, cl
	}

	t.Run("forged victim tokens", func(t *testing.T) {
		h, cl := newH(t)
		victimClaims := func(c *token.Claims) { c.Subject, c.AuthorizedParty = "victim", "victim" }
		c := claims(h.clock.Now())
		victimClaims(&c)
		forged := newTestKey(t, testKID).sign(t, c)
		for range 100 {
			wantInvalid(t, h.get(t, forged))
		}
		if n := len(cl.asked()); n != 0 {
			t.Fatalf("the limiter was asked %d times for forged tokens", n)
		}
		victim := h.token(t, victimClaims)
		for i := range 3 {
			if err := h.get(t, victim); err != nil {
				t.Fatalf("victim call %d: %v", i+1, err)
			}
		}
		wantRateLimited(t, h.get(t, victim), methodGet, "azp:victim", lim, time.Hour)
	})

	// Item 5 of the hardening issue: calls of a verified consumer that
	// are refused for lack of a permission or of ownership are charged to
	// that consumer's bucket like admitted ones, so a loop of denied calls
	// is throttled: once its bucket is empty they are refused as
	// RATE_LIMITED.
	t.Run("denied calls are charged to the verified consumer", func(t *testing.T) {
		h, cl := newH(t)
		readOnly := h.token(t, azp("a"), func(c *token.Claims) { c.Permissions = []string{"test.read", "test.write"} })
		for range 3 {
			_, err := h.client.GetAll(bearer(t, readOnly), &testpb.GetAllRequest{})
			wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
			_, err = h.client.Update(bearer(t, readOnly), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o2"}})
			wantNotOwner(t, err, "owner.id")
		}
		_, err := h.client.GetAll(bearer(t, readOnly), &testpb.GetAllRequest{})
		wantRateLimited(t, err, methodGetAll, "azp:a", lim, time.Hour)
		_, err = h.client.Update(bearer(t, readOnly), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o2"}})
		wantRateLimited(t, err, methodUpdate, "azp:a", lim, time.Hour)
		// The denied calls spent the buckets: allowed ones are throttled too.
		all := h.token(t, azp("a"), func(c *token.Claims) { c.Permissions = []string{"test.read", "test.read_all", "test.write"} })
		_, err = h.client.GetAll(bearer(t, all), &testpb.GetAllRequest{})
		wantRateLimited(t, err, methodGetAll, "azp:a", lim, time.Hour)
		for _, k := range cl.asked() {
			if k.Consumer != "azp:a" {
				t.Fatalf("the limiter was asked about %q", k.Consumer)
			}
		}
		if n := len(cl.asked()); n != 9 {
			t.Fatalf("the limiter was asked %d times, want 9", n)
		}
		// Another consumer is untouched.
		other := h.token(t, azp("b"), func(c *token.Claims) { c.Permissions = []string{"test.read_all"} })
		for i := range 3 {
			if _, err := h.client.GetAll(bearer(t, other), &testpb.GetAllRequest{}); err != nil {
				t.Fatalf("consumer b call %d: %v", i+1, err)
			}
		}
		if h.reached() != 3 {
			t.Fatalf("handler reached %d times, want 3", h.reached())
		}
	})
}

// WithRateLimitHeaders: the draft headers travel in the response headers of
// admitted and refused calls, unary and streaming, and never in trailers.
// At 3 per minute with a burst of 3 a token takes 20 s, the bucket 60 s.
func TestRateLimitHeaders(t *testing.T) {
	lim := throttle.Limit{Rate: 3, Per: time.Minute, Burst: 3}
	quoted := func(m string) string { return `"` + m + `"` }
	noneIn := func(t *testing.T, what string, md metadata.MD) {
		t.Helper()
		for _, k := range []string{"ratelimit-policy", "ratelimit"} {
			if v := md.Get(k); len(v) != 0 {
				t.Fatalf("%s carry %s: %q", what, k, v)
			}
		}
	}
	want := func(t *testing.T, md metadata.MD, method string, remaining, reset int) {
		t.Helper()
		if diff := cmp.Diff([]string{quoted(method) + ";q=3;w=60"}, md.Get("ratelimit-policy")); diff != "" {
			t.Fatalf("ratelimit-policy (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{fmt.Sprintf("%s;r=%d;t=%d", quoted(method), remaining, reset)}, md.Get("ratelimit")); diff != "" {
			t.Fatalf("ratelimit (-want +got):\n%s", diff)
		}
	}

	t.Run("unary", func(t *testing.T) {
		h := newThrottleHarness(t, lim, WithRateLimitHeaders())
		tok := h.token(t, azp("a"))
		for i := range 3 {
			var hdr, tr metadata.MD
			if err := h.get(t, tok, grpc.Header(&hdr), grpc.Trailer(&tr)); err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
			want(t, hdr, methodGet, 2-i, 20*(i+1))
			noneIn(t, "trailers", tr)
		}
		var hdr, tr metadata.MD
		err := h.get(t, tok, grpc.Header(&hdr), grpc.Trailer(&tr))
		wantRateLimited(t, err, methodGet, "azp:a", lim, 20*time.Second)
		want(t, hdr, methodGet, 0, 60)
		noneIn(t, "trailers of a refused call", tr)
	})

	t.Run("server stream", func(t *testing.T) {
		h := newThrottleHarness(t, lim, WithRateLimitHeaders())
		tok := h.token(t, azp("a"))
		for i := range 4 {
			stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			hdr, err := stream.Header()
			if err != nil {
				t.Fatalf("stream %d: header: %v", i+1, err)
			}
			_, rerr := stream.Recv()
			if i < 3 {
				if rerr != nil {
					t.Fatalf("stream %d: %v", i+1, rerr)
				}
				want(t, hdr, methodList, 2-i, 20*(i+1))
				if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
					t.Fatalf("stream %d end: %v", i+1, err)
				}
			} else {
				wantRateLimited(t, rerr, methodList, "azp:a", lim, 20*time.Second)
				want(t, hdr, methodList, 0, 60)
			}
			noneIn(t, "trailers", stream.Trailer())
		}
	})

	t.Run("without the option", func(t *testing.T) {
		h := newThrottleHarness(t, lim)
		tok := h.token(t, azp("a"))
		for i := range 4 {
			var hdr, tr metadata.MD
			err := h.get(t, tok, grpc.Header(&hdr), grpc.Trailer(&tr))
			if i == 3 {
				wantRateLimited(t, err, methodGet, "azp:a", lim, 20*time.Second)
			} else if err != nil {
				t.Fatal(err)
			}
			noneIn(t, "headers", hdr)
			noneIn(t, "trailers", tr)
		}
	})
}

// errLimiter cannot decide anything.
type errLimiter struct {
	err   error
	calls atomic.Int64
}

func (l *errLimiter) Allow(context.Context, throttle.Key, throttle.Limit, int) (throttle.Decision, error) {
	l.calls.Add(1)
	return throttle.Decision{}, l.err
}

// A limiter that cannot decide refuses the call with Unavailable (no
// details, nothing of the cause), before the handler, on every kind of
// call; the stub proves the guard asked it.
func TestLimiterErrorIsUnavailable(t *testing.T) {
	for _, cause := range []error{
		errors.New("connection refused"),
		fmt.Errorf("%w: breaker open", throttle.ErrUnavailable),
	} {
		t.Run(cause.Error(), func(t *testing.T) {
			stub := &errLimiter{err: cause}
			h := newHarness(t, withGuardOptions(WithLimiter(stub), WithDefaultThrottle(throttle.Limit{Rate: 1, Per: time.Second, Burst: 1}), WithRateLimitHeaders()))
			tok := h.token(t)
			var hdr metadata.MD
			wantCodeOnly(t, h.get(t, tok, grpc.Header(&hdr)), codes.Unavailable, msgLimiterDn)
			if len(hdr.Get("ratelimit")) != 0 {
				t.Fatalf("rate-limit headers without a decision: %v", hdr)
			}
			_, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{})
			wantCodeOnly(t, err, codes.Unavailable, msgLimiterDn)
			stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			wantCodeOnly(t, err, codes.Unavailable, msgLimiterDn)
			h.wantNotReached(t)
			if n := stub.calls.Load(); n != 3 {
				t.Fatalf("limiter asked %d times, want 3", n)
			}
		})
	}
}

// throttle.Shadow: calls beyond the limit still pass, and each one the
// limit would have refused is reported with its key and the real decision.
func TestShadowLimiterAdmitsAndReports(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Minute, Burst: 2}
	type report struct {
		key throttle.Key
		d   throttle.Decision
	}
	var (
		mu      sync.Mutex
		reports []report
	)
	lc := &lateClock{}
	shadow, err := throttle.Shadow(mustMemory(t, throttle.WithMemoryClock(lc.Now)), func(_ context.Context, k throttle.Key, d throttle.Decision) {
		mu.Lock()
		reports = append(reports, report{k, d})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs reasonCounter
	h := newHarness(t, withGuardOptions(WithLimiter(shadow), WithDefaultThrottle(lim), WithLogger(slog.New(&logs)), WithLogLimit(throttle.Limit{})))
	lc.c.Store(h.clock)
	tok := h.token(t, azp("a"))
	for i := range 5 {
		if err := h.get(t, tok); err != nil {
			t.Fatalf("call %d under a shadow limiter: %v", i+1, err)
		}
	}
	if h.reached() != 5 {
		t.Fatalf("handler reached %d times, want 5", h.reached())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 3 {
		t.Fatalf("%d reports, want 3 (calls 3 to 5)", len(reports))
	}
	for _, r := range reports {
		if r.key != (throttle.Key{Consumer: "azp:a", Bucket: methodGet}) || r.d.Allowed || r.d.RetryAfter != time.Minute {
			t.Fatalf("report %+v, want a refusal of a/%s with RetryAfter 1m", r, methodGet)
		}
	}
	if n := logs.count("RATE_LIMITED_SHADOW"); n != 3 {
		t.Fatalf("%d shadow records logged, want 3", n)
	}
}

// 20 goroutines × 50 calls of one consumer against a burst of 100 on a
// frozen clock (run with -race): exactly 100 pass, the handler runs exactly
// 100 times, and every other call is RATE_LIMITED.
func TestThrottleConcurrentExact(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 100}
	h := newThrottleHarness(t, lim)
	tok := h.token(t, azp("a"))
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
				_, err := h.client.Get(ctx, &testpb.GetRequest{})
				cancel()
				st := status.Convert(err)
				switch {
				case err == nil:
					ok.Add(1)
				case st.Code() == codes.ResourceExhausted && st.Message() == msgLimited:
					limited.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 || limited.Load() != 900 || h.reached() != 100 {
		t.Fatalf("%d admitted, %d limited, handler reached %d times; want 100, 900, 100", ok.Load(), limited.Load(), h.reached())
	}
}

// guardedServer is a guard on a gRPC server of the test's own services,
// for services the harness does not register: real gRPC on loopback TCP.
type guardedServer struct {
	clock    *fakeClock
	key      *testKey
	verifier *token.Verifier
	guard    *Guard
	conn     *grpc.ClientConn
}

// newGuardedServer builds the verifier on a fake clock, the guard with the
// options opts returns for it (after WithAuthFailureLimit(zero), as in the
// harness), registers services with register, and serves.
func newGuardedServer(t *testing.T, opts func(v *token.Verifier) []Option, register func(s *grpc.Server)) *guardedServer {
	t.Helper()
	gs := &guardedServer{clock: newFakeClock(), key: newTestKey(t, testKID)}
	ks, err := token.NewKeySet(gs.key.key)
	if err != nil {
		t.Fatal(err)
	}
	gs.verifier, err = token.NewVerifier(ks, testIss, testAud, token.WithClock(gs.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	gopts := []Option{WithAuthFailureLimit(throttle.Limit{}), WithAfterFunc(gs.clock.AfterFunc)}
	if opts != nil {
		gopts = append(gopts, opts(gs.verifier)...)
	}
	gs.guard, err = NewGuard(gs.verifier, gopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.guard.Close) // after the server's stop, registered below
	srv := grpc.NewServer(gs.guard.ServerOptions()...)
	register(srv)
	if err := gs.guard.Init(srv); err != nil {
		t.Fatalf("Init: %v", err)
	}
	gs.conn = loopback.Serve(t, srv)
	return gs
}

// ruledService is a service declared here, with throttle rules in its
// method options (test.proto declares none): A and B share the bucket
// "shared", C costs 2 in a bucket of its own, D has no throttle of its own.
const ruledService = "tollgate.throttletest.v1.RuledService"

func ruledFiles(t *testing.T) *protoregistry.Files {
	t.Helper()
	rule := func(th *tollgatev1.Throttle) *descriptorpb.MethodOptions {
		o := &descriptorpb.MethodOptions{}
		proto.SetExtension(o, tollgatev1.E_Method, &tollgatev1.Rule{Permissions: []string{"test.read"}, Throttle: th})
		return o
	}
	hour := durationpb.New(time.Hour)
	method := func(name string, o *descriptorpb.MethodOptions) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(name),
			InputType:  proto.String(".tollgate.testpb.v1.GetRequest"),
			OutputType: proto.String(".tollgate.testpb.v1.GetResponse"),
			Options:    o,
		}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("tollgate/throttletest/v1/ruled.proto"),
		Package:    proto.String("tollgate.throttletest.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"tollgate/v1/options.proto", "tollgate/testpb/v1/test.proto"},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("RuledService"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("A", rule(&tollgatev1.Throttle{Rate: 1, Per: hour, Burst: 3, Bucket: "shared"})),
				method("B", rule(&tollgatev1.Throttle{Rate: 1, Per: hour, Burst: 3, Bucket: "shared"})),
				method("C", rule(&tollgatev1.Throttle{Rate: 1, Per: hour, Burst: 3, Cost: 2})),
				method("D", rule(nil)),
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("building the test descriptor: %v", err)
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

// registerRuled registers RuledService with handlers that count in reached.
func registerRuled(s *grpc.Server, reached *atomic.Int64) {
	desc := grpc.ServiceDesc{ServiceName: ruledService, HandlerType: (*any)(nil)}
	for _, name := range []string{"A", "B", "C", "D"} {
		full := "/" + ruledService + "/" + name
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(testpb.GetRequest)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(context.Context, any) (any, error) {
					reached.Add(1)
					return &testpb.GetResponse{Id: name}, nil
				}
				if ic == nil {
					return h(ctx, in)
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, h)
			},
		})
	}
	s.RegisterService(&desc, struct{}{})
}

// Throttles declared in a method rule: two methods naming one bucket share
// it, a cost takes that many tokens, the draft headers name the bucket, and
// a method without a throttle of its own falls back to the default
// throttle in a bucket of its own.
func TestRuleThrottleBucketsAndCost(t *testing.T) {
	files := ruledFiles(t)
	def := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 1}
	var reached atomic.Int64
	lc := &lateClock{}
	gs := newGuardedServer(t, func(*token.Verifier) []Option {
		return []Option{
			WithRegistry(files, protoregistry.GlobalTypes),
			WithLimiter(mustMemory(t, throttle.WithMemoryClock(lc.Now))),
			WithDefaultThrottle(def),
			WithRateLimitHeaders(),
		}
	}, func(s *grpc.Server) { registerRuled(s, &reached) })
	lc.c.Store(gs.clock)
	// A token of consumer "a" issued at the current fake time.
	tokenNow := func() string {
		c := claims(gs.clock.Now())
		c.AuthorizedParty = "a"
		return gs.key.sign(t, c)
	}
	tok := tokenNow()
	call := func(m string, hdr *metadata.MD) error {
		return gs.conn.Invoke(bearer(t, tok), "/"+ruledService+"/"+m, &testpb.GetRequest{}, &testpb.GetResponse{}, grpc.Header(hdr))
	}
	ruled := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}

	for i, m := range []string{"A", "B", "A"} {
		var hdr metadata.MD
		if err := call(m, &hdr); err != nil {
			t.Fatalf("call %d (%s): %v", i+1, m, err)
		}
		if diff := cmp.Diff([]string{`"shared";q=3;w=10800`}, hdr.Get("ratelimit-policy")); diff != "" {
			t.Fatalf("%s ratelimit-policy (-want +got):\n%s", m, diff)
		}
		if diff := cmp.Diff([]string{fmt.Sprintf(`"shared";r=%d;t=%d`, 2-i, 3600*(i+1))}, hdr.Get("ratelimit")); diff != "" {
			t.Fatalf("%s ratelimit (-want +got):\n%s", m, diff)
		}
	}
	var hdr metadata.MD
	wantRateLimited(t, call("B", &hdr), "shared", "azp:a", ruled, time.Hour)
	wantRateLimited(t, call("A", &hdr), "shared", "azp:a", ruled, time.Hour)

	cBucket := "/" + ruledService + "/C"
	if err := call("C", &hdr); err != nil {
		t.Fatalf("C: %v", err)
	}
	// Cost 2 of 3: one token left, not enough; two more take an hour.
	wantRateLimited(t, call("C", &hdr), cBucket, "azp:a", ruled, time.Hour)
	gs.clock.Advance(time.Hour)
	tok = tokenNow() // the first one has expired
	if err := call("C", &hdr); err != nil {
		t.Fatalf("C after an hour: %v", err)
	}

	dBucket := "/" + ruledService + "/D"
	if err := call("D", &hdr); err != nil {
		t.Fatalf("D: %v", err)
	}
	wantRateLimited(t, call("D", &hdr), dBucket, "azp:a", def, time.Hour)
	if reached.Load() != 6 {
		t.Fatalf("handlers reached %d times, want 6", reached.Load())
	}
}
