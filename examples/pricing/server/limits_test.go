package server_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/examples/pricing/store"
)

// startLimited starts a server over an empty store with limits l.
func startLimited(t *testing.T, l store.Limits) *harness {
	t.Helper()
	st, err := store.NewWithLimits(l)
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, func(c *server.Config) { c.Store = st })
}

// wantStoreFull fails unless err is the store's refusal: ResourceExhausted
// with a message naming the limit (want), no stored data, and none of the
// throttle's details (it is not a rate limit: retrying will not help).
func wantStoreFull(t *testing.T, err error, want string, stored ...string) {
	t.Helper()
	st := wantCode(t, err, codes.ResourceExhausted)
	if msg := st.Message(); !strings.Contains(msg, want) {
		t.Errorf("message %q; want it to name the limit, %q", msg, want)
	}
	for _, s := range stored {
		if strings.Contains(st.Message(), s) {
			t.Errorf("message %q holds stored data %q", st.Message(), s)
		}
	}
	if d := st.Details(); len(d) != 0 {
		t.Errorf("details %v; want none (not a throttle refusal)", d)
	}
}

func setReq(sku, seller string, cents int64) *pricingv1.SetPriceRequest {
	return &pricingv1.SetPriceRequest{Sku: sku, SellerId: seller, AmountCents: cents, Currency: "USD"}
}

func TestSetPriceInAFullStore(t *testing.T) {
	h := startLimited(t, store.Limits{PerSeller: 3, Total: 4})
	// Each phase is its own consumer, so the writes bucket (burst 10)
	// never refuses with a ResourceExhausted of its own.
	seller1 := h.consumerToken(t, "limits-1", "s-1", "prices.write")
	for _, sku := range []string{"sku-a", "sku-b", "sku-c"} {
		if _, err := h.client.SetPrice(ctx(t, seller1), setReq(sku, "s-1", 10)); err != nil {
			t.Fatalf("SetPrice(%s): %v", sku, err)
		}
	}
	_, err := h.client.SetPrice(ctx(t, seller1), setReq("sku-d", "s-1", 10))
	wantStoreFull(t, err, "at most 3 skus per seller", "s-1", "sku-")
	h.wantNoPrice(t, "sku-d")

	// A full seller still replaces its prices.
	got, err := h.client.SetPrice(ctx(t, seller1), setReq("sku-b", "s-1", 99))
	if err != nil {
		t.Fatalf("replacing a price of a full seller: %v", err)
	}
	wantProto(t, got, price("sku-b", "s-1", 99, "USD"))
	h.wantPrice(t, "sku-b", "s-1", 99, "USD")

	// The fourth SKU fills the store; the fifth, of yet another seller, is
	// refused by the total limit.
	if _, err := h.client.SetPrice(ctx(t, h.consumerToken(t, "limits-2", "s-2", "prices.write")), setReq("sku-x", "s-2", 1)); err != nil {
		t.Fatalf("SetPrice(sku-x of s-2): %v", err)
	}
	_, err = h.client.SetPrice(ctx(t, h.consumerToken(t, "limits-3", "s-3", "prices.write")), setReq("sku-y", "s-3", 1))
	wantStoreFull(t, err, "at most 4 skus in all", "s-3", "sku-")
	h.wantNoPrice(t, "sku-y")
	if _, err := h.client.SetPrice(ctx(t, seller1), setReq("sku-a", "s-1", 5)); err != nil {
		t.Fatalf("replacing a price in a full store: %v", err)
	}
}

// An import that runs into the limit ends with ResourceExhausted; the
// prices stored before stay.
func TestImportPricesIntoAFullStore(t *testing.T) {
	h := startLimited(t, store.Limits{PerSeller: 3, Total: 10})
	_, err := importPrices(t, h, h.consumerToken(t, "limits-import", "s-1", "prices.write"),
		setReq("sku-1", "s-1", 1), setReq("sku-2", "s-1", 2), setReq("sku-3", "s-1", 3),
		setReq("sku-4", "s-1", 4), setReq("sku-5", "s-1", 5))
	wantStoreFull(t, err, "at most 3 skus per seller", "s-1", "sku-")
	h.wantPrice(t, "sku-1", "s-1", 1, "USD")
	h.wantPrice(t, "sku-2", "s-1", 2, "USD")
	h.wantPrice(t, "sku-3", "s-1", 3, "USD")
	h.wantNoPrice(t, "sku-4")
	h.wantNoPrice(t, "sku-5")

	// Replacing in a full store works through the stream too.
	resp, err := importPrices(t, h, h.consumerToken(t, "limits-import-2", "s-1", "prices.write"),
		setReq("sku-1", "s-1", 11), setReq("sku-3", "s-1", 33))
	if err != nil || resp.GetImported() != 2 {
		t.Fatalf("re-import of held SKUs = %v, %v; want 2 imported", resp, err)
	}
	h.wantPrice(t, "sku-3", "s-1", 33, "USD")
}
