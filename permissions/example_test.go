package permissions_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// Domain code and background workers enforce the same permissions an RPC
// declares, from the session in their context.
func ExampleRequire() {
	now := time.Unix(1_800_000_000, 0)
	key, err := token.NewHMACKey("", token.HS256, []byte("example secret of at least 32 bytes!"))
	if err != nil {
		log.Fatal(err)
	}
	keys, _ := token.NewKeySet(key)
	signer, _ := token.NewSigner(key)
	verifier, _ := token.NewVerifier(keys, "tollgate-demo", "pricing", token.WithClock(func() time.Time { return now }))
	tok, err := signer.Sign(token.Claims{
		Issuer: "tollgate-demo", Subject: "seller-portal", Audience: []string{"pricing"},
		IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute),
		Permissions: []string{"prices.*"},
	})
	if err != nil {
		log.Fatal(err)
	}
	sess, err := verifier.Verify(context.Background(), tok)
	if err != nil {
		log.Fatal(err)
	}
	ctx := session.NewContext(context.Background(), sess)

	fmt.Println(permissions.Require(ctx, "prices.write"))
	err = permissions.Require(ctx, "orders.read")
	fmt.Println(err, errors.Is(err, permissions.ErrDenied))
	fmt.Println(permissions.Require(context.Background(), "prices.read"))
	// Output:
	// <nil>
	// permission denied: needs orders.read true
	// permissions: no session in context
}
