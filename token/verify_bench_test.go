package token

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/benchpair"
	"github.com/tollgate/tollgate/session"
)

// Benchmarks for docs/performance.md (names are parsed by the report tool):
//
//	BenchmarkVerify/<alg>/cached      default verifier, after one warm-up Verify
//	BenchmarkVerify/<alg>/uncached    WithCache(0, 0): every call verifies in full
//	BenchmarkVerify/<alg>/golang-jwt  baseline: golang-jwt's parser with the same checks
//	BenchmarkVerify/<alg>/alternating uncached vs golang-jwt, alternating, fresh goroutines
//	BenchmarkVerify/HS256/vs-hmac-floor uncached vs a bare crypto/hmac check of the
//	                                  same token, alternating, fresh goroutines
//	BenchmarkSign/<alg>               Signer.Sign
//
// The clock is fixed so tokens never expire during long runs.

// benchClaims is the golang-jwt baseline's claim type: the registered
// claims plus the same extra fields tollgate reads.
type benchClaims struct {
	jwt.RegisteredClaims
	SID      string           `json:"sid,omitempty"`
	AZP      string           `json:"azp,omitempty"`
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	Perms    []string         `json:"perms,omitempty"`
	SellerID string           `json:"seller_id,omitempty"`
}

var benchAlgs = []string{HS256, ES256, EdDSA}

// benchTokenClaims are realistic claims: iss, sub, aud, exp, iat, nbf, jti,
// sid, azp, auth_time, three perms and a seller_id.
func benchTokenClaims() Claims {
	return Claims{
		Issuer:          testIss,
		Subject:         "user-8f14e45f",
		Audience:        []string{testAud},
		IssuedAt:        fixedNow.Add(-time.Minute),
		NotBefore:       fixedNow.Add(-time.Minute),
		ExpiresAt:       fixedNow.Add(14 * time.Minute),
		AuthTime:        fixedNow.Add(-2 * time.Hour),
		ID:              "Yq3c8k2xT0m9vJ4bN7aLzw",
		SessionID:       "sess-0c9d1f2e",
		AuthorizedParty: "checkout-service",
		Permissions:     []string{"prices.read", "prices.write", "orders.*"},
		Extra:           map[string]any{"seller_id": "seller-4711"},
	}
}

func fixedClock() time.Time { return fixedNow }

func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	for _, alg := range benchAlgs {
		key := newKey(b, "bench-"+alg, alg)
		signer, err := NewSigner(key)
		if err != nil {
			b.Fatal(err)
		}
		tok, err := signer.Sign(benchTokenClaims())
		if err != nil {
			b.Fatal(err)
		}
		ks := keySet(b, key)
		uncached, err := NewVerifier(ks, testIss, testAud, WithClock(fixedClock), WithCache(0, 0))
		if err != nil {
			b.Fatal(err)
		}
		verify := func() {
			if _, err := uncached.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		p := jwt.NewParser(
			jwt.WithValidMethods([]string{alg}),
			jwt.WithLeeway(30*time.Second),
			jwt.WithIssuer(testIss),
			jwt.WithAudience(testAud),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithStrictDecoding(),
			jwt.WithTimeFunc(fixedClock),
		)
		keyfunc := func(*jwt.Token) (any, error) { return key.verifyKey, nil }
		golangJWT := func() {
			var c benchClaims
			if _, err := p.ParseWithClaims(tok, &c, keyfunc); err != nil {
				b.Fatal(err)
			}
		}

		b.Run(alg, func(b *testing.B) {
			b.Run("cached", func(b *testing.B) {
				v, err := NewVerifier(ks, testIss, testAud, WithClock(fixedClock))
				if err != nil {
					b.Fatal(err)
				}
				want, err := v.Verify(ctx, tok) // warm-up: fills the cache
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					s, err := v.Verify(ctx, tok)
					if err != nil || s != want {
						b.Fatal("not a cache hit", err)
					}
				}
			})
			b.Run("uncached", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					verify()
				}
			})
			b.Run("golang-jwt", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					golangJWT()
				}
			})
			// The claim: both in tight alternation, each on a fresh
			// goroutine, as a server runs them (a long-lived benchmark
			// goroutine hides the cost of growing a small stack).
			b.Run("alternating", func(b *testing.B) {
				benchpair.Alternate(b, 1, "verify", benchpair.OnFreshGoroutine(verify), benchpair.OnFreshGoroutine(golangJWT))
			})
			if alg == HS256 {
				// The floor: what any HS256 check must do at the least,
				// written as plainly as crypto/hmac allows, with none of
				// the header, claim or shape checks.
				secret := key.verifyKey.([]byte)
				floor := func() {
					dot := strings.LastIndexByte(tok, '.')
					sig, err := b64.DecodeString(tok[dot+1:])
					if err != nil {
						b.Fatal(err)
					}
					m := hmac.New(sha256.New, secret)
					m.Write([]byte(tok[:dot]))
					if !hmac.Equal(m.Sum(nil), sig) {
						b.Fatal("floor: signature invalid")
					}
				}
				b.Run("vs-hmac-floor", func(b *testing.B) {
					benchpair.Alternate(b, 1, "verify", benchpair.OnFreshGoroutine(verify), benchpair.OnFreshGoroutine(floor))
				})
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range benchAlgs {
		signer, err := NewSigner(newKey(b, "bench-"+alg, alg))
		if err != nil {
			b.Fatal(err)
		}
		c := benchTokenClaims()
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := signer.Sign(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSessionHas: Has is asked on every guarded call. A session of a
// few grants reads them in place; the old map of exact grants plus a list
// of prefixes (refSession, claims_ref_test.go) is the baseline, in
// alternating batches of 1000 calls over hits, wildcard hits and misses.
func BenchmarkSessionHas(b *testing.B) {
	key := newHMAC(b, testKID, HS256)
	v := newVerifier(b, keySet(b, key), nil, WithCache(0, 0))
	asked := []string{"prices.read", "orders.create", "billing.read", "prices.write", "orders", "admin.users.delete"}
	for _, n := range []int{3, 8, 40} {
		perms := []string{"prices.read", "prices.write", "orders.*"}
		for i := len(perms); i < n; i++ {
			perms = append(perms, "perm"+itoa(int64(i))+".read")
		}
		c := with(claimsAt(fixedNow), "perms", perms)
		s, old := newAndRefSession(b, v, key, c)
		var sink bool
		b.Run(itoa(int64(n))+"-grants-vs-map", func(b *testing.B) {
			benchpair.Alternate(b, 1000, "call", func() {
				for i := range 1000 {
					sink = s.Has(asked[i%len(asked)])
				}
			}, func() {
				for i := range 1000 {
					sink = old.has(asked[i%len(asked)])
				}
			})
		})
		_ = sink
	}
}

// BenchmarkSessionClaimString: ownership rules read a custom claim on every
// guarded call. The claims are a sorted slice, read in place when there
// are a few; the old map (refClaimString) is the baseline, in alternating
// batches of 1000 calls over present and absent names.
func BenchmarkSessionClaimString(b *testing.B) {
	key := newHMAC(b, testKID, HS256)
	v := newVerifier(b, keySet(b, key), nil, WithCache(0, 0))
	for _, n := range []int{1, 4, 5, 30} {
		c := claimsAt(fixedNow)
		asked := []string{"seller_id", "tenant", "missing"}
		for i := 1; i < n; i++ {
			c["claim_"+itoa(int64(i))] = "value-" + itoa(int64(i))
			if i%7 == 0 {
				asked = append(asked, "claim_"+itoa(int64(i)))
			}
		}
		s, old := newAndRefSession(b, v, key, c)
		var sink bool
		b.Run(itoa(int64(n))+"-claims-vs-map", func(b *testing.B) {
			benchpair.Alternate(b, 1000, "call", func() {
				for i := range 1000 {
					_, sink = s.ClaimString(asked[i%len(asked)])
				}
			}, func() {
				for i := range 1000 {
					_, sink = refClaimString(old.claims, asked[i%len(asked)])
				}
			})
		})
		_ = sink
	}
}

// newAndRefSession decodes the claims c into a session.Session and, for the
// baseline, into the old decoder's refSession.
func newAndRefSession(b *testing.B, v *Verifier, key *Key, c map[string]any) (*session.Session, *refSession) {
	b.Helper()
	data := []byte(mustJSON(b, c))
	s, err := newClaimsSession(v, key, data, fixedNow)
	if err != nil {
		b.Fatal(err)
	}
	old, err := refVerifyClaims(v, data, fixedNow)
	if err != nil {
		b.Fatal(err)
	}
	return s, old
}
