package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakeclock"

	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// Tests of the renewal policy, the local renewer and UnverifiedClaims, from
// outside the package: only the exported API, as a service would use it.
// They map to research/security.md cases 32 (window, successor), 33
// (absolute cap) and the "Renewal pitfalls".

const (
	renIss = "https://auth.tollgate.test"
	renAud = "pricing"
)

// renT0 is where every fake clock starts; whole seconds, as tokens carry.
var renT0 = time.Unix(1_800_000_000, 0).UTC()

// renRig is an HS256 key, a verifier on a fake clock and a signer for it.
type renRig struct {
	clock  *fakeclock.Clock
	key    *token.Key
	v      *token.Verifier
	signer *token.Signer
}

func renSecret(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func renHMAC(t testing.TB, kid string) *token.Key {
	t.Helper()
	k, err := token.NewHMACKey(kid, token.HS256, renSecret(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRenRig(t testing.TB, opts ...token.VerifierOption) *renRig {
	t.Helper()
	r := &renRig{clock: fakeclock.New(renT0), key: renHMAC(t, "k1")}
	ks, err := token.NewKeySet(r.key)
	if err != nil {
		t.Fatal(err)
	}
	r.v, err = token.NewVerifier(ks, renIss, renAud, append([]token.VerifierOption{token.WithClock(r.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if r.signer, err = token.NewSigner(r.key); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *renRig) mint(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := r.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verify verifies tok at the rig's current time and fails the test if it
// does not verify.
func (r *renRig) verify(t testing.TB, tok string) *session.Session {
	t.Helper()
	s, err := r.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify at %v: %v", r.clock.Now().Sub(renT0), err)
	}
	return s
}

func (r *renRig) renewer(t testing.TB, p token.RenewalPolicy) *token.LocalRenewer {
	t.Helper()
	lr, err := token.NewLocalRenewer(r.v, p)
	if err != nil {
		t.Fatal(err)
	}
	return lr
}

// renClaims is a full claim set issued at iat for 15 minutes, first
// authenticated at iat, with a string and a numeric custom claim.
func renClaims(iat time.Time) token.Claims {
	return token.Claims{
		Issuer:          renIss,
		Subject:         "alice",
		Audience:        []string{renAud},
		IssuedAt:        iat,
		ExpiresAt:       iat.Add(15 * time.Minute),
		AuthTime:        iat,
		SessionID:       "sid-alice-1",
		AuthorizedParty: "checkout",
		Permissions:     []string{"prices.read", "prices.write"},
		Extra:           map[string]any{"seller_id": "s-42", "tier": 3},
	}
}

// header decodes the JOSE header of tok.
func header(t testing.TB, tok string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestDueWindow pins the window of case 32: a token is due once remaining ≤
// Window × lifetime, and never once it is past exp, leeway or not.
func TestDueWindow(t *testing.T) {
	r := newRenRig(t)
	sess := r.verify(t, r.mint(t, renClaims(renT0))) // iat T0, exp T0+15m: window 5 min
	p := token.DefaultRenewalPolicy()
	exp := renT0.Add(15 * time.Minute)
	cases := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"just issued", renT0, false},
		{"remaining 5m1s", exp.Add(-5*time.Minute - time.Second), false},
		{"remaining 5m+1ns", exp.Add(-5*time.Minute - time.Nanosecond), false},
		{"remaining exactly lifetime/3", exp.Add(-5 * time.Minute), true},
		{"remaining 4m59s", exp.Add(-5*time.Minute + time.Second), true},
		{"remaining 1ns", exp.Add(-time.Nanosecond), true},
		{"at exp", exp, false},
		{"10s past exp, inside the leeway", exp.Add(10 * time.Second), false},
		{"an hour past exp", exp.Add(time.Hour), false},
	}
	for _, c := range cases {
		if got := p.Due(sess, c.at); got != c.want {
			t.Errorf("%s: Due = %v, want %v", c.name, got, c.want)
		}
	}
	if p.Due(nil, exp.Add(-time.Minute)) {
		t.Error("Due(nil) = true")
	}
}

// Due runs on every call: saying no, outside the window or inside it for a
// token that cannot be renewed, allocates nothing.
func TestDueAllocatesNothing(t *testing.T) {
	r := newRenRig(t)
	sess := r.verify(t, r.mint(t, renClaims(renT0)))
	c := renClaims(renT0)
	c.ExpiresAt = renT0.Add(15 * time.Minute)
	c.AuthTime = renT0.Add(-8 * time.Hour).Add(10 * time.Minute) // the session ends at exp
	capped := r.verify(t, r.mint(t, c))
	p := token.DefaultRenewalPolicy()
	inWindow := renT0.Add(12 * time.Minute)
	for name, f := range map[string]func(){
		"outside the window":    func() { _ = p.Due(sess, renT0) },
		"inside the window":     func() { _ = p.Due(sess, inWindow) },
		"inside it, at the cap": func() { _ = p.Due(capped, inWindow) },
		"past exp":              func() { _ = p.Due(sess, renT0.Add(time.Hour)) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: Due allocates %v times per call", name, n)
		}
	}
	if p.Due(capped, inWindow) {
		t.Error("a token at the session's cap is due")
	}
}

// TestNoRenewalInsideLeeway: a token the verifier still accepts thanks to the
// leeway is never renewed (gin-jwt #176/#184 refreshed expired tokens).
func TestNoRenewalInsideLeeway(t *testing.T) {
	r := newRenRig(t) // leeway 30 s
	tok := r.mint(t, renClaims(renT0))
	lr := r.renewer(t, token.DefaultRenewalPolicy())
	r.clock.Set(renT0.Add(15*time.Minute + 10*time.Second))
	sess := r.verify(t, tok) // accepted: within the leeway
	if lr.Due(sess) {
		t.Error("Due = true for a token past exp")
	}
	if _, err := lr.Renew(context.Background(), tok, sess); !errors.Is(err, token.ErrNotRenewable) {
		t.Errorf("Renew past exp: err = %v, want ErrNotRenewable", err)
	}
}

// TestNoRenewalWithoutAuthTime: a session without auth_time has no absolute
// end, so it is never renewed, even deep inside its window.
func TestNoRenewalWithoutAuthTime(t *testing.T) {
	r := newRenRig(t)
	c := renClaims(renT0)
	c.AuthTime = time.Time{}
	tok := r.mint(t, c)
	lr := r.renewer(t, token.DefaultRenewalPolicy())
	r.clock.Set(renT0.Add(14 * time.Minute))
	sess := r.verify(t, tok)
	if !sess.AuthTime().IsZero() {
		t.Fatal("fixture: token has an auth_time")
	}
	if lr.Due(sess) || token.DefaultRenewalPolicy().Due(sess, r.clock.Now()) {
		t.Error("Due = true without auth_time")
	}
	if _, err := token.DefaultRenewalPolicy().Successor(sess, r.clock.Now()); !errors.Is(err, token.ErrNotRenewable) {
		t.Errorf("Successor without auth_time: err = %v, want ErrNotRenewable", err)
	}
	if _, err := lr.Renew(context.Background(), tok, sess); !errors.Is(err, token.ErrNotRenewable) {
		t.Errorf("Renew without auth_time: err = %v, want ErrNotRenewable", err)
	}
}

// TestNoRenewalAfterMaxSession: the policy's MaxSession ends renewal even
// when the verifier (with its longer maximum) still accepts the token.
func TestNoRenewalAfterMaxSession(t *testing.T) {
	r := newRenRig(t) // verifier: 8 h maximum session
	p := token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: time.Hour}
	lr := r.renewer(t, p)
	check := func(tok string, cases []struct {
		at   time.Duration
		want bool
	}) {
		t.Helper()
		for _, tc := range cases {
			r.clock.Set(renT0.Add(tc.at))
			sess := r.verify(t, tok)
			if got := lr.Due(sess); got != tc.want {
				t.Errorf("at T0+%v: Due = %v, want %v", tc.at, got, tc.want)
			}
			if !tc.want {
				if _, err := lr.Renew(context.Background(), tok, sess); !errors.Is(err, token.ErrNotRenewable) {
					t.Errorf("at T0+%v: Renew err = %v, want ErrNotRenewable", tc.at, err)
				}
			}
		}
	}
	// Authenticated at T0, issued at T0+43m, expiring at T0+58m: its window
	// opens at T0+53m and its successor is capped at the session's end,
	// T0+60m, which is still later than its own expiry.
	c := renClaims(renT0.Add(43 * time.Minute))
	c.AuthTime = renT0
	check(r.mint(t, c), []struct {
		at   time.Duration
		want bool
	}{
		{53 * time.Minute, true},
		{58*time.Minute - time.Second, true},
	})
	// Issued at T0+47m, expiring at T0+62m, past the policy's session end
	// (the verifier's 8 h still accept it): no successor can outlive it,
	// so it is never due, before, at or after the session's end.
	c = renClaims(renT0.Add(47 * time.Minute))
	c.AuthTime = renT0
	check(r.mint(t, c), []struct {
		at   time.Duration
		want bool
	}{
		{59 * time.Minute, false},
		{60*time.Minute - time.Nanosecond, false},
		{60 * time.Minute, false},
		{61 * time.Minute, false},
	})
}

// TestSuccessorClaims pins what the successor keeps and what it changes
// (case 32): same sub, sid, aud, iss, azp, perms, auth_time and custom
// claims; new jti; iat = now; exp = now + TTL.
func TestSuccessorClaims(t *testing.T) {
	r := newRenRig(t)
	tok := r.mint(t, renClaims(renT0))
	lr := r.renewer(t, token.DefaultRenewalPolicy())
	now := renT0.Add(12*time.Minute + 500*time.Millisecond)
	r.clock.Set(now)
	sess := r.verify(t, tok)

	c, err := lr.Policy().Successor(sess, now)
	if err != nil {
		t.Fatal(err)
	}
	wantIat := renT0.Add(12 * time.Minute) // whole seconds, as written
	if !c.IssuedAt.Equal(wantIat) || !c.ExpiresAt.Equal(wantIat.Add(15*time.Minute)) {
		t.Errorf("iat, exp = %v, %v; want %v, %v", c.IssuedAt, c.ExpiresAt, wantIat, wantIat.Add(15*time.Minute))
	}
	if c.ID != "" && c.ID == sess.ID() {
		t.Error("successor claims reuse the jti")
	}
	// The claims are a copy: changing them leaves the session alone.
	c.Permissions[0] = "admin.everything"
	c.Extra["seller_id"] = "s-evil"
	c.Audience[0] = "elsewhere"
	if sess.Permissions()[0] != "prices.read" || sess.Audience()[0] != renAud {
		t.Error("Successor's claims alias the session's slices")
	}
	if v, _ := sess.ClaimString("seller_id"); v != "s-42" {
		t.Error("Successor's claims alias the session's custom claims")
	}

	renewed, err := lr.Renew(context.Background(), tok, sess)
	if err != nil {
		t.Fatal(err)
	}
	ns := r.verify(t, renewed.Token)
	checks := []struct {
		what      string
		got, want any
	}{
		{"sub", ns.Subject(), sess.Subject()},
		{"sid", ns.SessionID(), "sid-alice-1"},
		{"iss", ns.Issuer(), renIss},
		{"aud", strings.Join(ns.Audience(), ","), renAud},
		{"azp", ns.AuthorizedParty(), "checkout"},
		{"perms", strings.Join(ns.Permissions(), ","), "prices.read,prices.write"},
		{"auth_time", ns.AuthTime(), renT0},
		{"iat", ns.IssuedAt(), wantIat},
		{"exp", ns.ExpiresAt(), wantIat.Add(15 * time.Minute)},
		{"Renewed.ExpiresAt", renewed.ExpiresAt, ns.ExpiresAt()},
		{"kid", ns.KeyID(), "k1"},
		{"typ", header(t, renewed.Token)["typ"], "at+jwt"},
	}
	for _, c := range checks {
		if t1, ok := c.got.(time.Time); ok {
			if !t1.Equal(c.want.(time.Time)) {
				t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
			}
			continue
		}
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if ns.ID() == "" || ns.ID() == sess.ID() {
		t.Errorf("jti %q: want a new one (old %q)", ns.ID(), sess.ID())
	}
	if v, ok := ns.ClaimString("seller_id"); !ok || v != "s-42" {
		t.Errorf("seller_id = %q, %v; want s-42", v, ok)
	}
	if v, ok := ns.Claim("tier"); !ok || v != json.Number("3") {
		t.Errorf("tier = %#v, %v; want the number 3", v, ok)
	}
	if names := strings.Join(ns.ClaimNames(), ","); names != "seller_id,tier" {
		t.Errorf("custom claims = %s, want seller_id,tier", names)
	}
	if renewed.Token == tok {
		t.Error("renewal returned the same token")
	}
}

// TestSuccessorCappedAtMaxSession: exp = auth_time + MaxSession when that
// comes before now + TTL.
func TestSuccessorCappedAtMaxSession(t *testing.T) {
	r := newRenRig(t)
	lr := r.renewer(t, token.DefaultRenewalPolicy())
	authTime := renT0.Add(-8*time.Hour + 10*time.Minute) // session ends at T0+10m
	c := renClaims(renT0)
	c.AuthTime = authTime
	c.ExpiresAt = renT0.Add(9 * time.Minute)
	tok := r.mint(t, c)
	r.clock.Set(renT0.Add(7 * time.Minute))
	sess := r.verify(t, tok)
	if !lr.Due(sess) {
		t.Fatal("fixture: token not due")
	}
	renewed, err := lr.Renew(context.Background(), tok, sess)
	if err != nil {
		t.Fatal(err)
	}
	ns := r.verify(t, renewed.Token)
	end := renT0.Add(10 * time.Minute)
	if !ns.ExpiresAt().Equal(end) || !renewed.ExpiresAt.Equal(end) {
		t.Errorf("exp = %v, want auth_time + MaxSession = %v", ns.ExpiresAt(), end)
	}
	if !ns.AuthTime().Equal(authTime) {
		t.Errorf("auth_time = %v, want %v", ns.AuthTime(), authTime)
	}
}

// TestSuccessorMustOutliveCurrent: a successor that would not expire later
// than the token it replaces is refused (ErrNotRenewable) rather than minted:
// clients and the remote renewer discard it anyway, and minting it on every
// call at the end of a session is signing work for nothing.
func TestSuccessorMustOutliveCurrent(t *testing.T) {
	r := newRenRig(t)
	p := token.DefaultRenewalPolicy()

	// At the cap: the current token already expires at auth_time + MaxSession.
	c := renClaims(renT0)
	c.AuthTime = renT0.Add(-8*time.Hour + 15*time.Minute) // ends at T0+15m = exp
	capped := r.mint(t, c)
	r.clock.Set(renT0.Add(12 * time.Minute))
	sess := r.verify(t, capped)
	if _, err := p.Successor(sess, r.clock.Now()); !errors.Is(err, token.ErrNotRenewable) {
		t.Errorf("successor of a token at the cap: err = %v, want ErrNotRenewable", err)
	}
	if p.Due(sess, r.clock.Now()) {
		t.Errorf("a token at the cap must not be due: its renewal would be refused on every call")
	}

	// A long token (1 h) in its window whose remaining time exceeds the TTL
	// (15 min): now + TTL comes before its exp.
	c = renClaims(renT0)
	c.ExpiresAt = renT0.Add(time.Hour)
	long := r.mint(t, c)
	r.clock.Set(renT0.Add(41 * time.Minute)) // 19 min left, window 20 min
	sess = r.verify(t, long)
	if p.Due(sess, r.clock.Now()) {
		t.Error("a token with more left than the TTL must not be due: its successor would expire earlier")
	}
	if _, err := p.Successor(sess, r.clock.Now()); !errors.Is(err, token.ErrNotRenewable) {
		t.Errorf("successor expiring before the current token: err = %v, want ErrNotRenewable", err)
	}
	r.clock.Set(renT0.Add(46 * time.Minute)) // 14 min left: now + TTL is later
	sess = r.verify(t, long)
	if !p.Due(sess, r.clock.Now()) {
		t.Error("with 14 min left the successor outlives the token: due")
	}
	sc, err := p.Successor(sess, r.clock.Now())
	if err != nil || !sc.ExpiresAt.After(sess.ExpiresAt()) {
		t.Errorf("successor with 14 min left: exp %v, err %v; want later than %v", sc.ExpiresAt, err, sess.ExpiresAt())
	}
}

// TestRenewSignsWithCurrentKey: after a rotation (new signing key first, old
// one kept for verification) the successor of an old-key token carries the
// new kid (case 32, "the current kid").
func TestRenewSignsWithCurrentKey(t *testing.T) {
	r := newRenRig(t)
	lr := r.renewer(t, token.DefaultRenewalPolicy()) // built before the rotation
	tok := r.mint(t, renClaims(renT0))

	k2 := renHMAC(t, "k2")
	ks, err := token.NewKeySet(k2, r.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.v.SetKeys(ks); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(renT0.Add(11 * time.Minute))
	sess := r.verify(t, tok) // old key, still in the set
	if sess.KeyID() != "k1" {
		t.Fatalf("fixture: kid %q", sess.KeyID())
	}
	renewed, err := lr.Renew(context.Background(), tok, sess)
	if err != nil {
		t.Fatal(err)
	}
	if kid := header(t, renewed.Token)["kid"]; kid != "k2" {
		t.Errorf("renewed token kid = %v, want k2", kid)
	}
	ns := r.verify(t, renewed.Token)
	if ns.KeyID() != "k2" {
		t.Errorf("renewed session kid = %q, want k2", ns.KeyID())
	}
	// Only k2 left: the renewed token still verifies, the old one does not.
	only, err := token.NewKeySet(k2)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.v.SetKeys(only); err != nil {
		t.Fatal(err)
	}
	if _, err := r.v.Verify(context.Background(), renewed.Token); err != nil {
		t.Errorf("renewed token after the old key left: %v", err)
	}
	if _, err := r.v.Verify(context.Background(), tok); err == nil {
		t.Error("old-key token verifies after its key left")
	}
}

// TestRenewalChainEndsAtMaxSession is case 33: a fake clock drives a chain
// of successive renewals, each at a random point inside the current token's
// window. The chain never passes auth_time + MaxSession, exp never goes
// down, auth_time never moves, every jti is new, and renewal stops with the
// last token expiring exactly at auth_time + MaxSession.
func TestRenewalChainEndsAtMaxSession(t *testing.T) {
	r := newRenRig(t)
	p := token.RenewalPolicy{Window: 1.0 / 3, TTL: 4 * time.Minute, MaxSession: 8 * time.Hour}
	lr := r.renewer(t, p)
	end := renT0.Add(p.MaxSession)
	rnd := mrand.New(mrand.NewPCG(33, 33))

	c := renClaims(renT0)
	c.ExpiresAt = renT0.Add(p.TTL)
	cur := r.mint(t, c)
	curSess := r.verify(t, cur)
	seen := map[string]bool{curSess.ID(): true}
	renewals := 0
	stopped := ""
	for range 1000 {
		life := curSess.ExpiresAt().Sub(curSess.IssuedAt())
		remaining := time.Duration(1 + rnd.Int64N(int64(life/3)))
		at := curSess.ExpiresAt().Add(-remaining)
		if now := r.clock.Now(); !at.After(now) {
			at = now.Add(time.Millisecond)
		}
		r.clock.Set(at)
		sess := r.verify(t, cur) // the current token is valid where it is renewed
		if !lr.Due(sess) {
			stopped = "not due"
			break
		}
		next, err := lr.Renew(context.Background(), cur, sess)
		if errors.Is(err, token.ErrNotRenewable) {
			stopped = "not renewable"
			break
		}
		if err != nil {
			t.Fatalf("renewal %d: %v", renewals+1, err)
		}
		ns := r.verify(t, next.Token)
		switch {
		case ns.ExpiresAt().After(end):
			t.Fatalf("renewal %d: exp %v past auth_time + MaxSession %v", renewals+1, ns.ExpiresAt(), end)
		case ns.ExpiresAt().Before(sess.ExpiresAt()):
			t.Fatalf("renewal %d: exp went down from %v to %v", renewals+1, sess.ExpiresAt(), ns.ExpiresAt())
		case !ns.AuthTime().Equal(renT0):
			t.Fatalf("renewal %d: auth_time moved to %v", renewals+1, ns.AuthTime())
		case seen[ns.ID()]:
			t.Fatalf("renewal %d: jti reused", renewals+1)
		case !ns.IssuedAt().Equal(at.Truncate(time.Second)):
			t.Fatalf("renewal %d: iat %v, want %v", renewals+1, ns.IssuedAt(), at.Truncate(time.Second))
		case !next.ExpiresAt.Equal(ns.ExpiresAt()):
			t.Fatalf("renewal %d: Renewed.ExpiresAt %v, token says %v", renewals+1, next.ExpiresAt, ns.ExpiresAt())
		case ns.SessionID() != curSess.SessionID():
			t.Fatalf("renewal %d: sid changed", renewals+1)
		}
		seen[ns.ID()] = true
		renewals++
		cur, curSess = next.Token, ns
	}
	if stopped == "" {
		t.Fatalf("renewal never stopped (%d renewals)", renewals)
	}
	if renewals < 100 {
		t.Fatalf("only %d renewals before the end; the test wants at least 100", renewals)
	}
	if !curSess.ExpiresAt().Equal(end) {
		t.Errorf("last token exp = %v, want auth_time + MaxSession = %v exactly", curSess.ExpiresAt(), end)
	}
	t.Logf("%d renewals, stopped: %s", renewals, stopped)

	// Nothing renews the last token, up to and past the end.
	for _, at := range []time.Time{end.Add(-time.Second), end, end.Add(10 * time.Second)} {
		r.clock.Set(at)
		sess, err := r.v.Verify(context.Background(), cur)
		if err != nil {
			continue // refused outright: certainly not renewed
		}
		if _, err := lr.Renew(context.Background(), cur, sess); !errors.Is(err, token.ErrNotRenewable) {
			t.Errorf("at end%+v: Renew err = %v, want ErrNotRenewable", at.Sub(end), err)
		}
	}
}

// TestNoRenewalForBadAuthTime covers the rest of case 33: auth_time in the
// future is refused by the verifier; auth_time older than the maximum
// session is refused by the verifier (its maximum) or not renewed (the
// policy's shorter one).
func TestNoRenewalForBadAuthTime(t *testing.T) {
	r := newRenRig(t)
	ctx := context.Background()

	c := renClaims(renT0)
	c.AuthTime = renT0.Add(5 * time.Minute) // after now + leeway and after iat
	if _, err := r.v.Verify(ctx, r.mint(t, c)); !errors.Is(err, token.ErrInvalidToken) {
		t.Errorf("auth_time in the future: Verify err = %v, want ErrInvalidToken", err)
	}

	c = renClaims(renT0)
	c.AuthTime = renT0.Add(-8*time.Hour - time.Minute) // past the verifier's 8 h
	if _, err := r.v.Verify(ctx, r.mint(t, c)); !errors.Is(err, token.ErrExpiredToken) {
		t.Errorf("auth_time older than MaxSession: Verify err = %v, want ErrExpiredToken", err)
	}

	p := token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: 2 * time.Hour}
	lr := r.renewer(t, p)
	c = renClaims(renT0)
	c.AuthTime = renT0.Add(-3 * time.Hour) // older than the policy's 2 h
	tok := r.mint(t, c)
	r.clock.Set(renT0.Add(14 * time.Minute))
	sess := r.verify(t, tok)
	if lr.Due(sess) {
		t.Error("Due = true for a session older than the policy's MaxSession")
	}
	if _, err := lr.Renew(ctx, tok, sess); !errors.Is(err, token.ErrNotRenewable) {
		t.Errorf("Renew of a session older than MaxSession: err = %v, want ErrNotRenewable", err)
	}
}

// TestNewLocalRenewerRefuses: a renewer whose tokens would be refused, or
// that cannot sign, is a constructor error.
func TestNewLocalRenewerRefuses(t *testing.T) {
	r := newRenRig(t, token.WithMaxLifetime(time.Hour), token.WithMaxSession(8*time.Hour))
	ok := token.DefaultRenewalPolicy()
	with := func(f func(*token.RenewalPolicy)) token.RenewalPolicy {
		p := ok
		f(&p)
		return p
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := token.NewPrivateKey("ed1", token.EdDSA, priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := edKey.Public()
	if err != nil {
		t.Fatal(err)
	}
	pubSet, err := token.NewKeySet(pub)
	if err != nil {
		t.Fatal(err)
	}
	verifyOnly, err := token.NewVerifier(pubSet, renIss, renAud)
	if err != nil {
		t.Fatal(err)
	}

	bad := []struct {
		name   string
		v      *token.Verifier
		policy token.RenewalPolicy
	}{
		{"nil verifier", nil, ok},
		{"TTL above the verifier's maximum lifetime", r.v, with(func(p *token.RenewalPolicy) { p.TTL = time.Hour + time.Second })},
		{"MaxSession above the verifier's", r.v, with(func(p *token.RenewalPolicy) { p.MaxSession = 8*time.Hour + time.Second })},
		{"verify-only key set", verifyOnly, ok},
		{"window 0", r.v, with(func(p *token.RenewalPolicy) { p.Window = 0 })},
		{"window 1", r.v, with(func(p *token.RenewalPolicy) { p.Window = 1 })},
		{"window negative", r.v, with(func(p *token.RenewalPolicy) { p.Window = -0.3 })},
		{"window above 1", r.v, with(func(p *token.RenewalPolicy) { p.Window = 1.5 })},
		{"window NaN", r.v, with(func(p *token.RenewalPolicy) { p.Window = math.NaN() })},
		{"TTL 0", r.v, with(func(p *token.RenewalPolicy) { p.TTL = 0 })},
		{"TTL negative", r.v, with(func(p *token.RenewalPolicy) { p.TTL = -time.Minute })},
		{"MaxSession 0", r.v, with(func(p *token.RenewalPolicy) { p.MaxSession = 0 })},
	}
	for _, b := range bad {
		if lr, err := token.NewLocalRenewer(b.v, b.policy); err == nil || lr != nil {
			t.Errorf("%s: NewLocalRenewer = %v, %v; want an error", b.name, lr, err)
		}
	}
	if _, err := token.NewLocalRenewer(verifyOnly, ok); !errors.Is(err, token.ErrKey) {
		t.Errorf("verify-only: err = %v, want ErrKey", err)
	}
	// The boundaries themselves are fine.
	edge := token.RenewalPolicy{Window: 0.5, TTL: time.Hour, MaxSession: 8 * time.Hour}
	if _, err := token.NewLocalRenewer(r.v, edge); err != nil {
		t.Errorf("TTL = maximum lifetime, MaxSession = verifier's: %v", err)
	}
}

// TestRenewAfterRotationToVerifyOnly: the signing key is looked up on every
// renewal, so a key set that lost its signing key makes Renew fail rather
// than sign with a key that left the set.
func TestRenewAfterRotationToVerifyOnly(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.NewPrivateKey("ed1", token.EdDSA, priv)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(k)
	if err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(renT0)
	v, err := token.NewVerifier(ks, renIss, renAud, token.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	lr, err := token.NewLocalRenewer(v, token.DefaultRenewalPolicy())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Sign(renClaims(renT0))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.Public()
	if err != nil {
		t.Fatal(err)
	}
	pubSet, err := token.NewKeySet(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.SetKeys(pubSet); err != nil {
		t.Fatal(err)
	}
	clock.Set(renT0.Add(12 * time.Minute))
	sess, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lr.Renew(context.Background(), tok, sess); !errors.Is(err, token.ErrKey) {
		t.Errorf("Renew with a verify-only set: err = %v, want ErrKey", err)
	}
}

// TestRenewHonoursContext: a cancelled context mints nothing.
func TestRenewHonoursContext(t *testing.T) {
	r := newRenRig(t)
	lr := r.renewer(t, token.DefaultRenewalPolicy())
	tok := r.mint(t, renClaims(renT0))
	r.clock.Set(renT0.Add(12 * time.Minute))
	sess := r.verify(t, tok)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := lr.Renew(ctx, tok, sess); !errors.Is(err, context.Canceled) || got.Token != "" {
		t.Errorf("Renew on a cancelled context = %q, %v", got.Token, err)
	}
}

// rawToken builds an unsigned compact token from header and payload JSON.
func rawToken(hdr, payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(payload)) + ".c2lnbmF0dXJl"
}

// unverifiedExp is the exp UnverifiedClaims reads.
func unverifiedExp(tok string) (time.Time, error) {
	c, err := token.UnverifiedClaims(tok)
	return c.ExpiresAt, err
}

// TestUnverifiedExp: clients read exp without keys, and only a plain JSON
// number in a well-formed, bounded token counts.
func TestUnverifiedExp(t *testing.T) {
	r := newRenRig(t)
	tok := r.mint(t, renClaims(renT0))
	exp, err := unverifiedExp(tok)
	if err != nil || !exp.Equal(renT0.Add(15*time.Minute)) {
		t.Fatalf("UnverifiedClaims(signed) = %v, %v; want %v", exp, err, renT0.Add(15*time.Minute))
	}
	const hdr = `{"alg":"HS256","typ":"at+jwt"}`
	if got, err := unverifiedExp(rawToken(hdr, `{"sub":"a","exp":1800000900}`)); err != nil || got.Unix() != 1800000900 {
		t.Errorf("hand-built token: %v, %v", got, err)
	}

	enc := base64.RawURLEncoding
	// A payload whose standard-alphabet encoding holds '+' or '/'.
	stdPayload := base64.RawStdEncoding.EncodeToString([]byte(`{"exp":1800000900,"x":"???>>>~~~"}`))
	if !strings.ContainsAny(stdPayload, "+/") {
		t.Fatalf("fixture: %s has no + or /", stdPayload)
	}
	padded := base64.URLEncoding.EncodeToString([]byte(`{"exp":1800000900 }`))
	if !strings.HasSuffix(padded, "=") {
		t.Fatalf("fixture: %s is not padded", padded)
	}
	bad := map[string]string{
		"exp as a string":       rawToken(hdr, `{"exp":"1800000900"}`),
		"exp missing":           rawToken(hdr, `{"sub":"a","iat":1800000000}`),
		"exp null":              rawToken(hdr, `{"exp":null}`),
		"exp true":              rawToken(hdr, `{"exp":true}`),
		"exp an object":         rawToken(hdr, `{"exp":{"v":1}}`),
		"exp twice":             rawToken(hdr, `{"exp":1800000900,"exp":9999999999}`),
		"exp twice, escaped":    rawToken(hdr, `{"exp":1800000900,"e\u0078p":9999999999}`),
		"exp beyond year 9999":  rawToken(hdr, `{"exp":1e300}`),
		"claims null":           rawToken(hdr, `null`),
		"claims an array":       rawToken(hdr, `[{"exp":1800000900}]`),
		"claims a number":       rawToken(hdr, `1800000900`),
		"claims not JSON":       rawToken(hdr, `exp=1800000900`),
		"claims truncated JSON": rawToken(hdr, `{"exp":1800000900`),
		"claims invalid UTF-8":  enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte("{\"exp\":1800000900,\"n\":\"\xff\"}")) + ".c2ln",
		"empty":                 "",
		"one segment":           enc.EncodeToString([]byte(`{"exp":1800000900}`)),
		"two segments":          enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(`{"exp":1800000900}`)),
		"four segments":         rawToken(hdr, `{"exp":1800000900}`) + ".eA",
		"empty signature":       strings.TrimSuffix(rawToken(hdr, `{"exp":1800000900}`), "c2lnbmF0dXJl"),
		"padding":               enc.EncodeToString([]byte(hdr)) + "." + padded + ".c2ln",
		"standard alphabet":     enc.EncodeToString([]byte(hdr)) + "." + stdPayload + ".c2ln",
		"embedded space":        strings.Replace(rawToken(hdr, `{"exp":1800000900}`), ".", ". ", 1),
	}
	for name, tok := range bad {
		if got, err := unverifiedExp(tok); !errors.Is(err, token.ErrUnreadable) {
			t.Errorf("%s: UnverifiedClaims exp = %v, %v; want ErrUnreadable", name, got, err)
		}
	}

	// The size cap: exactly 64 KiB is read, one byte more is not (the
	// signature segment is never decoded, so it pads the size).
	base := rawToken(hdr, `{"exp":1800000900}`)
	pad := token.MaxTokenSizeLimit - len(base)
	atCap := base + strings.Repeat("A", pad)
	if len(atCap) != 64<<10 {
		t.Fatalf("fixture: %d bytes", len(atCap))
	}
	if _, err := unverifiedExp(atCap); err != nil {
		t.Errorf("64 KiB token: %v", err)
	}
	if _, err := unverifiedExp(atCap + "A"); !errors.Is(err, token.ErrUnreadable) {
		t.Errorf("64 KiB + 1 token: err = %v, want ErrUnreadable", err)
	}
	if _, err := unverifiedExp(rawToken(hdr, `{"exp":1800000900,"pad":"`+strings.Repeat("x", 70<<10)+`"}`)); !errors.Is(err, token.ErrUnreadable) {
		t.Errorf("70 KiB of claims: err = %v, want ErrUnreadable", err)
	}
}

// TestUnverifiedClaimsIgnoreSignature: the expiry is read from any
// well-formed token, signed or not, by anyone: it only orders tokens a client
// was handed and must never decide anything else. Pin that a forged token is
// readable (so no caller mistakes it for verification).
func TestUnverifiedClaimsIgnoreSignature(t *testing.T) {
	forged := rawToken(`{"alg":"none"}`, `{"exp":4102444800,"sub":"root"}`)
	exp, err := unverifiedExp(forged)
	if err != nil || exp.Unix() != 4102444800 {
		t.Fatalf("UnverifiedClaims(forged) = %v, %v", exp, err)
	}
	r := newRenRig(t)
	if _, err := r.v.Verify(context.Background(), forged); err == nil {
		t.Fatal("the verifier accepted the forged token")
	}
}
