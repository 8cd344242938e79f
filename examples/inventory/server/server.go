// Package server is the inventory service of the example: an
// inventoryv1.InventoryServiceServer over stock levels held in memory, and
// New, which builds a whole gRPC server with tollgate's guard in front of it.
//
// The handlers hold business logic only. Who may call what (tokens,
// permissions, the warehouse_id a token may touch) and how often (throttles
// per consumer) is declared in proto/inventory/v1/inventory.proto and
// enforced by the guard before a handler runs.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/tollgate/tollgate/examples/inventory/proto/inventory/v1"
	tollgate "github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Permissions the service's rules name.
const (
	PermRead  = "inventory.read"
	PermWrite = "inventory.write"
	PermCount = "inventory.count"
	// PermAdmin lets its holder touch any warehouse's stock
	// (bypass_permissions in inventory.proto).
	PermAdmin = "inventory.admin"
)

// Limits of the in-memory stock.
const (
	// MaxSKUsPerWarehouse is the most SKUs one warehouse may stock.
	MaxSKUsPerWarehouse = 10000
	// MaxQuantity is the most units of one SKU a warehouse may hold.
	MaxQuantity = 1 << 40
	// MaxIDLen is the longest warehouse_id or sku accepted.
	MaxIDLen = 64
)

// Service implements inventoryv1.InventoryServiceServer over stock levels in
// memory. It is safe for concurrent use.
type Service struct {
	inventoryv1.UnimplementedInventoryServiceServer

	mu    sync.Mutex
	stock map[string]map[string]int64 // warehouse_id -> sku -> quantity
}

// NewService returns a service with no stock.
func NewService() *Service {
	return &Service{stock: make(map[string]map[string]int64)}
}

// Ping reports that the service is up.
func (s *Service) Ping(context.Context, *inventoryv1.PingRequest) (*inventoryv1.PingResponse, error) {
	return &inventoryv1.PingResponse{Status: "ok"}, nil
}

// GetStock returns the level of one SKU; one never stocked has quantity 0.
func (s *Service) GetStock(_ context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	if err := checkIDs(req.GetWarehouseId(), req.GetSku()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	q := s.stock[req.GetWarehouseId()][req.GetSku()]
	s.mu.Unlock()
	return &inventoryv1.GetStockResponse{Level: level(req.GetWarehouseId(), req.GetSku(), q)}, nil
}

// ListStock streams the levels of one warehouse, sorted by SKU.
func (s *Service) ListStock(req *inventoryv1.ListStockRequest, stream grpc.ServerStreamingServer[inventoryv1.ListStockResponse]) error {
	wh := req.GetWarehouseId()
	if err := checkIDs(wh, "-"); err != nil {
		return err
	}
	s.mu.Lock()
	levels := make([]*inventoryv1.StockLevel, 0, len(s.stock[wh]))
	for sku, q := range s.stock[wh] {
		levels = append(levels, level(wh, sku, q))
	}
	s.mu.Unlock()
	slices.SortFunc(levels, func(a, b *inventoryv1.StockLevel) int { return cmp.Compare(a.GetSku(), b.GetSku()) })
	for _, l := range levels {
		if err := stream.Send(&inventoryv1.ListStockResponse{Level: l}); err != nil {
			return err
		}
	}
	return nil
}

// AdjustStock adds req.delta to a level, which never goes below zero.
func (s *Service) AdjustStock(_ context.Context, req *inventoryv1.AdjustStockRequest) (*inventoryv1.AdjustStockResponse, error) {
	wh, sku, d := req.GetWarehouseId(), req.GetSku(), req.GetDelta()
	if err := checkIDs(wh, sku); err != nil {
		return nil, err
	}
	if d == 0 || d > MaxQuantity || d < -MaxQuantity {
		return nil, status.Errorf(codes.InvalidArgument, "delta must be non-zero and at most %d units either way", int64(MaxQuantity))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.stock[wh][sku] + d
	if q < 0 {
		return nil, status.Error(codes.FailedPrecondition, "not enough stock for this delta")
	}
	if q > MaxQuantity {
		return nil, status.Errorf(codes.InvalidArgument, "a level may hold at most %d units", int64(MaxQuantity))
	}
	if err := s.setLocked(wh, sku, q); err != nil {
		return nil, err
	}
	return &inventoryv1.AdjustStockResponse{Level: level(wh, sku, q)}, nil
}

// RecordCounts sets each level counted to its quantity and says how many it
// recorded. When a message fails (tollgate refuses it, or it is invalid) the
// call ends with that error; the counts recorded before it stay.
func (s *Service) RecordCounts(stream grpc.ClientStreamingServer[inventoryv1.RecordCountsRequest, inventoryv1.RecordCountsResponse]) error {
	var n int32
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&inventoryv1.RecordCountsResponse{Recorded: n})
		}
		if err != nil {
			return err
		}
		if err := checkIDs(req.GetWarehouseId(), req.GetSku()); err != nil {
			return err
		}
		if q := req.GetQuantity(); q < 0 || q > MaxQuantity {
			return status.Errorf(codes.InvalidArgument, "quantity must be between 0 and %d", int64(MaxQuantity))
		}
		s.mu.Lock()
		err = s.setLocked(req.GetWarehouseId(), req.GetSku(), req.GetQuantity())
		s.mu.Unlock()
		if err != nil {
			return err
		}
		n++
	}
}

// setLocked stores a level; s.mu is held.
func (s *Service) setLocked(wh, sku string, q int64) error {
	m := s.stock[wh]
	if m == nil {
		m = make(map[string]int64)
		s.stock[wh] = m
	}
	if _, ok := m[sku]; !ok && len(m) >= MaxSKUsPerWarehouse {
		return status.Errorf(codes.ResourceExhausted, "a warehouse may stock at most %d SKUs", MaxSKUsPerWarehouse)
	}
	m[sku] = q
	return nil
}

// checkIDs validates a warehouse_id and a sku. tollgate's ownership rule has
// already refused an empty warehouse_id (an empty value never matches a
// claim) unless the caller is an administrator.
func checkIDs(wh, sku string) error {
	switch {
	case wh == "" || len(wh) > MaxIDLen:
		return status.Errorf(codes.InvalidArgument, "warehouse_id must have 1 to %d bytes", MaxIDLen)
	case sku == "" || len(sku) > MaxIDLen:
		return status.Errorf(codes.InvalidArgument, "sku must have 1 to %d bytes", MaxIDLen)
	}
	return nil
}

func level(wh, sku string, q int64) *inventoryv1.StockLevel {
	return &inventoryv1.StockLevel{WarehouseId: wh, Sku: sku, Quantity: q}
}

// Config is what New builds a server from.
type Config struct {
	// Verifier checks every token. Required: there is no default key.
	Verifier *token.Verifier
	// Service serves the calls; nil means NewService().
	Service inventoryv1.InventoryServiceServer
	// Limiter enforces the throttles inventory.proto declares. Nil means a
	// throttle.Memory of the guard's own.
	Limiter throttle.Limiter
	// Logger gets the guard's refusals (never a token) and the panics the
	// recovery interceptor catches. Nil means slog.Default().
	Logger *slog.Logger
	// GuardOptions configure tollgate's guard beyond what New sets (the
	// limiter, the logger, rate-limit headers): a metrics observer, for
	// instance. They are applied last, so they win.
	GuardOptions []tollgate.Option
	// ServerOptions are added after the guard's, e.g. grpc.Creds for TLS.
	// Interceptors chained here (grpc.ChainUnaryInterceptor) run after the
	// guard, on authorized calls only.
	ServerOptions []grpc.ServerOption
}

// Server is the inventory gRPC server. Stop and GracefulStop also release
// the guard.
type Server struct {
	*grpc.Server
	guard *tollgate.Guard
}

// Stop stops the server at once.
func (s *Server) Stop() {
	s.Server.Stop()
	s.guard.Close()
}

// GracefulStop lets in-flight calls finish, then stops.
func (s *Server) GracefulStop() {
	s.Server.GracefulStop()
	s.guard.Close()
}

// New builds the inventory gRPC server: go-grpc-middleware's recovery, then
// tollgate's guard, in front of InventoryService and gRPC health (SERVING,
// public by the guard's default). Every method's rule is compiled here: New
// returns an error, never a half-built server, when the configuration or a
// rule in inventory.proto is wrong, or a method has none.
func New(cfg Config) (*Server, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("server: a token.Verifier is required (tollgate has no default key)")
	}
	var svc inventoryv1.InventoryServiceServer = NewService()
	if cfg.Service != nil {
		svc = cfg.Service
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	gopts := []tollgate.Option{tollgate.WithRateLimitHeaders(), tollgate.WithLogger(logger)}
	if cfg.Limiter != nil {
		gopts = append(gopts, tollgate.WithLimiter(cfg.Limiter))
	}
	guard, err := tollgate.NewGuard(cfg.Verifier, append(gopts, cfg.GuardOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// Recovery first, so a panic anywhere after it (the guard included)
	// becomes Internal instead of killing the process. Its default handler
	// would send the panic value and the stack trace to the caller: this
	// one answers with a fixed message and logs only the panic's type.
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in a call", "panic_type", fmt.Sprintf("%T", p))
		return status.Error(codes.Internal, "internal error")
	})
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(rec)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(rec)),
	}
	opts = append(opts, guard.ServerOptions()...)
	opts = append(opts, cfg.ServerOptions...)
	srv := grpc.NewServer(opts...)
	inventoryv1.RegisterInventoryServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(inventoryv1.InventoryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	if err := guard.Init(srv); err != nil {
		srv.Stop()
		guard.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	return &Server{Server: srv, guard: guard}, nil
}
