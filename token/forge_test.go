package token_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// The zero Session, the only one code outside the verifier can make, is
// never taken for a verified one: the verifier's clock finds it expired, it
// is never due for renewal and never renewed, while the session the
// verifier built from the same claims is all of those.
func TestForgedSessionIsNotVerified(t *testing.T) {
	r := newRenRig(t)
	p := token.DefaultRenewalPolicy()
	lr := r.renewer(t, p)
	tok := r.mint(t, renClaims(renT0))
	real := r.verify(t, tok)
	r.clock.Advance(12 * time.Minute) // inside the last third of 15 minutes

	if r.v.Expired(real) || !lr.Due(real) {
		t.Fatalf("the verified session: Expired %v, Due %v; want live and due", r.v.Expired(real), lr.Due(real))
	}
	for name, forged := range map[string]*session.Session{"zero": {}, "new": new(session.Session)} {
		if forged.Subject() != "" || forged.Permissions() != nil || len(forged.ClaimNames()) != 0 ||
			forged.ConsumerKey() != "" || forged.Has("x") || !forged.ValidUntil().IsZero() {
			t.Errorf("%s: a forged session holds something: %v", name, forged)
		}
		if !r.v.Expired(forged) {
			t.Errorf("%s: Verifier.Expired(forged) = false", name)
		}
		if p.Due(forged, r.clock.Now()) || lr.Due(forged) {
			t.Errorf("%s: a forged session is due for renewal", name)
		}
		if _, err := p.Successor(forged, r.clock.Now()); !errors.Is(err, token.ErrNotRenewable) {
			t.Errorf("%s: Successor(forged) = %v, want ErrNotRenewable", name, err)
		}
		if rn, err := lr.Renew(context.Background(), tok, forged); err == nil {
			t.Errorf("%s: Renew(forged) = %+v, want an error", name, rn)
		}
	}
}
