// Package server is the pricing service of the example: a
// pricingv1.PriceServiceServer over the in-memory store, and New, which
// builds a whole gRPC server with tollgate in front of it.
//
// The handlers hold business logic only. Who may call what (tokens,
// permissions, ownership of seller_id) and how often (throttles per consumer)
// is declared in pricing.proto and enforced by tollgate's guard before a
// handler runs; the guard also renews tokens near their expiry when
// Config.Renewal asks it to. The one security
// decision left to domain code, whether a SKU may move to another seller, uses
// the same permission model through permissions.Require.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/store"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// PermAdmin lets its holder act for any seller: tollgate's ownership rule
// lets it through (bypass_permissions in pricing.proto), and the service lets
// it move a SKU from one seller to another.
const PermAdmin = "prices.admin"

// MaxQuoteSKUs is the most SKUs one QuotePrices call may ask for.
const MaxQuoteSKUs = 1000

// Service implements pricingv1.PriceServiceServer over a store.
type Service struct {
	pricingv1.UnimplementedPriceServiceServer
	store *store.Store
}

// NewService returns the service over st.
func NewService(st *store.Store) *Service {
	return &Service{store: st}
}

// Ping reports that the service is up.
func (s *Service) Ping(context.Context, *pricingv1.PingRequest) (*pricingv1.PingResponse, error) {
	return &pricingv1.PingResponse{Status: "ok"}, nil
}

// GetPrice returns the price of one SKU.
func (s *Service) GetPrice(_ context.Context, req *pricingv1.GetPriceRequest) (*pricingv1.Price, error) {
	p, err := s.store.Get(req.GetSku())
	if err != nil {
		return nil, toStatus(err)
	}
	return toProto(p), nil
}

// ListPrices streams the prices of one seller, sorted by SKU.
func (s *Service) ListPrices(req *pricingv1.ListPricesRequest, stream grpc.ServerStreamingServer[pricingv1.Price]) error {
	if req.GetSellerId() == "" {
		return status.Error(codes.InvalidArgument, "seller_id is required")
	}
	for _, p := range s.store.List(req.GetSellerId()) {
		if err := stream.Send(toProto(p)); err != nil {
			return err
		}
	}
	return nil
}

// SetPrice creates or replaces one price.
func (s *Service) SetPrice(ctx context.Context, req *pricingv1.SetPriceRequest) (*pricingv1.Price, error) {
	p, err := s.set(ctx, req)
	if err != nil {
		return nil, err
	}
	return toProto(p), nil
}

// DeletePrice removes a price of the seller the request names.
func (s *Service) DeletePrice(_ context.Context, req *pricingv1.DeletePriceRequest) (*pricingv1.DeletePriceResponse, error) {
	if err := s.store.Delete(req.GetSku(), req.GetSellerId()); err != nil {
		return nil, toStatus(err)
	}
	return &pricingv1.DeletePriceResponse{}, nil
}

// ImportPrices stores every price the client sends and counts them. When a
// message fails (tollgate refuses it, it is invalid, or the store is full)
// the call ends with that error; the prices stored before it stay.
func (s *Service) ImportPrices(stream grpc.ClientStreamingServer[pricingv1.SetPriceRequest, pricingv1.ImportPricesResponse]) error {
	var n int32
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pricingv1.ImportPricesResponse{Imported: n})
		}
		if err != nil {
			return err
		}
		if _, err := s.set(stream.Context(), req); err != nil {
			return err
		}
		n++
	}
}

// SyncPrices stores every price the client sends and echoes each stored
// price back.
func (s *Service) SyncPrices(stream grpc.BidiStreamingServer[pricingv1.SetPriceRequest, pricingv1.Price]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p, err := s.set(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(toProto(p)); err != nil {
			return err
		}
	}
}

// QuotePrices returns the prices of the known SKUs asked for, in request
// order. The token came in access_token; the handler never looks at it.
func (s *Service) QuotePrices(_ context.Context, req *pricingv1.QuotePricesRequest) (*pricingv1.QuotePricesResponse, error) {
	if len(req.GetSkus()) > MaxQuoteSKUs {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d skus per quote", MaxQuoteSKUs)
	}
	found := s.store.Quote(req.GetSkus())
	out := &pricingv1.QuotePricesResponse{Prices: make([]*pricingv1.Price, len(found))}
	for i, p := range found {
		out.Prices[i] = toProto(p)
	}
	return out, nil
}

// set stores one price. tollgate has already checked that the caller may
// write for req.seller_id; whether the SKU may change sellers is a domain
// rule, decided with the same permission model.
func (s *Service) set(ctx context.Context, req *pricingv1.SetPriceRequest) (store.Price, error) {
	reassign := permissions.Require(ctx, PermAdmin) == nil
	p, err := s.store.Set(store.Price{
		SKU:         req.GetSku(),
		SellerID:    req.GetSellerId(),
		AmountCents: req.GetAmountCents(),
		Currency:    req.GetCurrency(),
	}, reassign)
	if err != nil {
		return store.Price{}, toStatus(err)
	}
	return p, nil
}

func toProto(p store.Price) *pricingv1.Price {
	return &pricingv1.Price{Sku: p.SKU, SellerId: p.SellerID, AmountCents: p.AmountCents, Currency: p.Currency}
}

// toStatus maps the store's errors to gRPC codes. Their messages name only
// fields, rules and limits, never stored data, so they may reach the caller.
// A full store is ResourceExhausted, without the RetryInfo of a throttle
// refusal: waiting does not free a place, deleting prices does.
func toStatus(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, "price not found")
	case errors.Is(err, store.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Internal, "internal error")
}

// Config is what New builds a server from.
type Config struct {
	// Verifier checks every token. Required: there is no default key.
	Verifier *token.Verifier
	// Store holds the prices; nil means store.New(), the demo catalogue
	// with the store's default limits (store.DefaultLimits).
	Store *store.Store
	// Limiter enforces the throttles pricing.proto declares (reads 20 a
	// second per consumer, the shared "writes" bucket, Ping per peer). Nil
	// means a throttle.Memory of this server's own; pass a redisstore.Limiter
	// wrapped in a throttle.Failover to share the budgets between replicas.
	Limiter throttle.Limiter
	// Renewal, when set, renews tokens inside the last Window of their
	// lifetime: the successor is signed with the verifier's signing key
	// (token.NewLocalRenewer, so the key must be able to sign: an HMAC
	// secret or a private key) and travels back in the trailer
	// "tollgate-renewed-token". Its TTL may not exceed the verifier's
	// maximum lifetime, nor its MaxSession the verifier's maximum session.
	Renewal *token.RenewalPolicy
	// RenewalGrace is how long a call may wait, after its handler returns,
	// for a renewal still under way (interceptors.WithRenewalGrace). With 0
	// the renewed token goes to the first call that ends after the renewal
	// has: usually the next call presenting the old token.
	RenewalGrace time.Duration
	// NoRateLimitHeaders leaves out the rate-limit headers, for clients
	// that do not read them: each costs the server a header to encode on
	// every throttled call. The end-to-end benchmark measures the guard
	// without them, as the hand-built baseline it is compared with sends
	// none.
	NoRateLimitHeaders bool
	// Observer, when set, is told every decision of the guard
	// (interceptors.WithObserver): oteltollgate.New makes one that exports
	// them as OpenTelemetry metrics.
	Observer interceptors.Observer
	// GuardOptions configure tollgate's guard (a logger, for instance).
	// They are applied after the ones New derives from the fields above,
	// so they win over them.
	GuardOptions []interceptors.Option
	// ServerOptions are added after the guard's, e.g. grpc.Creds for TLS.
	// Interceptors added with grpc.ChainUnaryInterceptor or
	// grpc.ChainStreamInterceptor run after the guard, on authorized calls
	// only; beware that grpc.UnaryInterceptor and grpc.StreamInterceptor put
	// theirs in front of the whole chain, before the guard.
	ServerOptions []grpc.ServerOption
}

// Server is the pricing gRPC server. Stop and GracefulStop also wait for the
// token renewals still under way (each bounded by a timeout), so that none
// outlives the server.
type Server struct {
	*grpc.Server
	guard *interceptors.Guard
}

// Stop stops the server at once and waits for renewals under way.
func (s *Server) Stop() {
	s.Server.Stop()
	s.guard.Close()
}

// GracefulStop lets in-flight calls finish, then waits for renewals under
// way.
func (s *Server) GracefulStop() {
	s.Server.GracefulStop()
	s.guard.Close()
}

// New builds the pricing gRPC server: tollgate's guard in front of
// PriceService, gRPC health (SERVING) and reflection, with every rule
// compiled. Health checks need no token (the guard's default public
// service); reflection needs a valid token, since it shows every rule.
// A method the server does not serve (a client built from a newer .proto,
// a probe) goes through the guard too, by way of a
// grpc.UnknownServiceHandler: it has no rule, so the guard refuses it with
// PermissionDenied (ErrorInfo PERMISSION_DENIED), logs it and tells the
// Observer, where grpc-go alone would answer Unimplemented before any
// interceptor ran. The handler behind the guard answers Unimplemented, and
// is never reached while the guard denies every name without a rule.
// Throttled methods answer with the rate-limit headers
// "ratelimit-policy" and "ratelimit" (unless NoRateLimitHeaders). It returns an error, never a
// half-built server, when the configuration or a rule in pricing.proto is
// wrong.
func New(cfg Config) (*Server, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("server: a token.Verifier is required (tollgate has no default key)")
	}
	st := cfg.Store
	if st == nil {
		st = store.New()
	}
	var gopts []interceptors.Option
	if !cfg.NoRateLimitHeaders {
		gopts = append(gopts, interceptors.WithRateLimitHeaders())
	}
	if cfg.Limiter != nil {
		gopts = append(gopts, interceptors.WithLimiter(cfg.Limiter))
	}
	if cfg.Observer != nil {
		gopts = append(gopts, interceptors.WithObserver(cfg.Observer))
	}
	if cfg.Renewal != nil {
		r, err := token.NewLocalRenewer(cfg.Verifier, *cfg.Renewal)
		if err != nil {
			return nil, fmt.Errorf("server: renewal: %w", err)
		}
		gopts = append(gopts, interceptors.WithRenewal(r, *cfg.Renewal), interceptors.WithRenewalGrace(cfg.RenewalGrace))
	} else if cfg.RenewalGrace != 0 {
		return nil, errors.New("server: RenewalGrace without Renewal")
	}
	guard, err := interceptors.NewGuard(cfg.Verifier, append(gopts, cfg.GuardOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// The unknown-service handler comes before cfg.ServerOptions, so a
	// caller's own replaces it.
	opts := append(guard.ServerOptions(), grpc.UnknownServiceHandler(unknownMethod))
	srv := grpc.NewServer(append(opts, cfg.ServerOptions...)...)
	pricingv1.RegisterPriceServiceServer(srv, NewService(st))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pricingv1.PriceService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	if err := guard.Init(srv); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("server: %w", err)
	}
	return &Server{Server: srv, guard: guard}, nil
}

// unknownMethod is the server's grpc.UnknownServiceHandler. It exists so
// that calls to names the server does not serve pass through the guard's
// stream interceptor, which denies them (no rule); should one ever get
// past, it answers what grpc-go would have answered.
func unknownMethod(_ any, _ grpc.ServerStream) error {
	return status.Error(codes.Unimplemented, "unknown method")
}
