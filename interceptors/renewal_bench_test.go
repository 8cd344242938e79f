package interceptors

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// BenchmarkRenewal measures what renewal adds to a unary call:
// TestService.Get over bufconn under a guard that renews with a
// LocalRenewer, with a token inside its renewal window against one outside
// it (nothing to do), on the same server and client. The warm-up call in
// the window renews; later ones find the successor in the single-flight
// memory and only set the trailer: the steady state of a client that keeps
// a token in its window for a while. The clock is fixed.
//
//	go test -run=^$ -bench=BenchmarkRenewal -benchmem ./interceptors
func BenchmarkRenewal(b *testing.B) {
	for _, alg := range []string{token.HS256, token.EdDSA} {
		b.Run(alg, func(b *testing.B) {
			v, signer, now := benchVerifier(b, alg)
			lr, err := token.NewLocalRenewer(v, token.DefaultRenewalPolicy())
			if err != nil {
				b.Fatal(err)
			}
			// The grace lets the warm-up call wait for its renewal;
			// afterwards the renewal has ended and no call waits.
			g, srv := guardOn(b, v, WithRenewal(lr, token.DefaultRenewalPolicy()), WithRenewalGrace(time.Second))
			client, stop := serveBufconn(b, srv)
			defer func() {
				stop()
				g.Close()
			}()
			req := &testpb.GetRequest{Id: "item-1"}
			call := func(inWindow bool) func() {
				tok, err := signer.Sign(benchClaims(now, inWindow))
				if err != nil {
					b.Fatal(err)
				}
				ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
				want := 0
				if inWindow {
					want = 1
				}
				return func() {
					var trailer metadata.MD
					if _, err := client.Get(ctx, req, grpc.Trailer(&trailer)); err != nil {
						b.Fatal(err)
					}
					if got := len(trailer.Get(RenewedTokenKey)); got != want {
						b.Fatalf("%d renewed tokens, want %d", got, want)
					}
				}
			}
			compare(b, "call", "in-window", call(true), "outside-window", call(false))
		})
	}
}

// BenchmarkRenewalSign measures one LocalRenewer.Renew: the successor's
// claims and its signature.
func BenchmarkRenewalSign(b *testing.B) {
	for _, alg := range []string{token.HS256, token.EdDSA} {
		b.Run(alg, func(b *testing.B) {
			v, signer, now := benchVerifier(b, alg)
			lr, err := token.NewLocalRenewer(v, token.DefaultRenewalPolicy())
			if err != nil {
				b.Fatal(err)
			}
			tok, err := signer.Sign(benchClaims(now, true))
			if err != nil {
				b.Fatal(err)
			}
			sess, err := v.Verify(context.Background(), tok)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := lr.Renew(ctx, tok, sess); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchVerifier returns a verifier of one key of alg on a clock fixed at
// t0, and a signer with that key.
func benchVerifier(b *testing.B, alg string) (*token.Verifier, *token.Signer, time.Time) {
	b.Helper()
	var key *token.Key
	switch alg {
	case token.HS256:
		key = newTestKey(b, testKID).key
	case token.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if key, err = token.NewPrivateKey(testKID, token.EdDSA, priv); err != nil {
			b.Fatal(err)
		}
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		b.Fatal(err)
	}
	now := t0
	v, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(func() time.Time { return now }))
	if err != nil {
		b.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		b.Fatal(err)
	}
	return v, signer, now
}

// benchClaims returns the default claims with auth_time, issued at now, or
// eight minutes before now when inWindow (two of ten minutes left, inside
// the last third).
func benchClaims(now time.Time, inWindow bool) token.Claims {
	c := claims(now)
	if inWindow {
		c.IssuedAt = now.Add(-8 * time.Minute)
		c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute)
	}
	c.AuthTime = c.IssuedAt
	c.SessionID = "sid-1"
	return c
}
