package oteltollgate

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/benchpair"
	"github.com/tollgate/tollgate/internal/benchserve"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/throttle"
)

// BenchmarkOTelObserver measures what the OpenTelemetry observer adds to a
// cache-hit unary call (TestService.Get, HS256, throttled by a memory
// limiter that never refuses): a guard observed by this package on the
// OpenTelemetry SDK with the Prometheus exporter's reader attached, as a
// user runs it, against the same guard with no observer, in tight
// alternation over bufconn. Both guards share one verifier, so the token is
// a cache hit on both sides. Target: ≤ 1.05×.
//
//	go test -run=^$ -bench=BenchmarkOTelObserver -benchmem ./oteltollgate
func BenchmarkOTelObserver(b *testing.B) {
	b.Run("unary-hit", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			b.Fatal(err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
		defer func() { _ = mp.Shutdown(context.Background()) }()
		m, err := New(mp)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Unregister()
		t0 := time.Unix(1_800_000_000, 0)
		s, v := signerAndVerifier(b, func() time.Time { return t0 })
		lim := throttle.Limit{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000}
		_, srvOn := guardedServer(b, v, m, interceptors.WithDefaultThrottle(lim), interceptors.WithLenientInit())
		_, srvOff := guardedServer(b, v, nil, interceptors.WithDefaultThrottle(lim), interceptors.WithLenientInit())
		connOn, stopOn := benchserve.Bufconn(b, srvOn)
		defer stopOn()
		connOff, stopOff := benchserve.Bufconn(b, srvOff)
		defer stopOff()
		on, off := testpb.NewTestServiceClient(connOn), testpb.NewTestServiceClient(connOff)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+sign(b, s, t0, "web", "test.read"))
		req := &testpb.GetRequest{Id: "item-1"}
		call := func(c testpb.TestServiceClient) func() {
			return func() {
				if _, err := c.Get(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		}
		// Warm up: connect, verify and cache the token, create the series.
		call(on)()
		call(off)()
		b.Run("otel-vs-off", func(b *testing.B) { benchpair.Alternate(b, 1, "call", call(on), call(off)) })
	})
}
