package interceptors

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/testpb"
	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
)

// Tests of renewal in the guard over real gRPC (security.md cases 32, 34
// and 35): the trailer "tollgate-renewed-token", single flight, streams,
// the renewal header, failures, and the client's TokenSource end to end.
// Tokens live ten minutes (the harness default), so the renewal window is
// their last 200 s.

var renewalPolicy = token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: 8 * time.Hour}

// testRenewer is the renewer the guard calls: it counts calls, runs hook
// first (a non-nil error is returned as the renewal's), then delegates to a
// LocalRenewer on the harness's verifier, set once the harness exists.
type testRenewer struct {
	inner atomic.Pointer[token.LocalRenewer]
	calls atomic.Int64
	hook  func(ctx context.Context) error
}

func (r *testRenewer) Renew(ctx context.Context, tok string, sess *session.Session) (token.Renewed, error) {
	r.calls.Add(1)
	if r.hook != nil {
		if err := r.hook(ctx); err != nil {
			return token.Renewed{}, err
		}
	}
	return r.inner.Load().Renew(ctx, tok, sess)
}

// newRenewalHarness returns a harness whose guard renews with r (policy
// renewalPolicy, grace 2 s so that every call sees the renewal it starts),
// then opts. The guard is closed, after the server stops, when the test
// ends.
func newRenewalHarness(t *testing.T, r *testRenewer, opts ...harnessOption) *harness {
	t.Helper()
	base := withGuardOptions(WithRenewal(r, renewalPolicy), WithRenewalGrace(2*time.Second))
	h := newHarness(t, append([]harnessOption{base}, opts...)...)
	lr, err := token.NewLocalRenewer(h.verifier, renewalPolicy)
	if err != nil {
		t.Fatal(err)
	}
	r.inner.Store(lr)
	t.Cleanup(func() {
		h.grpcSrv.Stop()
		h.guard.Close()
	})
	return h
}

// renewable edits claims into a renewable session: auth_time, sid, azp.
func renewable(c *token.Claims) {
	c.AuthTime = c.IssuedAt
	c.SessionID = "sid-1"
	c.AuthorizedParty = "web"
}

// inWindow edits claims issued at now into a token issued 8 minutes ago
// that expires in 2: inside its window (the last 200 s).
func inWindow(c *token.Claims) {
	c.IssuedAt = c.IssuedAt.Add(-8 * time.Minute)
	c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute)
	renewable(c)
}

// rotate gives the verifier a new signing key named kid beside the harness
// key (which still verifies the harness's tokens); any other key leaves the
// set.
func (h *harness) rotate(t *testing.T, kid string) {
	t.Helper()
	ks, err := token.NewKeySet(newTestKey(t, kid).key, h.key.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.verifier.SetKeys(ks); err != nil {
		t.Fatal(err)
	}
}

// renewedIn returns the renewed token in md, failing on more than one.
func renewedIn(t testing.TB, md metadata.MD) string {
	t.Helper()
	v := md.Get(RenewedTokenKey)
	if len(v) > 1 {
		t.Fatalf("%d renewed tokens, want at most 1", len(v))
	}
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// getRenewed makes a Get with tok and returns the call's error and the
// renewed token of its trailers ("" when none). A renewed token in the
// headers of a unary call fails the test.
func (h *harness) getRenewed(t testing.TB, tok string) (string, error) {
	t.Helper()
	var hdr, tr metadata.MD
	_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "item-1"}, grpc.Header(&hdr), grpc.Trailer(&tr))
	if v := hdr.Get(RenewedTokenKey); len(v) != 0 {
		t.Fatalf("renewed token in the headers of a unary call")
	}
	return renewedIn(t, tr), err
}

// tokenHeader decodes the JOSE header of a compact token.
func tokenHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	raw, err := b64url.DecodeString(segments(tok)[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr
}

// Case 32: a token outside its window (remaining > lifetime/3) gets no
// renewed token; inside it (remaining ≤ lifetime/3, the boundary included)
// the trailer carries a successor that verifies with the same verifier and
// keeps auth_time, sid, sub, aud, iss and azp, with a new jti, typ at+jwt,
// exp = now + TTL ≤ auth_time + MaxSession, signed by the current signing
// key (rotated here just before, so the old token's kid differs).
func TestCase32RenewalWindow(t *testing.T) {
	r := &testRenewer{}
	h := newRenewalHarness(t, r)
	tok := h.token(t, renewable, func(c *token.Claims) { c.ID = "jti-original" })
	old, err := h.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}

	for _, at := range []time.Duration{0, 6 * time.Minute, 399 * time.Second} { // 201 s left at 399 s
		h.clock.Advance(at - h.clock.Now().Sub(t0))
		renewed, err := h.getRenewed(t, tok)
		if err != nil {
			t.Fatalf("at +%v: %v", at, err)
		}
		if renewed != "" {
			t.Fatalf("at +%v (outside the window): a renewed token", at)
		}
	}
	if n := r.calls.Load(); n != 0 {
		t.Fatalf("renewer called %d times outside the window", n)
	}

	// Rotate: k2 signs from now on; k1 still verifies.
	h.rotate(t, "k2")
	h.clock.Advance(time.Second) // +400 s: 200 s left, exactly a third
	now := h.clock.Now()
	renewed, err := h.getRenewed(t, tok)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == "" {
		t.Fatal("no renewed token inside the window")
	}
	ns, err := h.verifier.Verify(context.Background(), renewed)
	if err != nil {
		t.Fatalf("the renewed token does not verify: %v", err)
	}
	switch {
	case !ns.AuthTime().Equal(old.AuthTime()) || !ns.AuthTime().Equal(t0):
		t.Errorf("auth_time %v, want %v", ns.AuthTime(), old.AuthTime())
	case ns.ID() == old.ID() || ns.ID() == "":
		t.Errorf("jti %q, want a new one", ns.ID())
	case ns.SessionID() != "sid-1" || ns.Subject() != old.Subject() || ns.Issuer() != testIss ||
		!slices.Equal(ns.Audience(), old.Audience()) || ns.AuthorizedParty() != "web":
		t.Errorf("identity changed: %v, was %v", ns, old)
	case !slices.Equal(ns.Permissions(), old.Permissions()):
		t.Errorf("perms %v, want %v", ns.Permissions(), old.Permissions())
	case !ns.ExpiresAt().Equal(now.Add(renewalPolicy.TTL)):
		t.Errorf("exp %v, want now + TTL = %v", ns.ExpiresAt(), now.Add(renewalPolicy.TTL))
	case ns.ExpiresAt().After(ns.AuthTime().Add(renewalPolicy.MaxSession)):
		t.Errorf("exp %v past auth_time + MaxSession", ns.ExpiresAt())
	case old.KeyID() != testKID || ns.KeyID() != "k2":
		t.Errorf("kid %q (old %q), want the current signing key k2", ns.KeyID(), old.KeyID())
	}
	if typ := tokenHeader(t, renewed)["typ"]; typ != "at+jwt" {
		t.Errorf("typ %v, want at+jwt", typ)
	}
	if owner, _ := ns.ClaimString("owner_id"); owner != "o1" {
		t.Errorf("custom claim owner_id %q, want o1", owner)
	}

	// The same token again: the remembered successor, no second signature.
	again, err := h.getRenewed(t, tok)
	if err != nil || again != renewed {
		t.Fatalf("second call in the window: %v, same token %v", err, again == renewed)
	}
	// The successor is fresh: outside its own window.
	if next, err := h.getRenewed(t, renewed); err != nil || next != "" {
		t.Fatalf("call with the renewed token: %v, renewed again %v", err, next != "")
	}
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("renewer called %d times, want 1", n)
	}
}

// Case 34: calls that fail authentication, authorization, ownership or the
// throttle never carry a renewed token, nor start a renewal; nor does a
// token accepted only thanks to the leeway. A handler's own error does not
// take the renewed token away.
func TestCase34NoRenewalForBadCalls(t *testing.T) {
	wantNone := func(t *testing.T, r *testRenewer, renewed string) {
		t.Helper()
		if renewed != "" {
			t.Fatal("a renewed token on this call")
		}
		if n := r.calls.Load(); n != 0 {
			t.Fatalf("renewer called %d times", n)
		}
	}

	t.Run("expired within the leeway", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		tok := h.token(t, renewable, func(c *token.Claims) {
			c.IssuedAt = c.IssuedAt.Add(-10*time.Minute - 10*time.Second)
			c.AuthTime = c.IssuedAt
			c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute) // 10 s ago; leeway 30 s
		})
		renewed, err := h.getRenewed(t, tok)
		if err != nil {
			t.Fatalf("a token inside the leeway is accepted: %v", err)
		}
		wantNone(t, r, renewed)
	})
	t.Run("bad signature", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		c := claims(h.clock.Now())
		inWindow(&c)
		renewed, err := h.getRenewed(t, newTestKey(t, testKID).sign(t, c))
		wantInvalid(t, err)
		wantNone(t, r, renewed)
	})
	t.Run("no token", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		var tr metadata.MD
		_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{}, grpc.Trailer(&tr))
		wantMissing(t, err)
		wantNone(t, r, renewedIn(t, tr))
	})
	t.Run("permission denied", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		renewed, err := h.getRenewed(t, h.token(t, inWindow, func(c *token.Claims) { c.Permissions = []string{"test.write"} }))
		wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read"})
		wantNone(t, r, renewed)
	})
	t.Run("not owner", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		var tr metadata.MD
		_, err := h.client.Update(bearer(t, h.token(t, inWindow)), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o2"}}, grpc.Trailer(&tr))
		wantNotOwner(t, err, "owner.id")
		wantNone(t, r, renewedIn(t, tr))
	})
	t.Run("throttled", func(t *testing.T) {
		r := &testRenewer{}
		lc := &lateClock{}
		lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 1}
		h := newRenewalHarness(t, r, withGuardOptions(WithLimiter(mustMemory(t, throttle.WithMemoryClock(lc.Now))), WithDefaultThrottle(lim)))
		lc.c.Store(h.clock)
		first, err := h.getRenewed(t, h.token(t, inWindow))
		if err != nil || first == "" {
			t.Fatalf("first call: %v, renewed %v", err, first != "")
		}
		// Another token (another jti) of the same consumer: throttled.
		renewed, err := h.getRenewed(t, h.token(t, inWindow))
		wantRateLimited(t, err, methodGet, "azp:web", lim, time.Hour)
		if renewed != "" {
			t.Fatal("a renewed token on a throttled call")
		}
		if n := r.calls.Load(); n != 1 {
			t.Fatalf("renewer called %d times, want 1 (the admitted call)", n)
		}
	})
	t.Run("handler error keeps the renewal", func(t *testing.T) {
		r := &testRenewer{}
		// Chained after the guard: the "handler" the guard calls.
		notFound := func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
			return nil, status.Error(codes.NotFound, "no such item")
		}
		h := newRenewalHarness(t, r, withServerOptions(grpc.ChainUnaryInterceptor(notFound)))
		renewed, err := h.getRenewed(t, h.token(t, inWindow))
		if status.Code(err) != codes.NotFound {
			t.Fatalf("got %v, want the handler's NotFound", err)
		}
		if renewed == "" {
			t.Fatal("the handler's error took the renewed token away")
		}
		if _, err := h.verifier.Verify(context.Background(), renewed); err != nil {
			t.Fatalf("renewed token: %v", err)
		}
	})
}

// A method marked no_renewal (TokenService.Renew) never gets a renewed
// token, nor starts a renewal, even for a token inside its window; a
// method beside it on the same guard does.
func TestNoRenewalMethod(t *testing.T) {
	r := &testRenewer{}
	gs := newGuardedServer(t, func(v *token.Verifier) []Option {
		lr, err := token.NewLocalRenewer(v, renewalPolicy)
		if err != nil {
			t.Fatal(err)
		}
		r.inner.Store(lr)
		return []Option{WithRenewal(r, renewalPolicy), WithRenewalGrace(2 * time.Second)}
	}, func(s *grpc.Server) {
		issuer, err := tokenservice.NewServer(r.inner.Load())
		if err != nil {
			t.Fatal(err)
		}
		tokenservice.Register(s, issuer)
		testpb.RegisterTestServiceServer(s, &testServer{})
	})
	c := claims(gs.clock.Now())
	inWindow(&c)
	tok := gs.key.sign(t, c)

	var hdr, tr metadata.MD
	resp, err := tokenv1.NewTokenServiceClient(gs.conn).Renew(ctxWith(t), &tokenv1.RenewRequest{Token: tok}, grpc.Header(&hdr), grpc.Trailer(&tr))
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if resp.GetToken() == "" {
		t.Fatal("Renew returned no token")
	}
	if renewedIn(t, tr) != "" || renewedIn(t, hdr) != "" {
		t.Fatal("the guard renewed on a no_renewal method")
	}
	if n := r.calls.Load(); n != 0 {
		t.Fatalf("the guard's renewer ran %d times for a no_renewal method", n)
	}

	tr = nil
	if _, err := testpb.NewTestServiceClient(gs.conn).Get(bearer(t, tok), &testpb.GetRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if renewedIn(t, tr) == "" || r.calls.Load() != 1 {
		t.Fatalf("Get beside it: renewed %v, renewer calls %d; want a token and 1", renewedIn(t, tr) != "", r.calls.Load())
	}
}

// Single flight: 500 concurrent calls with one token inside its window get
// one successor between them. The renewer is held until all 500 handlers
// have run, so every call overlaps the one renewal in flight; it runs once
// and every call's trailer carries the same token.
func TestRenewalSingleFlight500(t *testing.T) {
	const calls = 500
	release := make(chan struct{})
	r := &testRenewer{hook: func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	var entered atomic.Int64
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if entered.Add(1) == calls {
			close(release)
		}
		return handler(ctx, req)
	}
	h := newRenewalHarness(t, r,
		withGuardOptions(WithRenewalGrace(20*time.Second), WithRenewalTimeout(20*time.Second)),
		withServerOptions(grpc.ChainUnaryInterceptor(count)))
	tok := h.token(t, inWindow)

	tokens := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
			var tr metadata.MD
			if _, err := h.client.Get(ctx, &testpb.GetRequest{}, grpc.Trailer(&tr)); err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			if v := tr.Get(RenewedTokenKey); len(v) == 1 {
				tokens[i] = v[0]
			}
		})
	}
	wg.Wait()
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("renewer called %d times, want 1", n)
	}
	if tokens[0] == "" {
		t.Fatal("call 0 got no renewed token")
	}
	for i, tk := range tokens {
		if tk != tokens[0] {
			t.Fatalf("call %d got another token than call 0 (empty: %v): want one token for all", i, tk == "")
		}
	}
	if _, err := h.verifier.Verify(context.Background(), tokens[0]); err != nil {
		t.Fatal(err)
	}
}

// Case 35: every stream kind carries the renewed token in its trailer.
func TestCase35StreamTrailers(t *testing.T) {
	kinds := []struct {
		name string
		run  func(t *testing.T, h *harness, tok string) metadata.MD
	}{
		{"server stream List", func(t *testing.T, h *harness, tok string) metadata.MD {
			stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 3})
			if err != nil {
				t.Fatal(err)
			}
			drainList(t, stream, 3)
			return stream.Trailer()
		}},
		{"client stream Upload", func(t *testing.T, h *harness, tok string) metadata.MD {
			stream, err := h.client.Upload(bearer(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a", "b"} {
				if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, Id: id}); err != nil {
					t.Fatal(err)
				}
			}
			if resp, err := stream.CloseAndRecv(); err != nil || resp.GetCount() != 2 {
				t.Fatalf("upload: %v %v", resp, err)
			}
			return stream.Trailer()
		}},
		{"bidi Chat", func(t *testing.T, h *harness, tok string) metadata.MD {
			stream, err := h.client.Chat(bearer(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			for _, text := range []string{"hi", "there"} {
				if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: text}); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("end of chat: %v", err)
			}
			return stream.Trailer()
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := &testRenewer{}
			h := newRenewalHarness(t, r)
			tok := h.token(t, inWindow)
			renewed := renewedIn(t, k.run(t, h, tok))
			if renewed == "" {
				t.Fatal("no renewed token in the stream's trailer")
			}
			ns, err := h.verifier.Verify(context.Background(), renewed)
			if err != nil || !ns.AuthTime().Equal(t0.Add(-8*time.Minute)) {
				t.Fatalf("renewed token: %v, %v", ns, err)
			}
			// Fresh: a stream with the successor renews nothing.
			if again := renewedIn(t, k.run(t, h, renewed)); again != "" {
				t.Fatal("the successor was renewed again")
			}
			if n := r.calls.Load(); n != 1 {
				t.Fatalf("renewer called %d times, want 1", n)
			}
		})
	}
}

func drainList(t testing.TB, stream grpc.ServerStreamingClient[testpb.ListResponse], want int) {
	t.Helper()
	n := 0
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != want {
		t.Fatalf("%d items, want %d", n, want)
	}
}

// Case 35, header variant: with WithRenewalHeader a renewal that has ended
// before the stream's first message travels in the stream's headers, read
// before any message; a unary call with the same token first makes sure it
// has ended. Without the option the headers never carry it.
func TestCase35RenewalHeaderBeforeFirstMessage(t *testing.T) {
	for _, withHeader := range []bool{true, false} {
		name := "WithRenewalHeader"
		var opts []harnessOption
		if withHeader {
			opts = append(opts, withGuardOptions(WithRenewalHeader()))
		} else {
			name = "without"
		}
		t.Run(name, func(t *testing.T) {
			r := &testRenewer{}
			h := newRenewalHarness(t, r, opts...)
			tok := h.token(t, inWindow)
			warm, err := h.getRenewed(t, tok)
			if err != nil || warm == "" {
				t.Fatalf("warm-up call: %v, renewed %v", err, warm != "")
			}
			wantHeader := ""
			if withHeader {
				wantHeader = warm
			}

			list, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 2})
			if err != nil {
				t.Fatal(err)
			}
			hdr, err := list.Header() // before any message is read
			if err != nil {
				t.Fatal(err)
			}
			if got := renewedIn(t, hdr); got != wantHeader {
				t.Fatalf("List headers carry a renewed token: %v, want %v", got != "", wantHeader != "")
			}
			drainList(t, list, 2)
			if got := renewedIn(t, list.Trailer()); got != warm {
				t.Fatalf("List trailer carries another token than the renewed one (empty: %v)", got == "")
			}

			chat, err := h.client.Chat(bearer(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			if err := chat.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			hdr, err = chat.Header()
			if err != nil {
				t.Fatal(err)
			}
			if got := renewedIn(t, hdr); got != wantHeader {
				t.Fatalf("Chat headers carry a renewed token: %v, want %v", got != "", wantHeader != "")
			}
			if _, err := chat.Recv(); err != nil {
				t.Fatal(err)
			}
			if err := chat.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := chat.Recv(); !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if n := r.calls.Load(); n != 1 {
				t.Fatalf("renewer called %d times, want 1", n)
			}
		})
	}
}

// Case 35: a stream the guard refuses mid-way (NOT_OWNER on message 2)
// ends with PermissionDenied and no renewed token, although its renewal
// ran.
func TestCase35StreamRefusedMidwayNoToken(t *testing.T) {
	t.Run("client stream Upload", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		stream, err := h.client.Upload(bearer(t, h.token(t, inWindow)))
		if err != nil {
			t.Fatal(err)
		}
		for _, owner := range []string{"o1", "o2"} {
			if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: owner}}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = stream.CloseAndRecv()
		wantNotOwner(t, err, "owner.id")
		if renewedIn(t, stream.Trailer()) != "" {
			t.Fatal("a refused stream carried a renewed token")
		}
		// The renewal runs on its own goroutine, which may not have
		// reached the renewer when the refusal arrives: Close waits for it.
		h.guard.Close()
		if r.calls.Load() != 1 {
			t.Fatalf("renewer called %d times, want 1 (started when the stream opened)", r.calls.Load())
		}
	})
	t.Run("bidi Chat", func(t *testing.T) {
		r := &testRenewer{}
		h := newRenewalHarness(t, r)
		stream, err := h.client.Chat(bearer(t, h.token(t, inWindow)))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "mine"}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o2", Text: "theirs"}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		wantNotOwner(t, err, "owner_id")
		if renewedIn(t, stream.Trailer()) != "" {
			t.Fatal("a refused stream carried a renewed token")
		}
	})
}

// Item 6 of the hardening issue: renewal is keyed on the token itself, not
// on its jti. Two tokens that share a jti (an issuer's bug) but not their
// permissions each get a successor of their own, with their own
// permissions; the second never receives the first's successor.
func TestRenewalKeyedOnTokenNotJTI(t *testing.T) {
	r := &testRenewer{}
	h := newRenewalHarness(t, r)
	narrow := h.token(t, inWindow, func(c *token.Claims) { c.ID = "same-jti"; c.Permissions = []string{"test.read"} })
	broad := h.token(t, inWindow, func(c *token.Claims) {
		c.ID = "same-jti"
		c.Permissions = []string{"test.read", "test.admin"}
	})
	for _, tc := range []struct {
		tok   string
		perms []string
	}{{narrow, []string{"test.read"}}, {broad, []string{"test.read", "test.admin"}}, {narrow, []string{"test.read"}}} {
		renewed, err := h.getRenewed(t, tc.tok)
		if err != nil || renewed == "" {
			t.Fatalf("renewal: %q, %v", renewed, err)
		}
		ns, err := h.verifier.Verify(context.Background(), renewed)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ns.Permissions(), tc.perms) {
			t.Fatalf("successor grants %v, want the presented token's %v", ns.Permissions(), tc.perms)
		}
	}
	if n := r.calls.Load(); n != 2 {
		t.Fatalf("renewer called %d times, want 2 (one per token; the third call is remembered)", n)
	}
}

// Item 6: a remembered successor signed by a key that has since left the
// key set is never handed out (the guard's own verifier would refuse it);
// the next call renews afresh with the current key.
func TestRenewalForgetsSuccessorOfRemovedKey(t *testing.T) {
	r := &testRenewer{}
	h := newRenewalHarness(t, r)
	// k2 signs; the harness key k1 signed the presented token.
	h.rotate(t, "k2")
	tok := h.token(t, inWindow)
	first, err := h.getRenewed(t, tok)
	if err != nil || first == "" {
		t.Fatalf("first renewal: %v", err)
	}
	if kid := tokenHeader(t, first)["kid"]; kid != "k2" {
		t.Fatalf("signed by %v, want k2", kid)
	}
	// k2 is withdrawn; k3 signs from now on, k1 still verifies.
	h.rotate(t, "k3")
	second, err := h.getRenewed(t, tok)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("the successor signed by a withdrawn key was handed out")
	}
	if second == "" || tokenHeader(t, second)["kid"] != "k3" {
		t.Fatalf("second renewal %q, want one signed by k3", second)
	}
	if _, err := h.verifier.Verify(context.Background(), second); err != nil {
		t.Fatalf("the handed-out successor does not verify: %v", err)
	}
	if n := r.calls.Load(); n != 2 {
		t.Fatalf("renewer called %d times, want 2", n)
	}
}

// A renewer that returns a token the guard's verifier refuses (here: signed
// by a key the verifier does not hold) fails the renewal; nothing is handed
// out.
func TestRenewalNeverHandsOutRefusedToken(t *testing.T) {
	stranger := newTestKey(t, "k-stranger")
	r := &testRenewer{}
	h := newRenewalHarness(t, r)
	// Replace the inner renewer by one signing with a key the verifier
	// does not know.
	v2ks, err := token.NewKeySet(stranger.key)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := token.NewVerifier(v2ks, testIss, testAud, token.WithClock(h.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	lr, err := token.NewLocalRenewer(v2, renewalPolicy)
	if err != nil {
		t.Fatal(err)
	}
	r.inner.Store(lr)
	renewed, err := h.getRenewed(t, h.token(t, inWindow))
	if err != nil {
		t.Fatal(err)
	}
	if renewed != "" {
		t.Fatal("a renewed token the guard's verifier refuses was handed out")
	}
	h.guard.Close()
	if r.calls.Load() != 1 {
		t.Fatalf("renewer called %d times", r.calls.Load())
	}
}

// End to end with the client side: a TokenSource and the client
// interceptors, on a unary call and on a server stream, with and without
// the verifier. Outside the window nothing changes; once the fake clock
// enters it, the call's trailer swaps the source to the successor (OnRenew
// fires once) and the next call carries it: the server sees the new jti.
// The first token lives as long as the renewal TTL (15 min), so the
// successor's lifetime is within the first token's.
func TestRenewalEndToEndWithTokenSource(t *testing.T) {
	calls := []struct {
		name string
		call func(t *testing.T, c testpb.TestServiceClient)
	}{
		{"unary Get", func(t *testing.T, c testpb.TestServiceClient) {
			if _, err := c.Get(ctxWith(t), &testpb.GetRequest{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"server stream List", func(t *testing.T, c testpb.TestServiceClient) {
			stream, err := c.List(ctxWith(t), &testpb.ListRequest{Count: 2})
			if err != nil {
				t.Fatal(err)
			}
			drainList(t, stream, 2)
		}},
	}
	for _, verified := range []bool{false, true} {
		for _, kind := range calls {
			name := kind.name
			if verified {
				name += ", VerifyRenewalsWith"
			}
			t.Run(name, func(t *testing.T) {
				testRenewalEndToEnd(t, kind.call, verified)
			})
		}
	}
}

func testRenewalEndToEnd(t *testing.T, call func(*testing.T, testpb.TestServiceClient), verified bool) {
	var (
		mu   sync.Mutex
		jtis []string
	)
	sawJTI := func(ctx context.Context) {
		if s, ok := session.FromContext(ctx); ok {
			mu.Lock()
			jtis = append(jtis, s.ID())
			mu.Unlock()
		}
	}
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		sawJTI(ctx)
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		sawJTI(ss.Context())
		return handler(srv, ss)
	}
	r := &testRenewer{}
	h := newRenewalHarness(t, r, withServerOptions(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)))
	first := h.token(t, renewable, func(c *token.Claims) {
		c.ID = "jti-first"
		c.ExpiresAt = c.IssuedAt.Add(renewalPolicy.TTL)
	})

	type renewal struct {
		tok string
		exp time.Time
	}
	var renewals []renewal
	opts := []TokenSourceOption{
		TokenSourceClock(h.clock.Now),
		OnRenew(func(tok string, exp time.Time) { renewals = append(renewals, renewal{tok, exp}) }),
	}
	if verified {
		opts = append(opts, VerifyRenewalsWith(h.verifier))
	}
	src, err := NewTokenSource(first, opts...)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(h.conn.Target(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor(src, AllowInsecureTransport())),
		grpc.WithStreamInterceptor(StreamClientInterceptor(src, AllowInsecureTransport())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := testpb.NewTestServiceClient(conn)

	call(t, client) // outside the window
	if src.Token() != first || len(renewals) != 0 {
		t.Fatal("the source changed outside the window")
	}
	h.clock.Advance(11 * time.Minute) // 4 min of 15 left
	call(t, client)
	if src.Token() == first {
		t.Fatal("the source kept the old token inside the window")
	}
	if len(renewals) != 1 || renewals[0].tok != src.Token() || !renewals[0].exp.Equal(h.clock.Now().Add(renewalPolicy.TTL)) {
		t.Fatalf("OnRenew saw %+v, want the one swap to the source's token", renewals)
	}
	ns, err := h.verifier.Verify(context.Background(), src.Token())
	if err != nil {
		t.Fatal(err)
	}
	call(t, client)
	mu.Lock()
	got := slices.Clone(jtis)
	mu.Unlock()
	if want := []string{"jti-first", "jti-first", ns.ID()}; !slices.Equal(got, want) {
		t.Fatalf("server saw jtis %q, want %q", got, want)
	}
	if len(renewals) != 1 || r.calls.Load() != 1 {
		t.Fatalf("%d swaps and %d renewals, want 1 and 1", len(renewals), r.calls.Load())
	}
}

// A renewal that fails, or hangs, never fails the call and never holds it
// longer than the grace; failures are not retried for a second (on the
// fake clock) and are logged with a fixed cause.
func TestRenewalFailureNeverFailsTheCall(t *testing.T) {
	t.Run("renewer error", func(t *testing.T) {
		var logs reasonCounter
		r := &testRenewer{hook: func(context.Context) error { return errors.New("issuer down") }}
		h := newRenewalHarness(t, r, withGuardOptions(WithLogger(slog.New(&logs))))
		tok := h.token(t, inWindow)
		for i := range 3 {
			renewed, err := h.getRenewed(t, tok)
			if err != nil || renewed != "" {
				t.Fatalf("call %d: %v, renewed %v", i+1, err, renewed != "")
			}
		}
		if n := r.calls.Load(); n != 1 {
			t.Fatalf("renewer called %d times within the failure backoff, want 1", n)
		}
		h.clock.Advance(time.Second)
		if _, err := h.getRenewed(t, tok); err != nil {
			t.Fatal(err)
		}
		if n := r.calls.Load(); n != 2 {
			t.Fatalf("renewer called %d times after the backoff, want 2", n)
		}
		h.guard.Close() // the failures have been logged
		if n := logs.cause("renewer error"); n != 2 {
			t.Fatalf("%d renewal failures logged, want 2", n)
		}
	})

	t.Run("hangs past the timeout", func(t *testing.T) {
		var logs reasonCounter
		r := &testRenewer{hook: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}
		h := newRenewalHarness(t, r, withGuardOptions(WithRenewalTimeout(100*time.Millisecond), WithRenewalGrace(10*time.Second), WithLogger(slog.New(&logs))))
		// Connect first, so that only the renewal's goroutines are new.
		if renewed, err := h.getRenewed(t, h.token(t)); err != nil || renewed != "" {
			t.Fatalf("call outside the window: %v", err)
		}
		running := goleak.IgnoreCurrent()
		start := time.Now()
		renewed, err := h.getRenewed(t, h.token(t, inWindow))
		elapsed := time.Since(start)
		if err != nil || renewed != "" {
			t.Fatalf("%v, renewed %v", err, renewed != "")
		}
		// Ended by the 100 ms timeout, far inside the 10 s grace.
		if elapsed < 100*time.Millisecond || elapsed > 5*time.Second {
			t.Fatalf("call took %v, want about the 100ms renewal timeout", elapsed)
		}
		h.guard.Close()
		if n := logs.cause("timed out"); n != 1 {
			t.Fatalf("%d timeouts logged, want 1", n)
		}
		// The hung renewer was abandoned at its timeout: nothing is left.
		goleak.VerifyNone(t, running)
	})

	// The renewer is held until the call has returned: the call cannot
	// have waited for it.
	for _, grace := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run("grace "+grace.String(), func(t *testing.T) {
			release := make(chan struct{})
			var finished atomic.Bool
			r := &testRenewer{hook: func(ctx context.Context) error {
				defer finished.Store(true)
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}}
			h := newRenewalHarness(t, r, withGuardOptions(WithRenewalGrace(grace), WithRenewalTimeout(time.Minute)))
			tok := h.token(t, inWindow)
			start := time.Now()
			renewed, err := h.getRenewed(t, tok)
			elapsed := time.Since(start)
			if err != nil || renewed != "" {
				t.Fatalf("%v, renewed %v", err, renewed != "")
			}
			if finished.Load() {
				t.Fatal("the renewal ended before the call returned")
			}
			if elapsed < grace {
				t.Fatalf("call took %v, less than the grace %v", elapsed, grace)
			}
			close(release)
			h.guard.Close() // waits for the renewal
			if !finished.Load() {
				t.Fatal("Close returned before the renewal ended")
			}
			// Ended now: the next call finds it, without waiting.
			if renewed, err := h.getRenewed(t, tok); err != nil || renewed == "" {
				t.Fatalf("after the renewal ended: %v, renewed %v", err, renewed != "")
			}
			if n := r.calls.Load(); n != 1 {
				t.Fatalf("renewer called %d times, want 1", n)
			}
		})
	}
}
