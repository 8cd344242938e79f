// Package loopback serves a gRPC server on loopback TCP for the tests of
// every package that makes real calls (bufconn is for benchmarks only, in
// internal/benchserve): the server is stopped, and its Serve has returned,
// when the test ends, so a leak check after the test sees no goroutine of it.
package loopback

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ServeAddr serves srv on a free loopback TCP port and returns the port's
// address, for tests that dial it themselves (or dial nothing). A cleanup
// registered on tb stops srv and waits for Serve to return; cleanups
// registered before the call run after it, so a guard's Close registered
// first sees a stopped server.
func ServeAddr(tb testing.TB, srv *grpc.Server) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return lis.Addr().String()
}

// Serve serves srv as ServeAddr does and returns a client connection to
// it, through passthrough:/// with insecure transport credentials, then
// opts (a later WithTransportCredentials in opts replaces the insecure
// ones). The connection is closed, before the server stops, when the test
// ends.
func Serve(tb testing.TB, srv *grpc.Server, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	return Dial(tb, ServeAddr(tb, srv), opts...)
}

// Dial returns a client connection to addr (from ServeAddr), as Serve
// does: for tests that need several connections to one server, each with
// credentials of its own. The connection is closed when the test ends.
func Dial(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, dial...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}
