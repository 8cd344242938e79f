package tokenservice_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate/tollgate/interceptors"
	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
)

// Tests of Revoke and Logout behind the guard over loopback TCP: the
// permission the .proto declares, each target, what the caller sees after,
// and Renew refusing a revoked session.

func withToken(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func admin(iat time.Time) token.Claims {
	c := claims(iat)
	c.Subject, c.SessionID, c.AuthorizedParty = "ops", "sid-ops", "console"
	c.Permissions = []string{"tollgate.tokens.revoke"}
	return c
}

func TestRevokeNeedsItsPermission(t *testing.T) {
	is := newIssuer(t, revoking)
	user := is.mint(t, claims(t0))
	_, err := is.client.Revoke(withToken(user), &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sid{Sid: "sid-1"}})
	wantStatus(t, err, codes.PermissionDenied, "PERMISSION_DENIED")
	_, err = is.client.Revoke(context.Background(), &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sid{Sid: "sid-1"}})
	wantStatus(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)
	if is.revs.Len() != 0 {
		t.Fatal("a refused Revoke revoked something")
	}
}

func TestRevokeTargets(t *testing.T) {
	cases := []struct {
		name string
		req  *tokenv1.RevokeRequest
		// the victim's token claims, and whether the revocation covers it
		edit    func(*token.Claims)
		covered bool
		kind    string
	}{
		{"sid", &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sid{Sid: "sid-1"}}, nil, true, "sid"},
		{"another sid", &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sid{Sid: "sid-2"}}, nil, false, "sid"},
		{"jti", &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Jti{Jti: "jti-victim"}}, nil, true, "jti"},
		{"sub, issued before now", &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sub{Sub: "alice"}},
			func(c *token.Claims) { c.IssuedAt = t0.Add(-time.Minute); c.AuthTime = c.IssuedAt }, true, "sub"},
		{"sub, before an earlier time", &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sub{Sub: "alice"}, Before: timestamppb.New(t0.Add(-2 * time.Minute))},
			func(c *token.Claims) { c.IssuedAt = t0.Add(-time.Minute); c.AuthTime = c.IssuedAt }, false, "sub"},
		{"consumer", &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Consumer{Consumer: "checkout"}},
			func(c *token.Claims) { c.IssuedAt = t0.Add(-time.Minute); c.AuthTime = c.IssuedAt }, true, "consumer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := newIssuer(t, revoking)
			c := claims(t0)
			c.ID = "jti-victim"
			if tc.edit != nil {
				tc.edit(&c)
			}
			victim := is.mint(t, c)
			is.clock.Set(t0.Add(12 * time.Minute)) // in the window: Renew would succeed
			// Verified (and cached) before the revocation.
			if _, err := is.verifier.Verify(context.Background(), victim); err != nil {
				t.Fatal(err)
			}
			resp, err := is.client.Revoke(withToken(is.mint(t, admin(is.clock.Now()))), tc.req)
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if resp.GetKind() != tc.kind || !resp.GetExpiresAt().AsTime().After(is.clock.Now()) {
				t.Errorf("response %v", resp)
			}
			_, err = is.client.Renew(context.Background(), &tokenv1.RenewRequest{Token: victim})
			if tc.covered {
				wantStatus(t, err, codes.Unauthenticated, interceptors.ReasonTokenRevoked)
			} else if err != nil {
				t.Fatalf("Renew of a token the revocation does not cover: %v", err)
			}
		})
	}
}

func TestRevokeRefusals(t *testing.T) {
	is := newIssuer(t, revoking)
	ctx := withToken(is.mint(t, admin(t0)))
	long := strings.Repeat("x", token.MaxRevocationValue+1)
	for name, req := range map[string]*tokenv1.RevokeRequest{
		"no target":    {},
		"empty":        {Target: &tokenv1.RevokeRequest_Sid{Sid: ""}},
		"oversized":    {Target: &tokenv1.RevokeRequest_Jti{Jti: long}},
		"jti before":   {Target: &tokenv1.RevokeRequest_Jti{Jti: "j"}, Before: timestamppb.New(t0)},
		"invalid time": {Target: &tokenv1.RevokeRequest_Sub{Sub: "u"}, Before: &timestamppb.Timestamp{Seconds: -1 << 62}},
	} {
		_, err := is.client.Revoke(ctx, req)
		wantStatus(t, err, codes.InvalidArgument, "")
		if err != nil && strings.Contains(err.Error(), long) {
			t.Errorf("%s: the error quotes the value", name)
		}
	}
	if is.revs.Len() != 0 {
		t.Fatalf("refused requests revoked %d entries", is.revs.Len())
	}

	// Without a store: Unimplemented. A store that fails: Unavailable.
	plain := newIssuer(t)
	_, err := plain.client.Revoke(withToken(plain.mint(t, admin(t0))), &tokenv1.RevokeRequest{Target: &tokenv1.RevokeRequest_Sid{Sid: "s"}})
	wantStatus(t, err, codes.Unimplemented, "")
	r, err := token.NewLocalRenewer(is.verifier, token.DefaultRenewalPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokenservice.NewServer(r, tokenservice.WithRevocations(failingStore{}, token.RevocationLimits{}, nil)); err == nil {
		t.Error("NewServer accepted zero revocation limits")
	}
}

type failingStore struct{}

func (failingStore) Revoke(context.Context, token.Revocation) error { return errors.New("store down") }

// Logout revokes the caller's own session: the token, its successors, and
// renewals still to come.
func TestLogout(t *testing.T) {
	is := newIssuer(t, revoking)
	tok := is.mint(t, claims(t0))
	is.clock.Set(t0.Add(12 * time.Minute))
	renewed, err := is.client.Renew(context.Background(), &tokenv1.RenewRequest{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := is.client.Logout(withToken(renewed.GetToken()), &tokenv1.LogoutRequest{})
	if err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if resp.GetRevoked().GetKind() != "sid" {
		t.Fatalf("Logout revoked %q, want the session", resp.GetRevoked().GetKind())
	}
	for _, tk := range []string{tok, renewed.GetToken()} {
		if _, err := is.verifier.Verify(context.Background(), tk); !errors.Is(err, token.ErrRevokedToken) {
			t.Fatalf("after Logout Verify = %v, want revoked", err)
		}
	}
	// Another session of the same subject is untouched.
	c := claims(t0)
	c.SessionID = "sid-2"
	if _, err := is.verifier.Verify(context.Background(), is.mint(t, c)); err != nil {
		t.Fatalf("another session after Logout: %v", err)
	}
}
