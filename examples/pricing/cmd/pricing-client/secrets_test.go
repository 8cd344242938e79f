package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/examples/pricing/internal/leaktest"
	"github.com/tollgate/tollgate/examples/pricing/server"
)

// secretMaterial returns a random secret in its spellings, an ES256
// private key in PEM, and tok.
func secretMaterial(t *testing.T, tok string) []leaktest.Material {
	t.Helper()
	_, ms := leaktest.Secrets(t)
	return append(ms, leaktest.Token(tok))
}

// TestSecretInTheWrongPlace runs the client with a real secret, a real
// private key and a real signed token in every flag, variable and argument
// where a mistake could put them. Each run must fail with exit 2 and one
// line naming the flag, variable or argument, and no output may hold the
// value or any 16-byte piece of any spelling of it: the client's own
// messages quote none of it, and the flag package's are scrubbed where
// they are printed.
func TestSecretInTheWrongPlace(t *testing.T) {
	addr, mint := startServer(t)
	tok := mint("s-1", "prices.read", "prices.write")
	ms := secretMaterial(t, tok)
	file := func(text string) string {
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		env  bool // the value goes in $TOLLGATE_TOKEN
		args func(v string) []string
		want string
		skip []string // materials accepted there
	}{
		{"-token", false, func(v string) []string { return []string{"-token", v, "get", "sku-1"} }, "-token: not a JWT", []string{"token"}},
		{"-token=", false, func(v string) []string { return []string{"-token=" + v, "get", "sku-1"} }, "-token: not a JWT", []string{"token"}},
		{"$TOLLGATE_TOKEN", true, func(string) []string { return []string{"get", "sku-1"} }, "$TOLLGATE_TOKEN: not a JWT", []string{"token"}},
		{"-token-file", false, func(v string) []string { return []string{"-token-file", v, "get", "sku-1"} }, "-token-file: ", nil},
		{"-token-file holding it", false, func(v string) []string { return []string{"-token-file", file(v), "get", "sku-1"} }, "-token-file: ", []string{"token"}},
		{"-addr", false, func(v string) []string { return []string{"-addr", v, "ping"} }, "-addr: want HOST:PORT", nil},
		{"-addr host", false, func(v string) []string { return []string{"-addr", v + ":8443", "ping"} }, "-addr: a host looks like key material or a token", nil},
		{"-addr port", false, func(v string) []string { return []string{"-addr", "127.0.0.1:" + v, "ping"} }, "-addr: want HOST:PORT", nil},
		{"-repeat", false, func(v string) []string { return []string{"-repeat", v, "ping"} }, "-repeat: want a whole number", nil},
		{"-body-token=", false, func(v string) []string { return []string{"-body-token=" + v, "quote", "sku-1"} }, "-body-token: want true or false", nil},
		{"command", false, func(v string) []string { return []string{v, "sku-1"} }, "unknown command", nil},
		{"set amount", false, func(v string) []string { return []string{"-token", tok, "set", "sku-1", "s-1", v, "USD"} }, "set: AMOUNT_CENTS is not an integer", nil},
		{"import pair", false, func(v string) []string { return []string{"-token", tok, "import", "s-1", v} }, "pair 1 is not one", nil},
		{"sync pair", false, func(v string) []string { return []string{"-token", tok, "sync", "s-1", "sku-1=5", v} }, "pair 2 is not one", nil},
		// Refused before anything is sent: the name would be the call's path.
		{"call method", false, func(v string) []string { return []string{"call", "/pricing.v1.PriceService/" + v} }, "call: ", nil},
		{"flag name", false, func(v string) []string { return []string{"-" + v, "ping"} }, "", nil},
	}
	for _, c := range cases {
		for _, m := range ms {
			if slices.Contains(c.skip, m.Name) {
				continue
			}
			t.Run(c.name+"/"+m.Name, func(t *testing.T) {
				t.Setenv(tokenEnv, "")
				if c.env {
					t.Setenv(tokenEnv, m.Value)
				}
				want, byFlagPackage := c.want, c.name == "flag name"
				switch {
				case c.name == "flag name":
					want = leaktest.FlagError("-" + m.Value)
				case c.name == "command" && strings.HasPrefix(m.Value, "-"):
					// A value starting with a dash (a PEM block, some
					// URL-safe secrets) is taken for a flag.
					want, byFlagPackage = leaktest.FlagError(m.Value), true
				}
				var stdout, stderr bytes.Buffer
				code := run(append([]string{"-addr", addr}, c.args(m.Value)...), &stdout, &stderr)
				if code != 2 {
					t.Errorf("exit %d; want 2 (stderr %q)", code, stderr.String())
				}
				if stdout.Len() != 0 {
					t.Errorf("stdout = %q; want nothing", stdout.String())
				}
				if s := stderr.String(); !strings.HasPrefix(s, "pricing-client: ") || strings.Count(s, "\n") != 1 || !strings.Contains(s, want) {
					t.Errorf("stderr = %q; want one line mentioning %q", s, want)
				}
				if w := m.Leak(stdout.String() + stderr.String()); w != "" {
					t.Errorf("output holds %q of the %s: stderr %q", w, m.Name, stderr.String())
				}
				if !byFlagPackage && strings.Contains(stderr.String(), "[redacted]") {
					t.Errorf("stderr %q: the message itself held the %s", stderr.String(), m.Name)
				}
			})
		}
	}
}

// A server that quotes the token back in its error (a misbehaving one, or
// a proxy) does not get it printed: call errors, on stdout, are scrubbed
// too.
func TestCallErrorsAreScrubbed(t *testing.T) {
	echo := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		return nil, status.Errorf(codes.Internal, "cannot serve %s with %q", info.FullMethod, md.Get("authorization"))
	}
	addr, signer := startServerWith(t, func(c *server.Config) {
		c.ServerOptions = append(c.ServerOptions, grpc.ChainUnaryInterceptor(echo))
	})
	tok := windowToken(t, signer)
	m := leaktest.Material{Name: "token", Value: tok, Spellings: []string{tok}}
	var stdout, stderr bytes.Buffer
	code := run([]string{"-addr", addr, "-token", tok, "get", "sku-1"}, &stdout, &stderr)
	if code != 1 || !strings.HasPrefix(stdout.String(), "error: Internal: cannot serve /pricing.v1.PriceService/GetPrice with") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and the server's error", code, stdout.String(), stderr.String())
	}
	if w := m.Leak(stdout.String() + stderr.String()); w != "" || !strings.Contains(stdout.String(), "[redacted]") {
		t.Errorf("stdout %q holds %q of the token; want it cut", stdout.String(), w)
	}
}
