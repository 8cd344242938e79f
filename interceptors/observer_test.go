package interceptors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Tests of the observer hook over real gRPC on loopback TCP: what events
// every kind of call, refusal and renewal produces, and that an observer
// that panics changes nothing.

// recorder is an InitObserver that keeps every event; wait blocks until a
// predicate holds over them.
type recorder struct {
	mu      sync.Mutex
	events  []Event
	info    []GuardInfo
	changed chan struct{} // closed and replaced on every event
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) Observe(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) ObserveInit(info GuardInfo) {
	r.mu.Lock()
	r.info = append(r.info, info)
	r.mu.Unlock()
}

// take returns the events so far and forgets them.
func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

// waitFor waits until n events have been recorded, then takes them.
func (r *recorder) waitFor(t *testing.T, n int) []Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got, ch := len(r.events), r.changed
		r.mu.Unlock()
		if got >= n {
			return r.take()
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d events after 10 s, want %d: %v", got, n, r.take())
		}
	}
}

// ev is the part of an Event the tests compare.
type ev struct {
	method   string
	decision Decision
	stage    Stage
	reason   string
	bucket   string
	consumer string
	cache    Cache
}

func (e ev) String() string {
	return fmt.Sprintf("{%s %v %v %q bucket=%q consumer=%q cache=%v}", e.method, e.decision, e.stage, e.reason, e.bucket, e.consumer, e.cache)
}

func short(events []Event) []ev {
	out := make([]ev, len(events))
	for i, e := range events {
		out[i] = ev{e.Method, e.Decision, e.Stage, e.Reason, e.Bucket, e.Consumer, e.Cache}
	}
	return out
}

func wantEvents(t *testing.T, got []Event, want ...ev) {
	t.Helper()
	g := short(got)
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("events:\n got %v\nwant %v", g, want)
	}
	for _, e := range got {
		if e.Cache == CacheMiss && e.VerifyDuration <= 0 {
			t.Errorf("a verification (cache miss) timed at %v", e.VerifyDuration)
		}
	}
}

const alice = "sub:alice"

// Unary calls: one event each, with the reason the caller sees, and the
// consumer only once it is verified.
func TestObserverUnaryDecisions(t *testing.T) {
	rec := newRecorder()
	h := newHarness(t, withGuardOptions(WithObserver(rec)))
	tok := h.token(t)

	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "x"}); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, rec.take(),
		ev{methodGet, DecisionAllowed, StageCall, "", "", alice, CacheMiss},
		ev{methodGet, DecisionAllowed, StageCall, "", "", alice, CacheHit})

	_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{})
	wantMissing(t, err)
	_, err = h.client.Get(bearer(t, "a.b.c"), &testpb.GetRequest{})
	wantInvalid(t, err)
	_, err = h.client.Get(bearer(t, h.token(t, func(c *token.Claims) {
		c.IssuedAt = c.IssuedAt.Add(-time.Hour + time.Minute)
		c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute)
	})), &testpb.GetRequest{})
	wantExpired(t, err)
	wantEvents(t, rec.take(),
		ev{methodGet, DecisionUnauthenticated, StageCall, ReasonTokenMissing, "", "", CacheMiss},
		ev{methodGet, DecisionUnauthenticated, StageCall, ReasonTokenInvalid, "", "", CacheMiss},
		ev{methodGet, DecisionUnauthenticated, StageCall, ReasonTokenExpired, "", "", CacheMiss})

	_, err = h.client.GetAll(bearer(t, tok), &testpb.GetAllRequest{})
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
	_, err = h.client.Update(bearer(t, tok), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o2"}})
	wantNotOwner(t, err, "owner.id")
	_, err = h.unruled.Forgotten(bearer(t, tok), &testpb.ForgottenRequest{})
	wantNoRule(t, err)
	if _, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, rec.take(),
		ev{methodGetAll, DecisionDenied, StageCall, "PERMISSION_DENIED", "", alice, CacheHit},
		ev{methodUpdate, DecisionDenied, StageCall, "NOT_OWNER", "", alice, CacheHit},
		ev{methodForgotten, DecisionDenied, StageCall, "PERMISSION_DENIED", "", "", CacheNone},
		ev{methodPing, DecisionAllowed, StageCall, "", "", peerLoopback, CacheNone})

	// ObserveInit saw the compiled methods, public ones marked.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.info) != 1 {
		t.Fatalf("ObserveInit called %d times, want 1", len(rec.info))
	}
	var ping, get bool
	for _, m := range rec.info[0].Methods {
		ping = ping || (m.FullMethod == methodPing && m.Public)
		get = get || (m.FullMethod == methodGet && !m.Public)
	}
	if !ping || !get || rec.info[0].BreakerOpen != nil {
		t.Fatalf("GuardInfo %+v", rec.info[0])
	}
}

// Throttled calls name their bucket and consumer; a peer over its
// failed-authentication budget is throttled in a bucket of its own.
func TestObserverThrottled(t *testing.T) {
	rec := newRecorder()
	h := newThrottleHarness(t, throttle.Limit{Rate: 1, Per: time.Hour, Burst: 2}, WithObserver(rec),
		WithAuthFailureLimit(throttle.Limit{Rate: 1, Per: time.Hour, Burst: 1}))
	tok := h.token(t)
	for range 2 {
		if err := h.get(t, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.get(t, tok); codes.ResourceExhausted != statusCode(err) {
		t.Fatalf("third call: %v", err)
	}
	_, err := h.client.GetAll(bearer(t, tok), &testpb.GetAllRequest{})
	if statusCode(err) != codes.PermissionDenied {
		t.Fatalf("GetAll: %v", err)
	}
	wantEvents(t, rec.take(),
		ev{methodGet, DecisionAllowed, StageCall, "", methodGet, alice, CacheMiss},
		ev{methodGet, DecisionAllowed, StageCall, "", methodGet, alice, CacheHit},
		ev{methodGet, DecisionThrottled, StageCall, ReasonRateLimited, methodGet, alice, CacheHit},
		ev{methodGetAll, DecisionDenied, StageCall, "PERMISSION_DENIED", methodGetAll, alice, CacheHit})

	// One forged token spends the peer's budget; the next is refused
	// before any check.
	for range 2 {
		_ = h.get(t, "a.b.c")
	}
	wantEvents(t, rec.take(),
		ev{methodGet, DecisionUnauthenticated, StageCall, ReasonTokenInvalid, methodGet, "", CacheMiss},
		ev{methodGet, DecisionThrottled, StageCall, ReasonRateLimited, authFailureBucket, peerLoopback, CacheMiss})
}

func statusCode(err error) codes.Code { return status.Code(err) }

// A limiter that cannot decide is an event of its own, beside the call's:
// its error (fail-closed: the call is unavailable), or a Failover's policy
// deciding instead (the call goes on). The guard hands the Failover's
// breaker to the observer.
func TestObserverLimiterErrors(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Second, Burst: 1}
	t.Run("error", func(t *testing.T) {
		rec := newRecorder()
		h := newHarness(t, withGuardOptions(WithObserver(rec), WithLimiter(&errLimiter{err: errors.New("down")}), WithDefaultThrottle(lim)))
		if err := h.get(t, h.token(t)); statusCode(err) != codes.Unavailable {
			t.Fatalf("Get: %v", err)
		}
		wantEvents(t, rec.take(),
			ev{methodGet, DecisionLimiterError, StageCall, ReasonLimiterUnavailable, methodGet, alice, CacheNone},
			ev{methodGet, DecisionUnavailable, StageCall, ReasonLimiterUnavailable, methodGet, alice, CacheMiss})
	})
	t.Run("failover", func(t *testing.T) {
		rec := newRecorder()
		f, err := throttle.NewFailover(&errLimiter{err: errors.New("down")}, throttle.FailOpen, throttle.WithFailoverBreaker(1, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, withGuardOptions(WithObserver(rec), WithLimiter(f), WithDefaultThrottle(lim)))
		if err := h.get(t, h.token(t)); err != nil {
			t.Fatalf("Get: %v", err)
		}
		got := rec.take()
		wantEvents(t, got,
			ev{methodGet, DecisionLimiterError, StageCall, ReasonLimiterUnavailable, methodGet, alice, CacheNone},
			ev{methodGet, DecisionAllowed, StageCall, "", methodGet, alice, CacheMiss})
		if got[0].LimiterSource != throttle.SourceFailOpen {
			t.Fatalf("limiter source %q", got[0].LimiterSource)
		}
		rec.mu.Lock()
		breaker := rec.info[0].BreakerOpen
		rec.mu.Unlock()
		if breaker == nil || !breaker() {
			t.Fatal("GuardInfo.BreakerOpen does not report the open breaker")
		}
	})
}

// Streams of all three kinds: the opening is one event; on client and bidi
// streams every message after the first is one more, and the message the
// guard refuses (not the owner, throttled) is the last.
func TestObserverStreams(t *testing.T) {
	t.Run("server stream List", func(t *testing.T) {
		rec := newRecorder()
		h := newHarness(t, withGuardOptions(WithObserver(rec)))
		stream, err := h.client.List(bearer(t, h.token(t)), &testpb.ListRequest{Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		drain(t, stream.Recv)
		wantEvents(t, rec.take(), ev{methodList, DecisionAllowed, StageCall, "", "", alice, CacheMiss})
	})
	t.Run("client stream Upload, not the owner", func(t *testing.T) {
		rec := newRecorder()
		h := newHarness(t, withGuardOptions(WithObserver(rec)))
		stream, err := h.client.Upload(bearer(t, h.token(t)))
		if err != nil {
			t.Fatal(err)
		}
		for _, owner := range []string{"o1", "o1", "o2", "o1"} {
			if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: owner}}); err != nil {
				break
			}
		}
		_, err = stream.CloseAndRecv()
		wantNotOwner(t, err, "owner.id")
		wantEvents(t, rec.take(),
			ev{methodUpload, DecisionAllowed, StageCall, "", "", alice, CacheMiss},
			ev{methodUpload, DecisionAllowed, StageMessage, "", "", alice, CacheNone},
			ev{methodUpload, DecisionDenied, StageMessage, "NOT_OWNER", "", alice, CacheNone})
	})
	t.Run("bidi Chat, throttled per message", func(t *testing.T) {
		rec := newRecorder()
		h := newThrottleHarness(t, throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}, WithObserver(rec))
		stream, err := h.client.Chat(bearer(t, h.token(t)))
		if err != nil {
			t.Fatal(err)
		}
		var last error
		for range 4 {
			if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1"}); err != nil {
				break
			}
			if _, last = stream.Recv(); last != nil {
				break
			}
		}
		if statusCode(last) != codes.ResourceExhausted {
			t.Fatalf("fourth message: %v", last)
		}
		wantEvents(t, rec.take(),
			ev{methodChat, DecisionAllowed, StageCall, "", methodChat, alice, CacheMiss},
			ev{methodChat, DecisionAllowed, StageMessage, "", methodChat, alice, CacheNone},
			ev{methodChat, DecisionAllowed, StageMessage, "", methodChat, alice, CacheNone},
			ev{methodChat, DecisionThrottled, StageMessage, ReasonRateLimited, methodChat, alice, CacheNone})
	})
	t.Run("too many streams, and an idle stream ended by its token's expiry", func(t *testing.T) {
		rec := newRecorder()
		h := newHarness(t, withGuardOptions(WithObserver(rec), WithMaxStreamsPerConsumer(1)))
		h.server.listWait = func(ctx context.Context, i int32) {
			if i == 1 {
				<-ctx.Done()
			}
		}
		tok := h.token(t)
		stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		second, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := second.Recv(); statusCode(err) != codes.ResourceExhausted {
			t.Fatalf("second stream: %v", err)
		}
		wantEvents(t, rec.take(),
			ev{methodList, DecisionAllowed, StageCall, "", "", alice, CacheMiss},
			ev{methodList, DecisionThrottled, StageCall, ReasonTooManyStreams, "", alice, CacheHit})
		h.clock.Advance(10*time.Minute + token.DefaultLeeway)
		_, err = stream.Recv()
		wantExpired(t, err)
		wantEvents(t, rec.waitFor(t, 1), ev{methodList, DecisionUnauthenticated, StageStream, ReasonTokenExpired, "", alice, CacheNone})
	})
}

func drain[T any](t *testing.T, recv func() (T, error)) {
	t.Helper()
	for {
		if _, err := recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			return
		}
	}
}

// A renewal's outcome is an event of its own, from the renewal's
// goroutine: renewed, or how it failed.
func TestObserverRenewal(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook func(ctx context.Context) error
		want RenewalResult
	}{
		{"renewed", nil, RenewalRenewed},
		{"failed", func(context.Context) error { return errors.New("issuer down") }, RenewalFailed},
		{"not renewable", func(context.Context) error { return token.ErrNotRenewable }, RenewalNotRenewable},
		{"timed out", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, RenewalTimedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			h := newRenewalHarness(t, &testRenewer{hook: tc.hook}, withGuardOptions(WithObserver(rec), WithRenewalTimeout(50*time.Millisecond)))
			if _, err := h.getRenewed(t, h.token(t, inWindow)); err != nil {
				t.Fatal(err)
			}
			got := rec.waitFor(t, 2)
			var renewal *Event
			for i := range got {
				if got[i].Decision == DecisionRenewed {
					renewal = &got[i]
				}
			}
			if renewal == nil || renewal.Renewal != tc.want || renewal.Method != methodGet || renewal.Consumer != "azp:web" {
				t.Fatalf("events %+v, want a renewal %v of %s for azp:web", got, tc.want, methodGet)
			}
		})
	}
}

// An observer that panics neither crashes the server nor changes any
// decision; the panic is logged.
func TestObserverPanicIsDropped(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	h := newHarness(t, withGuardOptions(WithLogger(logger), WithObserver(panicky{})))
	tok := h.token(t)
	for range 2 {
		if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "x"}); err != nil {
			t.Fatalf("allowed call after a panicking observer: %v", err)
		}
	}
	_, err := h.client.GetAll(bearer(t, tok), &testpb.GetAllRequest{})
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
	_, err = h.client.Get(ctxWith(t), &testpb.GetRequest{})
	wantMissing(t, err)
	stream, err := h.client.Upload(bearer(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := stream.CloseAndRecv(); err != nil || r.GetCount() != 2 {
		t.Fatalf("Upload: %v, %v", r, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "OBSERVER_PANIC") {
		t.Fatalf("the panic was not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), tok) {
		t.Fatal("the log holds the token")
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// panicky panics in both of an InitObserver's methods.
type panicky struct{}

func (panicky) Observe(Event)         { panic("observer bug") }
func (panicky) ObserveInit(GuardInfo) { panic("observer bug at init") }
