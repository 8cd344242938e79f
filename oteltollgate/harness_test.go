package oteltollgate

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

const (
	testIss = "https://auth.tollgate.test"
	testAud = "tollgate-test"

	methodGet    = "tollgate.testpb.v1.TestService/Get"
	methodGetAll = "tollgate.testpb.v1.TestService/GetAll"
	methodPing   = "tollgate.testpb.v1.TestService/Ping"
)

// testServer answers the test services' unary methods and the List stream.
type testServer struct {
	testpb.UnimplementedTestServiceServer
}

func (testServer) Get(_ context.Context, req *testpb.GetRequest) (*testpb.GetResponse, error) {
	return &testpb.GetResponse{Id: req.GetId()}, nil
}

func (testServer) Ping(context.Context, *testpb.PingRequest) (*testpb.PingResponse, error) {
	return &testpb.PingResponse{}, nil
}

func (testServer) Update(_ context.Context, req *testpb.UpdateRequest) (*testpb.UpdateResponse, error) {
	return &testpb.UpdateResponse{Id: req.GetId()}, nil
}

func (testServer) GetAll(context.Context, *testpb.GetAllRequest) (*testpb.GetAllResponse, error) {
	return &testpb.GetAllResponse{}, nil
}

// signerAndVerifier returns an HS256 signer and a verifier of its tokens,
// on the clock now.
func signerAndVerifier(tb testing.TB, now func() time.Time, opts ...token.VerifierOption) (*token.Signer, *token.Verifier) {
	tb.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		tb.Fatal(err)
	}
	k, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := token.NewSigner(k)
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := token.NewKeySet(k)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud, append([]token.VerifierOption{token.WithClock(now)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

// sign returns a token for azp at now with perms.
func sign(tb testing.TB, s *token.Signer, now time.Time, azp string, perms ...string) string {
	tb.Helper()
	tok, err := s.Sign(token.Claims{Issuer: testIss, Subject: "alice", Audience: []string{testAud}, AuthorizedParty: azp,
		IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), Permissions: perms})
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// guardedServer builds a guard observed by obs (with opts), a server of
// the test service behind it that hands unknown methods to the guard too,
// and returns the server, Init done.
func guardedServer(tb testing.TB, v *token.Verifier, obs interceptors.Observer, opts ...interceptors.Option) (*interceptors.Guard, *grpc.Server) {
	tb.Helper()
	if obs != nil {
		opts = append(opts, interceptors.WithObserver(obs))
	}
	g, err := interceptors.NewGuard(v, append([]interceptors.Option{interceptors.WithAuthFailureLimit(throttle.Limit{})}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(append(g.ServerOptions(), grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unimplemented, "unknown")
	}))...)
	testpb.RegisterTestServiceServer(srv, testServer{})
	if err := g.Init(srv); err != nil {
		tb.Fatal(err)
	}
	return g, srv
}

// promProvider returns a MeterProvider whose reader is the Prometheus
// exporter on a registry of its own, served over a real HTTP server, and
// the URL of its /metrics.
func promProvider(t *testing.T) (*sdkmetric.MeterProvider, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		_ = mp.Shutdown(context.Background())
	})
	return mp, hs.URL + "/metrics"
}

// scrape GETs url and parses the Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// samples returns the samples of family name whose labels include want.
func samples(fams map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	f, ok := fams[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, m)
		}
	}
	return out
}

// value sums the counter or gauge values of the matching series.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range samples(fams, name, want) {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func bearerCtx(t testing.TB, tok string) context.Context {
	ctx := context.Background()
	if tt, ok := t.(*testing.T); ok {
		ctx = tt.Context()
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
