package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/examples/pricing/internal/leaktest"
)

// secretMaterial returns a random secret in its spellings, an ES256
// private key in PEM, and a token signed with the secret.
func secretMaterial(t *testing.T) []leaktest.Material {
	t.Helper()
	raw, ms := leaktest.Secrets(t)
	return append(ms, leaktest.Token(mint(t, raw, "prices.read")))
}

// TestSecretInTheWrongPlace starts the server with a real secret, a real
// private key and a real token in every flag, variable and argument where
// a mistake could put them. Each run must refuse to start with its exit
// status and one line naming the flag or variable, and no output may hold
// the value or any 16-byte piece of any spelling of it: the server's own
// messages quote none of it, and the flag package's are scrubbed where
// they are printed.
func TestSecretInTheWrongPlace(t *testing.T) {
	key, _ := writeKey(t, 32)
	cert, tlsKey, _ := selfSigned(t)
	ms := secretMaterial(t)
	cases := []struct {
		name string
		env  func(v string) []string // nil: no $TOLLGATE_KEY
		args func(v string) []string
		code int
		want string
		skip []string // materials accepted there
	}{
		{"-key", nil, func(v string) []string { return []string{"-key", v} }, 1, "-key: token: unusable key: cannot open the key file", nil},
		{"-key=", nil, func(v string) []string { return []string{"-key=" + v} }, 1, "-key: token: unusable key: cannot open the key file", nil},
		{"$TOLLGATE_KEY for HS256", func(v string) []string { return append(envWithout(keyEnv), keyEnv+"="+v) }, nil, 1, "$" + keyEnv + ": token: unusable key", []string{"secret", "secret, URL-safe"}},
		{"$TOLLGATE_KEY for ES256", func(v string) []string { return append(envWithout(keyEnv), keyEnv+"="+v) }, func(string) []string { return []string{"-alg", "ES256"} }, 1, "$" + keyEnv + ": token: unusable key", []string{"ES256 private key"}},
		{"-alg", nil, func(v string) []string { return []string{"-key", key, "-alg", v} }, 2, "-alg: unsupported algorithm", nil},
		{"-token-ttl", nil, func(v string) []string { return []string{"-key", key, "-token-ttl", v} }, 2, "-token-ttl: want a duration", nil},
		{"-max-session=", nil, func(v string) []string { return []string{"-key", key, "-max-session=" + v} }, 2, "-max-session: want a duration", nil},
		{"-renew-grace", nil, func(v string) []string { return []string{"-key", key, "-renew-grace", v} }, 2, "-renew-grace: want a duration", nil},
		{"-listen", nil, func(v string) []string { return []string{"-key", key, "-listen", v} }, 1, "-listen: ", nil},
		{"-listen host", nil, func(v string) []string { return []string{"-key", key, "-listen", v + ":1"} }, 2, "-listen: the host looks like key material or a token", nil},
		{"-redis host", nil, func(v string) []string { return []string{"-key", key, "-redis", v + ":6379"} }, 2, "-redis: the host looks like key material or a token", nil},
		{"-redis", nil, func(v string) []string { return []string{"-key", key, "-redis", v} }, 2, "-redis: want HOST:PORT", nil},
		{"-jwks-listen host", nil, func(v string) []string { return []string{"-key", key, "-jwks-listen", v + ":1"} }, 2, "-jwks-listen: the host looks like key material or a token", nil},
		{"-jwks-listen", nil, func(v string) []string { return []string{"-key", key, "-jwks-listen", v} }, 2, "-jwks-listen: want HOST:PORT", nil},
		{"-throttle-fail", nil, func(v string) []string { return []string{"-key", key, "-throttle-fail", v} }, 2, "-throttle-fail: want local, open or closed", nil},
		{"-tls-cert", nil, func(v string) []string { return []string{"-key", key, "-tls-cert", v, "-tls-key", tlsKey} }, 1, "-tls-cert: ", nil},
		{"-tls-key", nil, func(v string) []string { return []string{"-key", key, "-tls-cert", cert, "-tls-key", v} }, 1, "-tls-key: ", nil},
		{"argument", nil, func(v string) []string { return []string{"-key", key, v} }, 2, "unexpected argument", nil},
		{"flag name", nil, func(v string) []string { return []string{"-key", key, "-" + v} }, 2, "", nil},
	}
	for _, c := range cases {
		for _, m := range ms {
			if slices.Contains(c.skip, m.Name) {
				continue
			}
			t.Run(c.name+"/"+m.Name, func(t *testing.T) {
				env := envWithout(keyEnv)
				if c.env != nil {
					env = c.env(m.Value)
				}
				args := []string{"-listen", "127.0.0.1:0"}
				if c.args != nil {
					args = append(args, c.args(m.Value)...)
				}
				code, want, byFlagPackage := c.code, c.want, c.name == "flag name"
				if c.name == "argument" && strings.HasPrefix(m.Value, "-") {
					// A value starting with a dash (a PEM block, some
					// URL-safe secrets) is taken for a flag.
					want, byFlagPackage = leaktest.FlagError(m.Value), true
				}
				if c.name == "flag name" {
					want = leaktest.FlagError("-" + m.Value)
				}
				gotCode, stdout, stderr := runToExit(t, env, args...)
				if gotCode != code {
					t.Errorf("exit status %d; want %d (stderr %q)", gotCode, code, stderr)
				}
				if stdout != "" {
					t.Errorf("stdout = %q; want nothing", stdout)
				}
				if !strings.HasPrefix(stderr, "pricing-server: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
					t.Errorf("stderr = %q; want one line mentioning %q", stderr, want)
				}
				if w := m.Leak(stdout + stderr); w != "" {
					t.Errorf("output holds %q of the %s: stderr %q", w, m.Name, stderr)
				}
				if !byFlagPackage && strings.Contains(stderr, "[redacted]") {
					t.Errorf("stderr %q: the message itself held the %s", stderr, m.Name)
				}
			})
		}
	}
}
