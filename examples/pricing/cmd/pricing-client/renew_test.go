package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// recorder remembers, per method, whether calls that reached the handler
// carried an authorization header.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]bool
}

func (r *recorder) interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		r.mu.Lock()
		if r.calls == nil {
			r.calls = make(map[string][]bool)
		}
		r.calls[info.FullMethod] = append(r.calls[info.FullMethod], len(md.Get("authorization")) > 0)
		r.mu.Unlock()
		return handler(ctx, req)
	}
}

func (r *recorder) of(method string) []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.calls[method]...)
}

// renewingServer serves with renewal (the pricing-server's policy, and a
// grace long enough for the first call to take its renewal home); the
// recorder runs after the guard.
func renewingServer(t *testing.T) (string, *token.Signer, *recorder) {
	t.Helper()
	rec := &recorder{}
	addr, signer := startServerWith(t, func(c *server.Config) {
		c.Renewal = &token.RenewalPolicy{Window: 1.0 / 3, TTL: 15 * time.Minute, MaxSession: 8 * time.Hour}
		c.RenewalGrace = 2 * time.Second
		c.ServerOptions = append(c.ServerOptions, grpc.ChainUnaryInterceptor(rec.interceptor()))
	})
	return addr, signer, rec
}

// windowToken is a 15-minute token issued 11 minutes ago: inside its last
// third, so due for renewal.
func windowToken(t *testing.T, signer *token.Signer) string {
	t.Helper()
	iat := time.Now().Add(-11 * time.Minute)
	tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "widget", Audience: []string{"pricing"},
		IssuedAt: iat, ExpiresAt: iat.Add(15 * time.Minute), AuthTime: iat, AuthorizedParty: "price-widget",
		Permissions: []string{"prices.read"}, Extra: map[string]any{"seller_id": "s-1"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeTokenFile writes tok to a 0600 file of the test's.
func writeTokenFile(t *testing.T, tok string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readTokenFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

var renewedLine = regexp.MustCompile(`^renewed token \(expires (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)\n$`)

// run runs the client with args and no token in the environment.
func runClient(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv(tokenEnv, "")
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestTokenFileKeepsTheRenewedToken(t *testing.T) {
	addr, signer, rec := renewingServer(t)
	old := windowToken(t, signer)
	path := writeTokenFile(t, old)

	code, stdout, stderr := runClient(t, "-addr", addr, "-token-file", path, "get", "sku-1")
	if code != 0 || stdout != `{"sku":"sku-1","seller_id":"s-1","amount_cents":"100","currency":"USD"}`+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	m := renewedLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr = %q; want one line \"renewed token (expires <RFC3339>)\"", stderr)
	}
	renewed := readTokenFile(t, path)
	if renewed == old {
		t.Fatal("the token file still holds the old token")
	}
	c, err := token.UnverifiedClaims(renewed)
	exp := c.ExpiresAt
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != exp.UTC().Format(time.RFC3339) {
		t.Errorf("stderr names expiry %s; the file's token expires %s", m[1], exp.UTC().Format(time.RFC3339))
	}
	if life := time.Until(exp); life < 14*time.Minute || life > 15*time.Minute {
		t.Errorf("the renewed token expires in %v; want about 15 min", life)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("the token file's directory holds %d entries; want the file alone (no temporary left)", len(entries))
	}
	if strings.Contains(stdout+stderr, old) || strings.Contains(stdout+stderr, renewed) {
		t.Error("the output holds a token")
	}

	// The next run reads the renewed token, which is fresh: nothing to
	// renew, nothing on stderr, the file unchanged.
	code, stdout, stderr = runClient(t, "-addr", addr, "-token-file", path, "get", "sku-2")
	if code != 0 || !strings.Contains(stdout, `"sku":"sku-2"`) || stderr != "" {
		t.Fatalf("second run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if readTokenFile(t, path) != renewed {
		t.Error("the second run changed the token file")
	}
	if got := rec.of(pricingv1.PriceService_GetPrice_FullMethodName); len(got) != 2 || !got[0] || !got[1] {
		t.Errorf("GetPrice calls carried metadata tokens: %v; want both", got)
	}
}

// quote sends its token in the body only, never in metadata, and still
// picks up a renewal; ping sends no token at all.
func TestQuoteSendsItsTokenInTheBodyOnly(t *testing.T) {
	addr, signer, rec := renewingServer(t)
	path := writeTokenFile(t, windowToken(t, signer))
	code, stdout, stderr := runClient(t, "-addr", addr, "-token-file", path, "quote", "sku-1")
	if code != 0 || !strings.Contains(stdout, `"sku":"sku-1"`) || !renewedLine.MatchString(stderr) {
		t.Fatalf("quote: exit %d, stdout %q, stderr %q; want a renewal", code, stdout, stderr)
	}
	if got := rec.of(pricingv1.PriceService_QuotePrices_FullMethodName); len(got) != 1 || got[0] {
		t.Errorf("QuotePrices carried a metadata token: %v; want one call without", got)
	}
	if code, _, _ := runClient(t, "-addr", addr, "-token-file", path, "ping"); code != 0 {
		t.Fatalf("ping: exit %d", code)
	}
	if got := rec.of(pricingv1.PriceService_Ping_FullMethodName); len(got) != 1 || got[0] {
		t.Errorf("Ping carried a metadata token: %v; want one call without", got)
	}
}

// Without -token-file the renewed token serves the rest of the run, and
// the stderr line still says so.
func TestRenewalWithoutTokenFile(t *testing.T) {
	addr, signer, _ := renewingServer(t)
	t.Setenv(tokenEnv, windowToken(t, signer))
	var stdout, stderr bytes.Buffer
	code := run([]string{"-addr", addr, "-repeat", "3", "get", "sku-1"}, &stdout, &stderr)
	if code != 0 || stdout.String() != "ok=3 throttled=0 other=0\n" || !renewedLine.MatchString(stderr.String()) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// -repeat counts; with a limiter whose clock stands still, the burst of 20
// is exact.
func TestRepeat(t *testing.T) {
	frozen := time.Now()
	var calls atomic.Int64
	mem, err := throttle.NewMemory(throttle.WithMemoryClock(func() time.Time { return frozen }))
	if err != nil {
		t.Fatal(err)
	}
	addr, signer := startServerWith(t, func(c *server.Config) {
		c.Limiter = mem
		c.ServerOptions = append(c.ServerOptions, grpc.ChainUnaryInterceptor(
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				calls.Add(1)
				return h(ctx, req)
			}))
	})
	mint := func(azp string) string {
		now := time.Now()
		tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
			IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), AuthorizedParty: azp, Permissions: []string{"prices.read"}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		name, token string
		args        []string
		code        int
		stdout      string
	}{
		{"a consumer stuck in a loop", mint("looper"), []string{"-repeat", "30", "get", "sku-1"}, 1,
			"error: ResourceExhausted: rate limit exceeded [RATE_LIMITED bucket=/pricing.v1.PriceService/GetPrice] [retry_delay=50ms]\n" +
				"ok=20 throttled=10 other=0\n"},
		{"another consumer", mint("storefront"), []string{"-repeat", "5", "get", "sku-1"}, 0, "ok=5 throttled=0 other=0\n"},
		{"other failures", mint("searcher"), []string{"-repeat", "2", "get", "sku-0"}, 1,
			"error: NotFound: price not found\nok=0 throttled=0 other=2\n"},
		{"another bucket: quote", mint("looper"), []string{"-repeat", "2", "quote", "sku-1"}, 0, "ok=2 throttled=0 other=0\n"},
		{"no token", "", []string{"-repeat", "2", "get", "sku-1"}, 1,
			"error: Unauthenticated: missing access token [TOKEN_MISSING]\nok=0 throttled=0 other=2\n"},
		{"streams", mint("lister"), []string{"-repeat", "2", "list", "s-1"}, 0, "ok=2 throttled=0 other=0\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(tokenEnv, c.token)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"-addr", addr}, c.args...), &stdout, &stderr)
			if code != c.code || stdout.String() != c.stdout || stderr.String() != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q", code, stdout.String(), stderr.String(), c.code, c.stdout)
			}
		})
	}

	// Several addresses are called in turn.
	other, _ := startServerWith(t, nil)
	t.Setenv(tokenEnv, "")
	before := calls.Load()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-addr", addr + "," + other, "-repeat", "6", "ping"}, &stdout, &stderr); code != 0 {
		t.Fatalf("ping over two addresses: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	if got := calls.Load() - before; got != 3 {
		t.Errorf("the first of two addresses got %d of 6 calls; want 3", got)
	}
}

func TestTokenInputErrors(t *testing.T) {
	addr, mint := startServer(t)
	good := writeTokenFile(t, mint("s-1", "prices.read"))
	empty := writeTokenFile(t, "")
	twoLines := writeTokenFile(t, mint("s-1")+"\n"+mint("s-1"))
	garbage := writeTokenFile(t, "not-a-token")
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), 70<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		mentions string
	}{
		{"-token and -token-file", []string{"-token", mint("s-1"), "-token-file", good, "get", "sku-1"}, "give one"},
		{"missing file", []string{"-token-file", filepath.Join(t.TempDir(), "none"), "get", "sku-1"}, "no such file"},
		{"empty file", []string{"-token-file", empty, "get", "sku-1"}, "empty"},
		{"two tokens", []string{"-token-file", twoLines, "get", "sku-1"}, "more than one line"},
		{"not a JWT", []string{"-token-file", garbage, "get", "sku-1"}, "readable claims"},
		{"too large", []string{"-token-file", big, "get", "sku-1"}, "larger"},
		{"-repeat 0", []string{"-repeat", "0", "ping"}, "-repeat"},
		{"bad command under -repeat", []string{"-token-file", good, "-repeat", "3", "get"}, "usage: get SKU"},
		{"one address not loopback", []string{"-token-file", good, "-addr", addr + ",example.com:443", "get", "sku-1"}, "example.com:443"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runClient(t, append([]string{"-addr", addr}, c.args...)...)
			if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.mentions) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line mentioning %q", code, stdout, stderr, c.mentions)
			}
		})
	}
}
