package server_test

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
)

// renewalPolicy is the pricing-server's: the last third, 15 minutes, 8
// hours.
var renewalPolicy = token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: 8 * time.Hour}

// startRenewing starts a server that renews tokens, waiting up to a second
// for a renewal so that the call that starts one takes it home.
func startRenewing(t *testing.T) *harness {
	t.Helper()
	return startWith(t, func(c *server.Config) {
		p := renewalPolicy
		c.Renewal = &p
		c.RenewalGrace = time.Second
	})
}

// renewingClient is a client of h with tollgate's client interceptors
// around a TokenSource holding tok; renewals lists the expiries OnRenew
// reported.
type renewingClient struct {
	api pricingv1.PriceServiceClient
	src *interceptors.TokenSource

	mu       sync.Mutex
	renewals []time.Time
}

func (h *harness) renewingClient(t *testing.T, tok string) *renewingClient {
	t.Helper()
	rc := &renewingClient{}
	src, err := interceptors.NewTokenSource(tok, interceptors.OnRenew(func(_ string, exp time.Time) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.renewals = append(rc.renewals, exp)
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Plaintext to a loopback server: the interceptors must be told so.
	conn, err := grpc.NewClient(h.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(interceptors.UnaryClientInterceptor(src, interceptors.AllowInsecureTransport())),
		grpc.WithChainStreamInterceptor(interceptors.StreamClientInterceptor(src, interceptors.AllowInsecureTransport())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc.api = pricingv1.NewPriceServiceClient(conn)
	rc.src = src
	return rc
}

func (rc *renewingClient) renewed() []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]time.Time(nil), rc.renewals...)
}

// sessionToken mints a 15-minute token issued iatAgo, for a session that
// began authAgo.
func (h *harness) sessionToken(t *testing.T, iatAgo, authAgo time.Duration) string {
	t.Helper()
	now := time.Now()
	return h.tokenWith(t, func(c *token.Claims) {
		c.IssuedAt = now.Add(-iatAgo)
		c.ExpiresAt = c.IssuedAt.Add(15 * time.Minute)
		c.AuthTime = now.Add(-authAgo)
		c.SessionID = "sid-1"
		c.AuthorizedParty = "price-widget"
		c.Permissions = []string{"prices.read"}
		c.Extra = map[string]any{"seller_id": "s-1"}
	})
}

// A token inside the last third of its lifetime comes back renewed through
// the real client interceptors: same session (auth_time, sid, consumer,
// permissions), new jti, a full new lifetime.
func TestRenewalThroughTheClientInterceptors(t *testing.T) {
	h := startRenewing(t)
	old := h.sessionToken(t, 11*time.Minute, 11*time.Minute)
	oldSess, err := h.verifier.Verify(ctx(t, ""), old)
	if err != nil {
		t.Fatal(err)
	}
	rc := h.renewingClient(t, old)

	if _, err := rc.api.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-1"}); err != nil {
		t.Fatalf("GetPrice: %v", err)
	}
	renewed := rc.src.Token()
	if renewed == old {
		t.Fatal("the TokenSource still holds the old token: no renewal picked up")
	}
	if got := rc.renewed(); len(got) != 1 || !got[0].Equal(rc.src.ExpiresAt()) {
		t.Errorf("OnRenew reported %v; want once, with %v", got, rc.src.ExpiresAt())
	}
	sess, err := h.verifier.Verify(ctx(t, ""), renewed)
	if err != nil {
		t.Fatalf("the renewed token does not verify: %v", err)
	}
	if !sess.AuthTime().Equal(oldSess.AuthTime()) {
		t.Errorf("renewed auth_time = %v; want the original %v", sess.AuthTime(), oldSess.AuthTime())
	}
	if sess.SessionID() != oldSess.SessionID() || sess.Consumer() != "price-widget" || sess.Subject() != oldSess.Subject() {
		t.Errorf("renewed session %q/%q/%q; want %q/price-widget/%q", sess.SessionID(), sess.Consumer(), sess.Subject(), oldSess.SessionID(), oldSess.Subject())
	}
	if !sess.Has("prices.read") {
		t.Error("the renewed token lost prices.read")
	}
	if sess.ID() == oldSess.ID() {
		t.Error("the renewed token has the old jti")
	}
	if life := time.Until(sess.ExpiresAt()); life < 14*time.Minute || life > 15*time.Minute {
		t.Errorf("renewed token expires in %v; want about 15 min", life)
	}

	// The next calls carry the renewed token, which is fresh: no renewal.
	if _, err := rc.api.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-2"}); err != nil {
		t.Fatalf("GetPrice with the renewed token: %v", err)
	}
	if rc.src.Token() != renewed || len(rc.renewed()) != 1 {
		t.Error("a fresh token was renewed again")
	}
}

// Server streams are renewed too: the successor arrives in the trailers
// once the stream ends.
func TestRenewalOfAStream(t *testing.T) {
	h := startRenewing(t)
	old := h.sessionToken(t, 12*time.Minute, time.Hour)
	rc := h.renewingClient(t, old)
	stream, err := rc.api.ListPrices(ctx(t, ""), &pricingv1.ListPricesRequest{SellerId: "s-1"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		n++
	}
	if n != 10 {
		t.Errorf("streamed %d prices; want 10", n)
	}
	if rc.src.Token() == old || len(rc.renewed()) != 1 {
		t.Fatal("the stream's renewed token was not picked up")
	}
}

// A chain of renewals ends auth_time + 8h after the session began: near the
// end the successor is cut short, past it the token itself is refused.
func TestRenewalStopsAtTheMaximumSession(t *testing.T) {
	h := startRenewing(t)

	near := h.sessionToken(t, 11*time.Minute, 7*time.Hour+55*time.Minute)
	nearSess, err := h.verifier.Verify(ctx(t, ""), near)
	if err != nil {
		t.Fatal(err)
	}
	rc := h.renewingClient(t, near)
	if _, err := rc.api.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-1"}); err != nil {
		t.Fatalf("GetPrice near the end of the session: %v", err)
	}
	if rc.src.Token() == near {
		t.Fatal("no renewal 5 minutes before the end of the session")
	}
	if want := nearSess.AuthTime().Add(8 * time.Hour); !rc.src.ExpiresAt().Equal(want) {
		t.Errorf("renewed token expires at %v; want auth_time + 8h = %v", rc.src.ExpiresAt(), want)
	}

	over := h.sessionToken(t, 11*time.Minute, 8*time.Hour+5*time.Minute)
	rc = h.renewingClient(t, over)
	_, err = rc.api.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenExpired)
	if rc.src.Token() != over || len(rc.renewed()) != 0 {
		t.Error("a token past the maximum session was renewed")
	}

	// A token outside its renewal window is left alone.
	fresh := h.sessionToken(t, time.Minute, time.Minute)
	rc = h.renewingClient(t, fresh)
	if _, err := rc.api.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-1"}); err != nil {
		t.Fatalf("GetPrice with a fresh token: %v", err)
	}
	if rc.src.Token() != fresh {
		t.Error("a fresh token was renewed")
	}
}

// Without Config.Renewal nothing is renewed.
func TestNoRenewalByDefault(t *testing.T) {
	h := start(t)
	old := h.sessionToken(t, 11*time.Minute, 11*time.Minute)
	rc := h.renewingClient(t, old)
	if _, err := rc.api.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-1"}); err != nil {
		t.Fatalf("GetPrice: %v", err)
	}
	if rc.src.Token() != old {
		t.Error("renewed without Config.Renewal")
	}
}

func TestNewRefusesBadRenewal(t *testing.T) {
	ks, err := token.NewKeySet(newSigner(t).Key())
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, issuer, audience) // lifetimes up to 1 h, sessions up to 8 h
	if err != nil {
		t.Fatal(err)
	}
	long := token.RenewalPolicy{Window: 1.0 / 3, TTL: 2 * time.Hour, MaxSession: 8 * time.Hour}
	endless := token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: 24 * time.Hour}
	noWindow := token.RenewalPolicy{TTL: 15 * time.Minute, MaxSession: 8 * time.Hour}
	for name, cfg := range map[string]server.Config{
		"TTL above the verifier's maximum lifetime":       {Verifier: v, Renewal: &long},
		"MaxSession above the verifier's maximum session": {Verifier: v, Renewal: &endless},
		"no window":                 {Verifier: v, Renewal: &noWindow},
		"negative grace":            {Verifier: v, Renewal: &renewalPolicy, RenewalGrace: -time.Second},
		"a grace without a renewal": {Verifier: v, RenewalGrace: time.Second},
	} {
		if srv, err := server.New(cfg); err == nil || srv != nil {
			t.Errorf("%s: New = %v, %v; want an error", name, srv, err)
			if srv != nil {
				srv.Stop()
			}
		}
	}
}
