package interceptors

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/tollgate/tollgate/internal/testpb"
)

// BenchmarkGuardOnlyUnary calls the guard's unary interceptor directly, with
// no transport and a handler that does nothing: the guard's own cost per
// cache-hit call (token from metadata, cache, permission, ownership, memory
// throttle, session context), which a profile can take apart without
// grpc-go's frames around it.
//
//	go test -run=^$ -bench=GuardOnly -cpuprofile cpu.out ./interceptors
func BenchmarkGuardOnlyUnary(b *testing.B) {
	key := newTestKey(b, testKID)
	g, _ := benchGuard(b, key)
	intercept := g.UnaryServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key.sign(b, claims(t0))))
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}})
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "item-1"}
	info := &grpc.UnaryServerInfo{FullMethod: testpb.TestService_Update_FullMethodName}
	reached := 0
	handler := func(context.Context, any) (any, error) { reached++; return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
	if reached != b.N {
		b.Fatalf("handler reached %d times in %d calls", reached, b.N)
	}
}
