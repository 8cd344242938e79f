package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/session"
)

func TestBadFlagsExitTwo(t *testing.T) {
	key, _ := writeKey(t, 32)
	cases := []struct {
		name     string
		args     []string
		mentions string
	}{
		{"zero token TTL", []string{"-token-ttl", "0"}, "-token-ttl"},
		{"negative max session", []string{"-max-session", "-1h"}, "-max-session"},
		{"negative renewal grace", []string{"-renew-grace", "-1s"}, "-renew-grace"},
		{"TTL that is no duration", []string{"-token-ttl", "15"}, "-token-ttl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runToExit(t, envWithout(keyEnv), append([]string{"-listen", "127.0.0.1:0", "-key", key}, c.args...)...)
			if code != 2 {
				t.Errorf("exit status %d; want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout = %q; want nothing", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.mentions) {
				t.Errorf("stderr = %q; want one line mentioning %q", stderr, c.mentions)
			}
		})
	}
}

// mintWith signs a token with secret for the pricing audience, as edit
// makes it.
func mintWith(t *testing.T, secret []byte, edit func(*session.Claims)) string {
	t.Helper()
	key, err := session.NewHMACKey("", session.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := session.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := session.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), AuthTime: now,
		AuthorizedParty: "flags-test", Permissions: []string{"prices.read"}}
	edit(&c)
	tok, err := signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial returns a PriceService client of addr, closed with the test.
func dial(t *testing.T, addr string) pricingv1.PriceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pricingv1.NewPriceServiceClient(conn)
}

// get calls GetPrice with tok and returns the renewed token of its
// trailer, if any.
func get(t *testing.T, api pricingv1.PriceServiceClient, tok string) (renewed string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	var trailer metadata.MD
	_, err = api.GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: "sku-1"}, grpc.Trailer(&trailer))
	if v := trailer.Get(interceptors.RenewedTokenKey); len(v) > 0 {
		renewed = v[0]
	}
	return renewed, err
}

// verify checks tok as the server would, with its maximum lifetime and
// session, and returns its session.
func verify(t *testing.T, secret []byte, tok string, maxLifetime, maxSession time.Duration) *session.Session {
	t.Helper()
	key, err := session.NewHMACKey("", session.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := session.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := session.NewVerifier(ks, "tollgate-demo", "pricing", session.WithMaxLifetime(maxLifetime), session.WithMaxSession(maxSession))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("the renewed token does not verify: %v", err)
	}
	return sess
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v; want code %s", err, code)
	}
}

// The renewal flags reach the verifier and the renewer: -token-ttl above
// an hour is both the successor's lifetime and an accepted one, and
// -max-session caps the chain and refuses tokens past it.
func TestRenewalFlags(t *testing.T) {
	keyPath, secret := writeKey(t, 32)
	_, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath,
		"-token-ttl", "2h", "-max-session", "3h", "-renew-grace", "2s")
	api := dial(t, addr)
	now := time.Now()

	// A 2-hour token with 35 minutes left (inside the last third), of a
	// session that began 85 minutes ago: renewed until auth_time + 3h.
	tok := mintWith(t, secret, func(c *session.Claims) {
		c.IssuedAt = now.Add(-85 * time.Minute)
		c.ExpiresAt = c.IssuedAt.Add(2 * time.Hour)
		c.AuthTime = c.IssuedAt
	})
	renewed, err := get(t, api, tok)
	if err != nil {
		t.Fatalf("GetPrice with a 2-hour token: %v", err)
	}
	if renewed == "" {
		t.Fatal("no renewed token in the trailer (-renew-grace 2s)")
	}
	sess := verify(t, secret, renewed, 2*time.Hour, 3*time.Hour)
	if want := now.Add(-85 * time.Minute).Truncate(time.Second).Add(3 * time.Hour); !sess.ExpiresAt().Equal(want) {
		t.Errorf("renewed exp = %v; want auth_time + 3h = %v", sess.ExpiresAt(), want)
	}
	if _, err := get(t, api, renewed); err != nil {
		t.Fatalf("GetPrice with the renewed token: %v", err)
	}

	// Early in a session the successor lives the full -token-ttl: a
	// 1-hour token 50 minutes old is renewed for 2 hours.
	tok = mintWith(t, secret, func(c *session.Claims) {
		c.IssuedAt = now.Add(-50 * time.Minute)
		c.ExpiresAt = c.IssuedAt.Add(time.Hour)
		c.AuthTime = c.IssuedAt
	})
	renewed, err = get(t, api, tok)
	if err != nil || renewed == "" {
		t.Fatalf("GetPrice with a 1-hour token 50 minutes old = %v, renewed %t", err, renewed != "")
	}
	sess = verify(t, secret, renewed, 2*time.Hour, 3*time.Hour)
	if life := sess.ExpiresAt().Sub(sess.IssuedAt()); life != 2*time.Hour {
		t.Errorf("renewed lifetime = %v; want -token-ttl 2h", life)
	}

	// Past -max-session the token itself is refused.
	tok = mintWith(t, secret, func(c *session.Claims) {
		c.IssuedAt = now.Add(-10 * time.Minute)
		c.AuthTime = now.Add(-3*time.Hour - 5*time.Minute)
	})
	_, err = get(t, api, tok)
	wantCode(t, err, codes.Unauthenticated)
}

// A server given a public key verifies tokens but cannot sign successors:
// it starts, says that renewal is off, and serves without renewing.
func TestPublicKeyMeansNoRenewal(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "public.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	p, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", path, "-alg", session.ES256, "-renew-grace", "1s")

	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := session.ParseKey("", session.ES256, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := session.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	iat := time.Now().Add(-11 * time.Minute)
	tok, err := signer.Sign(session.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
		IssuedAt: iat, ExpiresAt: iat.Add(15 * time.Minute), AuthTime: iat, Permissions: []string{"prices.read"}})
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := get(t, dial(t, addr), tok)
	if err != nil {
		t.Fatalf("GetPrice with an ES256 token: %v", err)
	}
	if renewed != "" {
		t.Error("a server holding only a public key renewed a token")
	}
	if log := p.stderr.String(); !strings.Contains(log, "token renewal is off") {
		t.Errorf("stderr does not say that renewal is off:\n%s", log)
	}
}
