package tokenservice_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/loopback"
	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
)

// Tests of RemoteRenewer, the renewer of services that hold only public
// keys: it asks the issuer, is time-boxed, and refuses any answer that is
// not a later-expiring token.

// remoteService is a service that verifies with the issuer's public key
// only, on the issuer's clock.
func remoteService(t *testing.T, is *issuer) *token.Verifier {
	t.Helper()
	pub, err := is.key.Public()
	if err != nil {
		t.Fatal(err)
	}
	if pub.CanSign() {
		t.Fatal("fixture: the public key can sign")
	}
	ks, err := token.NewKeySet(pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(is.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.NewLocalRenewer(v, token.DefaultRenewalPolicy()); err == nil {
		t.Fatal("fixture: a verify-only service could renew locally")
	}
	return v
}

func newRemote(t *testing.T, conn grpc.ClientConnInterface, v *token.Verifier, opts ...tokenservice.RemoteOption) *tokenservice.RemoteRenewer {
	t.Helper()
	r, err := tokenservice.NewRemoteRenewer(conn, v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRemoteRenewAsymmetric: the issuer signs with its EdDSA private key;
// the remote service, holding only the public key, gets a renewed token
// that verifies there.
func TestRemoteRenewAsymmetric(t *testing.T) {
	is := newIssuer(t)
	svc := remoteService(t, is)
	rr := newRemote(t, is.conn, svc)

	tok := is.mint(t, claims(t0))
	is.clock.Set(t0.Add(11 * time.Minute))
	sess, err := svc.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rr.Renew(context.Background(), tok, sess)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	ns, err := svc.Verify(context.Background(), got.Token)
	if err != nil {
		t.Fatalf("the renewed token does not verify at the remote service: %v", err)
	}
	switch {
	case !got.ExpiresAt.Equal(ns.ExpiresAt()):
		t.Errorf("Renewed.ExpiresAt %v, token says %v", got.ExpiresAt, ns.ExpiresAt())
	case !ns.ExpiresAt().After(sess.ExpiresAt()):
		t.Errorf("exp %v not after %v", ns.ExpiresAt(), sess.ExpiresAt())
	case !ns.AuthTime().Equal(t0) || ns.ID() == sess.ID() || ns.Subject() != sess.Subject():
		t.Errorf("auth_time %v, jti new %v, sub %q", ns.AuthTime(), ns.ID() != sess.ID(), ns.Subject())
	case ns.KeyID() != "issuer-1" || ns.Algorithm() != token.EdDSA:
		t.Errorf("kid %q alg %q", ns.KeyID(), ns.Algorithm())
	}

	// A token the issuer will not renew yet: the issuer's refusal comes back
	// as an error, with its code and without the token.
	early := is.mint(t, claims(is.clock.Now()))
	esess, err := svc.Verify(context.Background(), early)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rr.Renew(context.Background(), early, esess)
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Renew of a token outside its window: %v, want FailedPrecondition", err)
	}
	errNoToken(t, err, early)
}

// TestRemoteIssuerDown: with nothing listening (a closed listener) or the
// issuer stopped, Renew fails at once, far within its timeout, and says
// nothing of the token.
func TestRemoteIssuerDown(t *testing.T) {
	is := newIssuer(t)
	tok := is.mint(t, claims(t0))
	is.clock.Set(t0.Add(12 * time.Minute))
	sess, err := is.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 5 * time.Second

	t.Run("closed listener", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rr := newRemote(t, conn, is.verifier, tokenservice.WithRemoteTimeout(timeout))
		start := time.Now()
		_, err = rr.Renew(context.Background(), tok, sess)
		elapsed := time.Since(start)
		if err == nil {
			t.Fatal("Renew succeeded with no issuer")
		}
		if elapsed > timeout/4 {
			t.Errorf("Renew took %v with the issuer down (timeout %v)", elapsed, timeout)
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("err = %v, want Unavailable", err)
		}
		errNoToken(t, err, tok)
	})

	t.Run("issuer stopped", func(t *testing.T) {
		rr := newRemote(t, is.conn, is.verifier, tokenservice.WithRemoteTimeout(timeout))
		if _, err := rr.Renew(context.Background(), tok, sess); err != nil {
			t.Fatalf("Renew before the stop: %v", err)
		}
		is.stopSrv() // the issuer goes away; the client connection stays
		start := time.Now()
		_, err := rr.Renew(context.Background(), tok, sess)
		elapsed := time.Since(start)
		if err == nil {
			t.Fatal("Renew succeeded with the issuer stopped")
		}
		if elapsed > timeout/4 {
			t.Errorf("Renew took %v with the issuer stopped (timeout %v)", elapsed, timeout)
		}
		errNoToken(t, err, tok)
	})
}

// fakeIssuer is a TokenService that answers whatever answer says, without
// any guard.
type fakeIssuer struct {
	tokenv1.UnimplementedTokenServiceServer
	answer func(ctx context.Context, req *tokenv1.RenewRequest) (*tokenv1.RenewResponse, error)
}

func (f *fakeIssuer) Renew(ctx context.Context, req *tokenv1.RenewRequest) (*tokenv1.RenewResponse, error) {
	return f.answer(ctx, req)
}

// serveFake serves f on loopback and returns a connection to it; both are
// closed at the end of the test.
func serveFake(t *testing.T, f *fakeIssuer) *grpc.ClientConn {
	t.Helper()
	gs := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(gs, f)
	return loopback.Serve(t, gs)
}

// TestRemoteSlowIssuer: an issuer that never answers costs WithRemoteTimeout, not
// more; its handler sees the cancellation.
func TestRemoteSlowIssuer(t *testing.T) {
	is := newIssuer(t)
	tok := is.mint(t, claims(t0))
	is.clock.Set(t0.Add(12 * time.Minute))
	sess, err := is.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	handlerDone := make(chan error, 8)
	conn := serveFake(t, &fakeIssuer{answer: func(ctx context.Context, req *tokenv1.RenewRequest) (*tokenv1.RenewResponse, error) {
		if req.GetToken() == "warm-up" {
			return nil, status.Error(codes.Unavailable, "not now")
		}
		<-ctx.Done()
		handlerDone <- ctx.Err()
		return nil, ctx.Err()
	}})
	// Connect first, so the measurement is the call alone.
	if _, err := newRemote(t, conn, is.verifier).Renew(context.Background(), "warm-up", sess); status.Code(err) != codes.Unavailable {
		t.Fatalf("warm-up: %v", err)
	}

	const timeout = 100 * time.Millisecond
	rr := newRemote(t, conn, is.verifier, tokenservice.WithRemoteTimeout(timeout))
	start := time.Now()
	_, err = rr.Renew(context.Background(), tok, sess)
	elapsed := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if elapsed < timeout-5*time.Millisecond || elapsed > timeout+400*time.Millisecond {
		t.Errorf("Renew returned after %v, want about %v", elapsed, timeout)
	}
	errNoToken(t, err, tok)
	select {
	case <-handlerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the issuer's handler never saw the cancellation")
	}

	// The caller's own deadline, when shorter, wins.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = newRemote(t, conn, is.verifier, tokenservice.WithRemoteTimeout(time.Minute)).Renew(ctx, tok, sess)
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > time.Second {
		t.Errorf("caller deadline 20ms: %v after %v", err, time.Since(start))
	}
}

// TestRemoteBadAnswers: anything but a token expiring later than the
// session is ErrBadResponse, and the error quotes neither token.
func TestRemoteBadAnswers(t *testing.T) {
	is := newIssuer(t)
	tok := is.mint(t, claims(t0)) // exp t0+15m
	is.clock.Set(t0.Add(12 * time.Minute))
	sess, err := is.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	at := func(exp time.Duration) string {
		c := claims(t0)
		c.IssuedAt = t0.Add(exp - 15*time.Minute)
		c.ExpiresAt = t0.Add(exp)
		return is.mint(t, c)
	}
	later := at(27 * time.Minute)
	other := func(edit func(*token.Claims)) string {
		c := claims(t0)
		c.IssuedAt = t0.Add(12 * time.Minute)
		c.ExpiresAt = t0.Add(27 * time.Minute)
		edit(&c)
		return is.mint(t, c)
	}
	foreignKey, err := token.NewHMACKey("", token.HS256, []byte(strings.Repeat("f", 32)))
	if err != nil {
		t.Fatal(err)
	}
	foreignSigner, _ := token.NewSigner(foreignKey)
	forged, err := foreignSigner.Sign(func() token.Claims {
		c := claims(t0)
		c.ExpiresAt = t0.Add(27 * time.Minute)
		c.IssuedAt = t0.Add(12 * time.Minute)
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{
		"another subject's token":   other(func(c *token.Claims) { c.Subject = "mallory" }),
		"another session's token":   other(func(c *token.Claims) { c.SessionID = "sid-2" }),
		"a reset auth_time":         other(func(c *token.Claims) { c.AuthTime = t0.Add(12 * time.Minute) }),
		"another consumer's token":  other(func(c *token.Claims) { c.AuthorizedParty = "intruder" }),
		"a token signed elsewhere":  forged,
		"the same token":            tok,
		"an earlier-expiring token": at(14 * time.Minute),
		"a token expiring as late":  at(15 * time.Minute), // a new jti, same exp
		"garbage":                   "garbage",
		"nothing":                   "",
		"exp unreadable":            strings.Join([]string{"eyJhbGciOiJFZERTQSJ9", "eyJleHAiOiIxODAwMDAxNjIwIn0", "c2ln"}, "."),
	}
	var answer string
	conn := serveFake(t, &fakeIssuer{answer: func(context.Context, *tokenv1.RenewRequest) (*tokenv1.RenewResponse, error) {
		return &tokenv1.RenewResponse{Token: answer}, nil
	}})
	rr := newRemote(t, conn, is.verifier)
	for name, a := range answers {
		answer = a
		got, err := rr.Renew(context.Background(), tok, sess)
		if !errors.Is(err, tokenservice.ErrBadResponse) {
			t.Errorf("%s: Renew = %d bytes, %v; want ErrBadResponse", name, len(got.Token), err)
		}
		if got.Token != "" {
			t.Errorf("%s: a token came back with the error", name)
		}
		errNoToken(t, err, tok, a)
	}

	// Control: a later one is taken.
	answer = later
	got, err := rr.Renew(context.Background(), tok, sess)
	if err != nil || got.Token != later || !got.ExpiresAt.Equal(t0.Add(27*time.Minute)) {
		t.Errorf("later answer: %v, exp %v", err, got.ExpiresAt)
	}
}

func TestNewRemoteRenewerRefuses(t *testing.T) {
	if r, err := tokenservice.NewRemoteRenewer(nil, nil); err == nil || r != nil {
		t.Errorf("NewRemoteRenewer(nil) = %v, %v", r, err)
	}
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, d := range []time.Duration{0, -time.Second} {
		if r, err := tokenservice.NewRemoteRenewer(conn, nil); err == nil || r != nil {
			t.Errorf("no verifier: %v, %v; want an error", r, err)
		}
		if r, err := tokenservice.NewRemoteRenewer(conn, remoteService(t, newIssuer(t)), tokenservice.WithRemoteTimeout(d)); err == nil || r != nil {
			t.Errorf("WithRemoteTimeout(%v) = %v, %v; want an error", d, r, err)
		}
	}
}

// The remote renewer is a token.Renewer.
var _ token.Renewer = (*tokenservice.RemoteRenewer)(nil)

// TestRemoteRenewBoundToken: a service renews its client's certificate-bound
// token (RFC 8705) at an issuer over the service's own connection. The
// issuer's guard admits the bound token on Renew only because Renew is
// exempt from the binding check (interceptors.WithBindingExempt), and the
// successor is bound to the same certificate; without the exemption the
// issuer refuses it with TOKEN_BINDING_MISMATCH.
func TestRemoteRenewBoundToken(t *testing.T) {
	thumb := token.CertThumbprint([]byte("the DER of client A's certificate"))
	bound := func(is *issuer) (string, *session.Session, token.Renewer) {
		t.Helper()
		svc := remoteService(t, is)
		c := claims(t0)
		c.CertThumbprint = thumb
		tok := is.mint(t, c)
		is.clock.Set(t0.Add(11 * time.Minute))
		sess, err := svc.Verify(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		return tok, sess, newRemote(t, is.conn, svc)
	}

	is := newIssuer(t, withGuard(interceptors.WithBindingExempt(tokenservice.RenewMethod)))
	tok, sess, rr := bound(is)
	got, err := rr.Renew(context.Background(), tok, sess)
	if err != nil {
		t.Fatalf("Renew of a bound token: %v", err)
	}
	ns, err := is.verifier.Verify(context.Background(), got.Token)
	if err != nil {
		t.Fatal(err)
	}
	if ns.CertThumbprint() != thumb {
		t.Fatalf("the successor is bound to %q, want the same certificate", ns.CertThumbprint())
	}

	strict := newIssuer(t)
	tok, sess, rr = bound(strict)
	_, err = rr.Renew(context.Background(), tok, sess)
	wantStatus(t, err, codes.Unauthenticated, "")
}
