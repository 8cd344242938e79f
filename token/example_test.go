package token_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/tollgate/tollgate/token"
)

// An issuer signs; every service verifies locally with the same key set.
// Errors say why in fixed words and never contain the token.
func ExampleVerifier_Verify() {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	key, err := token.NewHMACKey("k1", token.HS256, []byte("example secret of at least 32 bytes!"))
	if err != nil {
		log.Fatal(err)
	}
	keys, _ := token.NewKeySet(key)
	signer, _ := token.NewSigner(key)
	verifier, _ := token.NewVerifier(keys, "tollgate-demo", "pricing", token.WithClock(clock))

	tok, err := signer.Sign(token.Claims{
		Issuer: "tollgate-demo", Subject: "orders", AuthorizedParty: "orders-api",
		Audience: []string{"pricing"}, IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute),
		Permissions: []string{"prices.read"}, Extra: map[string]any{"seller_id": "s-1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	sess, err := verifier.Verify(context.Background(), tok)
	if err != nil {
		log.Fatal(err)
	}
	seller, _ := sess.ClaimString("seller_id")
	fmt.Println(sess.Consumer(), sess.Has("prices.read"), sess.Has("prices.write"), seller)

	// The same token, replayed to a service with another audience.
	billing, _ := token.NewVerifier(keys, "tollgate-demo", "billing", token.WithClock(clock))
	_, err = billing.Verify(context.Background(), tok)
	fmt.Println(err, errors.Is(err, token.ErrInvalidToken))

	// Sixteen minutes later.
	now = now.Add(16 * time.Minute)
	_, err = verifier.Verify(context.Background(), tok)
	fmt.Println(err, errors.Is(err, token.ErrExpiredToken))
	// Output:
	// orders-api true false s-1
	// invalid token: audience mismatch true
	// token expired: past exp true
}
