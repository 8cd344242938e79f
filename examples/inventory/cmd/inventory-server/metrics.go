package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tollgate/tollgate/oteltollgate"
)

// metrics is the guard's observer (oteltollgate, on the OpenTelemetry
// SDK) and the HTTP server a Prometheus scrapes it from. The exporter has
// a registry of its own: only tollgate's instruments are served.
type metrics struct {
	lis      net.Listener
	srv      *http.Server
	provider *sdkmetric.MeterProvider
	observer *oteltollgate.Metrics
}

func newMetrics(addr string) (*metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("-metrics-listen: %w", err)
	}
	m := &metrics{provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))}
	if m.observer, err = oteltollgate.New(m.provider); err != nil {
		_ = m.provider.Shutdown(context.Background())
		return nil, fmt.Errorf("-metrics-listen: %w", err)
	}
	if m.lis, err = net.Listen("tcp", addr); err != nil {
		_ = m.provider.Shutdown(context.Background())
		return nil, fmt.Errorf("-metrics-listen: %s", addressless(err))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return m, nil
}

// serve answers scrapes until close.
func (m *metrics) serve() { _ = m.srv.Serve(m.lis) }

func (m *metrics) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
	_ = m.lis.Close()
	_ = m.observer.Unregister()
	_ = m.provider.Shutdown(ctx)
}
