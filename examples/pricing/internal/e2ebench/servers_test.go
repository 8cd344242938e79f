package e2ebench

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/examples/pricing/internal/leaktest"
	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// TestServersEnforce checks that the tollgate and the baseline servers do
// the work the benchmark compares (verify the token, check the permission
// and the ownership of seller_id, charge a scaled bucket) and that the bare
// server does none of it.
func TestServersEnforce(t *testing.T) {
	s, stop := testServers(t, 2)
	ctx := t.Context()
	var tokens []string
	now := time.Now()
	sign := func(alg string, perms []string, seller string) string {
		t.Helper()
		tok, err := s.Signer(alg).Sign(token.Claims{
			Issuer: issuer, Subject: "bench-user-0", Audience: []string{audience},
			IssuedAt: now, ExpiresAt: now.Add(tokenLifetime), AuthTime: now,
			AuthorizedParty: "bench-service-0", Permissions: perms,
			Extra: map[string]any{"seller_id": seller},
		})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		return tok
	}
	own := &pricingv1.SetPriceRequest{Sku: skuOf(0), SellerId: sellerOf(0), AmountCents: 250, Currency: "USD"}
	other := &pricingv1.SetPriceRequest{Sku: skuOf(1), SellerId: sellerOf(1), AmountCents: 250, Currency: "USD"}
	for _, alg := range Algorithms {
		good := sign(alg, []string{"prices.read", "prices.write"}, sellerOf(0))
		readOnly := sign(alg, []string{"prices.read"}, sellerOf(0))
		wrongKey := sign(otherAlg(alg), []string{"prices.write"}, sellerOf(0))
		cases := []struct {
			name  string
			token string
			req   *pricingv1.SetPriceRequest
			want  codes.Code // on tollgate and baseline; bare answers OK
		}{
			{"owner", good, own, codes.OK},
			{"not the owner", good, other, codes.PermissionDenied},
			{"no prices.write", readOnly, own, codes.PermissionDenied},
			{"other algorithm", wrongKey, own, codes.Unauthenticated},
			{"not a token", "not-a-token", own, codes.Unauthenticated},
		}
		for _, kind := range []string{Bare, Tollgate, Baseline} {
			client := dial(t, s.Addr(kind, alg))
			for _, c := range cases {
				cctx := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+c.token))
				_, err := client.SetPrice(cctx, c.req)
				want := c.want
				if kind == Bare {
					want = codes.OK
				}
				if got := status.Code(err); got != want {
					t.Errorf("%s %s, %s: %v, want %v", kind, alg, c.name, got, want)
				}
				if kind != Bare && c.want == codes.OK {
					// The limits are scaled: twice the rule's burst of
					// 10 in a row is admitted.
					for i := range 20 {
						if _, err := client.SetPrice(cctx, c.req); err != nil {
							t.Fatalf("%s %s: call %d past the first: %v (limits not scaled?)", kind, alg, i+1, err)
						}
					}
				}
			}
			// Streams: ListPrices needs prices.read; ImportPrices checks
			// ownership on every message.
			writeOnly := sign(alg, []string{"prices.write"}, sellerOf(0))
			for _, c := range []struct {
				name  string
				token string
				want  codes.Code
			}{{"ListPrices", good, codes.OK}, {"ListPrices without prices.read", writeOnly, codes.PermissionDenied}} {
				cctx := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+c.token))
				st, err := client.ListPrices(cctx, &pricingv1.ListPricesRequest{SellerId: sellerOf(0)})
				n := 0
				for err == nil {
					if _, err = st.Recv(); err == nil {
						n++
					}
				}
				want := c.want
				if kind == Bare {
					want = codes.OK
				}
				got := status.Code(err)
				if errors.Is(err, io.EOF) {
					got = codes.OK // the stream ended well
				}
				if got != want || (want == codes.OK && n != 1) {
					t.Errorf("%s %s, %s: %v after %d prices, want %v", kind, alg, c.name, err, n, want)
				}
			}
			if kind == Tollgate {
				// Its budget of failed authentications is scaled too:
				// more failures from this peer than the default burst of
				// 20, then a token never seen before is still verified.
				bad := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+wrongKey))
				for range 2 * interceptors.DefaultAuthFailureLimit().Burst {
					_, _ = client.SetPrice(bad, own)
				}
				fresh := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+sign(alg, []string{"prices.write"}, sellerOf(0))))
				if _, err := client.SetPrice(fresh, own); err != nil {
					t.Errorf("%s %s: a fresh token after %d failed authentications: %v (failure budget not scaled?)",
						kind, alg, 2*interceptors.DefaultAuthFailureLimit().Burst, err)
				}
			}
			cctx := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+good))
			st, err := client.ImportPrices(cctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, req := range []*pricingv1.SetPriceRequest{own, other} {
				if st.Send(req) != nil {
					break
				}
			}
			_, err = st.CloseAndRecv()
			if want := map[bool]codes.Code{true: codes.OK, false: codes.PermissionDenied}[kind == Bare]; status.Code(err) != want {
				t.Errorf("%s %s, ImportPrices of another seller's price: %v, want %v", kind, alg, err, want)
			}
		}
	}
	// The guard logged its denials; none of them holds a token.
	out := stop()
	if !strings.Contains(out, "NOT_OWNER") {
		t.Errorf("the server process logged no NOT_OWNER denial:\n%s", out)
	}
	for _, tok := range tokens {
		if piece := leaktest.Token(tok).Leak(out); piece != "" {
			t.Errorf("the server process's log holds a piece of a token: %q", piece)
		}
	}
}

func otherAlg(alg string) string {
	if alg == token.HS256 {
		return token.EdDSA
	}
	return token.HS256
}

func dial(t *testing.T, addr string) pricingv1.PriceServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pricingv1.NewPriceServiceClient(cc)
}

// recorder is a throttle.Limiter that records what it is asked.
type recorder struct{ limits []throttle.Limit }

func (r *recorder) Allow(_ context.Context, _ throttle.Key, l throttle.Limit, _ int) (throttle.Decision, error) {
	r.limits = append(r.limits, l)
	return throttle.Decision{Allowed: true, Limit: l}, nil
}

// The scaled limiter multiplies rate and burst and keeps the period.
func TestScaled(t *testing.T) {
	rec := &recorder{}
	lim := scaled{inner: rec, factor: 1000}
	if _, err := lim.Allow(t.Context(), throttle.Key{Consumer: "c", Bucket: "writes"}, throttle.PerSecond(5, 10), 1); err != nil {
		t.Fatal(err)
	}
	if want := []throttle.Limit{{Rate: 5000, Per: time.Second, Burst: 10000}}; !slices.Equal(rec.limits, want) {
		t.Errorf("inner limiter asked with %v, want %v", rec.limits, want)
	}
}
