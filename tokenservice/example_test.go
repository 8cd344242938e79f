package tokenservice_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
)

// exampleServe serves srv on a loopback port until stop.
func exampleServe(srv *grpc.Server) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	return lis.Addr().String(), func() { srv.Stop(); <-done }
}

// exampleGuarded builds a guarded server with register's services on a
// loopback port.
func exampleGuarded(v *token.Verifier, register func(*grpc.Server), opts ...interceptors.Option) (addr string, stop func()) {
	guard, err := interceptors.NewGuard(v, opts...)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(guard.ServerOptions()...)
	register(srv)
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}
	addr, stopServer := exampleServe(srv)
	return addr, func() { stopServer(); guard.Close() }
}

type examplePrices struct {
	pricingv1.UnimplementedPriceServiceServer
}

func (examplePrices) GetPrice(_ context.Context, req *pricingv1.GetPriceRequest) (*pricingv1.Price, error) {
	return &pricingv1.Price{Sku: req.GetSku(), AmountCents: 1299, Currency: "EUR"}, nil
}

// The issuer, the one service holding the signing key, serves the
// TokenService behind its own guard (the token to renew authenticates the
// call). A service that cannot sign renews through a RemoteRenewer: its
// guard calls the issuer beside the call and sends the successor in the
// trailer. (With HMAC both hold the same secret; with EdDSA or RSA the
// service's key set holds only the issuer's public key.)
func ExampleNewRemoteRenewer() {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		log.Fatal(err)
	}
	key, err := token.NewHMACKey("k1", token.HS256, secret)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := token.NewKeySet(key)
	if err != nil {
		log.Fatal(err)
	}
	const iss, aud = "https://auth.example", "pricing"
	verifier, err := token.NewVerifier(keys, iss, aud)
	if err != nil {
		log.Fatal(err)
	}
	policy := token.DefaultRenewalPolicy()

	// The issuer.
	local, err := token.NewLocalRenewer(verifier, policy)
	if err != nil {
		log.Fatal(err)
	}
	ts, err := tokenservice.NewServer(local)
	if err != nil {
		log.Fatal(err)
	}
	issuerAddr, stopIssuer := exampleGuarded(verifier, func(s *grpc.Server) { tokenservice.Register(s, ts) })
	defer stopIssuer()

	// The pricing service, renewing through the issuer. Use transport
	// security in production: the token travels in the request.
	issuerConn, err := grpc.NewClient("passthrough:///"+issuerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer issuerConn.Close()
	remote, err := tokenservice.NewRemoteRenewer(issuerConn, verifier)
	if err != nil {
		log.Fatal(err)
	}
	addr, stop := exampleGuarded(verifier,
		func(s *grpc.Server) { pricingv1.RegisterPriceServiceServer(s, examplePrices{}) },
		interceptors.WithRenewal(remote, policy), interceptors.WithRenewalGrace(time.Second))
	defer stop()

	// A caller whose token is eight minutes into its ten.
	signer, err := token.NewSigner(key)
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now().Add(-8 * time.Minute)
	tok, err := signer.Sign(token.Claims{Issuer: iss, Subject: "alice", Audience: []string{aud},
		IssuedAt: start, AuthTime: start, ExpiresAt: start.Add(10 * time.Minute), Permissions: []string{"prices.read"}})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	var trailer metadata.MD
	p, err := pricingv1.NewPriceServiceClient(conn).GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: "sku-1"}, grpc.Trailer(&trailer))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.GetSku(), p.GetAmountCents())
	renewed := trailer.Get(interceptors.RenewedTokenKey)
	if len(renewed) != 1 {
		log.Fatal("no renewed token")
	}
	sess, err := verifier.Verify(context.Background(), renewed[0])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("renewed by the issuer for", sess.Subject(), "until about", time.Until(sess.ExpiresAt()).Round(time.Minute), "from now")
	// Output:
	// sku-1 1299
	// renewed by the issuer for alice until about 15m0s from now
}
