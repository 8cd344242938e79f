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
	"github.com/tollgate/tollgate/session"
)

// BenchmarkRenewal measures what renewal adds to a unary call:
// TestService.Get over bufconn under a guard that renews with a
// LocalRenewer, with a token outside its renewal window (nothing to do) and
// one inside it. Inside, the first call (the warm-up) renews and later
// calls find the successor in the single-flight memory and only set the
// trailer: the steady state of a client that keeps a token in its window
// for a while. Both take the same client and call options; the clock is
// fixed.
//
//	go test -run=^$ -bench=BenchmarkRenewal -benchmem -count=3 ./interceptors
func BenchmarkRenewal(b *testing.B) {
	for _, alg := range []string{session.HS256, session.EdDSA} {
		b.Run(alg, func(b *testing.B) {
			b.Run("outside-window", func(b *testing.B) { benchRenewal(b, alg, false) })
			b.Run("in-window", func(b *testing.B) { benchRenewal(b, alg, true) })
		})
	}
}

// BenchmarkRenewalSign measures one LocalRenewer.Renew: the successor's
// claims and its signature.
func BenchmarkRenewalSign(b *testing.B) {
	for _, alg := range []string{session.HS256, session.EdDSA} {
		b.Run(alg, func(b *testing.B) {
			v, signer, now := benchVerifier(b, alg)
			lr, err := session.NewLocalRenewer(v, session.DefaultRenewalPolicy())
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
func benchVerifier(b *testing.B, alg string) (*session.Verifier, *session.Signer, time.Time) {
	b.Helper()
	var key *session.Key
	switch alg {
	case session.HS256:
		key = newTestKey(b, testKID).key
	case session.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if key, err = session.NewPrivateKey(testKID, session.EdDSA, priv); err != nil {
			b.Fatal(err)
		}
	}
	ks, err := session.NewKeySet(key)
	if err != nil {
		b.Fatal(err)
	}
	now := t0
	v, err := session.NewVerifier(ks, testIss, testAud, session.WithClock(func() time.Time { return now }))
	if err != nil {
		b.Fatal(err)
	}
	signer, err := session.NewSigner(key)
	if err != nil {
		b.Fatal(err)
	}
	return v, signer, now
}

// benchClaims returns the default claims with auth_time, issued at now, or
// eight minutes before now when inWindow (two of ten minutes left, inside
// the last third).
func benchClaims(now time.Time, inWindow bool) session.Claims {
	c := claims(now)
	if inWindow {
		c.IssuedAt = now.Add(-8 * time.Minute)
		c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute)
	}
	c.AuthTime = c.IssuedAt
	c.SessionID = "sid-1"
	return c
}

func benchRenewal(b *testing.B, alg string, inWindow bool) {
	v, signer, now := benchVerifier(b, alg)
	lr, err := session.NewLocalRenewer(v, session.DefaultRenewalPolicy())
	if err != nil {
		b.Fatal(err)
	}
	// The grace lets the warm-up call wait for its renewal; afterwards the
	// renewal has ended and no call waits.
	g, err := NewGuard(v, WithRenewal(lr, session.DefaultRenewalPolicy()), WithRenewalGrace(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	ts := &testServer{}
	testpb.RegisterTestServiceServer(srv, ts)
	if err := g.Init(srv); err != nil {
		b.Fatal(err)
	}
	client, stop := serveBufconn(b, srv)
	defer func() {
		stop()
		g.Close()
	}()

	tok, err := signer.Sign(benchClaims(now, inWindow))
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	req := &testpb.GetRequest{Id: "item-1"}
	var trailer metadata.MD
	// Warm up: connect, verify and cache the token, and (in the window)
	// renew it.
	if _, err := client.Get(ctx, req, grpc.Trailer(&trailer)); err != nil {
		b.Fatal(err)
	}
	wantRenewed := 0
	if inWindow {
		wantRenewed = 1
	}
	if got := len(trailer.Get(RenewedTokenKey)); got != wantRenewed {
		b.Fatalf("warm-up call: %d renewed tokens, want %d", got, wantRenewed)
	}
	renewed := trailer.Get(RenewedTokenKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Get(ctx, req, grpc.Trailer(&trailer)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := trailer.Get(RenewedTokenKey); len(got) != len(renewed) || (inWindow && got[0] != renewed[0]) {
		b.Fatalf("steady state: renewed tokens %d, want the warm-up's %d", len(got), len(renewed))
	}
	if want := int64(b.N) + 1; ts.reached.Load() != want {
		b.Fatalf("handler reached %d times, want %d", ts.reached.Load(), want)
	}
}

// BenchmarkRenewalAlternating is BenchmarkRenewal measured in tight
// alternation: one guard, one client, a token inside its window and one
// outside it, one call of each in turn. The ratio is the claim.
//
//	go test -run=^$ -bench=BenchmarkRenewalAlternating -benchmem ./interceptors
func BenchmarkRenewalAlternating(b *testing.B) {
	for _, alg := range []string{session.HS256, session.EdDSA} {
		b.Run(alg, func(b *testing.B) {
			v, signer, now := benchVerifier(b, alg)
			lr, err := session.NewLocalRenewer(v, session.DefaultRenewalPolicy())
			if err != nil {
				b.Fatal(err)
			}
			g, err := NewGuard(v, WithRenewal(lr, session.DefaultRenewalPolicy()), WithRenewalGrace(time.Second))
			if err != nil {
				b.Fatal(err)
			}
			srv := grpc.NewServer(g.ServerOptions()...)
			testpb.RegisterTestServiceServer(srv, &testServer{})
			if err := g.Init(srv); err != nil {
				b.Fatal(err)
			}
			client, stop := serveBufconn(b, srv)
			defer func() {
				stop()
				g.Close()
			}()
			ctxFor := func(inWindow bool) context.Context {
				tok, err := signer.Sign(benchClaims(now, inWindow))
				if err != nil {
					b.Fatal(err)
				}
				return metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
			}
			in, out := ctxFor(true), ctxFor(false)
			req := &testpb.GetRequest{Id: "item-1"}
			call := func(ctx context.Context, want int) func() {
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
			call(in, 1)() // warm up: verify both, renew the one in its window
			call(out, 0)()
			alternate(b, 1, "call", call(in, 1), call(out, 0))
		})
	}
}
