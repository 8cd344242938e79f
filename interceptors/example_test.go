package interceptors_test

import (
	"crypto/rand"
	"fmt"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	tollgate "github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
)

// A service guards itself with one Guard: build it from a verifier, pass its
// server options to grpc.NewServer, register the services, and call Init,
// which compiles the rules every method declares in its .proto.
func ExampleNewGuard() {
	// In production the key comes from token.LoadKeyFile or
	// token.LoadKeyEnv; tollgate has no default key.
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
	verifier, err := token.NewVerifier(keys, "tollgate-demo", "pricing")
	if err != nil {
		log.Fatal(err)
	}
	guard, err := tollgate.NewGuard(verifier)
	if err != nil {
		log.Fatal(err)
	}

	srv := grpc.NewServer(guard.ServerOptions()...)
	pricingv1.RegisterPriceServiceServer(srv, pricingv1.UnimplementedPriceServiceServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}

	for _, m := range []string{
		"/pricing.v1.PriceService/GetPrice",
		"/pricing.v1.PriceService/SetPrice",
		"/pricing.v1.PriceService/Ping",
		"/grpc.health.v1.Health/Check",
	} {
		r, _ := guard.Table().Rule(m)
		fmt.Println(r)
	}
	_, declared := guard.Table().Rule("/pricing.v1.PriceService/PurgePrices")
	fmt.Println("PurgePrices, which pricing.proto does not declare, has a rule:", declared)
	// Output:
	// /pricing.v1.PriceService/GetPrice: authenticated all-of[prices.read] throttle(20/1s burst 20 cost 1 message-cost 1 bucket /pricing.v1.PriceService/GetPrice)
	// /pricing.v1.PriceService/SetPrice: authenticated all-of[prices.write] owner(seller_id=seller_id unless prices.admin) throttle(5/1s burst 10 cost 1 message-cost 1 bucket writes)
	// /pricing.v1.PriceService/Ping: public throttle(50/1s burst 50 cost 1 message-cost 1 bucket /pricing.v1.PriceService/Ping)
	// /grpc.health.v1.Health/Check: public
	// PurgePrices, which pricing.proto does not declare, has a rule: false
}
