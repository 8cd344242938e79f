package interceptors_test

// Runnable examples of a guarded service and its clients, over a real
// loopback listener, on the pricing example's .proto. They import no
// tollgate internal package. Beside go-grpc-middleware, whose package is
// also named interceptors, tollgate's is imported as "tollgate".

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	tollgate "github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

const (
	exampleIssuer   = "https://auth.example"
	exampleAudience = "pricing"
)

// prices answers GetPrice with the caller's subject as the seller.
type prices struct {
	pricingv1.UnimplementedPriceServiceServer
}

func (prices) Ping(context.Context, *pricingv1.PingRequest) (*pricingv1.PingResponse, error) {
	return &pricingv1.PingResponse{}, nil
}

func (prices) GetPrice(ctx context.Context, req *pricingv1.GetPriceRequest) (*pricingv1.Price, error) {
	sess, _ := session.FromContext(ctx)
	return &pricingv1.Price{Sku: req.GetSku(), SellerId: sess.Subject(), AmountCents: 1299, Currency: "EUR"}, nil
}

// exampleKeys returns a fresh HS256 key's verifier and signer. In
// production the key comes from token.LoadKeyFile or token.LoadKeyEnv.
func exampleKeys() (*token.Verifier, *token.Signer) {
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
	v, err := token.NewVerifier(keys, exampleIssuer, exampleAudience)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		log.Fatal(err)
	}
	return v, signer
}

// exampleToken signs a token for consumer "checkout" acting for alice,
// issued age ago and living ten minutes.
func exampleToken(signer *token.Signer, age time.Duration) string {
	now := time.Now()
	tok, err := signer.Sign(token.Claims{
		Issuer: exampleIssuer, Subject: "alice", AuthorizedParty: "checkout", Audience: []string{exampleAudience},
		IssuedAt: now.Add(-age), AuthTime: now.Add(-age), ExpiresAt: now.Add(-age + 10*time.Minute),
		Permissions: []string{"prices.read"},
	})
	if err != nil {
		log.Fatal(err)
	}
	return tok
}

// serveExample serves srv on a loopback port and returns its address and a
// function stopping it.
func serveExample(srv *grpc.Server) (addr string, stop func()) {
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

// serveAndDial serves srv on a loopback port and returns a plaintext
// client connection to it; stop closes both.
func serveAndDial(srv *grpc.Server) (conn *grpc.ClientConn, stop func()) {
	addr, stopSrv := serveExample(srv)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	return conn, func() { conn.Close(); stopSrv() }
}

// newGuardedServer returns a server guarded by a guard built with opts,
// serving prices, on a loopback port.
func newGuardedServer(v *token.Verifier, opts ...tollgate.Option) (addr string, stop func()) {
	guard, err := tollgate.NewGuard(v, opts...)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(guard.ServerOptions()...)
	pricingv1.RegisterPriceServiceServer(srv, prices{})
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}
	addr, stopServer := serveExample(srv)
	return addr, func() { stopServer(); guard.Close() }
}

// A client holds its token in a TokenSource; the client interceptors attach
// it to every call and swap in the renewed token a guard sends back in the
// trailer. Here the server renews (WithRenewal) tokens in the last third of
// their life, and the client's token is eight minutes into its ten.
func ExampleUnaryClientInterceptor() {
	verifier, signer := exampleKeys()
	renewer, err := token.NewLocalRenewer(verifier, token.DefaultRenewalPolicy())
	if err != nil {
		log.Fatal(err)
	}
	addr, stop := newGuardedServer(verifier,
		tollgate.WithRenewal(renewer, token.DefaultRenewalPolicy()),
		tollgate.WithRenewalGrace(time.Second))
	defer stop()

	first := exampleToken(signer, 8*time.Minute)
	src, err := tollgate.NewTokenSource(first,
		// Only for the renewal's expiry; the client needs no key.
		tollgate.OnRenew(func(_ string, exp time.Time) {
			fmt.Println("renewed, expires in about", time.Until(exp).Round(time.Minute))
		}),
		// DefaultRenewalPolicy renews for 15 minutes, longer than the
		// first token's 10.
		tollgate.MaxRenewedLifetime(15*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	// AllowInsecureTransport only because this loopback connection has no
	// TLS: without it the token is never sent in the clear.
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(tollgate.UnaryClientInterceptor(src, tollgate.AllowInsecureTransport())),
		grpc.WithChainStreamInterceptor(tollgate.StreamClientInterceptor(src, tollgate.AllowInsecureTransport())))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	p, err := pricingv1.NewPriceServiceClient(conn).GetPrice(context.Background(), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.GetSku(), p.GetAmountCents(), p.GetCurrency(), "for", p.GetSellerId())
	fmt.Println("the client now holds a new token:", src.Token() != first)
	// Output:
	// renewed, expires in about 15m0s
	// sku-1 1299 EUR for alice
	// the client now holds a new token: true
}

// A guard built WithRenewal renews a token inside its renewal window while
// the call runs, and sends the successor in the trailer
// "tollgate-renewed-token" (tollgate.RenewedTokenKey) when it is ready in
// time (WithRenewalGrace). A token outside its window gets none.
func ExampleWithRenewal() {
	verifier, signer := exampleKeys()
	renewer, err := token.NewLocalRenewer(verifier, token.DefaultRenewalPolicy())
	if err != nil {
		log.Fatal(err)
	}
	addr, stop := newGuardedServer(verifier,
		tollgate.WithRenewal(renewer, token.DefaultRenewalPolicy()),
		tollgate.WithRenewalGrace(time.Second))
	defer stop()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := pricingv1.NewPriceServiceClient(conn)

	for _, age := range []time.Duration{time.Minute, 8 * time.Minute} {
		tok := exampleToken(signer, age)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		var trailer metadata.MD
		if _, err := client.GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: "sku-1"}, grpc.Trailer(&trailer)); err != nil {
			log.Fatal(err)
		}
		renewed := trailer.Get(tollgate.RenewedTokenKey)
		fmt.Printf("token %v old: renewed %v", age, len(renewed) == 1)
		if len(renewed) == 1 {
			sess, err := verifier.Verify(context.Background(), renewed[0])
			fmt.Printf(", successor verifies: %v, same subject: %v", err == nil, err == nil && sess.Subject() == "alice")
		}
		fmt.Println()
	}
	// Output:
	// token 1m0s old: renewed false
	// token 8m0s old: renewed true, successor verifies: true, same subject: true
}

// Composing with go-grpc-middleware by hand: recovery outermost (a panic
// anywhere becomes Internal, never a crash; replace its default handler,
// which sends the panic and stack to the caller), then the guard, then
// logging, which so sees the identity WithLoggingFields put in its fields.
// TransportOptions keeps the header-list cap and the stream bound that
// ServerOptions would have added.
func ExampleGuard_TransportOptions() {
	verifier, signer := exampleKeys()
	guard, err := tollgate.NewGuard(verifier, tollgate.WithLoggingFields())
	if err != nil {
		log.Fatal(err)
	}
	defer guard.Close()
	// A logger printing the method and the identity fields only, so that
	// the output is stable.
	logger := logging.LoggerFunc(func(_ context.Context, _ logging.Level, msg string, fields ...any) {
		f := map[any]any{}
		for i := 0; i+1 < len(fields); i += 2 {
			f[fields[i]] = fields[i+1]
		}
		fmt.Println(msg, f["grpc.method"], f[tollgate.LogFieldConsumer], f[tollgate.LogFieldSubject], f["grpc.code"])
	})
	recovered := recovery.WithRecoveryHandler(func(any) error { return status.Error(codes.Internal, "internal error") })

	srv := grpc.NewServer(append(guard.TransportOptions(),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recovered),
			guard.UnaryServerInterceptor(),
			logging.UnaryServerInterceptor(logger)),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(recovered),
			guard.StreamServerInterceptor(),
			logging.StreamServerInterceptor(logger)),
	)...)
	pricingv1.RegisterPriceServiceServer(srv, prices{})
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}
	conn, stop := serveAndDial(srv)
	defer stop()

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+exampleToken(signer, 0))
	if _, err := pricingv1.NewPriceServiceClient(conn).GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: "sku-1"}); err != nil {
		log.Fatal(err)
	}
	// Refused by the guard: logging, inside it, never sees the call (the
	// guard's WithLogger logs refusals).
	_, err = pricingv1.NewPriceServiceClient(conn).GetPrice(context.Background(), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	fmt.Println(status.Code(err))
	// Output:
	// started call GetPrice azp:checkout alice <nil>
	// finished call GetPrice azp:checkout alice OK
	// Unauthenticated
}

// A server built on go-grpc-middleware's auth interceptor takes the guard
// as its AuthFunc. An AuthFunc sees no request, so a method whose rule
// needs one (ownership, a token field) is refused, never let through:
// serve those, and every stream, with the guard's own interceptors.
func ExampleGuard_AuthFunc() {
	verifier, signer := exampleKeys()
	guard, err := tollgate.NewGuard(verifier)
	if err != nil {
		log.Fatal(err)
	}
	defer guard.Close()
	srv := grpc.NewServer(append(guard.TransportOptions(),
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(guard.AuthFunc())),
		grpc.ChainStreamInterceptor(guard.StreamServerInterceptor()))...)
	pricingv1.RegisterPriceServiceServer(srv, prices{})
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}
	conn, stop := serveAndDial(srv)
	defer stop()
	client := pricingv1.NewPriceServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+exampleToken(signer, 0))

	p, err := client.GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: "sku-1"})
	fmt.Println(p.GetSellerId(), err)
	_, err = client.GetPrice(context.Background(), &pricingv1.GetPriceRequest{Sku: "sku-1"})
	fmt.Println(status.Code(err))
	// SetPrice checks that the caller owns the seller_id in the request.
	_, err = client.SetPrice(ctx, &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "alice", AmountCents: 1})
	fmt.Println(status.Code(err), status.Convert(err).Message())
	// Output:
	// alice <nil>
	// Unauthenticated
	// Internal tollgate guard misconfigured
}

// Exempting a method from the token: never wrap the guard in
// go-grpc-middleware's selector. For a method the matcher skips, the guard
// does not run at all, so a method without a rule, which the guard denies,
// would be served to anyone, and nothing would say so. Declare the method
// public in its .proto instead (option (tollgate.v1.method) = {public:
// true}, as pricing.proto does for Ping). The methods of a .proto you do
// not own and that carry no rule are made public by name with
// WithPublicMethods, or by service with WithPublicServices (gRPC health is,
// by default). The guard still runs for them (they are throttled by peer)
// and keeps refusing everything else without a token.
func ExampleWithPublicMethods() {
	verifier, _ := exampleKeys()
	guard, err := tollgate.NewGuard(verifier,
		tollgate.WithPublicServices(),                              // not all of health by default,
		tollgate.WithPublicMethods("/grpc.health.v1.Health/Check"), // only its Check,
		tollgate.WithLenientInit())                                 // and Watch, unruled, denied at call time
	if err != nil {
		log.Fatal(err)
	}
	defer guard.Close()
	srv := grpc.NewServer(guard.ServerOptions()...)
	pricingv1.RegisterPriceServiceServer(srv, prices{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}
	conn, stop := serveAndDial(srv)
	defer stop()
	client := pricingv1.NewPriceServiceClient(conn)
	ctx := context.Background() // no token

	_, err = client.Ping(ctx, &pricingv1.PingRequest{})
	fmt.Println("Ping, public in pricing.proto:", status.Code(err))
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println("health Check, no rule, public by name:", h.GetStatus(), status.Code(err))
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	fmt.Println("health Watch, no rule, not named:", status.Code(err))
	_, err = client.SetPrice(ctx, &pricingv1.SetPriceRequest{Sku: "sku-1", SellerId: "alice", AmountCents: 1})
	fmt.Println("SetPrice:", status.Code(err))
	// Output:
	// Ping, public in pricing.proto: OK
	// health Check, no rule, public by name: SERVING OK
	// health Watch, no rule, not named: PermissionDenied
	// SetPrice: Unauthenticated
}
