package interceptors

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/benchpair"
	"github.com/tollgate/tollgate/token"
)

// BenchmarkJWKSKeys measures, first, a cache-hit unary call (TestService.Get,
// ES256) through a guard whose verifier follows a JWKS (served on
// loopback HTTP; its background refresh scheduled an hour out) against the
// same call through a guard of the same key loaded statically, in tight
// alternation over bufconn. The hot path reads either key set through the
// same atomic pointer, so the target is ≤ 1.02×. Then an uncached
// verification (Verifier.Verify with the cache off) with the key as the
// JWKS parsed it against the statically loaded key: ≤ 1.05×.
//
//	go test -run=^$ -bench=BenchmarkJWKSKeys -benchmem ./interceptors
func BenchmarkJWKSKeys(b *testing.B) {
	sk := newSigningKey(b, "k1")
	static, jwks := staticAndJWKSVerifiers(b, sk, token.WithClock(func() time.Time { return t0 }))
	_, srvS := guardOn(b, static)
	_, srvJ := guardOn(b, jwks)
	cs, stopS := serveBufconn(b, srvS)
	defer stopS()
	cj, stopJ := serveBufconn(b, srvJ)
	defer stopJ()
	tok, err := sk.signer.Sign(claims(t0))
	if err != nil {
		b.Fatal(err)
	}
	call := getCall(b, tok)
	call(cj)()
	call(cs)()
	b.Run("hit-call/jwks-vs-static", func(b *testing.B) { benchpair.Alternate(b, 1, "call", call(cj), call(cs)) })

	us, uj := staticAndJWKSVerifiers(b, sk, token.WithClock(func() time.Time { return t0 }), token.WithCache(0, 0))
	verify := func(v *token.Verifier) func() {
		return func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("uncached-verify/jwks-vs-static", func(b *testing.B) {
		benchpair.Alternate(b, 1, "verify", benchpair.OnFreshGoroutine(verify(uj)), benchpair.OnFreshGoroutine(verify(us)))
	})
}

// staticAndJWKSVerifiers returns a verifier of sk's public key loaded
// statically and one following a JWKS that publishes it.
func staticAndJWKSVerifiers(b *testing.B, sk signingKey, opts ...token.VerifierOption) (static, jwks *token.Verifier) {
	b.Helper()
	pub, err := sk.key.Public()
	if err != nil {
		b.Fatal(err)
	}
	ks, err := token.NewKeySet(pub)
	if err != nil {
		b.Fatal(err)
	}
	doc, err := token.MarshalJWKS(pub)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(doc)
	}))
	b.Cleanup(srv.Close)
	j, err := token.NewJWKS(context.Background(), srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { j.Close() })
	if static, err = token.NewVerifier(ks, testIss, testAud, opts...); err != nil {
		b.Fatal(err)
	}
	jwks, err = token.NewVerifierFor([]token.Issuer{{Name: testIss, Keys: j, Audiences: []string{testAud}, Profile: token.TollgateProfile()}}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return static, jwks
}
