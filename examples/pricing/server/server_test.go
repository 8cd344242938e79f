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
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/examples/pricing/store"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
)

const (
	issuer   = "tollgate-demo"
	audience = "pricing"
)

// harness is one pricing server on a loopback TCP port and a client of it.
type harness struct {
	client   pricingv1.PriceServiceClient
	conn     *grpc.ClientConn
	addr     string
	signer   *token.Signer
	verifier *token.Verifier
	store    *store.Store
	log      *syncBuffer
}

func newSecret(t *testing.T) []byte {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	return secret
}

func newSigner(t *testing.T) *token.Signer {
	t.Helper()
	key, err := token.NewHMACKey("", token.HS256, newSecret(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t *testing.T) *harness {
	t.Helper()
	return startWith(t, nil)
}

// startWith starts a server whose configuration edit may change (it may be
// nil).
func startWith(t *testing.T, edit func(*server.Config)) *harness {
	t.Helper()
	signer := newSigner(t)
	ks, err := token.NewKeySet(signer.Key())
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, issuer, audience, token.WithMaxTokenSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{signer: signer, verifier: v, store: store.New(), log: &syncBuffer{}}
	cfg := server.Config{
		Verifier:     v,
		Store:        h.store,
		GuardOptions: []interceptors.Option{interceptors.WithLogger(slog.New(slog.NewTextHandler(h.log, nil)))},
	}
	if edit != nil {
		edit(&cfg)
		if cfg.Store != nil {
			h.store = cfg.Store
		}
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
	h.addr = lis.Addr().String()
	h.client = pricingv1.NewPriceServiceClient(conn)
	return h
}

// token mints a token for seller (no seller_id claim when empty) holding
// perms.
func (h *harness) token(t *testing.T, seller string, perms ...string) string {
	t.Helper()
	return h.tokenWith(t, func(c *token.Claims) {
		c.Permissions = perms
		if seller != "" {
			c.Extra = map[string]any{"seller_id": seller}
		}
	})
}

func (h *harness) tokenWith(t *testing.T, edit func(*token.Claims)) string {
	t.Helper()
	now := time.Now()
	c := token.Claims{
		Issuer:          issuer,
		Subject:         "user-1",
		Audience:        []string{audience},
		IssuedAt:        now,
		ExpiresAt:       now.Add(5 * time.Minute),
		AuthorizedParty: "pricing-test",
	}
	edit(&c)
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

// wantCode fails unless err is a status with code.
func wantCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v; want code %s", err, code)
	}
	return st
}

// wantDenied fails unless err is a tollgate refusal with code and reason,
// whose ErrorInfo metadata holds md.
func wantDenied(t *testing.T, err error, code codes.Code, reason string, md ...string) {
	t.Helper()
	st := wantCode(t, err, code)
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	if info == nil {
		t.Fatalf("error %v carries no ErrorInfo", err)
	}
	if info.GetReason() != reason || info.GetDomain() != interceptors.Domain {
		t.Fatalf("ErrorInfo = %s/%s; want %s/%s", info.GetDomain(), info.GetReason(), interceptors.Domain, reason)
	}
	for i := 0; i+1 < len(md); i += 2 {
		if got := info.GetMetadata()[md[i]]; got != md[i+1] {
			t.Fatalf("ErrorInfo metadata %q = %q; want %q (all: %v)", md[i], got, md[i+1], info.GetMetadata())
		}
	}
}

func (h *harness) wantPrice(t *testing.T, sku, seller string, amount int64, currency string) {
	t.Helper()
	p, err := h.store.Get(sku)
	want := store.Price{SKU: sku, SellerID: seller, AmountCents: amount, Currency: currency}
	if err != nil || p != want {
		t.Fatalf("stored %s = %+v, %v; want %+v", sku, p, err, want)
	}
}

func (h *harness) wantNoPrice(t *testing.T, sku string) {
	t.Helper()
	if p, err := h.store.Get(sku); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stored %s = %+v, %v; want none", sku, p, err)
	}
}

func price(sku, seller string, amount int64, currency string) *pricingv1.Price {
	return &pricingv1.Price{Sku: sku, SellerId: seller, AmountCents: amount, Currency: currency}
}

func wantProto(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("got %v; want %v", got, want)
	}
}

func TestPingIsPublic(t *testing.T) {
	h := start(t)
	resp, err := h.client.Ping(ctx(t, ""), &pricingv1.PingRequest{})
	if err != nil {
		t.Fatalf("Ping without a token: %v", err)
	}
	if resp.GetStatus() != "ok" {
		t.Errorf("Ping status = %q; want ok", resp.GetStatus())
	}
}

func TestHealthCheckNeedsNoToken(t *testing.T) {
	h := start(t)
	hc := healthpb.NewHealthClient(h.conn)
	for _, svc := range []string{"", "pricing.v1.PriceService"} {
		resp, err := hc.Check(ctx(t, ""), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v; want SERVING", svc, resp.GetStatus())
		}
	}
}

// Reflection shows every rule, including which permission bypasses
// ownership: an anonymous caller is refused, any valid token may use it.
func TestReflectionNeedsAToken(t *testing.T) {
	h := start(t)
	list := func(c context.Context) error {
		stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(c)
		if err != nil {
			return err
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	wantDenied(t, list(ctx(t, "")), codes.Unauthenticated, interceptors.ReasonTokenMissing)
	if err := list(ctx(t, h.token(t, ""))); err != nil {
		t.Fatalf("reflection with a token: %v", err)
	}
}

func TestGetPrice(t *testing.T) {
	h := start(t)
	reader := h.token(t, "", "prices.read")

	got, err := h.client.GetPrice(ctx(t, reader), &pricingv1.GetPriceRequest{Sku: "sku-12"})
	if err != nil {
		t.Fatalf("GetPrice with prices.read: %v", err)
	}
	wantProto(t, got, price("sku-12", "s-2", 1200, "USD"))

	_, err = h.client.GetPrice(ctx(t, reader), &pricingv1.GetPriceRequest{Sku: "sku-404"})
	wantCode(t, err, codes.NotFound)

	_, err = h.client.GetPrice(ctx(t, ""), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)

	writer := h.token(t, "s-1", "prices.write", "prices.delete")
	_, err = h.client.GetPrice(ctx(t, writer), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.read")

	forged := newSigner(t) // same claims, another key
	tok, err := forged.Sign(token.Claims{Issuer: issuer, Subject: "user-1", Audience: []string{audience},
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute), Permissions: []string{"prices.read"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.client.GetPrice(ctx(t, tok), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenInvalid)

	expired := h.tokenWith(t, func(c *token.Claims) {
		c.IssuedAt = time.Now().Add(-20 * time.Minute)
		c.ExpiresAt = time.Now().Add(-10 * time.Minute)
		c.Permissions = []string{"prices.read"}
	})
	_, err = h.client.GetPrice(ctx(t, expired), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenExpired)

	wrongAudience := h.tokenWith(t, func(c *token.Claims) {
		c.Audience = []string{"billing"}
		c.Permissions = []string{"prices.read"}
	})
	_, err = h.client.GetPrice(ctx(t, wrongAudience), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenInvalid)
}

// listPrices returns what ListPrices streamed, or the error that ended it.
func listPrices(t *testing.T, h *harness, tok, seller string) ([]*pricingv1.Price, error) {
	t.Helper()
	stream, err := h.client.ListPrices(ctx(t, tok), &pricingv1.ListPricesRequest{SellerId: seller})
	if err != nil {
		return nil, err
	}
	var out []*pricingv1.Price
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
}

func TestListPrices(t *testing.T) {
	h := start(t)
	got, err := listPrices(t, h, h.token(t, "", "prices.read"), "s-2")
	if err != nil {
		t.Fatalf("ListPrices with prices.read: %v", err)
	}
	wantSKUs := []string{"sku-11", "sku-12", "sku-13", "sku-14", "sku-15", "sku-16", "sku-17", "sku-18", "sku-19", "sku-20"}
	if len(got) != len(wantSKUs) {
		t.Fatalf("ListPrices(s-2) streamed %d prices; want %d", len(got), len(wantSKUs))
	}
	for i, p := range got {
		if p.GetSku() != wantSKUs[i] || p.GetSellerId() != "s-2" {
			t.Errorf("price %d = %v; want %s of s-2", i, p, wantSKUs[i])
		}
	}

	got, err = listPrices(t, h, "", "s-2")
	if len(got) != 0 {
		t.Errorf("ListPrices without a token streamed %v", got)
	}
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)

	got, err = listPrices(t, h, h.token(t, "s-2", "prices.write"), "s-2")
	if len(got) != 0 {
		t.Errorf("ListPrices without prices.read streamed %v", got)
	}
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.read")

	_, err = listPrices(t, h, h.token(t, "", "prices.read"), "")
	wantCode(t, err, codes.InvalidArgument)
}

func TestSetPrice(t *testing.T) {
	h := start(t)
	seller1 := h.token(t, "s-1", "prices.write")

	got, err := h.client.SetPrice(ctx(t, seller1), &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 4321, Currency: "EUR"})
	if err != nil {
		t.Fatalf("SetPrice of an own sku: %v", err)
	}
	wantProto(t, got, price("sku-1", "s-1", 4321, "EUR"))
	h.wantPrice(t, "sku-1", "s-1", 4321, "EUR")

	// A new sku of one's own.
	if _, err := h.client.SetPrice(ctx(t, seller1), &pricingv1.SetPriceRequest{Sku: "sku-new", SellerId: "s-1", AmountCents: 5, Currency: "USD"}); err != nil {
		t.Fatalf("SetPrice of a new sku: %v", err)
	}
	h.wantPrice(t, "sku-new", "s-1", 5, "USD")

	// Refused calls are charged to their consumer's "writes" bucket too
	// (10 at once), so the refusals below come from a consumer of their
	// own and leave seller1's budget for the rest of the test.
	probe := func(seller string, perms ...string) string {
		return h.tokenWith(t, func(c *token.Claims) {
			c.AuthorizedParty, c.Permissions = "denial-probe", perms
			if seller != "" {
				c.Extra = map[string]any{"seller_id": seller}
			}
		})
	}

	// Another seller's price: tollgate's ownership check.
	_, err = h.client.SetPrice(ctx(t, probe("s-1", "prices.write")), &pricingv1.SetPriceRequest{Sku: "sku-11", SellerId: "s-2", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "seller_id")
	h.wantPrice(t, "sku-11", "s-2", 1100, "USD")

	// A token without any seller_id owns nothing.
	_, err = h.client.SetPrice(ctx(t, probe("", "prices.write")), &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "seller_id")

	// Reading is not writing.
	_, err = h.client.SetPrice(ctx(t, probe("s-1", "prices.read")), &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.write")

	_, err = h.client.SetPrice(ctx(t, ""), &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)
	h.wantPrice(t, "sku-1", "s-1", 4321, "EUR")

	// Invalid prices, from the owner: the store's rules.
	for _, bad := range []*pricingv1.SetPriceRequest{
		{Sku: "sku-2", SellerId: "s-1", AmountCents: 0, Currency: "USD"},
		{Sku: "sku-2", SellerId: "s-1", AmountCents: -1, Currency: "USD"},
		{Sku: "sku-2", SellerId: "s-1", AmountCents: 1, Currency: "usd"},
		{Sku: "sku-2", SellerId: "s-1", AmountCents: 1, Currency: "U$D"},
		{Sku: "", SellerId: "s-1", AmountCents: 1, Currency: "USD"},
	} {
		_, err := h.client.SetPrice(ctx(t, seller1), bad)
		wantCode(t, err, codes.InvalidArgument)
	}
	h.wantPrice(t, "sku-2", "s-1", 200, "USD")

	// The caller owns the seller_id it names, but the sku is another
	// seller's: the domain refuses to move it.
	_, err = h.client.SetPrice(ctx(t, seller1), &pricingv1.SetPriceRequest{Sku: "sku-11", SellerId: "s-1", AmountCents: 1, Currency: "USD"})
	if st := wantCode(t, err, codes.InvalidArgument); !strings.Contains(st.Message(), "sku belongs to another seller") {
		t.Errorf("moving another seller's sku: message %q", st.Message())
	}
	h.wantPrice(t, "sku-11", "s-2", 1100, "USD")
}

func TestSetPriceAdminBypass(t *testing.T) {
	h := start(t)
	admin := h.token(t, "s-1", "prices.write", "prices.admin")

	// Setting another seller's price.
	if _, err := h.client.SetPrice(ctx(t, admin), &pricingv1.SetPriceRequest{Sku: "sku-11", SellerId: "s-2", AmountCents: 7, Currency: "USD"}); err != nil {
		t.Fatalf("admin SetPrice for s-2: %v", err)
	}
	h.wantPrice(t, "sku-11", "s-2", 7, "USD")

	// Moving a sku to another seller: only an admin may.
	if _, err := h.client.SetPrice(ctx(t, admin), &pricingv1.SetPriceRequest{Sku: "sku-12", SellerId: "s-1", AmountCents: 8, Currency: "USD"}); err != nil {
		t.Fatalf("admin moving sku-12 to s-1: %v", err)
	}
	h.wantPrice(t, "sku-12", "s-1", 8, "USD")

	// An admin token without a seller_id claim works too: the bypass does
	// not need the claim.
	if _, err := h.client.SetPrice(ctx(t, h.token(t, "", "prices.write", "prices.admin")), &pricingv1.SetPriceRequest{Sku: "sku-13", SellerId: "s-2", AmountCents: 9, Currency: "USD"}); err != nil {
		t.Fatalf("admin without seller_id: %v", err)
	}
	h.wantPrice(t, "sku-13", "s-2", 9, "USD")

	// The bypass covers ownership, not the permission itself.
	_, err := h.client.SetPrice(ctx(t, h.token(t, "s-1", "prices.admin")), &pricingv1.SetPriceRequest{Sku: "sku-14", SellerId: "s-2", AmountCents: 9, Currency: "USD"})
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.write")
	h.wantPrice(t, "sku-14", "s-2", 1400, "USD")
}

func TestDeletePrice(t *testing.T) {
	h := start(t)
	deleter := h.token(t, "s-1", "prices.delete")

	if _, err := h.client.DeletePrice(ctx(t, deleter), &pricingv1.DeletePriceRequest{Sku: "sku-2", SellerId: "s-1"}); err != nil {
		t.Fatalf("DeletePrice of an own sku: %v", err)
	}
	h.wantNoPrice(t, "sku-2")
	_, err := h.client.GetPrice(ctx(t, h.token(t, "", "prices.read")), &pricingv1.GetPriceRequest{Sku: "sku-2"})
	wantCode(t, err, codes.NotFound)

	_, err = h.client.DeletePrice(ctx(t, deleter), &pricingv1.DeletePriceRequest{Sku: "sku-12", SellerId: "s-2"})
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "seller_id")
	h.wantPrice(t, "sku-12", "s-2", 1200, "USD")

	// Naming one's own seller_id with another seller's sku: not found.
	_, err = h.client.DeletePrice(ctx(t, deleter), &pricingv1.DeletePriceRequest{Sku: "sku-12", SellerId: "s-1"})
	wantCode(t, err, codes.NotFound)
	h.wantPrice(t, "sku-12", "s-2", 1200, "USD")

	_, err = h.client.DeletePrice(ctx(t, deleter), &pricingv1.DeletePriceRequest{Sku: "sku-404", SellerId: "s-1"})
	wantCode(t, err, codes.NotFound)

	_, err = h.client.DeletePrice(ctx(t, h.token(t, "s-1", "prices.write")), &pricingv1.DeletePriceRequest{Sku: "sku-3", SellerId: "s-1"})
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.delete")
	h.wantPrice(t, "sku-3", "s-1", 300, "USD")

	_, err = h.client.DeletePrice(ctx(t, ""), &pricingv1.DeletePriceRequest{Sku: "sku-3", SellerId: "s-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)

	admin := h.token(t, "s-1", "prices.delete", "prices.admin")
	if _, err := h.client.DeletePrice(ctx(t, admin), &pricingv1.DeletePriceRequest{Sku: "sku-12", SellerId: "s-2"}); err != nil {
		t.Fatalf("admin DeletePrice for s-2: %v", err)
	}
	h.wantNoPrice(t, "sku-12")
}

// importPrices sends reqs on one ImportPrices stream and returns the
// response or the status that ended the call.
func importPrices(t *testing.T, h *harness, tok string, reqs ...*pricingv1.SetPriceRequest) (*pricingv1.ImportPricesResponse, error) {
	t.Helper()
	stream, err := h.client.ImportPrices(ctx(t, tok))
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the call; CloseAndRecv has its status
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

func TestImportPrices(t *testing.T) {
	h := start(t)
	seller1 := h.token(t, "s-1", "prices.write")

	resp, err := importPrices(t, h, seller1,
		&pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 11, Currency: "USD"},
		&pricingv1.SetPriceRequest{Sku: "sku-imp", SellerId: "s-1", AmountCents: 12, Currency: "EUR"},
	)
	if err != nil {
		t.Fatalf("ImportPrices of own skus: %v", err)
	}
	if resp.GetImported() != 2 {
		t.Errorf("imported = %d; want 2", resp.GetImported())
	}
	h.wantPrice(t, "sku-1", "s-1", 11, "USD")
	h.wantPrice(t, "sku-imp", "s-1", 12, "EUR")

	// Ownership is checked on every message: the second is another
	// seller's, the first was stored before it arrived.
	_, err = importPrices(t, h, seller1,
		&pricingv1.SetPriceRequest{Sku: "sku-3", SellerId: "s-1", AmountCents: 33, Currency: "USD"},
		&pricingv1.SetPriceRequest{Sku: "sku-13", SellerId: "s-2", AmountCents: 1, Currency: "USD"},
		&pricingv1.SetPriceRequest{Sku: "sku-4", SellerId: "s-1", AmountCents: 44, Currency: "USD"},
	)
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "seller_id")
	h.wantPrice(t, "sku-3", "s-1", 33, "USD")
	h.wantPrice(t, "sku-13", "s-2", 1300, "USD")
	h.wantPrice(t, "sku-4", "s-1", 400, "USD")

	// An invalid message ends the import too.
	_, err = importPrices(t, h, seller1,
		&pricingv1.SetPriceRequest{Sku: "sku-5", SellerId: "s-1", AmountCents: 0, Currency: "USD"},
	)
	wantCode(t, err, codes.InvalidArgument)
	h.wantPrice(t, "sku-5", "s-1", 500, "USD")

	_, err = importPrices(t, h, "", &pricingv1.SetPriceRequest{Sku: "sku-6", SellerId: "s-1", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)
	_, err = importPrices(t, h, h.token(t, "s-1", "prices.read"), &pricingv1.SetPriceRequest{Sku: "sku-6", SellerId: "s-1", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.write")
	h.wantPrice(t, "sku-6", "s-1", 600, "USD")

	resp, err = importPrices(t, h, h.token(t, "s-1", "prices.write", "prices.admin"),
		&pricingv1.SetPriceRequest{Sku: "sku-6", SellerId: "s-1", AmountCents: 66, Currency: "USD"},
		&pricingv1.SetPriceRequest{Sku: "sku-16", SellerId: "s-2", AmountCents: 166, Currency: "USD"},
	)
	if err != nil || resp.GetImported() != 2 {
		t.Fatalf("admin ImportPrices = %v, %v; want 2 imported", resp, err)
	}
	h.wantPrice(t, "sku-16", "s-2", 166, "USD")
}

func TestSyncPrices(t *testing.T) {
	h := start(t)
	seller2 := h.token(t, "s-2", "prices.write")

	stream, err := h.client.SyncPrices(ctx(t, seller2))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*pricingv1.SetPriceRequest{
		{Sku: "sku-11", SellerId: "s-2", AmountCents: 111, Currency: "USD"},
		{Sku: "sku-12", SellerId: "s-2", AmountCents: 122, Currency: "CHF"},
	} {
		if err := stream.Send(r); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		got, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		wantProto(t, got, price(r.Sku, r.SellerId, r.AmountCents, r.Currency))
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend, Recv = %v; want io.EOF", err)
	}
	h.wantPrice(t, "sku-12", "s-2", 122, "CHF")

	// The second message is another seller's: the first is echoed and
	// stored, the second ends the stream with NOT_OWNER.
	stream, err = h.client.SyncPrices(ctx(t, seller2))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pricingv1.SetPriceRequest{Sku: "sku-13", SellerId: "s-2", AmountCents: 133, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	got, err := stream.Recv()
	if err != nil {
		t.Fatalf("first echo: %v", err)
	}
	wantProto(t, got, price("sku-13", "s-2", 133, "USD"))
	if err := stream.Send(&pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "s-1", AmountCents: 1, Currency: "USD"}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER", "field", "seller_id")
	h.wantPrice(t, "sku-13", "s-2", 133, "USD")
	h.wantPrice(t, "sku-1", "s-1", 100, "USD")

	// Without a token the stream never reaches the handler.
	stream, err = h.client.SyncPrices(ctx(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pricingv1.SetPriceRequest{Sku: "sku-14", SellerId: "s-2", AmountCents: 1, Currency: "USD"}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)
	h.wantPrice(t, "sku-14", "s-2", 1400, "USD")
}

func TestQuotePricesTakesTheTokenFromTheBody(t *testing.T) {
	h := start(t)
	reader := h.token(t, "", "prices.read")
	req := &pricingv1.QuotePricesRequest{AccessToken: reader, Skus: []string{"sku-15", "sku-404", "sku-2"}}

	// No metadata at all: the token travels in access_token only.
	resp, err := h.client.QuotePrices(ctx(t, ""), req)
	if err != nil {
		t.Fatalf("QuotePrices with a body token: %v", err)
	}
	wantProto(t, resp, &pricingv1.QuotePricesResponse{Prices: []*pricingv1.Price{
		price("sku-15", "s-2", 1500, "USD"),
		price("sku-2", "s-1", 200, "USD"),
	}})

	_, err = h.client.QuotePrices(ctx(t, ""), &pricingv1.QuotePricesRequest{Skus: []string{"sku-1"}})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenMissing)

	_, err = h.client.QuotePrices(ctx(t, ""), &pricingv1.QuotePricesRequest{AccessToken: h.token(t, "s-1", "prices.write"), Skus: []string{"sku-1"}})
	wantDenied(t, err, codes.PermissionDenied, "PERMISSION_DENIED", "permission", "prices.read")

	// The same token in metadata and in the body is accepted; two
	// different ones are not.
	if _, err := h.client.QuotePrices(ctx(t, reader), req); err != nil {
		t.Fatalf("QuotePrices with the same token in metadata and body: %v", err)
	}
	_, err = h.client.QuotePrices(ctx(t, h.token(t, "", "prices.read")), req)
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenInvalid)

	_, err = h.client.QuotePrices(ctx(t, ""), &pricingv1.QuotePricesRequest{AccessToken: reader, Skus: make([]string, server.MaxQuoteSKUs+1)})
	wantCode(t, err, codes.InvalidArgument)
}

// A token too large for metadata (over 8 KiB) is what the body field is
// for: the server's verifier accepts up to 64 KiB there.
func TestLargeTokenFitsInTheBodyOnly(t *testing.T) {
	h := start(t)
	big := h.tokenWith(t, func(c *token.Claims) {
		c.Permissions = []string{"prices.read"}
		c.Extra = map[string]any{"catalogue": strings.Repeat("x", 20<<10)}
	})
	if len(big) <= interceptors.DefaultMaxMetadataTokenSize {
		t.Fatalf("token of %d bytes is not large", len(big))
	}
	resp, err := h.client.QuotePrices(ctx(t, ""), &pricingv1.QuotePricesRequest{AccessToken: big, Skus: []string{"sku-1"}})
	if err != nil {
		t.Fatalf("QuotePrices with a %d-byte body token: %v", len(big), err)
	}
	if len(resp.GetPrices()) != 1 {
		t.Errorf("QuotePrices = %v; want sku-1", resp)
	}
	_, err = h.client.GetPrice(ctx(t, big), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	wantDenied(t, err, codes.Unauthenticated, interceptors.ReasonTokenInvalid)
}

// Denials are logged for operators, with the reason and never the token.
func TestDenialsAreLoggedWithoutTheToken(t *testing.T) {
	h := start(t)
	tok := h.token(t, "s-1", "prices.write")
	_, err := h.client.SetPrice(ctx(t, tok), &pricingv1.SetPriceRequest{Sku: "sku-11", SellerId: "s-2", AmountCents: 1, Currency: "USD"})
	wantDenied(t, err, codes.PermissionDenied, "NOT_OWNER")
	log := h.log.String()
	if !strings.Contains(log, "NOT_OWNER") || !strings.Contains(log, "/pricing.v1.PriceService/SetPrice") {
		t.Errorf("denial log lacks the reason or method:\n%s", log)
	}
	if strings.Contains(log, tok) || strings.Contains(log, strings.Split(tok, ".")[2]) {
		t.Errorf("denial log holds the token:\n%s", log)
	}
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	if srv, err := server.New(server.Config{}); err == nil || srv != nil {
		t.Errorf("New without a verifier = %v, %v; want an error", srv, err)
	}
	ks, err := token.NewKeySet(newSigner(t).Key())
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, issuer, audience)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Verifier: v, GuardOptions: []interceptors.Option{interceptors.WithMaxMetadataTokenSize(0)}})
	if err == nil || srv != nil {
		t.Errorf("New with a zero token cap = %v, %v; want an error", srv, err)
	}
	// The guard's Init is strict by default: every method of pricing.proto
	// has a rule, health is public and reflection authenticated by default,
	// so the server builds.
	srv, err = server.New(server.Config{Verifier: v})
	if err != nil {
		t.Fatalf("New with a strict Init: %v", err)
	}
	srv.Stop()
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines to write to
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
