package interceptors_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// Tests of the successor checks: a renewed token arrives in metadata that
// anything on the path can write, so the client takes only one that
// continues its session. Every successor here is offered through real
// trailers (or headers) of real calls on loopback TCP.

const (
	clIss = "https://auth.tollgate.test"
	clAud = "pricing"
)

// sessionClaims are the claims of a session's token issued at iat and
// living life: the identity every successor must repeat.
func sessionClaims(iat time.Time, life time.Duration) token.Claims {
	return token.Claims{
		Issuer:          clIss,
		Subject:         "alice",
		Audience:        []string{clAud},
		IssuedAt:        iat,
		ExpiresAt:       iat.Add(life),
		SessionID:       "sid-1",
		AuthorizedParty: "web",
	}
}

func (m *clMinter) sign(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := m.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned builds a token of the given claims with a junk signature, for
// claim sets the Signer refuses to write (no iat). The client holds no key,
// so only its claims matter to it.
func unsigned(t testing.TB, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt"}`)) + "." + enc.EncodeToString(payload) + ".c2lnbmF0dXJl"
}

// offerThroughTrailer makes one Get whose trailer carries tok.
func offerThroughTrailer(t *testing.T, r *clRig, tok string) {
	t.Helper()
	r.srv.set(plan{trailer: tok})
	if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	r.srv.set(plan{})
}

// TestForgedSuccessorRefused is the bug: a "renewed" token of the right
// session but expiring in 2286, in the trailer or the header of a unary
// call or of any stream, never replaces the client's token, and the next
// call still carries the client's own.
func TestForgedSuccessorRefused(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, forger := newClMinter(t), newClMinter(t)
	first := sessionClaims(clNow.Add(-8*time.Minute), 10*time.Minute)
	tok0 := m.sign(t, first)
	forgedClaims := first
	forgedClaims.IssuedAt = clNow
	forgedClaims.ExpiresAt = time.Unix(9_999_999_999, 0)
	forged := forger.sign(t, forgedClaims)

	var swaps atomic.Int64
	src := newSource(t, tok0, interceptors.OnRenew(func(string, time.Time) { swaps.Add(1) }))
	r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer r.stop()

	for _, p := range []plan{{trailer: forged}, {header: forged}} {
		r.srv.set(p)
		if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}); err != nil {
			t.Fatal(err)
		}
		for _, sc := range streamCases {
			if err := sc.run(t, r.client); err != nil {
				t.Fatalf("%s: %v", sc.name, err)
			}
			wantAuth(t, r.srv.lastAuth(t), tok0)
		}
	}
	wantToken(t, src, tok0, first.ExpiresAt, "after the forged successor")
	if n := swaps.Load(); n != 0 {
		t.Errorf("OnRenew called %d times", n)
	}
	r.srv.set(plan{})
	if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "2"}); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok0)
}

// TestSuccessorMustContinueTheSession: the first token was issued 8 min
// before clNow and lives 10 min. A successor is taken only when it repeats
// iss, sub, sid, aud and azp, has an iat at most 30 s ahead of the
// source's clock, and lives at most 10 min; each case below breaks one of
// those, except the ones accepted at the boundary.
func TestSuccessorMustContinueTheSession(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	first := sessionClaims(clNow.Add(-8*time.Minute), 10*time.Minute)
	good := sessionClaims(clNow, 10*time.Minute)
	edit := func(f func(c *token.Claims)) func(testing.TB) string {
		return func(t testing.TB) string {
			c := good
			c.Audience = append([]string(nil), good.Audience...)
			f(&c)
			return m.sign(t, c)
		}
	}
	noIat := func(t testing.TB) string {
		return unsigned(t, map[string]any{"iss": clIss, "sub": "alice", "aud": clAud, "sid": "sid-1", "azp": "web",
			"exp": good.ExpiresAt.Unix(), "jti": "j"})
	}
	cases := []struct {
		name   string
		tok    func(testing.TB) string
		accept bool
	}{
		{"a genuine successor", edit(func(*token.Claims) {}), true},
		{"iat at the 30 s skew", edit(func(c *token.Claims) {
			c.IssuedAt = clNow.Add(30 * time.Second)
			c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute)
		}), true},
		{"cut short (end of the session)", edit(func(c *token.Claims) { c.ExpiresAt = clNow.Add(5 * time.Minute) }), true},
		{"another iss", edit(func(c *token.Claims) { c.Issuer = "https://evil.test" }), false},
		{"another sub", edit(func(c *token.Claims) { c.Subject = "root" }), false},
		{"another sid", edit(func(c *token.Claims) { c.SessionID = "sid-2" }), false},
		{"no sid", edit(func(c *token.Claims) { c.SessionID = "" }), false},
		{"another aud", edit(func(c *token.Claims) { c.Audience = []string{"billing"} }), false},
		{"an extra aud", edit(func(c *token.Claims) { c.Audience = append(c.Audience, "billing") }), false},
		{"another azp", edit(func(c *token.Claims) { c.AuthorizedParty = "batch" }), false},
		{"no azp", edit(func(c *token.Claims) { c.AuthorizedParty = "" }), false},
		{"bound to a client certificate", edit(func(c *token.Claims) { c.CertThumbprint = token.CertThumbprint([]byte("cert")) }), false},
		{"a lifetime 1 s too long", edit(func(c *token.Claims) { c.ExpiresAt = c.ExpiresAt.Add(time.Second) }), false},
		{"iat 31 s in the future", edit(func(c *token.Claims) {
			c.IssuedAt = clNow.Add(31 * time.Second)
			c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute)
		}), false},
		{"no iat", noIat, false},
		{"not later than the current token", edit(func(c *token.Claims) {
			c.IssuedAt = first.IssuedAt
			c.ExpiresAt = first.ExpiresAt
		}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok0 := m.sign(t, first)
			var swaps atomic.Int64
			src := newSource(t, tok0, interceptors.OnRenew(func(string, time.Time) { swaps.Add(1) }))
			r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
			defer r.stop()

			tok := tc.tok(t)
			offerThroughTrailer(t, r, tok)
			offerThroughTrailer(t, r, "")
			want, wantSwaps := tok0, int64(0)
			if tc.accept {
				want, wantSwaps = tok, 1
			}
			if src.Token() != want {
				t.Errorf("accepted %v, want %v", src.Token() == tok, tc.accept)
			}
			wantAuth(t, r.srv.lastAuth(t), want)
			if n := swaps.Load(); n != wantSwaps {
				t.Errorf("OnRenew called %d times, want %d", n, wantSwaps)
			}
		})
	}
}

// TestSuccessorKeepsCertificateBinding: the successor of a bound token must
// be bound to the same client certificate; one bound to another, or a
// bearer token, does not continue the session.
func TestSuccessorKeepsCertificateBinding(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	thumb, other := token.CertThumbprint([]byte("cert A")), token.CertThumbprint([]byte("cert B"))
	first := sessionClaims(clNow.Add(-8*time.Minute), 10*time.Minute)
	first.CertThumbprint = thumb
	for _, tc := range []struct {
		name   string
		thumb  string
		accept bool
	}{
		{"the same certificate", thumb, true},
		{"another certificate", other, false},
		{"unbound", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t, m.sign(t, first))
			r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
			defer r.stop()
			next := sessionClaims(clNow, 10*time.Minute)
			next.CertThumbprint = tc.thumb
			tok := m.sign(t, next)
			offerThroughTrailer(t, r, tok)
			if got := src.Token() == tok; got != tc.accept {
				t.Fatalf("accepted %v, want %v", got, tc.accept)
			}
		})
	}
}

// TestFirstTokenWithoutIat: a first token without iat lives, for the
// successor checks, from the source's construction to its exp: 5 min here,
// on the source's clock.
func TestFirstTokenWithoutIat(t *testing.T) {
	m := newClMinter(t)
	first := unsigned(t, map[string]any{"iss": clIss, "sub": "alice", "aud": clAud, "sid": "sid-1", "azp": "web",
		"exp": clNow.Add(5 * time.Minute).Unix()})
	for _, tc := range []struct {
		life   time.Duration
		accept bool
	}{{5*time.Minute + time.Second, false}, {5 * time.Minute, true}} {
		src := newSource(t, first)
		succ := m.sign(t, sessionClaims(clNow.Add(10*time.Second), tc.life))
		if got := src.Offer(succ); got != tc.accept {
			t.Errorf("successor living %v: Offer = %v, want %v", tc.life, got, tc.accept)
		}
	}
}

// TestMaxRenewedLifetime: a client that starts with a 10-minute token from
// an issuer renewing for 15 minutes takes the 15-minute successor once it
// says so, and still refuses a longer one.
func TestMaxRenewedLifetime(t *testing.T) {
	m := newClMinter(t)
	first := m.sign(t, sessionClaims(clNow.Add(-8*time.Minute), 10*time.Minute))
	renewed := m.sign(t, sessionClaims(clNow, 15*time.Minute))
	if newSource(t, first).Offer(renewed) {
		t.Fatal("a successor living longer than the first token taken without MaxRenewedLifetime")
	}
	if !newSource(t, first, interceptors.MaxRenewedLifetime(15*time.Minute)).Offer(renewed) {
		t.Fatal("MaxRenewedLifetime(15m): the 15-minute successor refused")
	}
	longer := m.sign(t, sessionClaims(clNow, 15*time.Minute+time.Second))
	if newSource(t, first, interceptors.MaxRenewedLifetime(15*time.Minute)).Offer(longer) {
		t.Fatal("MaxRenewedLifetime(15m): a longer successor taken")
	}
}

// TestVerifyRenewalsWith: with the issuer's key, a successor whose claims
// are all right but whose signature is not is refused; without it the same
// token passes the claim checks (so the verifier is what refused it), and a
// genuinely signed successor is taken either way.
func TestVerifyRenewalsWith(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, forger := newClMinter(t), newClMinter(t) // both sign as kid k1
	ks, err := token.NewKeySet(m.signer.Key())
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, clIss, clAud, token.WithClock(func() time.Time { return clNow }))
	if err != nil {
		t.Fatal(err)
	}
	first := sessionClaims(clNow.Add(-8*time.Minute), 10*time.Minute)
	succ := sessionClaims(clNow, 10*time.Minute)
	forged, genuine := forger.sign(t, succ), m.sign(t, succ)
	if _, err := v.Verify(context.Background(), m.sign(t, first)); err != nil {
		t.Fatalf("fixture: the first token does not verify: %v", err)
	}

	for _, verified := range []bool{true, false} {
		var opts []interceptors.TokenSourceOption
		if verified {
			opts = append(opts, interceptors.VerifyRenewalsWith(v))
		}
		tok0 := m.sign(t, first)
		src := newSource(t, tok0, opts...)
		r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
		offerThroughTrailer(t, r, forged)
		if took := src.Token() == forged; took == verified {
			t.Errorf("VerifyRenewalsWith %v: the wrongly signed successor taken: %v", verified, took)
		}
		if verified {
			wantAuth(t, r.srv.lastAuth(t), tok0)
			offerThroughTrailer(t, r, genuine)
			if src.Token() != genuine {
				t.Error("VerifyRenewalsWith: the genuine successor was refused")
			}
		}
		r.stop()
	}
}

// TestNewTokenSourceRefusesNilOptions: a nil clock or verifier is a
// mistake of the caller's, refused at construction (a nil verifier would
// otherwise silently verify nothing). The error never holds the token.
func TestNewTokenSourceRefusesNilOptions(t *testing.T) {
	m := newClMinter(t)
	tok := m.at(t, 10*time.Minute)
	for name, opt := range map[string]interceptors.TokenSourceOption{
		"TokenSourceClock(nil)":   interceptors.TokenSourceClock(nil),
		"VerifyRenewalsWith(nil)": interceptors.VerifyRenewalsWith(nil),
		"MaxRenewedLifetime(-1)":  interceptors.MaxRenewedLifetime(-time.Second),
	} {
		src, err := interceptors.NewTokenSource(tok, opt)
		if err == nil || src != nil {
			t.Errorf("%s: NewTokenSource = %v, %v; want an error", name, src, err)
		} else if strings.Contains(err.Error(), tok) {
			t.Errorf("%s: the error holds the token", name)
		}
	}
}
