package interceptors

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// Tests of revocation in the guard over real gRPC on loopback TCP: a
// revoked token is refused on every RPC kind, cache hits included; an open
// stream of a revoked session ends at once, even idle; a renewal in flight
// when its session is revoked hands out nothing; the feed's reports reach
// the observer and the log.

const wantMsgRevoked = "access token revoked"

func wantRevoked(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, codes.Unauthenticated, wantMsgRevoked, ReasonTokenRevoked, nil)
}

// revHarness is a harness whose verifier checks a revocation set on the
// harness clock.
type revHarness struct{ *harness }

func newRevHarness(t *testing.T, opts ...harnessOption) *revHarness {
	t.Helper()
	return &revHarness{newHarness(t, append([]harnessOption{withRevocationSet()}, opts...)...)}
}

func (h *revHarness) revoke(t testing.TB, kind token.RevocationKind, value string) {
	t.Helper()
	var before time.Time
	if kind == token.RevokeSubject || kind == token.RevokeConsumer {
		// Tokens issued up to now: the harness issues them at the clock's
		// now, which a not-before of now would not cover.
		before = h.clock.Now().Add(time.Second)
	}
	r, err := token.NewRevocation(kind, value, before, h.clock.Now(), token.DefaultRevocationLimits())
	if err != nil {
		t.Fatal(err)
	}
	if h.revs.Add(r) != 1 {
		t.Fatal("revocation not added")
	}
}

func withSession(sid string) func(*token.Claims) {
	return func(c *token.Claims) { c.SessionID = sid }
}

// A revoked token is refused on all four RPC kinds with TOKEN_REVOKED,
// including the unary call that was a cache hit a moment before; a token
// of another session still passes; the handler never runs.
func TestRevokedTokenRefusedEverywhere(t *testing.T) {
	h := newRevHarness(t)
	tok := h.token(t, withSession("sid-r"))
	other := h.token(t, withSession("sid-ok"))
	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.verifier.Cached(tok); !ok {
		t.Fatal("the token is not cached: the next call would not be a cache hit")
	}
	h.revoke(t, token.RevokeSession, "sid-r")
	before := h.reached()

	_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
	wantRevoked(t, err)

	list, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 1})
	if err == nil {
		_, err = list.Recv()
	}
	wantRevoked(t, err)

	up, err := h.client.Upload(bearer(t, tok))
	if err == nil {
		_, err = up.CloseAndRecv()
	}
	wantRevoked(t, err)

	chat, err := h.client.Chat(bearer(t, tok))
	if err == nil {
		_ = chat.Send(&testpb.ChatRequest{OwnerId: "o1"})
		_, err = chat.Recv()
	}
	wantRevoked(t, err)

	if h.reached() != before {
		t.Fatalf("a handler ran for a revoked token")
	}
	if _, err := h.client.Get(bearer(t, other), &testpb.GetRequest{}); err != nil {
		t.Fatalf("a token of another session: %v", err)
	}
}

// An open stream whose session is revoked ends with TOKEN_REVOKED at once,
// while the client sends nothing and the handler waits (in RecvMsg, or on
// its context between sends); an open stream of another session goes on.
func TestIdleStreamEndsWhenRevoked(t *testing.T) {
	t.Run("server stream List waiting on its context", func(t *testing.T) {
		h := newRevHarness(t)
		done := returns(h.harness)
		h.server.listWait = func(ctx context.Context, i int32) {
			if i == 1 {
				<-ctx.Done()
			}
		}
		stream, err := h.client.List(bearer(t, h.token(t, withSession("s1"))), &testpb.ListRequest{Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		h.revoke(t, token.RevokeSession, "s1")
		_, err = stream.Recv()
		wantRevoked(t, err)
		if got := <-done; !strings.HasPrefix(got, methodList) {
			t.Fatalf("returned: %s", got)
		}
	})
	t.Run("client stream Upload waiting in RecvMsg", func(t *testing.T) {
		h := newRevHarness(t)
		done := returns(h.harness)
		got := make(chan struct{}, 1)
		h.server.onRecv = func(string) { got <- struct{}{} }
		stream, err := h.client.Upload(bearer(t, h.token(t, withSession("s1"))))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}}); err != nil {
			t.Fatal(err)
		}
		<-got
		h.revoke(t, token.RevokeSubject, "alice")
		if r := <-done; r != methodUpload+": Unauthenticated" {
			t.Fatalf("returned: %s", r)
		}
		_, err = stream.CloseAndRecv()
		wantRevoked(t, err)
	})
	t.Run("bidi Chat waiting in RecvMsg, beside a stream of another session", func(t *testing.T) {
		h := newRevHarness(t)
		done := returns(h.harness)
		open := func(sid string) testpb.TestService_ChatClient {
			stream, err := h.client.Chat(bearer(t, h.token(t, withSession(sid))))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			return stream
		}
		revoked, kept := open("s1"), open("s2")
		h.revoke(t, token.RevokeSession, "s1")
		if r := <-done; r != methodChat+": Unauthenticated" {
			t.Fatalf("returned: %s", r)
		}
		_, err := revoked.Recv()
		wantRevoked(t, err)
		if err := kept.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "still here"}); err != nil {
			t.Fatal(err)
		}
		if _, err := kept.Recv(); err != nil {
			t.Fatalf("the stream of another session: %v", err)
		}
		if err := kept.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := kept.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("closing the kept stream: %v", err)
		}
	})
}

// A message of an open stream is checked against the set too, not only
// by the watcher that ends the stream: the check every RecvMsg and SendMsg
// runs refuses a revoked session with TOKEN_REVOKED.
func TestStreamMessageCheckedForRevocation(t *testing.T) {
	h := newRevHarness(t)
	sess, err := h.verifier.Verify(t.Context(), h.token(t, withSession("s1")))
	if err != nil {
		t.Fatal(err)
	}
	gs := &guardedStream{guard: h.guard, plan: &plan{method: methodChat}, sess: sess, ctx: t.Context()}
	if err := gs.checkExpiry(); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	h.revoke(t, token.RevokeSession, "s1")
	if err := gs.checkExpiry(); err != errTokenRevoked {
		t.Fatalf("after the revocation: %v, want TOKEN_REVOKED", err)
	}
}

// afterRenewer mints the successor with a LocalRenewer, then runs after
// (the revocation that races the renewal) before returning it.
type afterRenewer struct {
	inner *token.LocalRenewer
	after func()
	mu    sync.Mutex
	made  []string
}

func (r *afterRenewer) Renew(ctx context.Context, tok string, sess *session.Session) (token.Renewed, error) {
	res, err := r.inner.Renew(ctx, tok, sess)
	if err == nil {
		r.mu.Lock()
		r.made = append(r.made, res.Token)
		r.mu.Unlock()
		r.after()
	}
	return res, err
}

// A session revoked while its renewal is in flight: the successor, already
// signed, is not handed out, and is refused itself (it carries the revoked
// sid). A token revoked by its jti in the same race: its successor (a new
// jti) is not handed out either.
func TestRevokedWhileRenewalInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind token.RevocationKind
		val  string
	}{{"sid", token.RevokeSession, "sid-1"}, {"jti", token.RevokeToken, "jti-in-flight"}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &afterRenewer{}
			h := newRevHarness(t, withGuardOptions(WithRenewal(r, renewalPolicy), WithRenewalGrace(10*time.Second)))
			t.Cleanup(func() {
				h.grpcSrv.Stop()
				h.guard.Close()
			})
			lr, err := token.NewLocalRenewer(h.verifier, renewalPolicy)
			if err != nil {
				t.Fatal(err)
			}
			r.inner = lr
			r.after = func() { h.revoke(t, tc.kind, tc.val) }
			tok := h.token(t, inWindow, func(c *token.Claims) { c.ID = "jti-in-flight" })
			var tr metadata.MD
			_, err = h.client.Get(bearer(t, tok), &testpb.GetRequest{}, grpc.Trailer(&tr))
			// The call itself was admitted before the revocation.
			if err != nil {
				t.Fatal(err)
			}
			if got := renewedIn(t, tr); got != "" {
				t.Fatal("the successor of a session revoked during its renewal was handed out")
			}
			r.mu.Lock()
			made := r.made
			r.mu.Unlock()
			if len(made) != 1 {
				t.Fatalf("%d successors made, want 1", len(made))
			}
			_, err = h.client.Get(bearer(t, tok), &testpb.GetRequest{}, grpc.Trailer(&tr))
			wantRevoked(t, err)
			if tc.kind == token.RevokeSession {
				_, err = h.client.Get(bearer(t, made[0]), &testpb.GetRequest{})
				wantRevoked(t, err)
			}
		})
	}
}

// The feed's reports reach the observer as DecisionRevocations events and
// the log as warnings (stale) and notes (caught up), never with a revoked
// value.
func TestRevocationEventsObservedAndLogged(t *testing.T) {
	rec := newRecorder()
	var logs bytes.Buffer
	h := newRevHarness(t, withGuardOptions(WithObserver(rec), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))))
	h.revoke(t, token.RevokeToken, "jti-secret-value")
	h.revs.Report(token.RevocationEvent{Source: "redis 127.0.0.1:1", Kind: token.RevocationsStale, Err: errors.New("dial tcp: connection refused")})
	if !h.revs.Stale() {
		t.Fatal("the set is not stale after a stale report")
	}
	h.revs.Report(token.RevocationEvent{Source: "redis 127.0.0.1:1", Kind: token.RevocationsCaughtUp})
	if h.revs.Stale() {
		t.Fatal("the set is still stale after catching up")
	}
	ev := rec.waitFor(t, 2)
	for i, want := range []string{"stale", "caught_up"} {
		e := ev[i]
		if e.Decision != DecisionRevocations || e.Reason != want || e.KeySource != "redis 127.0.0.1:1" || e.Revocations != 1 {
			t.Errorf("event %d = %+v, want a %s report of a set of 1", i, e, want)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "revocation feed lost its store") || !strings.Contains(out, "caught up") {
		t.Errorf("log lacks the feed's reports: %s", out)
	}
	if strings.Contains(out, "jti-secret-value") {
		t.Error("the log holds a revoked value")
	}
}
