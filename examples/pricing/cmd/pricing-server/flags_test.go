package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
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
	"github.com/tollgate/tollgate/token"
)

// requireRedisEnv turns a missing redis-server from a skip into a failure,
// as in the rest of tollgate's suite.
const requireRedisEnv = "TOLLGATE_REQUIRE_REDIS"

func TestBadFlagsExitTwo(t *testing.T) {
	key, _ := writeKey(t, 32)
	cases := []struct {
		name     string
		args     []string
		mentions string
	}{
		{"unknown fail policy", []string{"-throttle-fail", "bogus"}, "-throttle-fail"},
		{"unknown fail policy with -redis", []string{"-redis", "127.0.0.1:6379", "-throttle-fail", "sometimes"}, "-throttle-fail"},
		{"redis address without a port", []string{"-redis", "localhost"}, "-redis"},
		{"zero token TTL", []string{"-token-ttl", "0"}, "-token-ttl"},
		{"negative max session", []string{"-max-session", "-1h"}, "-max-session"},
		{"negative renewal grace", []string{"-renew-grace", "-1s"}, "-renew-grace"},
		{"TTL that is no duration", []string{"-token-ttl", "15"}, "-token-ttl"},
		{"metrics address without a port", []string{"-metrics-listen", "localhost"}, "-metrics-listen"},
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
func mintWith(t *testing.T, secret []byte, edit func(*token.Claims)) string {
	t.Helper()
	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := token.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
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
	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, "tollgate-demo", "pricing", token.WithMaxLifetime(maxLifetime), token.WithMaxSession(maxSession))
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
	tok := mintWith(t, secret, func(c *token.Claims) {
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
	tok = mintWith(t, secret, func(c *token.Claims) {
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
	tok = mintWith(t, secret, func(c *token.Claims) {
		c.IssuedAt = now.Add(-10 * time.Minute)
		c.AuthTime = now.Add(-3*time.Hour - 5*time.Minute)
	})
	_, err = get(t, api, tok)
	wantCode(t, err, codes.Unauthenticated)
}

// -throttle-fail needs no -redis: without one it is accepted and ignored,
// and the buckets live in memory.
func TestThrottleFailWithoutRedisIsIgnored(t *testing.T) {
	keyPath, secret := writeKey(t, 32)
	_, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath, "-throttle-fail", "closed")
	api := dial(t, addr)
	tok := mint(t, secret, "prices.read")
	var ok, throttled int
	for range 30 {
		_, err := get(t, api, tok)
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			throttled++
		default:
			t.Fatalf("GetPrice: %v", err)
		}
	}
	if ok < 20 || throttled == 0 {
		t.Errorf("30 rapid calls: %d admitted, %d throttled; want the in-memory burst of 20, then refusals", ok, throttled)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// With -redis pointing at nothing, the server still starts (warning on
// stderr) and each -throttle-fail policy decides: local and open serve,
// closed refuses with Unavailable. No redis-server needed.
func TestThrottleFailPolicies(t *testing.T) {
	keyPath, secret := writeKey(t, 32)
	tok := mint(t, secret, "prices.read")
	for policy, want := range map[string]codes.Code{"local": codes.OK, "open": codes.OK, "closed": codes.Unavailable} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			p, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath,
				"-redis", deadAddr(t), "-throttle-fail", policy)
			api := dial(t, addr)
			for range 5 { // the breaker opens on the way: the policy still decides
				_, err := get(t, api, tok)
				wantCode(t, err, want)
			}
			if log := p.stderr.String(); !strings.Contains(log, "Redis is not answering") {
				t.Errorf("stderr does not warn that Redis is down:\n%s", log)
			}
		})
	}
}

// startRedis runs a redis-server of the test's own on a free loopback port
// and returns its address and a function that stops it (also run at the
// end of the test). Without redis-server the test is skipped, or fails when
// TOLLGATE_REQUIRE_REDIS=1. (Examples may not import tollgate's internal
// redistest, so this is a small copy of it.)
func startRedis(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			t.Fatal("redis-server not found, and " + requireRedisEnv + "=1 makes that a failure")
		}
		t.Skip("redis-server not found: install it (apt-get install -y redis-server) — Redis test SKIPPED")
	}
	for attempt := 0; attempt < 3; attempt++ {
		_, port, _ := net.SplitHostPort(deadAddr(t))
		out := &syncBuffer{}
		cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop := func() {
			cmd.Process.Kill()
			<-done
		}
		t.Cleanup(stop)
		deadline := time.Now().Add(waitLimit)
		for time.Now().Before(deadline) {
			if strings.Contains(out.String(), "Ready to accept connections") {
				return net.JoinHostPort("127.0.0.1", port), stop
			}
			select {
			case <-done: // the port was taken meanwhile, most likely
				deadline = time.Time{}
			case <-time.After(10 * time.Millisecond):
			}
		}
		stop()
		t.Logf("redis-server on port %s did not start:\n%s", port, out)
	}
	t.Fatal("could not start redis-server")
	return "", nil
}

// Two replicas on one Redis share one budget: a consumer alternating
// between them gets the burst of 20 once, not once per replica. When Redis
// goes away, the fail-closed replica refuses and the fail-local one serves.
func TestReplicasShareABudgetThroughRedis(t *testing.T) {
	redisAddr, stopRedis := startRedis(t)
	keyPath, secret := writeKey(t, 32)
	_, closedAddr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath, "-redis", redisAddr, "-throttle-fail", "closed")
	_, localAddr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath, "-redis", redisAddr, "-throttle-fail", "local")
	replicas := []pricingv1.PriceServiceClient{dial(t, closedAddr), dial(t, localAddr)}
	tok := mint(t, secret, "prices.read")
	for _, api := range replicas { // connect first, so that the loop below is fast
		if _, err := api.Ping(context.Background(), &pricingv1.PingRequest{}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	var ok, throttled int
	for i := range 60 {
		_, err := get(t, replicas[i%2], tok)
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			throttled++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	refill := int(time.Since(start)/(50*time.Millisecond)) + 1
	if ok < 20 || ok > 20+refill || ok >= 40 {
		t.Errorf("60 calls over two replicas: %d admitted; want the one shared burst of 20 (+ at most %d refilled)", ok, refill)
	}

	stopRedis()
	other := mint(t, secret, "prices.read") // same consumer, but the local buckets are fresh anyway
	_, err := get(t, replicas[0], other)
	wantCode(t, err, codes.Unavailable)
	if _, err := get(t, replicas[1], other); err != nil {
		t.Fatalf("the fail-local replica without Redis: %v", err)
	}
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
	p, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", path, "-alg", token.ES256, "-renew-grace", "1s")

	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.ParseKey("", token.ES256, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	iat := time.Now().Add(-11 * time.Minute)
	tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
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
