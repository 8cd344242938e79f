package interceptors_test

import (
	"crypto/rand"
	"fmt"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
)

// A service guards itself with one Guard: build it from a verifier, pass its
// server options to grpc.NewServer, register the services, and call Init,
// which compiles the rules every method declares in its .proto.
func ExampleNewGuard() {
	// In production the key comes from session.LoadKeyFile or
	// session.LoadKeyEnv; tollgate has no default key.
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		log.Fatal(err)
	}
	key, err := session.NewHMACKey("k1", session.HS256, secret)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := session.NewKeySet(key)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := session.NewVerifier(keys, "tollgate-demo", "pricing")
	if err != nil {
		log.Fatal(err)
	}
	guard, err := interceptors.NewGuard(verifier)
	if err != nil {
		log.Fatal(err)
	}

	srv := grpc.NewServer(guard.ServerOptions()...)
	testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := guard.Init(srv); err != nil {
		log.Fatal(err)
	}

	for _, m := range []string{
		"/tollgate.testpb.v1.TestService/Get",
		"/tollgate.testpb.v1.TestService/Update",
		"/tollgate.testpb.v1.TestService/Ping",
		"/grpc.health.v1.Health/Check",
	} {
		r, _ := guard.Table().Rule(m)
		fmt.Println(r)
	}
	_, declared := guard.Table().Rule("/tollgate.testpb.v1.UnruledService/Forgotten")
	fmt.Println("UnruledService/Forgotten has a rule:", declared)
	// Output:
	// /tollgate.testpb.v1.TestService/Get: authenticated all-of[test.read] token-field(access_token)
	// /tollgate.testpb.v1.TestService/Update: authenticated all-of[test.write] owner(owner.id=owner_id unless test.admin) token-field(access_token)
	// /tollgate.testpb.v1.TestService/Ping: public
	// /grpc.health.v1.Health/Check: public
	// UnruledService/Forgotten has a rule: false
}
