package tokenservice_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/interceptors"
	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/tokenservice"
)

// Tests of the issuer's Renew behind the guard: the token in the request
// body is the call's credential, verified in full before Renew runs
// (security.md cases 32-34 at the issuer).

func TestRenewInsideWindow(t *testing.T) {
	is := newIssuer(t)
	tok := is.mint(t, claims(t0))
	is.clock.Set(t0.Add(12 * time.Minute)) // 3 min left of 15: in the window
	old, err := is.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}

	resp, err := is.client.Renew(context.Background(), &tokenv1.RenewRequest{Token: tok})
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if resp.GetToken() == "" || resp.GetToken() == tok {
		t.Fatal("Renew returned no new token")
	}
	ns, err := is.verifier.Verify(context.Background(), resp.GetToken())
	if err != nil {
		t.Fatalf("the renewed token does not verify: %v", err)
	}
	wantExp := t0.Add(12*time.Minute + 15*time.Minute)
	switch {
	case !ns.AuthTime().Equal(t0):
		t.Errorf("auth_time = %v, want %v", ns.AuthTime(), t0)
	case ns.ID() == old.ID():
		t.Error("the renewed token reuses the jti")
	case !ns.ExpiresAt().After(old.ExpiresAt()) || !ns.ExpiresAt().Equal(wantExp):
		t.Errorf("exp = %v, want %v (later than %v)", ns.ExpiresAt(), wantExp, old.ExpiresAt())
	case !resp.GetExpiresAt().AsTime().Equal(ns.ExpiresAt()):
		t.Errorf("expires_at = %v, token says %v", resp.GetExpiresAt().AsTime(), ns.ExpiresAt())
	case ns.Subject() != "alice" || ns.SessionID() != "sid-1" || ns.AuthorizedParty() != "checkout":
		t.Errorf("identity changed: sub %q sid %q azp %q", ns.Subject(), ns.SessionID(), ns.AuthorizedParty())
	case ns.KeyID() != "issuer-1":
		t.Errorf("kid = %q", ns.KeyID())
	}
	if v, _ := ns.ClaimString("seller_id"); v != "s-42" {
		t.Errorf("seller_id = %q, want s-42", v)
	}
}

// TestRenewRefusals: what the issuer answers for each token it must not
// renew. The guard refuses what does not verify; Renew refuses what
// verifies but is not due or not renewable.
func TestRenewRefusals(t *testing.T) {
	is := newIssuer(t)
	other := newIssuer(t) // another issuer's key: a forged token here

	noAuthTime := claims(t0)
	noAuthTime.AuthTime = time.Time{}
	cases := []struct {
		name   string
		tok    string
		at     time.Duration // clock, after t0
		code   codes.Code
		reason string
	}{
		{"outside the window", is.mint(t, claims(t0)), time.Minute, codes.FailedPrecondition, ""},
		{"just before the window", is.mint(t, claims(t0)), 10*time.Minute - time.Second, codes.FailedPrecondition, ""},
		{"expired", is.mint(t, claims(t0)), 16 * time.Minute, codes.Unauthenticated, interceptors.ReasonTokenExpired},
		{"expired, inside the leeway", is.mint(t, claims(t0)), 15*time.Minute + 10*time.Second, codes.FailedPrecondition, ""},
		{"no token", "", 12 * time.Minute, codes.Unauthenticated, interceptors.ReasonTokenMissing},
		{"no auth_time", is.mint(t, noAuthTime), 12 * time.Minute, codes.FailedPrecondition, ""},
		{"signed by another key", other.mint(t, claims(t0)), 12 * time.Minute, codes.Unauthenticated, interceptors.ReasonTokenInvalid},
		{"not a token", "not.a.token", 12 * time.Minute, codes.Unauthenticated, interceptors.ReasonTokenInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is.clock.Set(t0.Add(c.at))
			resp, err := is.client.Renew(context.Background(), &tokenv1.RenewRequest{Token: c.tok})
			if err == nil {
				t.Fatalf("Renew succeeded (token of %d bytes)", len(resp.GetToken()))
			}
			wantStatus(t, err, c.code, c.reason)
			errNoToken(t, err, c.tok)
		})
	}
}

// TestRenewAtMaxSession: at the end of the session the issuer refuses, and
// never mints past auth_time + MaxSession.
func TestRenewAtMaxSession(t *testing.T) {
	is := newIssuer(t)
	c := claims(t0)
	c.AuthTime = t0.Add(-8*time.Hour + 20*time.Minute) // session ends at t0+20m
	tok := is.mint(t, c)
	is.clock.Set(t0.Add(12 * time.Minute))
	resp, err := is.client.Renew(context.Background(), &tokenv1.RenewRequest{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetExpiresAt().AsTime(); !got.Equal(t0.Add(20 * time.Minute)) {
		t.Fatalf("exp = %v, want the end of the session %v", got, t0.Add(20*time.Minute))
	}
	// The renewed token is at the cap: renewing it again gives nothing.
	is.clock.Set(t0.Add(19 * time.Minute))
	_, err = is.client.Renew(context.Background(), &tokenv1.RenewRequest{Token: resp.GetToken()})
	wantStatus(t, err, codes.FailedPrecondition, "")
}

// TestRenewTokenSourcesMustAgree: a caller authenticated by one token in
// metadata cannot have another token renewed in the body (the guard refuses
// the disagreement), so Renew only ever renews the token that authenticated
// the call.
func TestRenewTokenSourcesMustAgree(t *testing.T) {
	is := newIssuer(t)
	mine := is.mint(t, claims(t0))
	c := claims(t0)
	c.Subject = "bob"
	theirs := is.mint(t, c)
	is.clock.Set(t0.Add(12 * time.Minute))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+mine)
	_, err := is.client.Renew(ctx, &tokenv1.RenewRequest{Token: theirs})
	wantStatus(t, err, codes.Unauthenticated, interceptors.ReasonTokenInvalid)

	// The same token in both places is fine.
	resp, err := is.client.Renew(ctx, &tokenv1.RenewRequest{Token: mine})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := is.verifier.Verify(context.Background(), resp.GetToken())
	if err != nil || ns.Subject() != "alice" {
		t.Fatalf("renewed %v, %v", ns, err)
	}
}

// TestRenewWithoutGuard: the Server itself refuses a call no guard verified,
// and one without a token.
func TestRenewWithoutGuard(t *testing.T) {
	is := newIssuer(t)
	tok := is.mint(t, claims(t0))
	is.clock.Set(t0.Add(12 * time.Minute))
	_, err := is.server.Renew(context.Background(), &tokenv1.RenewRequest{Token: tok})
	wantStatus(t, err, codes.Unauthenticated, "")
	errNoToken(t, err, tok)

	_, err = is.server.Renew(context.Background(), &tokenv1.RenewRequest{})
	wantStatus(t, err, codes.InvalidArgument, "")

	// With a session in the context (what the guard puts there) it works.
	sess, err := is.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := is.server.Renew(session.NewContext(context.Background(), sess), &tokenv1.RenewRequest{Token: tok})
	if err != nil || resp.GetToken() == "" {
		t.Fatalf("Renew with a session: %v", err)
	}
}

func TestNewServerNeedsRenewer(t *testing.T) {
	if s, err := tokenservice.NewServer(nil); err == nil || s != nil {
		t.Errorf("NewServer(nil) = %v, %v", s, err)
	}
}
