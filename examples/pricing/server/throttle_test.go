package server_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// fakeClock is a clock that moves only when told to, so that no bucket
// refills while a test makes its calls.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// startThrottled starts a server whose in-memory limiter runs on a clock
// of the test's.
func startThrottled(t *testing.T) (*harness, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	mem, err := throttle.NewMemory(throttle.WithMemoryClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	h := startWith(t, func(c *server.Config) { c.Limiter = mem })
	return h, clock
}

// consumerToken mints a token for the consumer azp (seller s-1) holding
// perms.
func (h *harness) consumerToken(t *testing.T, azp, seller string, perms ...string) string {
	t.Helper()
	return h.tokenWith(t, func(c *token.Claims) {
		c.AuthorizedParty = azp
		c.Permissions = perms
		c.Extra = map[string]any{"seller_id": seller}
	})
}

// wantRateLimited fails unless err is tollgate's throttling refusal for
// bucket and consumer, asking to retry after retry.
func wantRateLimited(t *testing.T, err error, bucket, consumer string, retry time.Duration) {
	t.Helper()
	wantDenied(t, err, codes.ResourceExhausted, interceptors.ReasonRateLimited, "bucket", bucket)
	st := wantCode(t, err, codes.ResourceExhausted)
	var gotRetry, gotQuota bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			gotRetry = true
			if got := d.GetRetryDelay().AsDuration(); got != retry {
				t.Errorf("RetryInfo delay = %v; want %v", got, retry)
			}
		case *errdetails.QuotaFailure:
			gotQuota = true
			if v := d.GetViolations(); len(v) != 1 || v[0].GetSubject() != consumer {
				t.Errorf("QuotaFailure violations = %v; want one for %q", v, consumer)
			}
		}
	}
	if !gotRetry || !gotQuota {
		t.Errorf("refusal %v lacks RetryInfo (%v) or QuotaFailure (%v)", err, gotRetry, gotQuota)
	}
}

const getPriceBucket = "/pricing.v1.PriceService/GetPrice"

// GetPrice allows each consumer a burst of 20 and 20 a second: the 21st
// call at once is refused with everything a client needs to back off, and
// another consumer does not notice.
func TestGetPriceIsThrottledPerConsumer(t *testing.T) {
	h, clock := startThrottled(t)
	looper := h.consumerToken(t, "looper", "s-1", "prices.read")
	req := &pricingv1.GetPriceRequest{Sku: "sku-1"}

	for i := range 20 {
		var hdr metadata.MD
		if _, err := h.client.GetPrice(ctx(t, looper), req, grpc.Header(&hdr)); err != nil {
			t.Fatalf("call %d of the burst: %v", i+1, err)
		}
		if i == 0 {
			wantHeader(t, hdr, "ratelimit-policy", `"/pricing.v1.PriceService/GetPrice";q=20;w=1`)
			wantHeader(t, hdr, "ratelimit", `"/pricing.v1.PriceService/GetPrice";r=19;t=1`)
		}
	}
	var hdr metadata.MD
	_, err := h.client.GetPrice(ctx(t, looper), req, grpc.Header(&hdr))
	wantRateLimited(t, err, getPriceBucket, "azp:looper", 50*time.Millisecond)
	// The headers come with the refusal too, as headers, not trailers.
	wantHeader(t, hdr, "ratelimit", `"/pricing.v1.PriceService/GetPrice";r=0;t=1`)

	// Another consumer has a bucket of its own.
	if _, err := h.client.GetPrice(ctx(t, h.consumerToken(t, "storefront", "s-1", "prices.read")), req); err != nil {
		t.Fatalf("another consumer's GetPrice: %v", err)
	}
	// So has another method: QuotePrices declares its own throttle.
	if _, err := h.client.QuotePrices(ctx(t, ""), &pricingv1.QuotePricesRequest{AccessToken: looper, Skus: []string{"sku-1"}}); err != nil {
		t.Fatalf("the looper's QuotePrices: %v", err)
	}
	// The retry delay is honest: after it, exactly one call passes.
	clock.Advance(50 * time.Millisecond)
	if _, err := h.client.GetPrice(ctx(t, looper), req); err != nil {
		t.Fatalf("GetPrice after the retry delay: %v", err)
	}
	_, err = h.client.GetPrice(ctx(t, looper), req)
	wantRateLimited(t, err, getPriceBucket, "azp:looper", 50*time.Millisecond)

	// Refusals are logged with the consumer, never the token.
	if log := h.log.String(); !containsAll(log, "RATE_LIMITED", "consumer=azp:looper") || containsAny(log, looper) {
		t.Errorf("throttling log:\n%s", log)
	}
}

// The four writing methods share the bucket "writes": 10 at once, 5 a
// second, whichever method spends them.
func TestWritesShareOneBucket(t *testing.T) {
	h, clock := startThrottled(t)
	seller := h.consumerToken(t, "seller-portal", "s-1", "prices.read", "prices.write", "prices.delete")
	for i := 1; i <= 5; i++ {
		sku := fmt.Sprintf("sku-%d", i)
		if _, err := h.client.SetPrice(ctx(t, seller), &pricingv1.SetPriceRequest{Sku: sku, SellerId: "s-1", AmountCents: 7, Currency: "USD"}); err != nil {
			t.Fatalf("SetPrice %s: %v", sku, err)
		}
	}
	for _, sku := range []string{"sku-6", "sku-7", "sku-8", "sku-9", "sku-10"} {
		if _, err := h.client.DeletePrice(ctx(t, seller), &pricingv1.DeletePriceRequest{Sku: sku, SellerId: "s-1"}); err != nil {
			t.Fatalf("DeletePrice %s: %v", sku, err)
		}
	}

	const retry = 200 * time.Millisecond // 5 a second
	_, err := h.client.SetPrice(ctx(t, seller), &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 8, Currency: "USD"})
	wantRateLimited(t, err, "writes", "azp:seller-portal", retry)
	h.wantPrice(t, "sku-1", "s-1", 7, "USD")
	_, err = h.client.DeletePrice(ctx(t, seller), &pricingv1.DeletePriceRequest{Sku: "sku-1", SellerId: "s-1"})
	wantRateLimited(t, err, "writes", "azp:seller-portal", retry)
	h.wantPrice(t, "sku-1", "s-1", 7, "USD")
	_, err = importPrices(t, h, seller, &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 9, Currency: "USD"})
	wantRateLimited(t, err, "writes", "azp:seller-portal", retry)
	h.wantPrice(t, "sku-1", "s-1", 7, "USD")

	// Reading is another bucket; another seller has writes of its own.
	if _, err := h.client.GetPrice(ctx(t, seller), &pricingv1.GetPriceRequest{Sku: "sku-1"}); err != nil {
		t.Fatalf("GetPrice of the throttled writer: %v", err)
	}
	other := h.consumerToken(t, "other-portal", "s-2", "prices.write")
	if _, err := h.client.SetPrice(ctx(t, other), &pricingv1.SetPriceRequest{Sku: "sku-11", SellerId: "s-2", AmountCents: 9, Currency: "USD"}); err != nil {
		t.Fatalf("SetPrice of another consumer: %v", err)
	}

	clock.Advance(retry)
	if _, err := h.client.DeletePrice(ctx(t, seller), &pricingv1.DeletePriceRequest{Sku: "sku-1", SellerId: "s-1"}); err != nil {
		t.Fatalf("DeletePrice after the retry delay: %v", err)
	}
	_, err = h.client.SetPrice(ctx(t, seller), &pricingv1.SetPriceRequest{Sku: "sku-2", SellerId: "s-1", AmountCents: 8, Currency: "USD"})
	wantRateLimited(t, err, "writes", "azp:seller-portal", retry)
}

// Ping needs no token, so it is throttled by the caller's address: 50 at
// once.
func TestPingIsThrottledPerPeer(t *testing.T) {
	h, _ := startThrottled(t)
	for i := range 50 {
		if _, err := h.client.Ping(ctx(t, ""), &pricingv1.PingRequest{}); err != nil {
			t.Fatalf("ping %d: %v", i+1, err)
		}
	}
	_, err := h.client.Ping(ctx(t, ""), &pricingv1.PingRequest{})
	wantRateLimited(t, err, "/pricing.v1.PriceService/Ping", "peer:127.0.0.1", 20*time.Millisecond)
}

func wantHeader(t *testing.T, md metadata.MD, key, want string) {
	t.Helper()
	if got := md.Get(key); len(got) != 1 || got[0] != want {
		t.Errorf("header %s = %q; want %q", key, got, want)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
