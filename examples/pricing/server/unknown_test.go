package server_test

import (
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/interceptors"
)

// unknownNames are full method names the pricing server does not serve: a
// method added to PriceService by a newer pricing.proto, and a service it
// has never heard of.
var unknownNames = []string{
	"/pricing.v1.PriceService/PurgePrices",
	"/pricing.v2.PriceService/GetPrice",
}

// events records the guard's decisions for the test to read.
type events struct {
	mu  sync.Mutex
	all []interceptors.Event
}

func (e *events) Observe(ev interceptors.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) of(method string) []interceptors.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []interceptors.Event
	for _, ev := range e.all {
		if ev.Method == method {
			out = append(out, ev)
		}
	}
	return out
}

// A name without a rule is refused by the guard, as deny-by-default says,
// not answered Unimplemented by grpc-go before any interceptor runs: the
// server's UnknownServiceHandler routes it through the guard, so the caller
// sees PermissionDenied whatever its token holds, and the log and the
// observer see the call.
func TestUnknownMethodIsDeniedByTheGuard(t *testing.T) {
	var obs events
	h := startWith(t, func(c *server.Config) { c.Observer = &obs })
	admin := h.token(t, "s-1", "prices.read", "prices.write", server.PermAdmin)
	for _, name := range unknownNames {
		err := h.conn.Invoke(ctx(t, admin), name, &emptypb.Empty{}, &emptypb.Empty{})
		wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED")

		// Streams too, with no token at all: no rule comes before
		// authentication.
		stream, err := h.conn.NewStream(ctx(t, ""), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, name)
		if err != nil {
			t.Fatalf("NewStream %s: %v", name, err)
		}
		if err := stream.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("SendMsg %s: %v", name, err)
		}
		wantDenied(t, stream.RecvMsg(&emptypb.Empty{}), codes.PermissionDenied, "PERMISSION_DENIED")

		evs := obs.of(name)
		if len(evs) != 2 {
			t.Fatalf("observer saw %d decisions on %s; want 2 (the call and the stream): %+v", len(evs), name, evs)
		}
		for _, ev := range evs {
			if ev.Decision != interceptors.DecisionDenied || ev.Reason != "PERMISSION_DENIED" || ev.Stage != interceptors.StageCall {
				t.Errorf("observer saw %+v on %s; want a denied call, PERMISSION_DENIED", ev, name)
			}
		}
	}
	log := h.log.String()
	for _, name := range unknownNames {
		if n := strings.Count(log, "method="+name+" "); n != 2 {
			t.Errorf("the log names %s %d times; want 2:\n%s", name, n, log)
		}
	}
	if n := strings.Count(log, `cause="method has no rule"`); n != 2*len(unknownNames) {
		t.Errorf("the log says \"method has no rule\" %d times; want %d:\n%s", n, 2*len(unknownNames), log)
	}
}

// An UnknownServiceHandler of the caller's own (a proxy, say) replaces the
// server's, and sits behind the guard just the same: no call to a name
// without a rule reaches it.
func TestUnknownMethodNeverReachesAHandler(t *testing.T) {
	var reached atomic.Int32
	h := startWith(t, func(c *server.Config) {
		c.ServerOptions = append(c.ServerOptions, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			reached.Add(1)
			return nil
		}))
	})
	admin := h.token(t, "s-1", "prices.read", "prices.write", server.PermAdmin)
	for _, name := range unknownNames {
		err := h.conn.Invoke(ctx(t, admin), name, &emptypb.Empty{}, &emptypb.Empty{})
		wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED")
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the unknown-service handler ran %d times; want never", n)
	}
	// What the server serves is served as before.
	if _, err := h.client.Ping(ctx(t, ""), &pricingv1.PingRequest{}); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
