package loopback_test

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/loopback"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func healthServer() *grpc.Server {
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	return srv
}

// oneProc runs f on one P: a goroutine Stop wakes (Serve's) then runs only
// when the test's goroutine blocks, so a cleanup that returned without
// waiting for Serve is caught by the next cleanup, every time, instead of
// when no idle P happened to steal it first.
func oneProc(t *testing.T, f func()) {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
}

// serveRunning reports whether a goroutine ServeAddr started is still
// alive, from one snapshot of every stack: no retry, so a cleanup that
// returned before Serve did shows here.
func serveRunning() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), "internal/loopback.ServeAddr.func")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// cleanedUp, registered before the loopback call, runs after its cleanup
// and records whether Serve had returned by then.
func cleanedUp(t *testing.T, serveReturned *bool) {
	t.Cleanup(func() { *serveReturned = !serveRunning() })
}

// wantStopped: after the test that served on addr, Serve had returned when
// the cleanup did, and nothing answers on addr.
func wantStopped(t *testing.T, serveReturned bool, addr string) {
	t.Helper()
	if !serveReturned {
		t.Error("Serve still running when the cleanup returned")
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call to %s after the cleanup: %v, want Unavailable", addr, err)
	}
}

// Serve dials with the caller's options after its own, the connection
// works, and the test's end closes it and stops the server.
func TestServe(t *testing.T) {
	var conn *grpc.ClientConn
	var calls atomic.Int32
	var returned bool
	oneProc(t, func() {
		t.Run("serve", func(t *testing.T) {
			cleanedUp(t, &returned)
			conn = loopback.Serve(t, healthServer(), grpc.WithUnaryInterceptor(
				func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					calls.Add(1)
					return invoker(ctx, method, req, reply, cc, opts...)
				}))
			resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health: %v", resp.GetStatus())
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("the dial option's interceptor saw %d calls, want 1", n)
			}
		})
	})
	if t.Failed() {
		return
	}
	if s := conn.GetState(); s != connectivity.Shutdown {
		t.Errorf("connection after the cleanup: %v, want Shutdown", s)
	}
	wantStopped(t, returned, strings.TrimPrefix(conn.Target(), "passthrough:///"))
}

// ServeAddr returns an address a test dials itself; the test's end stops
// the server, after the cleanups registered later and before those
// registered earlier.
func TestServeAddr(t *testing.T) {
	var addr string
	var order []string
	var returned bool
	oneProc(t, func() {
		t.Run("serve", func(t *testing.T) {
			cleanedUp(t, &returned)
			t.Cleanup(func() { order = append(order, "earlier cleanup") })
			addr = loopback.ServeAddr(t, healthServer())
			t.Cleanup(func() { order = append(order, "later cleanup") })
			conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
		})
	})
	if t.Failed() {
		return
	}
	if got := strings.Join(order, "; "); got != "later cleanup; earlier cleanup" {
		t.Errorf("cleanups ran as: %s", got)
	}
	wantStopped(t, returned, addr)
}
