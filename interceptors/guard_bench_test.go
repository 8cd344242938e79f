package interceptors

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
)

// BenchmarkUnary measures what the guard adds to a unary call:
// TestService.Update over bufconn, on a server with no interceptor (bare)
// and on one built with guard.ServerOptions() (guard). Both get the same
// request and the same client with the same HS256 token in metadata; under
// the guard the token is a cache hit and Update's rule checks test.write
// and ownership (owner.id = owner_id). The clock is fixed ten minutes
// before the token's expiry.
//
//	go test -run=^$ -bench=BenchmarkUnary -benchmem -count=3 ./interceptors
func BenchmarkUnary(b *testing.B) {
	b.Run("bare", func(b *testing.B) { benchUnary(b, false) })
	b.Run("guard", func(b *testing.B) { benchUnary(b, true) })
}

func benchUnary(b *testing.B, guarded bool) {
	key := newTestKey(b, testKID)
	ks, err := session.NewKeySet(key.key)
	if err != nil {
		b.Fatal(err)
	}
	now := t0
	v, err := session.NewVerifier(ks, testIss, testAud, session.WithClock(func() time.Time { return now }))
	if err != nil {
		b.Fatal(err)
	}
	g, err := NewGuard(v)
	if err != nil {
		b.Fatal(err)
	}
	var sopts []grpc.ServerOption
	if guarded {
		sopts = g.ServerOptions()
	}
	srv := grpc.NewServer(sopts...)
	ts := &testServer{}
	testpb.RegisterTestServiceServer(srv, ts)
	if guarded {
		if err := g.Init(srv); err != nil {
			b.Fatal(err)
		}
	}
	client, stop := serveBufconn(b, srv)
	defer stop()

	tok := key.sign(b, claims(now))
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "item-1"}
	// Warm up: connect, and (under the guard) verify and cache the token.
	if _, err := client.Update(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Update(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if want := int64(b.N) + 1; ts.reached.Load() != want {
		b.Fatalf("handler reached %d times, want %d", ts.reached.Load(), want)
	}
}

// serveBufconn serves srv over an in-memory listener, as the benchmarks
// measure the interceptors and not the network, and returns a client and
// the function that closes the connection and stops the server.
func serveBufconn(b *testing.B, srv *grpc.Server) (testpb.TestServiceClient, func()) {
	lis := bufconn.Listen(1 << 20)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	return testpb.NewTestServiceClient(conn), func() {
		_ = conn.Close()
		srv.Stop()
		<-served
	}
}

// BenchmarkUnaryAlternating is BenchmarkUnary measured in tight
// alternation: the same Update call through a guarded server and through a
// bare one, one of each in turn, each server on its own bufconn.
//
//	go test -run=^$ -bench=BenchmarkUnaryAlternating -benchmem ./interceptors
func BenchmarkUnaryAlternating(b *testing.B) {
	key := newTestKey(b, testKID)
	guarded, stopG := benchGuardServer(b, key)
	defer stopG()
	bareSrv := grpc.NewServer()
	testpb.RegisterTestServiceServer(bareSrv, &testServer{})
	bare, stopB := serveBufconn(b, bareSrv)
	defer stopB()
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key.sign(b, claims(t0))))
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "item-1"}
	call := func(c testpb.TestServiceClient) func() {
		return func() {
			if _, err := c.Update(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	call(guarded)() // warm up: connect, verify and cache the token
	call(bare)()
	alternate(b, 1, "call", call(guarded), call(bare))
}

// BenchmarkServerStream measures a server stream of one message (List)
// through a guarded server against a bare one, in tight alternation, and,
// as sub-benchmarks, each on its own for their allocations.
//
//	go test -run=^$ -bench=BenchmarkServerStream -benchmem ./interceptors
func BenchmarkServerStream(b *testing.B) {
	key := newTestKey(b, testKID)
	guarded, stopG := benchGuardServer(b, key)
	defer stopG()
	bareSrv := grpc.NewServer()
	testpb.RegisterTestServiceServer(bareSrv, &testServer{})
	bare, stopB := serveBufconn(b, bareSrv)
	defer stopB()
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key.sign(b, claims(t0))))
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
	call(guarded)() // warm up: connect, verify and cache the token
	call(bare)()
	b.Run("alternating", func(b *testing.B) { alternate(b, 1, "stream", call(guarded), call(bare)) })
	for name, f := range map[string]func(){"bare": call(bare), "guard": call(guarded)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}
}
