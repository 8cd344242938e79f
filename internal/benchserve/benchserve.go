// Package benchserve serves a gRPC server over an in-memory listener for
// the benchmarks of every package that measures a guarded call: the
// interceptors are measured, not the network.
package benchserve

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// Bufconn serves srv over bufconn and returns a client connection to it
// and the function that closes the connection and stops the server.
func Bufconn(tb testing.TB, srv *grpc.Server) (*grpc.ClientConn, func()) {
	tb.Helper()
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
		srv.Stop()
		<-served
		tb.Fatal(err)
	}
	return conn, func() {
		_ = conn.Close()
		srv.Stop()
		<-served
	}
}
