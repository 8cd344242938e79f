package main

import (
	"bytes"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/token"
)

// startServer serves the pricing service on loopback and returns its
// address and a function minting tokens for it.
func startServer(t *testing.T) (addr string, mint func(seller string, perms ...string) string) {
	t.Helper()
	addr, signer := startServerWith(t, nil)
	return addr, func(seller string, perms ...string) string {
		now := time.Now()
		tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
			IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), Permissions: perms,
			Extra: map[string]any{"seller_id": seller}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// startServerWith serves the pricing service, configured by edit (may be
// nil), on loopback and returns its address and a signer of tokens for it.
func startServerWith(t *testing.T, edit func(*server.Config)) (string, *token.Signer) {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, "tollgate-demo", "pricing")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Verifier: v}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return lis.Addr().String(), signer
}

func TestCommands(t *testing.T) {
	addr, mint := startServer(t)
	reader := mint("s-1", "prices.read")
	writer := mint("s-1", "prices.write")
	cases := []struct {
		name   string
		token  string // in TOLLGATE_TOKEN
		args   []string
		code   int
		stdout string
	}{
		{"ping needs no token", "", []string{"ping"}, 0, `{"status":"ok"}` + "\n"},
		{"get", reader, []string{"get", "sku-1"}, 0, `{"sku":"sku-1","seller_id":"s-1","amount_cents":"100","currency":"USD"}` + "\n"},
		{"get without a token", "", []string{"get", "sku-1"}, 1, "error: Unauthenticated: missing access token [TOKEN_MISSING]\n"},
		{"get unknown", reader, []string{"get", "sku-0"}, 1, "error: NotFound: price not found\n"},
		{"set without the permission", reader, []string{"set", "sku-1", "s-1", "5", "USD"}, 1,
			"error: PermissionDenied: permission denied [PERMISSION_DENIED permission=prices.write]\n"},
		{"set for another seller", writer, []string{"set", "sku-11", "s-2", "5", "USD"}, 1,
			"error: PermissionDenied: not the owner of the resource [NOT_OWNER field=seller_id]\n"},
		{"set", writer, []string{"set", "sku-1", "s-1", "5", "EUR"}, 0, `{"sku":"sku-1","seller_id":"s-1","amount_cents":"5","currency":"EUR"}` + "\n"},
		{"set an invalid amount", writer, []string{"set", "sku-1", "s-1", "0", "EUR"}, 1, "error: InvalidArgument: invalid price: amount_cents must be positive\n"},
		{"import", writer, []string{"import", "s-1", "sku-2=20", "sku-3=30"}, 0, `{"imported":2}` + "\n"},
		{"sync stops at the foreign sku", writer, []string{"sync", "s-1", "sku-4=40", "sku-14=1"}, 1,
			`{"sku":"sku-4","seller_id":"s-1","amount_cents":"40","currency":"USD"}` + "\n" +
				"error: InvalidArgument: invalid price: sku belongs to another seller\n"},
		{"quote with the token in the body", reader, []string{"-body-token", "quote", "sku-2", "nope", "sku-12"}, 0,
			`{"prices":[{"sku":"sku-2","seller_id":"s-1","amount_cents":"20","currency":"USD"},{"sku":"sku-12","seller_id":"s-2","amount_cents":"1200","currency":"USD"}]}` + "\n"},
		{"list", reader, []string{"list", "s-9"}, 0, ""},
		{"delete", mint("s-1", "prices.delete"), []string{"delete", "sku-2", "s-1"}, 0, "{}\n"},
		// call: any name, an empty request. A method the server does not
		// serve has no rule: the guard refuses it, token or not, where
		// grpc-go alone would answer Unimplemented.
		{"call a method the server does not serve", reader, []string{"call", "/pricing.v1.PriceService/PurgePrices"}, 1,
			"error: PermissionDenied: permission denied [PERMISSION_DENIED]\n"},
		{"call a service the server does not serve, no token", "", []string{"call", "/pricing.v2.PriceService/GetPrice"}, 1,
			"error: PermissionDenied: permission denied [PERMISSION_DENIED]\n"},
		{"call a served method: the token is attached", reader, []string{"call", "/pricing.v1.PriceService/GetPrice"}, 1,
			"error: NotFound: price not found\n"},
		{"call a served method without its permission", writer, []string{"call", "/pricing.v1.PriceService/GetPrice"}, 1,
			"error: PermissionDenied: permission denied [PERMISSION_DENIED permission=prices.read]\n"},
		{"call a public method", "", []string{"call", "/pricing.v1.PriceService/Ping"}, 0, "{}\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(tokenEnv, c.token)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"-addr", addr}, c.args...), &stdout, &stderr)
			if code != c.code || stdout.String() != c.stdout {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q", code, stdout.String(), stderr.String(), c.code, c.stdout)
			}
			if c.token != "" && strings.Contains(stdout.String()+stderr.String(), c.token) {
				t.Error("the output holds the token")
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tok := strings.Repeat("a", 40) + "." + strings.Repeat("b", 40) + "." + strings.Repeat("c", 40)
	// Shaped like a token: {"alg":"HS256"}.{"sub":"x"}.signature
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0." + strings.Repeat("c", 43)
	cases := [][]string{
		{},
		{"frobnicate"},
		{"get"},
		{"set", "sku-1", "s-1", "ten", "USD"},
		{"import", "s-1", "sku-1"},
		{"-body-token", "get", "sku-1"},
		{"-token", tok, "-addr", "example.com:443", "get", "sku-1"},
		{"-addr", "127.0.0.1:1", "-token=" + tok, "-nope", "ping"},
		{"-addr", "127.0.0.1:1", "-body-token=" + tok, "ping"},
		{"call"},
		{"call", "/a/b", "/c/d"},
		{"call", "PurgePrices"},
		{"call", "pricing.v1.PriceService/PurgePrices"},
		{"call", "/pricing.v1.PriceService/"},
		{"call", "//PurgePrices"},
		{"call", "/a/b/c"},
		{"call", "/a/b c"},
		{"call", "/pricing.v1.PriceService/" + jwt},
		{"call", "/" + jwt + "/Get"},
		{"call", "/pricing.v1.PriceService/" + strings.Repeat("aB3c", 11)}, // a key's worth of base64
	}
	for _, args := range cases {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d; want 2 (stderr %q)", args, code, stderr.String())
		}
		if strings.Contains(stdout.String()+stderr.String(), tok) || strings.Contains(stdout.String()+stderr.String(), "ccccc") ||
			strings.Contains(stdout.String()+stderr.String(), "eyJ") {
			t.Errorf("run(%q) printed the token: %q", args, stderr.String())
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8443": true, "127.1.2.3:1": true, "[::1]:8443": true, "localhost:1": true,
		"10.0.0.1:8443": false, "example.com:443": false, "localhost.example.com:1": false, "127.0.0.1": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v; want %v", addr, got, want)
		}
	}
}
