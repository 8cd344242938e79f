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

// metricsServer serves the guard's metrics in the Prometheus text format:
// oteltollgate's instruments on an OpenTelemetry SDK MeterProvider whose
// reader is the OpenTelemetry Prometheus exporter, on a registry of its own.
type metricsServer struct {
	lis      net.Listener
	http     *http.Server
	provider *sdkmetric.MeterProvider
	observer *oteltollgate.Metrics
}

// newMetricsServer binds addr and builds the exporter; serve starts
// answering.
func newMetricsServer(addr string) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("-metrics-listen: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	obs, err := oteltollgate.New(provider)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, fmt.Errorf("-metrics-listen: %w", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, fmt.Errorf("-metrics-listen: %s", addressless(err))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &metricsServer{
		lis:      lis,
		http:     &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		provider: provider,
		observer: obs,
	}, nil
}

// serve answers scrapes until close. Should it fail, the gRPC server goes
// on without metrics: scrapes fail, and say so to whoever watches them.
func (m *metricsServer) serve() { _ = m.http.Serve(m.lis) }

// close stops the HTTP server (a scrape in flight gets a second) and the
// provider.
func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.http.Shutdown(ctx)
	_ = m.lis.Close()
	_ = m.observer.Unregister()
	_ = m.provider.Shutdown(ctx)
}
