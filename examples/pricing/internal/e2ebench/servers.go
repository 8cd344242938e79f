package e2ebench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/examples/pricing/store"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// The names of the three servers, as the slices, the metrics and the pprof
// label "server" spell them.
const (
	Bare     = "bare"
	Tollgate = "tollgate"
	Baseline = "baseline"
)

// What pricing-server runs with by default: its flags' defaults.
const (
	issuer        = "tollgate-demo"
	audience      = "pricing"
	tokenTTL      = 15 * time.Minute
	maxSession    = 8 * time.Hour
	renewalWindow = 1.0 / 3
)

// tokenLifetime is the lifetime of the bench tokens: far from the renewal
// window (its last third) for the few minutes a case lasts.
const tokenLifetime = 30 * time.Minute

// Scale is the factor by which both servers' limiters multiply every
// limit's rate and burst: SetPrice's 5 a second with bursts of 10 become
// 500,000 a second with bursts of 1,000,000 per consumer, which no load
// from one 2-core machine reaches.
const Scale = 100_000

// scaled is a throttle.Limiter that asks its inner limiter with every
// limit's rate and burst multiplied by factor: the inner limiter does all
// its work (hash, shard, lock, GCRA) and the bench load is never refused.
type scaled struct {
	inner  throttle.Limiter
	factor int
}

func (s scaled) Allow(ctx context.Context, key throttle.Key, limit throttle.Limit, cost int) (throttle.Decision, error) {
	limit.Rate *= s.factor
	limit.Burst *= s.factor
	return s.inner.Allow(ctx, key, limit, cost)
}

// scaledLimit is l with its rate and burst multiplied by Scale.
func scaledLimit(l throttle.Limit) throttle.Limit {
	l.Rate *= Scale
	l.Burst *= Scale
	return l
}

// benchSellers is how many sellers the callers act for; caller c is
// seller-(c mod benchSellers) and sets the price of its own SKU, bench-sku-c.
const benchSellers = 8

func sellerOf(caller int) string { return fmt.Sprintf("bench-seller-%d", caller%benchSellers) }
func skuOf(caller int) string    { return fmt.Sprintf("bench-sku-%d", caller) }

// newStore returns the store each server starts from: pricing-server's
// (the demo catalogue, default limits) plus the SKUs of callers callers, so
// that SetPrice only ever replaces prices (the store never grows) and
// ListPrices of a bench seller streams callers/benchSellers prices.
func newStore(callers int) (*store.Store, error) {
	st := store.New()
	for c := range callers {
		if _, err := st.Set(store.Price{SKU: skuOf(c), SellerID: sellerOf(c), AmountCents: 100, Currency: "USD"}, false); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// newBare returns the pricing service with no interceptor.
func newBare(st *store.Store) *grpc.Server {
	srv := grpc.NewServer()
	pricingv1.RegisterPriceServiceServer(srv, server.NewService(st))
	return srv
}

// newTollgate builds the pricing server as pricing-server's build does for
// key (the verifier's options, renewal when the key can sign, the guard's
// logger), with lim as its limiter.
func newTollgate(key *token.Key, st *store.Store, lim throttle.Limiter, logger *slog.Logger) (*server.Server, error) {
	ks, err := token.NewKeySet(key)
	if err != nil {
		return nil, err
	}
	v, err := token.NewVerifier(ks, issuer, audience,
		token.WithMaxTokenSize(64<<10),
		token.WithMaxSession(maxSession),
		token.WithMaxLifetime(max(tokenTTL, time.Hour)))
	if err != nil {
		return nil, err
	}
	cfg := server.Config{
		Verifier: v,
		Store:    st,
		Limiter:  lim,
		// The baseline sends no rate-limit headers: neither does this
		// server, so that both do the same work for the client.
		NoRateLimitHeaders: true,
		GuardOptions: []interceptors.Option{
			interceptors.WithLogger(logger),
			// Every call of the miss cases brings a token the guard has
			// not seen, so each reserves one of its peer's failed
			// authentications until its signature checks out, and all
			// 32 callers share one peer address: past the default burst
			// of 20 in flight, calls were refused although none failed.
			// Scaled like the throttles, the budget does its work on
			// every call and refuses nothing of the load.
			interceptors.WithAuthFailureLimit(scaledLimit(interceptors.DefaultAuthFailureLimit())),
		},
	}
	if _, ok := ks.SigningKey(); ok {
		cfg.Renewal = &token.RenewalPolicy{Window: renewalWindow, TTL: tokenTTL, MaxSession: maxSession}
	}
	return server.New(cfg)
}

// newScaledMemory returns a real throttle.Memory behind the scaling.
func newScaledMemory() (throttle.Limiter, error) {
	m, err := throttle.NewMemory()
	if err != nil {
		return nil, err
	}
	return scaled{inner: m, factor: Scale}, nil
}
