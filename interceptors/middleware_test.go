package interceptors

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mw "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Composition with go-grpc-middleware v2, on real servers over loopback.

// mwLog is a go-grpc-middleware logging.Logger keeping every line, with
// its fields, as "msg k=v k=v".
type mwLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *mwLog) Log(_ context.Context, _ logging.Level, msg string, fields ...any) {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&b, " %v=%v", fields[i], fields[i+1])
	}
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
}

func (l *mwLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// composed builds the recommended chain: recovery outermost, then the
// guard, then go-grpc-middleware's logging, plus the guard's transport
// bounds.
func composed(lines *mwLog) func(g *Guard) []grpc.ServerOption {
	return func(g *Guard) []grpc.ServerOption {
		events := logging.WithLogOnEvents(logging.StartCall, logging.FinishCall)
		// go-grpc-middleware's default recovery handler sends the panic
		// and its stack trace to the caller: always replace it.
		recovered := recovery.WithRecoveryHandler(func(any) error { return status.Error(codes.Internal, "internal error") })
		return append(g.TransportOptions(),
			grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recovered), g.UnaryServerInterceptor(), logging.UnaryServerInterceptor(lines, events)),
			grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(recovered), g.StreamServerInterceptor(), logging.StreamServerInterceptor(lines, events)),
		)
	}
}

// With WithLoggingFields, go-grpc-middleware's logging interceptor chained
// after the guard logs the caller's consumer, subject and jti fingerprint on
// unary calls and streams; never the token. Without the option it logs no
// identity.
func TestLoggingFieldsInGoGRPCMiddlewareLog(t *testing.T) {
	lines := &mwLog{}
	h := newHarness(t, withGuardOptions(WithLoggingFields()), withPlainServer(composed(lines)))
	tok := h.token(t, func(c *token.Claims) { c.AuthorizedParty = "orders"; c.ID = "jti-1" })
	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "x"}); err != nil {
		t.Fatal(err)
	}
	list, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := list.Recv(); err != nil {
			break
		}
	}
	got := lines.all()
	want := []string{
		LogFieldConsumer + "=azp:orders",
		LogFieldSubject + "=alice",
		LogFieldJTI + "=" + session.Fingerprint("jti-1"),
	}
	for _, method := range []string{"grpc.method=Get", "grpc.method=List"} {
		finished := 0
		for _, l := range got {
			if !strings.Contains(l, method) || !strings.HasPrefix(l, "finished call") {
				continue
			}
			finished++
			for _, w := range want {
				if !strings.Contains(l, w) {
					t.Errorf("log line %q lacks %q", l, w)
				}
			}
		}
		if finished != 1 {
			t.Errorf("%d finished-call lines for %s in %q, want 1", finished, method, got)
		}
	}
	for _, l := range got {
		if strings.Contains(l, tok) || strings.Contains(l, segments(tok)[2]) {
			t.Fatalf("a log line carries the token: %q", l)
		}
	}

	// Off by default.
	plain := &mwLog{}
	h = newHarness(t, withPlainServer(composed(plain)))
	if _, err := h.client.Get(bearer(t, h.token(t)), &testpb.GetRequest{Id: "x"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range plain.all() {
		if strings.Contains(l, LogFieldConsumer) || strings.Contains(l, LogFieldSubject) || strings.Contains(l, LogFieldJTI) {
			t.Fatalf("identity logged without WithLoggingFields: %q", l)
		}
	}
	if len(plain.all()) == 0 {
		t.Fatal("the logging interceptor logged nothing")
	}
}

// panicServer's Get panics: recovery, outermost, turns it into Internal.
type panicServer struct {
	testpb.UnimplementedTestServiceServer
}

func (panicServer) Get(context.Context, *testpb.GetRequest) (*testpb.GetResponse, error) {
	panic("handler bug")
}

// Recovery outside the guard turns a handler's panic into Internal, and
// the logging interceptor logged who started the call (a panic unwinds
// past its finished-call line; see the package documentation).
func TestRecoveryOutsideGuard(t *testing.T) {
	lines := &mwLog{}
	key := newTestKey(t, testKID)
	ks, _ := token.NewKeySet(key.key)
	v, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(newFakeClock().Now))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(v, WithLoggingFields(), WithAuthFailureLimit(throttle.Limit{}))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(composed(lines)(g)...)
	testpb.RegisterTestServiceServer(srv, panicServer{})
	if err := g.Init(srv); err != nil {
		t.Fatal(err)
	}
	conn := loopback.Serve(t, srv)
	_, err = testpb.NewTestServiceClient(conn).Get(bearer(t, key.sign(t, claims(t0))), &testpb.GetRequest{Id: "x"})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("panicking handler: %v, want Internal without the panic", err)
	}
	found := false
	for _, l := range lines.all() {
		found = found || (strings.HasPrefix(l, "started call") && strings.Contains(l, LogFieldSubject+"=alice"))
	}
	if !found {
		t.Fatalf("no started-call line with the subject: %q", lines.all())
	}
}

// AuthFunc through go-grpc-middleware's auth interceptor: the guard's
// checks and error contract on the methods it can check in full; Internal
// AUTHFUNC_UNSUPPORTED on those whose rule needs the request (a token field,
// ownership) and on streams; deny by default for a method with no rule.
func TestAuthFunc(t *testing.T) {
	fc := newFakeClock()
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}
	var mu sync.Mutex
	var subjects []string
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mu.Lock()
		subjects = append(subjects, subjectOf(ctx))
		mu.Unlock()
		return handler(ctx, req)
	}
	h := newHarness(t,
		withGuardOptions(WithLimiter(mustMemory(t, throttle.WithMemoryClock(fc.Now))), WithDefaultThrottle(lim)),
		withPlainServer(func(g *Guard) []grpc.ServerOption {
			// Taken, never installed: only so that Init accepts the server
			// and the streams reach AuthFunc, which must refuse them.
			_ = g.StreamServerInterceptor()
			return append(g.TransportOptions(),
				grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(g.AuthFunc()), record),
				grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(g.AuthFunc())),
			)
		}))
	alpha := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.read", "test.alpha"} })

	// Checked in full.
	_, err := h.client.Either(ctxWith(t), &testpb.EitherRequest{})
	wantMissing(t, err)
	_, err = h.client.Either(bearer(t, "not.a.token"), &testpb.EitherRequest{})
	wantInvalid(t, err)
	_, err = h.client.Either(bearer(t, h.token(t)), &testpb.EitherRequest{})
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.alpha,test.beta", "any_of": "true"})
	_, err = h.client.GetAll(bearer(t, h.token(t)), &testpb.GetAllRequest{})
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
	if _, err := h.client.Either(bearer(t, alpha), &testpb.EitherRequest{}); err != nil {
		t.Fatalf("Either with test.alpha: %v", err)
	}
	if _, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{}); err != nil {
		t.Fatalf("public Ping: %v", err)
	}
	_, err = h.unruled.Forgotten(bearer(t, alpha), &testpb.ForgottenRequest{})
	wantNoRule(t, err)
	if h.reached() != 2 {
		t.Fatalf("handlers reached %d times, want 2", h.reached())
	}
	mu.Lock()
	if len(subjects) != 2 || subjects[0] != "alice" || subjects[1] != "" {
		t.Errorf("sessions after AuthFunc %q, want [alice, none for public Ping]", subjects)
	}
	mu.Unlock()

	// The throttle: "sub:alice" has used 2 of the burst of 3 on Either
	// (the refusal charged too), so one more passes and the next is
	// throttled.
	if _, err := h.client.Either(bearer(t, alpha), &testpb.EitherRequest{}); err != nil {
		t.Fatalf("third Either: %v", err)
	}
	_, err = h.client.Either(bearer(t, alpha), &testpb.EitherRequest{})
	wantRateLimited(t, err, "/tollgate.testpb.v1.TestService/Either", "sub:alice", lim, time.Hour)

	// Never let through what AuthFunc cannot check.
	unsupported := func(what string, err error) {
		t.Helper()
		wantStatus(t, err, codes.Internal, "tollgate guard misconfigured", ReasonAuthFuncUnsupported, nil)
	}
	_, err = h.client.Get(bearer(t, alpha), &testpb.GetRequest{Id: "x"})
	unsupported("Get (token field)", err)
	_, err = h.client.Update(bearer(t, alpha), &testpb.UpdateRequest{})
	unsupported("Update (ownership)", err)
	list, err := h.client.List(bearer(t, alpha), &testpb.ListRequest{Count: 1})
	if err == nil {
		_, err = list.Recv()
	}
	unsupported("List (a stream)", err)
	if h.reached() != 3 {
		t.Fatalf("handlers reached %d times, want 3", h.reached())
	}
}

// Init accepts a guard taken as an AuthFunc for the unary methods, and
// still demands the stream interceptor when streams are registered; it
// compiles the rules either way.
func TestInitWithAuthFunc(t *testing.T) {
	newGuard := func() *Guard {
		ks, _ := token.NewKeySet(newTestKey(t, testKID).key)
		v, err := token.NewVerifier(ks, testIss, testAud)
		if err != nil {
			t.Fatal(err)
		}
		g, err := NewGuard(v)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := newGuard()
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(g.AuthFunc())))
	testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
	err := g.Init(srv)
	if err == nil || !strings.Contains(err.Error(), "stream interceptor") || strings.Contains(err.Error(), "unary interceptor") {
		t.Fatalf("Init with only AuthFunc and streams registered: %v, want the stream interceptor missing", err)
	}

	g = newGuard()
	srv = grpc.NewServer(grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(g.AuthFunc())),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()))
	testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
	if err := g.Init(srv); err != nil {
		t.Fatalf("Init with AuthFunc and the stream interceptor: %v", err)
	}
	if r, ok := g.Table().Rule(methodGet); !ok || r == nil {
		t.Fatal("Init did not compile the rules")
	}
}

// go-grpc-middleware's selector around the guard skips it entirely for the
// methods it does not match: a method with no rule, which the guard denies,
// is served to anyone without a token. The safe way to exempt a method is a
// rule (the .proto's public) or WithPublicMethods: the guard still sees the
// call, throttles it by peer, and keeps denying every other unruled method.
func TestSelectorBypassesTheGuard(t *testing.T) {
	t.Run("selector skips the guard: deny by default bypassed", func(t *testing.T) {
		exempt := selector.MatchFunc(func(_ context.Context, c mw.CallMeta) bool { return c.FullMethod() != methodForgotten })
		h := newHarness(t, withPlainServer(func(g *Guard) []grpc.ServerOption {
			return append(g.TransportOptions(),
				grpc.ChainUnaryInterceptor(selector.UnaryServerInterceptor(g.UnaryServerInterceptor(), exempt)),
				grpc.ChainStreamInterceptor(selector.StreamServerInterceptor(g.StreamServerInterceptor(), exempt)))
		}))
		if _, err := h.unruled.Forgotten(ctxWith(t), &testpb.ForgottenRequest{}); err != nil {
			t.Fatalf("the selector should have let the unruled method through (this test documents the bypass): %v", err)
		}
		if h.reached() != 1 {
			t.Fatalf("reached %d, want 1", h.reached())
		}
	})
	t.Run("the guard in front, the method made public", func(t *testing.T) {
		h := newHarness(t, withGuardOptions(WithPublicMethods(methodForgotten)))
		if _, err := h.unruled.Forgotten(ctxWith(t), &testpb.ForgottenRequest{}); err != nil {
			t.Fatalf("Forgotten made public: %v", err)
		}
		if _, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{}); err != nil {
			t.Fatalf("Ping, public in the .proto: %v", err)
		}
		if h.reached() != 2 {
			t.Fatalf("reached %d, want 2", h.reached())
		}
		// Everything else is still checked.
		_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{Id: "x"})
		wantMissing(t, err)
		s, err := h.unruled.ForgottenStream(bearer(t, h.token(t)))
		if err == nil {
			_, err = s.Recv()
		}
		wantNoRule(t, err)
		if h.reached() != 2 {
			t.Fatalf("reached %d after refused calls, want 2", h.reached())
		}
	})
	t.Run("without either, the unruled method is denied", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.unruled.Forgotten(ctxWith(t), &testpb.ForgottenRequest{})
		wantNoRule(t, err)
		h.wantNotReached(t)
	})
}

// A RateLimiter after the guard keys on the session's consumer, per
// method; before any session (a public method) on the peer. Through its
// own interceptor a refusal carries the guard's details; through
// go-grpc-middleware's ratelimit interceptor only the code survives.
func TestRateLimiter(t *testing.T) {
	fc := newFakeClock()
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 2}
	for _, tc := range []struct {
		name    string
		chain   func(rl *RateLimiter) grpc.UnaryServerInterceptor
		details bool
	}{
		{"own interceptor", func(rl *RateLimiter) grpc.UnaryServerInterceptor { return rl.UnaryServerInterceptor() }, true},
		{"go-grpc-middleware ratelimit", func(rl *RateLimiter) grpc.UnaryServerInterceptor { return ratelimit.UnaryServerInterceptor(rl) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl, err := NewRateLimiter(mustMemory(t, throttle.WithMemoryClock(fc.Now)), lim, 1)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, withPlainServer(func(g *Guard) []grpc.ServerOption {
				return append(g.TransportOptions(),
					grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor(), tc.chain(rl)),
					grpc.ChainStreamInterceptor(g.StreamServerInterceptor(), rl.StreamServerInterceptor()))
			}))
			alice := h.token(t)
			bob := h.token(t, func(c *token.Claims) { c.Subject = "bob" })
			limited := func(err error, bucket, subject string) {
				t.Helper()
				if tc.details {
					wantRateLimited(t, err, bucket, subject, lim, time.Hour)
				} else if status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("got %v, want ResourceExhausted", err)
				}
			}
			for range 2 {
				if _, err := h.client.Get(bearer(t, alice), &testpb.GetRequest{Id: "x"}); err != nil {
					t.Fatal(err)
				}
			}
			_, err = h.client.Get(bearer(t, alice), &testpb.GetRequest{Id: "x"})
			limited(err, methodGet, "sub:alice")
			// Another consumer, and another method, have buckets of their own.
			if _, err := h.client.Get(bearer(t, bob), &testpb.GetRequest{Id: "x"}); err != nil {
				t.Fatalf("bob: %v", err)
			}
			if _, err := h.client.GetAll(bearer(t, h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.read", "test.read_all"} })), &testpb.GetAllRequest{}); err != nil {
				t.Fatalf("alice on GetAll: %v", err)
			}
			// A public method: keyed on the peer.
			for range 2 {
				if _, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			_, err = h.client.Ping(ctxWith(t), &testpb.PingRequest{})
			limited(err, methodPing, peerLoopback)
		})
	}
	if _, err := NewRateLimiter(nil, lim, 1); err == nil {
		t.Error("NewRateLimiter(nil) succeeded")
	}
	if _, err := NewRateLimiter(mustMemory(t), throttle.Limit{}, 1); err == nil {
		t.Error("NewRateLimiter with a zero limit succeeded")
	}
}

// TransportOptions are ServerOptions' transport bounds, without the
// interceptors; zero settings leave them out.
func TestTransportOptions(t *testing.T) {
	ks, _ := token.NewKeySet(newTestKey(t, testKID).key)
	v, err := token.NewVerifier(ks, testIss, testAud)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(v)
	if err != nil {
		t.Fatal(err)
	}
	if n, all := len(g.TransportOptions()), len(g.ServerOptions()); n != 2 || all != 4 {
		t.Fatalf("TransportOptions %d, ServerOptions %d; want 2 and 4", n, all)
	}
	g, err = NewGuard(v, WithMaxHeaderListSize(0), WithMaxConcurrentStreams(0))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(g.TransportOptions()); n != 0 {
		t.Fatalf("TransportOptions with both bounds off: %d options", n)
	}
	// The header cap is in force on a server composed by hand with them.
	lines := &mwLog{}
	h := newHarness(t, withPlainServer(composed(lines)))
	big := strings.Repeat("x", DefaultMaxHeaderListSize)
	_, err = h.client.Ping(ctxWith(t, "x-big", big), &testpb.PingRequest{})
	if err == nil {
		t.Fatal("a header list over the cap was accepted by a server composed with TransportOptions")
	}
}

// A call through AuthFunc inside its token's renewal window gets the
// renewed token in its trailer, like a call through the guard's own
// interceptor; one outside the window gets none.
func TestAuthFuncRenews(t *testing.T) {
	r := &testRenewer{}
	h := newRenewalHarness(t, r, withPlainServer(func(g *Guard) []grpc.ServerOption {
		_ = g.StreamServerInterceptor() // taken so that Init accepts the streams
		return append(g.TransportOptions(), grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(g.AuthFunc())))
	}))
	either := func(tok string) string {
		t.Helper()
		var tr metadata.MD
		if _, err := h.client.Either(bearer(t, tok), &testpb.EitherRequest{}, grpc.Trailer(&tr)); err != nil {
			t.Fatalf("Either: %v", err)
		}
		return renewedIn(t, tr)
	}
	alpha := func(c *token.Claims) { c.Permissions = []string{"test.read", "test.alpha"} }
	if got := either(h.token(t, alpha, renewable)); got != "" {
		t.Fatalf("a token outside its window came back renewed")
	}
	old := h.token(t, alpha, inWindow)
	renewed := either(old)
	if renewed == "" || renewed == old {
		t.Fatalf("no renewed token in the trailer of a call inside the window (renewer called %d times)", r.calls.Load())
	}
	sess, err := h.verifier.Verify(context.Background(), renewed)
	if err != nil {
		t.Fatalf("the renewed token does not verify: %v", err)
	}
	if sess.SessionID() != "sid-1" || sess.Subject() != "alice" {
		t.Fatalf("renewed session %q of %q, want sid-1 of alice", sess.SessionID(), sess.Subject())
	}
}
