package e2ebench

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/golang-jwt/jwt/v5"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/examples/pricing/store"
)

// The baseline is the pricing service as a Go team secures it without
// tollgate, from the usual parts: go-grpc-middleware's auth interceptor
// calling golang-jwt, a hand-written table of what each method needs, and
// go-grpc-middleware's ratelimit interceptor over x/time/rate. It enforces
// what pricing.proto declares for the methods the bench calls, with the same
// keys and tokens as the tollgate server; it does not try to match the rest
// of tollgate (public Ping, tokens in the body, stream bounds, expiry of open
// streams, renewal, rate-limit headers), which a team would have to write
// besides.

// baselineClaims are the claims the baseline decodes from a token.
type baselineClaims struct {
	jwt.RegisteredClaims
	AZP      string   `json:"azp,omitempty"`
	Perms    []string `json:"perms,omitempty"`
	SellerID string   `json:"seller_id,omitempty"`
}

type claimsKey struct{}

// baselineRule is what one method needs: a permission, ownership of the
// request's seller_id, and a token bucket per consumer.
type baselineRule struct {
	perm   string
	owned  bool   // the request's seller_id must equal the token's, unless prices.admin
	bucket string // "" with no throttle
	rate   rate.Limit
	burst  int
}

// baselineRules is pricing.proto's rules for the authenticated methods,
// written out by hand.
var baselineRules = map[string]baselineRule{
	pricingv1.PriceService_GetPrice_FullMethodName:     {perm: "prices.read", bucket: "GetPrice", rate: 20, burst: 20},
	pricingv1.PriceService_ListPrices_FullMethodName:   {perm: "prices.read"},
	pricingv1.PriceService_SetPrice_FullMethodName:     {perm: "prices.write", owned: true, bucket: "writes", rate: 5, burst: 10},
	pricingv1.PriceService_DeletePrice_FullMethodName:  {perm: "prices.delete", owned: true, bucket: "writes", rate: 5, burst: 10},
	pricingv1.PriceService_ImportPrices_FullMethodName: {perm: "prices.write", owned: true, bucket: "writes", rate: 5, burst: 10},
	pricingv1.PriceService_SyncPrices_FullMethodName:   {perm: "prices.write", owned: true, bucket: "writes", rate: 5, burst: 10},
}

// baselineAuth verifies the bearer token with golang-jwt: one algorithm,
// the issuer, the audience, and an expiry required.
func baselineAuth(alg string, key any) auth.AuthFunc {
	keyfunc := func(*jwt.Token) (any, error) { return key, nil }
	return func(ctx context.Context) (context.Context, error) {
		tok, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err
		}
		c := &baselineClaims{}
		if _, err := jwt.ParseWithClaims(tok, c, keyfunc,
			jwt.WithValidMethods([]string{alg}),
			jwt.WithAudience(audience),
			jwt.WithIssuer(issuer),
			jwt.WithExpirationRequired(),
		); err != nil {
			return nil, status.Error(codes.Unauthenticated, "invalid token")
		}
		return context.WithValue(ctx, claimsKey{}, c), nil
	}
}

// checkCaller checks that there is a caller and that it holds r's
// permission.
func (r baselineRule) checkCaller(c *baselineClaims) error {
	if c == nil {
		return status.Error(codes.Unauthenticated, "no token")
	}
	if !slices.Contains(c.Perms, r.perm) {
		return status.Error(codes.PermissionDenied, "permission denied")
	}
	return nil
}

// checkOwner checks that the caller owns the seller_id of req, when r asks
// for ownership and the caller is no admin.
func (r baselineRule) checkOwner(c *baselineClaims, req any) error {
	if !r.owned || slices.Contains(c.Perms, server.PermAdmin) {
		return nil
	}
	m, ok := req.(interface{ GetSellerId() string })
	if !ok || m.GetSellerId() != c.SellerID {
		return status.Error(codes.PermissionDenied, "not the owner of seller_id")
	}
	return nil
}

func baselineUnaryRules(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r, ok := baselineRules[info.FullMethod]
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "method not allowed")
	}
	c, _ := ctx.Value(claimsKey{}).(*baselineClaims)
	if err := r.checkCaller(c); err != nil {
		return nil, err
	}
	if err := r.checkOwner(c, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// baselineStreamRules checks the caller when the stream opens and
// ownership on every message the client sends.
func baselineStreamRules(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	r, ok := baselineRules[info.FullMethod]
	if !ok {
		return status.Error(codes.PermissionDenied, "method not allowed")
	}
	c, _ := ss.Context().Value(claimsKey{}).(*baselineClaims)
	if err := r.checkCaller(c); err != nil {
		return err
	}
	if r.owned {
		ss = &ownedStream{ServerStream: ss, rule: r, claims: c}
	}
	return handler(srv, ss)
}

// ownedStream checks ownership on every message the client sends.
type ownedStream struct {
	grpc.ServerStream
	rule   baselineRule
	claims *baselineClaims
}

func (s *ownedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.rule.checkOwner(s.claims, m)
}

// baselineLimiter is x/time/rate limiters in a mutex-guarded map, one per
// consumer (azp, else sub) and bucket, each with its limit multiplied by
// factor. It implements go-grpc-middleware's ratelimit.Limiter.
type baselineLimiter struct {
	factor int
	mu     sync.Mutex
	m      map[string]*rate.Limiter
}

var errRateLimited = errors.New("rate limit exceeded")

func (l *baselineLimiter) Limit(ctx context.Context) error {
	method, _ := grpc.Method(ctx)
	r := baselineRules[method]
	if r.bucket == "" {
		return nil
	}
	c, _ := ctx.Value(claimsKey{}).(*baselineClaims)
	if c == nil {
		return errRateLimited
	}
	consumer := c.AZP
	if consumer == "" {
		consumer = c.Subject
	}
	key := consumer + "\x00" + r.bucket
	l.mu.Lock()
	lim, ok := l.m[key]
	if !ok {
		lim = rate.NewLimiter(r.rate*rate.Limit(l.factor), r.burst*l.factor)
		l.m[key] = lim
	}
	l.mu.Unlock()
	if !lim.Allow() {
		return errRateLimited
	}
	return nil
}

// newBaseline returns the pricing service behind the baseline's
// interceptors: authentication, the rules, then the throttle.
func newBaseline(alg string, key any, st *store.Store) *grpc.Server {
	lim := &baselineLimiter{factor: Scale, m: make(map[string]*rate.Limiter)}
	authFn := baselineAuth(alg, key)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(authFn), baselineUnaryRules, ratelimit.UnaryServerInterceptor(lim)),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(authFn), baselineStreamRules, ratelimit.StreamServerInterceptor(lim)),
	)
	pricingv1.RegisterPriceServiceServer(srv, server.NewService(st))
	return srv
}
