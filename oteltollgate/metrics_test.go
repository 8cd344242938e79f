package oteltollgate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// The adapter on a real SDK MeterProvider and the Prometheus exporter,
// scraped over HTTP while real gRPC calls go through a guard on loopback
// TCP: the decision counters move with every call, an unknown method is
// _OTHER, the verification histogram splits hits from misses, and many
// throttled consumers stay within K named series and _other.
func TestPrometheusExposition(t *testing.T) {
	const k = 3
	mp, url := promProvider(t)
	m, err := New(mp, WithTopConsumers(k))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unregister()
	s, v := signerAndVerifier(t, time.Now)
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 2}
	_, srv := guardedServer(t, v, m, interceptors.WithDefaultThrottle(lim), interceptors.WithLenientInit())
	conn := loopback.Serve(t, srv)
	client := testpb.NewTestServiceClient(conn)

	decisions := func(f map[string]string) float64 {
		return value(scrape(t, url), "tollgate_server_decisions_total", f)
	}
	allowedGet := map[string]string{"rpc_method": methodGet, "tollgate_decision": "allowed", "tollgate_reason": "", "tollgate_bucket": "/" + methodGet}

	tok := sign(t, s, time.Now(), "web", "test.read")
	for i := range 2 {
		if _, err := client.Get(bearerCtx(t, tok), &testpb.GetRequest{Id: "x"}); err != nil {
			t.Fatal(err)
		}
		if got := decisions(allowedGet); got != float64(i+1) {
			t.Fatalf("after %d calls allowed Get = %v", i+1, got)
		}
	}
	if _, err := client.Get(bearerCtx(t, tok), &testpb.GetRequest{Id: "x"}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third call: %v", err)
	}
	if _, err := client.GetAll(bearerCtx(t, sign(t, s, time.Now(), "other", "test.read")), &testpb.GetAllRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetAll: %v", err)
	}
	if _, err := client.Get(bearerCtx(t, "a.b.c"), &testpb.GetRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("forged: %v", err)
	}
	// Methods the guard does not serve, under many names: one label.
	for i := range 5 {
		err := conn.Invoke(bearerCtx(t, tok), fmt.Sprintf("/unknown.v1.Nope/M%d", i), &testpb.GetRequest{}, &testpb.GetResponse{})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("unknown method: %v", err)
		}
	}

	fams := scrape(t, url)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"rpc_method": methodGet, "tollgate_decision": "throttled", "tollgate_reason": "RATE_LIMITED"}, 1},
		{map[string]string{"rpc_method": methodGetAll, "tollgate_decision": "denied", "tollgate_reason": "PERMISSION_DENIED"}, 1},
		{map[string]string{"rpc_method": methodGet, "tollgate_decision": "unauthenticated", "tollgate_reason": "TOKEN_INVALID"}, 1},
		{map[string]string{"rpc_method": OtherMethod, "tollgate_decision": "denied", "tollgate_reason": "PERMISSION_DENIED"}, 5},
	} {
		if got := value(fams, "tollgate_server_decisions_total", c.labels); got != c.want {
			t.Errorf("decisions %v = %v, want %v", c.labels, got, c.want)
		}
	}
	for _, m := range samples(fams, "tollgate_server_decisions_total", nil) {
		if r := label(m, "rpc_method"); r != methodGet && r != methodGetAll && r != OtherMethod {
			t.Errorf("rpc.method %q: only compiled methods and _OTHER may appear", r)
		}
	}
	hist := samples(fams, "tollgate_verify_duration_seconds", map[string]string{"tollgate_cache": "hit"})
	miss := samples(fams, "tollgate_verify_duration_seconds", map[string]string{"tollgate_cache": "miss"})
	if len(hist) != 1 || len(miss) != 1 || hist[0].GetHistogram().GetSampleCount() != 2 || miss[0].GetHistogram().GetSampleCount() != 3 {
		t.Fatalf("verify histogram: hit %v miss %v; want 2 hits (calls 2 and 3 of one token) and 3 misses", hist, miss)
	}
	if n := len(hist[0].GetHistogram().GetBucket()); n != len(VerifyBuckets)+1 { // and +Inf
		t.Errorf("%d histogram buckets, want the %d of VerifyBuckets and +Inf", n, len(VerifyBuckets)+1)
	}

	// 30 consumers throttled once each, and one throttled ten times.
	for i := range 30 {
		tok := sign(t, s, time.Now(), "c"+strconv.Itoa(i), "test.read")
		for range 3 {
			_, _ = client.Get(bearerCtx(t, tok), &testpb.GetRequest{})
		}
	}
	heavy := sign(t, s, time.Now(), "heavy", "test.read")
	for range 12 {
		_, _ = client.Get(bearerCtx(t, heavy), &testpb.GetRequest{})
	}
	fams = scrape(t, url)
	throttled := samples(fams, "tollgate_consumer_refusals_total", map[string]string{"rpc_method": methodGet, "tollgate_decision": "throttled"})
	if len(throttled) > k+1 {
		t.Fatalf("%d consumer series for throttled Get, want at most K+1 = %d", len(throttled), k+1)
	}
	var sum float64
	var sawHeavy, sawOther bool
	for _, m := range throttled {
		sum += m.GetCounter().GetValue()
		switch label(m, "tollgate_consumer") {
		case "azp:heavy":
			sawHeavy = m.GetCounter().GetValue() >= 1
		case OtherConsumer:
			sawOther = true
		}
	}
	if want := 1 + 30 + 10.0; sum != want || !sawHeavy || !sawOther {
		t.Fatalf("throttled consumers %v: sum %v (want %v), heavy %v, _other %v", throttled, sum, want, sawHeavy, sawOther)
	}
	if got := value(fams, "tollgate_server_decisions_total", map[string]string{"rpc_method": methodGet, "tollgate_decision": "throttled"}); got != 41 {
		t.Fatalf("throttled Get = %v, want 41", got)
	}
	if got := value(fams, "tollgate_consumer_refusals_total", map[string]string{"rpc_method": methodGetAll, "tollgate_decision": "denied", "tollgate_consumer": "azp:other"}); got != 1 {
		t.Fatalf("denied consumer of GetAll = %v, want azp:other 1", got)
	}
}

// A Failover whose store is down: every decision its policy takes is a
// limiter error, and the breaker gauge shows it open once it opens.
func TestPrometheusLimiterErrorsAndBreaker(t *testing.T) {
	mp, url := promProvider(t)
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unregister()
	f, err := throttle.NewFailover(downLimiter{}, throttle.FailLocal, throttle.WithFailoverBreaker(2, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, v := signerAndVerifier(t, time.Now)
	_, srv := guardedServer(t, v, m, interceptors.WithLimiter(f), interceptors.WithLenientInit(),
		interceptors.WithDefaultThrottle(throttle.Limit{Rate: 100, Per: time.Second, Burst: 100}))
	client := testpb.NewTestServiceClient(loopback.Serve(t, srv))
	tok := sign(t, s, time.Now(), "web", "test.read")
	breaker := func() float64 { return value(scrape(t, url), "tollgate_limiter_breaker_open", nil) }
	if got := breaker(); got != 0 {
		t.Fatalf("breaker %v before any failure", got)
	}
	for range 3 {
		if _, err := client.Get(bearerCtx(t, tok), &testpb.GetRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, url)
	if got := value(fams, "tollgate_limiter_errors_total", map[string]string{"rpc_method": methodGet, "tollgate_limiter_source": "local"}); got != 3 {
		t.Fatalf("limiter errors %v, want 3 (two failures, then the open breaker)", got)
	}
	if got := value(fams, "tollgate_limiter_breaker_open", nil); got != 1 {
		t.Fatalf("breaker gauge %v, want 1", got)
	}
}

type downLimiter struct{}

func (downLimiter) Allow(context.Context, throttle.Key, throttle.Limit, int) (throttle.Decision, error) {
	return throttle.Decision{}, errors.New("connection refused")
}

// A renewal the guard runs beside a call is counted by its result.
func TestPrometheusRenewals(t *testing.T) {
	mp, url := promProvider(t)
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unregister()
	s, v := signerAndVerifier(t, time.Now)
	policy := token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: 8 * time.Hour}
	r, err := token.NewLocalRenewer(v, policy)
	if err != nil {
		t.Fatal(err)
	}
	renewed := make(chan struct{}, 1)
	g, srv := guardedServer(t, v, signalling{m, renewed}, interceptors.WithRenewal(r, policy), interceptors.WithRenewalGrace(5*time.Second), interceptors.WithLenientInit())
	defer g.Close()
	client := testpb.NewTestServiceClient(loopback.Serve(t, srv))
	now := time.Now()
	tok, err := s.Sign(token.Claims{Issuer: testIss, Subject: "alice", Audience: []string{testAud}, AuthorizedParty: "web",
		SessionID: "sid-1", AuthTime: now.Add(-8 * time.Minute), IssuedAt: now.Add(-8 * time.Minute), ExpiresAt: now.Add(2 * time.Minute),
		Permissions: []string{"test.read"}})
	if err != nil {
		t.Fatal(err)
	}
	var tr metadata.MD
	if _, err := client.Get(bearerCtx(t, tok), &testpb.GetRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if len(tr.Get(interceptors.RenewedTokenKey)) != 1 {
		t.Fatalf("no renewed token in the trailer %v", tr)
	}
	// The renewal's event comes from its goroutine, after it has handed the
	// token over.
	select {
	case <-renewed:
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal event")
	}
	if got := value(scrape(t, url), "tollgate_renewals_total", map[string]string{"tollgate_result": "renewed"}); got != 1 {
		t.Fatalf("tollgate.renewals{renewed} = %v, want 1", got)
	}
}

// signalling is the adapter, telling ch after it has recorded a renewal.
type signalling struct {
	*Metrics
	ch chan struct{}
}

func (s signalling) Observe(e interceptors.Event) {
	s.Metrics.Observe(e)
	if e.Decision == interceptors.DecisionRenewed {
		s.ch <- struct{}{}
	}
}

// Cache hits are recorded in batches (hitBatch): every one of them still
// reaches the histogram, with its own duration, by the next scrape, whether
// it fell in a full batch or in the one still filling.
func TestPrometheusCacheHitsAllRecorded(t *testing.T) {
	mp, url := promProvider(t)
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unregister() })
	m.ObserveInit(interceptors.GuardInfo{Methods: []interceptors.MethodInfo{{FullMethod: "/" + methodGet}}})
	// Cumulative: each round adds its hits to those before.
	var total int
	var sum float64
	for _, n := range []int{1, hitBatchSize - 2, 1, hitBatchSize, 3*hitBatchSize + 5} {
		total += n
		for i := range n {
			d := time.Duration(i%7+1) * time.Microsecond
			sum += d.Seconds()
			m.Observe(interceptors.Event{Method: "/" + methodGet, Decision: interceptors.DecisionAllowed, Cache: interceptors.CacheHit, VerifyDuration: d})
		}
		fams := scrape(t, url)
		hist := samples(fams, "tollgate_verify_duration_seconds", map[string]string{"tollgate_cache": "hit"})
		if len(hist) != 1 {
			t.Fatalf("%d hits: hit histogram %v", total, hist)
		}
		h := hist[0].GetHistogram()
		if got := h.GetSampleCount(); got != uint64(total) {
			t.Fatalf("%d hits observed, the histogram counts %d", total, got)
		}
		if got := h.GetSampleSum(); math.Abs(got-sum) > 1e-12 {
			t.Fatalf("%d hits: histogram sum %g, want %g", total, got, sum)
		}
	}
}

// Unregister records the hits still batched: the callback that would have
// flushed them runs no more, and the histogram is still read.
func TestUnregisterFlushesHits(t *testing.T) {
	mp, url := promProvider(t)
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveInit(interceptors.GuardInfo{Methods: []interceptors.MethodInfo{{FullMethod: "/" + methodGet}}})
	for range 3 {
		m.Observe(interceptors.Event{Method: "/" + methodGet, Decision: interceptors.DecisionAllowed, Cache: interceptors.CacheHit, VerifyDuration: time.Microsecond})
	}
	if err := m.Unregister(); err != nil {
		t.Fatal(err)
	}
	hist := samples(scrape(t, url), "tollgate_verify_duration_seconds", map[string]string{"tollgate_cache": "hit"})
	if len(hist) != 1 || hist[0].GetHistogram().GetSampleCount() != 3 {
		t.Fatalf("after Unregister the hit histogram is %v; want the 3 hits observed", hist)
	}
}
