package interceptors

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/internal/benchpair"
	"github.com/tollgate/tollgate/internal/benchserve"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// The benchmarks of the guard's fast path share these helpers: servers over
// bufconn (the interceptors are measured, not the network) and
// benchpair.Alternate, which makes every claimed ratio a ratio of tightly
// interleaved runs.

// benchGuardServer serves the test services behind a guard built with opts
// over bufconn, on a verifier whose clock stands at t0, and returns a
// client, a token and the stop function.
func benchGuardServer(b *testing.B, key *testKey, opts ...Option) (testpb.TestServiceClient, func()) {
	b.Helper()
	_, srv := benchGuard(b, key, opts...)
	return serveBufconn(b, srv)
}

// benchGuard builds a guard with opts on a verifier whose clock stands at
// t0, and a server of the test services behind it, initialised.
func benchGuard(b *testing.B, key *testKey, opts ...Option) (*Guard, *grpc.Server) {
	b.Helper()
	ks, err := token.NewKeySet(key.key)
	if err != nil {
		b.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(func() time.Time { return t0 }))
	if err != nil {
		b.Fatal(err)
	}
	return guardOn(b, v, opts...)
}

// guardOn builds a guard on v with opts and a server of the test services
// behind it, initialised.
func guardOn(b *testing.B, v *token.Verifier, opts ...Option) (*Guard, *grpc.Server) {
	b.Helper()
	g, err := NewGuard(v, append([]Option{WithLenientInit()}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	testpb.RegisterTestServiceServer(srv, &testServer{})
	if err := g.Init(srv); err != nil {
		b.Fatal(err)
	}
	return g, srv
}

// bareServer serves the test services with no interceptor over bufconn.
func bareServer(b *testing.B) (testpb.TestServiceClient, func()) {
	b.Helper()
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testServer{})
	return serveBufconn(b, srv)
}

// serveBufconn serves srv over an in-memory listener and returns a client
// and the function that closes the connection and stops the server.
func serveBufconn(b *testing.B, srv *grpc.Server) (testpb.TestServiceClient, func()) {
	conn, stop := benchserve.Bufconn(b, srv)
	return testpb.NewTestServiceClient(conn), stop
}

// guardedAndBare returns a client of a guarded server and one of a bare
// server, a context carrying a valid HS256 token, and a stop function.
func guardedAndBare(b *testing.B) (guarded, bare testpb.TestServiceClient, ctx context.Context, stop func()) {
	b.Helper()
	key := newTestKey(b, testKID)
	guarded, stopG := benchGuardServer(b, key)
	bare, stopB := bareServer(b)
	ctx = metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key.sign(b, claims(t0))))
	return guarded, bare, ctx, func() { stopG(); stopB() }
}

// compare runs a candidate call and its baseline once each to warm up
// (connect; verify and cache the token), then in alternation (the ratio,
// which is the claim) and each on its own under its name (for its
// allocations).
func compare(b *testing.B, unit, candName string, candidate func(), baseName string, baseline func()) {
	candidate()
	baseline()
	b.Run("alternating", func(b *testing.B) { benchpair.Alternate(b, 1, unit, candidate, baseline) })
	for _, v := range []struct {
		name string
		f    func()
	}{{baseName, baseline}, {candName, candidate}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.f()
			}
		})
	}
}

// BenchmarkUnary measures what the guard adds to a unary call:
// TestService.Update, whose rule checks test.write and ownership (owner.id
// = owner_id), with a cache-hit HS256 token, through a guarded server and a
// bare one. The clock is fixed ten minutes before the token's expiry.
//
//	go test -run=^$ -bench=BenchmarkUnary -benchmem ./interceptors
func BenchmarkUnary(b *testing.B) {
	guarded, bare, ctx, stop := guardedAndBare(b)
	defer stop()
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "item-1"}
	call := func(c testpb.TestServiceClient) func() {
		return func() {
			if _, err := c.Update(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	compare(b, "call", "guard", call(guarded), "bare", call(bare))
}

// BenchmarkServerStream does the same for a server stream of one message
// (List).
//
//	go test -run=^$ -bench=BenchmarkServerStream -benchmem ./interceptors
func BenchmarkServerStream(b *testing.B) {
	guarded, bare, ctx, stop := guardedAndBare(b)
	defer stop()
	req := &testpb.ListRequest{Count: 1}
	call := func(c testpb.TestServiceClient) func() {
		return func() {
			stream, err := c.List(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := stream.Recv(); err != nil {
					if !errors.Is(err, io.EOF) {
						b.Fatal(err)
					}
					return
				}
			}
		}
	}
	compare(b, "stream", "guard", call(guarded), "bare", call(bare))
}

// getCall returns, for a client, one TestService.Get with tok as its bearer
// token, failing the benchmark on an error: the side of a pair of
// cache-hit calls.
func getCall(b *testing.B, tok string) func(testpb.TestServiceClient) func() {
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	req := &testpb.GetRequest{Id: "item-1"}
	return func(c testpb.TestServiceClient) func() {
		return func() {
			if _, err := c.Get(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
}
