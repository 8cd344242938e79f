package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/token"
)

// A renewed bound token is bound to the same certificate: Successor carries
// cnf's x5t#S256, and so does the token LocalRenewer signs.
func TestRenewalKeepsCertificateBinding(t *testing.T) {
	r := newRenRig(t)
	thumb := token.CertThumbprint([]byte("client certificate DER"))
	c := renClaims(renT0)
	c.CertThumbprint = thumb
	tok := r.mint(t, c)
	r.clock.Advance(12 * time.Minute)
	sess := r.verify(t, tok)
	p := token.DefaultRenewalPolicy()
	next, err := p.Successor(sess, r.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if next.CertThumbprint != thumb {
		t.Fatalf("Successor().CertThumbprint = %q, want %q", next.CertThumbprint, thumb)
	}
	renewed, err := r.renewer(t, p).Renew(context.Background(), tok, sess)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.verify(t, renewed.Token).CertThumbprint(); got != thumb {
		t.Fatalf("renewed token bound to %q, want %q", got, thumb)
	}
	// A bearer token's successor stays a bearer token.
	bearer := r.verify(t, r.mint(t, renClaims(r.clock.Now().Add(-12*time.Minute))))
	next, err = p.Successor(bearer, r.clock.Now())
	if err != nil || next.CertThumbprint != "" {
		t.Fatalf("bearer successor: %q, %v", next.CertThumbprint, err)
	}
}
