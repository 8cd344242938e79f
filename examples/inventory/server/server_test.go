package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/tollgate/tollgate/examples/inventory/proto/inventory/v1"
	"github.com/tollgate/tollgate/examples/inventory/server"
	tollgate "github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

const (
	issuer   = "tollgate-demo"
	audience = "inventory"
)

// harness is one inventory server on a loopback TCP port and a client of it.
type harness struct {
	client inventoryv1.InventoryServiceClient
	conn   *grpc.ClientConn
	signer *token.Signer
	log    *syncBuffer
}

func newSigner(t *testing.T) *token.Signer {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start serves a fresh inventory (with no stock) whose configuration edit
// may change (it may be nil).
func start(t *testing.T, edit func(*server.Config)) *harness {
	t.Helper()
	signer := newSigner(t)
	ks, err := token.NewKeySet(signer.Key())
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, issuer, audience)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{signer: signer, log: &syncBuffer{}}
	cfg := server.Config{Verifier: v, Logger: slog.New(slog.NewTextHandler(h.log, nil))}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	h.conn = conn
	h.client = inventoryv1.NewInventoryServiceClient(conn)
	return h
}

// frozenLimiter returns a memory limiter whose clock never moves: buckets
// never refill, so a test can spend one to the last token.
func frozenLimiter(t *testing.T) throttle.Limiter {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	lim, err := throttle.NewMemory(throttle.WithMemoryClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

// token mints a token for warehouse (no warehouse_id claim when empty)
// holding perms.
func (h *harness) token(t *testing.T, warehouse string, perms ...string) string {
	t.Helper()
	now := time.Now()
	c := token.Claims{
		Issuer:          issuer,
		Subject:         "clerk-1",
		Audience:        []string{audience},
		IssuedAt:        now,
		ExpiresAt:       now.Add(5 * time.Minute),
		AuthorizedParty: "inventory-test",
		Permissions:     perms,
	}
	if warehouse != "" {
		c.Extra = map[string]any{"warehouse_id": warehouse}
	}
	tok, err := h.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ctx returns a context whose calls carry tok as a Bearer token (none when
// tok is empty).
func ctx(t *testing.T, tok string) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if tok == "" {
		return c
	}
	return metadata.AppendToOutgoingContext(c, "authorization", "Bearer "+tok)
}

// wantDenied fails unless err is a tollgate refusal with code and reason,
// whose ErrorInfo metadata holds md (key, value, ...). It returns the status.
func wantDenied(t *testing.T, err error, code codes.Code, reason string, md ...string) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v; want code %s", err, code)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	if info == nil {
		t.Fatalf("error %v carries no ErrorInfo", err)
	}
	if info.GetReason() != reason || info.GetDomain() != tollgate.Domain {
		t.Fatalf("ErrorInfo = %s/%s; want %s/%s", info.GetDomain(), info.GetReason(), tollgate.Domain, reason)
	}
	for i := 0; i+1 < len(md); i += 2 {
		if got := info.GetMetadata()[md[i]]; got != md[i+1] {
			t.Fatalf("ErrorInfo metadata %q = %q; want %q (all: %v)", md[i], got, md[i+1], info.GetMetadata())
		}
	}
	return st
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("call refused: %v", err)
	}
}

// adjust adds delta units of sku to warehouse wh.
func (h *harness) adjust(t *testing.T, tok, wh, sku string, delta int64) (*inventoryv1.AdjustStockResponse, error) {
	t.Helper()
	return h.client.AdjustStock(ctx(t, tok), &inventoryv1.AdjustStockRequest{WarehouseId: wh, Sku: sku, Delta: delta})
}

// quantity reads a level as an administrator.
func (h *harness) quantity(t *testing.T, wh, sku string) int64 {
	t.Helper()
	resp, err := h.client.GetStock(ctx(t, h.token(t, "", server.PermRead, server.PermAdmin)), &inventoryv1.GetStockRequest{WarehouseId: wh, Sku: sku})
	mustOK(t, err)
	return resp.GetLevel().GetQuantity()
}

// record streams counts to RecordCounts and returns its answer. Sends that
// fail because the server ended the stream are ignored: CloseAndRecv
// returns the status it ended with.
func (h *harness) record(t *testing.T, tok string, counts ...*inventoryv1.RecordCountsRequest) (*inventoryv1.RecordCountsResponse, error) {
	t.Helper()
	stream, err := h.client.RecordCounts(ctx(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if err := stream.Send(c); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("Send: %v", err)
		}
	}
	return stream.CloseAndRecv()
}

func count(wh, sku string, q int64) *inventoryv1.RecordCountsRequest {
	return &inventoryv1.RecordCountsRequest{WarehouseId: wh, Sku: sku, Quantity: q}
}

func TestAllowed(t *testing.T) {
	h := start(t, nil)
	writer := h.token(t, "wh-1", server.PermRead, server.PermWrite)
	resp, err := h.adjust(t, writer, "wh-1", "sku-a", 7)
	mustOK(t, err)
	if got := resp.GetLevel().GetQuantity(); got != 7 {
		t.Fatalf("level after +7 = %d; want 7", got)
	}
	_, err = h.adjust(t, writer, "wh-1", "sku-b", 3)
	mustOK(t, err)

	reader := h.token(t, "wh-1", server.PermRead)
	got, err := h.client.GetStock(ctx(t, reader), &inventoryv1.GetStockRequest{WarehouseId: "wh-1", Sku: "sku-a"})
	mustOK(t, err)
	if got.GetLevel().GetQuantity() != 7 {
		t.Fatalf("GetStock = %v; want quantity 7", got)
	}

	stream, err := h.client.ListStock(ctx(t, reader), &inventoryv1.ListStockRequest{WarehouseId: "wh-1"})
	if err != nil {
		t.Fatal(err)
	}
	var skus []string
	for {
		l, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		mustOK(t, err)
		skus = append(skus, l.GetLevel().GetSku())
	}
	if strings.Join(skus, ",") != "sku-a,sku-b" {
		t.Fatalf("ListStock listed %v; want sku-a, sku-b", skus)
	}

	// A counting clerk holds one of RecordCounts' any_permissions.
	clerk := h.token(t, "wh-1", server.PermCount)
	rc, err := h.record(t, clerk, count("wh-1", "sku-a", 5), count("wh-1", "sku-c", 1))
	mustOK(t, err)
	if rc.GetRecorded() != 2 || h.quantity(t, "wh-1", "sku-a") != 5 {
		t.Fatalf("RecordCounts recorded %d, sku-a = %d; want 2 and 5", rc.GetRecorded(), h.quantity(t, "wh-1", "sku-a"))
	}
}

func TestMissingPermission(t *testing.T) {
	h := start(t, nil)

	// AdjustStock needs all of inventory.read and inventory.write.
	_, err := h.adjust(t, h.token(t, "wh-1", server.PermRead), "wh-1", "sku-a", 1)
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", server.PermWrite)
	_, err = h.adjust(t, h.token(t, "wh-1", server.PermWrite), "wh-1", "sku-a", 1)
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", server.PermRead)

	// RecordCounts needs any of inventory.count and inventory.write:
	// inventory.read is neither, and the stream ends before any count.
	_, err = h.record(t, h.token(t, "wh-1", server.PermRead), count("wh-1", "sku-a", 9))
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED")
	// An administrator may bypass ownership, not permissions.
	_, err = h.adjust(t, h.token(t, "", server.PermAdmin), "wh-1", "sku-a", 1)
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED")

	if q := h.quantity(t, "wh-1", "sku-a"); q != 0 {
		t.Fatalf("a refused call changed the stock: sku-a = %d", q)
	}
	if !strings.Contains(h.log.String(), "PERMISSION_DENIED") {
		t.Errorf("refusals were not logged:\n%s", h.log.String())
	}
}

func TestNotOwner(t *testing.T) {
	h := start(t, nil)
	tok := h.token(t, "wh-1", server.PermRead, server.PermWrite)
	_, err := h.adjust(t, tok, "wh-2", "sku-a", 1)
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "warehouse_id")
	_, err = h.client.GetStock(ctx(t, tok), &inventoryv1.GetStockRequest{WarehouseId: "wh-2", Sku: "sku-a"})
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "warehouse_id")
	stream, err := h.client.ListStock(ctx(t, tok), &inventoryv1.ListStockRequest{WarehouseId: "wh-2"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "warehouse_id")

	// A token without a warehouse_id claim owns nothing.
	_, err = h.adjust(t, h.token(t, "", server.PermRead, server.PermWrite), "wh-1", "sku-a", 1)
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "warehouse_id")
	if q := h.quantity(t, "wh-2", "sku-a"); q != 0 {
		t.Fatalf("a refused call changed the stock: wh-2/sku-a = %d", q)
	}
}

func TestOwnerBypass(t *testing.T) {
	h := start(t, nil)
	// inventory.admin bypasses the ownership rule: the token's own
	// warehouse (or none) does not matter.
	for _, wh := range []string{"wh-1", ""} {
		admin := h.token(t, wh, server.PermRead, server.PermWrite, server.PermAdmin)
		_, err := h.adjust(t, admin, "wh-2", "sku-a", 4)
		mustOK(t, err)
		rc, err := h.record(t, admin, count("wh-3", "sku-a", 1), count("wh-4", "sku-a", 2))
		mustOK(t, err)
		if rc.GetRecorded() != 2 {
			t.Fatalf("admin RecordCounts recorded %d; want 2", rc.GetRecorded())
		}
	}
	if q := h.quantity(t, "wh-2", "sku-a"); q != 8 {
		t.Fatalf("wh-2/sku-a = %d; want 8", q)
	}
	if q := h.quantity(t, "wh-4", "sku-a"); q != 2 {
		t.Fatalf("wh-4/sku-a = %d; want 2", q)
	}
}

func TestThrottled(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Limiter = frozenLimiter(t) })
	tok := h.token(t, "wh-1", server.PermRead, server.PermWrite)
	// "writes" holds 20 tokens; its clock is frozen, so it never refills.
	for i := range 20 {
		if _, err := h.adjust(t, tok, "wh-1", "sku-a", 1); err != nil {
			t.Fatalf("call %d of the burst refused: %v", i+1, err)
		}
	}
	_, err := h.adjust(t, tok, "wh-1", "sku-a", 1)
	st := wantDenied(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("throttled call carries RetryInfo %v; want a positive retry delay", retry)
	}
	// The bucket is shared: RecordCounts draws on "writes" too.
	_, err = h.record(t, tok, count("wh-1", "sku-b", 1))
	wantDenied(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	if q := h.quantity(t, "wh-1", "sku-a"); q != 20 {
		t.Fatalf("sku-a = %d after 20 admitted +1s; want 20", q)
	}
}

// The stream's opening takes cost 2 (paying for its first message), every
// later message message_cost 1: a full bucket of 20 pays for 19 counts, and
// the 20th ends the stream before the handler sees it.
func TestStreamMessageCost(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Limiter = frozenLimiter(t) })
	tok := h.token(t, "wh-1", server.PermCount)
	var counts []*inventoryv1.RecordCountsRequest
	for i := range 25 {
		counts = append(counts, count("wh-1", "sku-"+string(rune('a'+i)), int64(i+1)))
	}
	_, err := h.record(t, tok, counts...)
	wantDenied(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	if q := h.quantity(t, "wh-1", "sku-s"); q != 19 {
		t.Fatalf("19th count: sku-s = %d; want 19", q)
	}
	if q := h.quantity(t, "wh-1", "sku-t"); q != 0 {
		t.Fatalf("20th count was recorded past the bucket: sku-t = %d", q)
	}
}

func TestPublicWithoutToken(t *testing.T) {
	h := start(t, nil)
	resp, err := h.client.Ping(ctx(t, ""), &inventoryv1.PingRequest{})
	mustOK(t, err)
	if resp.GetStatus() != "ok" {
		t.Fatalf("Ping = %q; want ok", resp.GetStatus())
	}
	hc, err := healthpb.NewHealthClient(h.conn).Check(ctx(t, ""), &healthpb.HealthCheckRequest{Service: inventoryv1.InventoryService_ServiceDesc.ServiceName})
	mustOK(t, err)
	if hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v; want SERVING", hc.GetStatus())
	}
	// Every other method needs a token.
	_, err = h.client.GetStock(ctx(t, ""), &inventoryv1.GetStockRequest{WarehouseId: "wh-1", Sku: "sku-a"})
	wantDenied(t, err, codes.Unauthenticated, "TOKEN_MISSING")
	_, err = h.record(t, "", count("wh-1", "sku-a", 1))
	wantDenied(t, err, codes.Unauthenticated, "TOKEN_MISSING")
}

func TestStreamOwnershipPerMessage(t *testing.T) {
	h := start(t, nil)
	clerk := h.token(t, "wh-1", server.PermCount)
	_, err := h.record(t, clerk,
		count("wh-1", "sku-a", 3),
		count("wh-2", "sku-a", 4), // not the clerk's warehouse
		count("wh-1", "sku-b", 5))
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "warehouse_id")
	if q := h.quantity(t, "wh-1", "sku-a"); q != 3 {
		t.Fatalf("the count before the refused one: wh-1/sku-a = %d; want 3", q)
	}
	if q := h.quantity(t, "wh-2", "sku-a"); q != 0 {
		t.Fatalf("the refused count reached the handler: wh-2/sku-a = %d", q)
	}
	if q := h.quantity(t, "wh-1", "sku-b"); q != 0 {
		t.Fatalf("a count after the refused one was recorded: wh-1/sku-b = %d", q)
	}
}

func TestTokenNeverLogged(t *testing.T) {
	h := start(t, nil)
	tok := h.token(t, "wh-1", server.PermRead)
	_, err := h.adjust(t, tok, "wh-2", "sku-a", 1)
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED")
	if strings.Contains(h.log.String(), tok) || strings.Contains(h.log.String(), strings.Split(tok, ".")[2]) {
		t.Fatalf("the log holds the token:\n%s", h.log.String())
	}
}

func TestDomainValidation(t *testing.T) {
	h := start(t, nil)
	tok := h.token(t, "wh-1", server.PermRead, server.PermWrite)
	_, err := h.adjust(t, tok, "wh-1", "sku-a", -1)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("taking from an empty level: %v; want FailedPrecondition", err)
	}
	_, err = h.adjust(t, tok, "wh-1", "sku-a", 0)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("delta 0: %v; want InvalidArgument", err)
	}
	_, err = h.adjust(t, tok, "wh-1", "", 1)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty sku: %v; want InvalidArgument", err)
	}
}

func TestNewRefusesNoVerifier(t *testing.T) {
	if _, err := server.New(server.Config{}); err == nil {
		t.Fatal("New without a verifier succeeded; tollgate has no default key")
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// panicky panics in Ping and RecordCounts, to show what recovery does.
type panicky struct{ *server.Service }

func (panicky) Ping(context.Context, *inventoryv1.PingRequest) (*inventoryv1.PingResponse, error) {
	panic("secret-detail-in-panic")
}

func (panicky) RecordCounts(grpc.ClientStreamingServer[inventoryv1.RecordCountsRequest, inventoryv1.RecordCountsResponse]) error {
	panic("secret-detail-in-panic")
}

// A panicking handler costs the caller an Internal with a fixed message (no
// panic value, no stack), and the server goes on serving.
func TestPanicRecovered(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Service = panicky{server.NewService()} })
	_, err := h.client.Ping(ctx(t, ""), &inventoryv1.PingRequest{})
	_, serr := h.record(t, h.token(t, "wh-1", server.PermCount), count("wh-1", "sku-a", 1))
	for _, err := range []error{err, serr} {
		st, _ := status.FromError(err)
		if st.Code() != codes.Internal || st.Message() != "internal error" {
			t.Fatalf("panicking handler: %v; want Internal, \"internal error\"", err)
		}
	}
	if strings.Contains(h.log.String(), "secret-detail") {
		t.Fatalf("the log holds the panic value:\n%s", h.log.String())
	}
	if !strings.Contains(h.log.String(), "panic in a call") {
		t.Fatalf("the panic was not logged:\n%s", h.log.String())
	}
	_, err = h.client.GetStock(ctx(t, h.token(t, "wh-1", server.PermRead)), &inventoryv1.GetStockRequest{WarehouseId: "wh-1", Sku: "sku-a"})
	mustOK(t, err)
}
