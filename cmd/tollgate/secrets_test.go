package main

import (
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// material is a secret or a token and every spelling of it that must never
// appear in any output, not even in part.
type material struct {
	name, value string
	spellings   []string
}

// leak returns the first 16-byte piece of a spelling of m that out holds,
// or "".
func (m material) leak(out string) string {
	for _, s := range m.spellings {
		for i := 0; i+16 <= len(s); i++ {
			if strings.Contains(out, s[i:i+16]) {
				return s[i : i+16]
			}
		}
	}
	return ""
}

// b64Spellings returns b in the four base64 spellings.
func b64Spellings(b []byte) []string {
	var out []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString(b))
	}
	return out
}

// secretMaterial runs keygen for an HS256 secret and an ES256 private key,
// issues a token, and returns the three with their spellings, and the key
// files.
func secretMaterial(t *testing.T) (hs, es string, ms []material) {
	t.Helper()
	hs, _ = newKey(t, "HS256")
	es, _ = newKey(t, "ES256")
	text, err := os.ReadFile(hs)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(text))
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	pemText, err := os.ReadFile(es)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemText)
	pemSpellings := append([]string{string(pemText)}, b64Spellings(block.Bytes)...)
	for line := range strings.Lines(string(pemText)) {
		pemSpellings = append(pemSpellings, strings.TrimSpace(line))
	}
	tok := mint(t, hs, "HS256")
	return hs, es, []material{
		{"HS256 secret", secret, b64Spellings(raw)},
		// Without "/" it names a file that can be created.
		{"HS256 secret, URL-safe", base64.RawURLEncoding.EncodeToString(raw), b64Spellings(raw)},
		{"ES256 private key", string(pemText), pemSpellings},
		{"token", tok, []string{tok, base64.StdEncoding.EncodeToString([]byte(tok))}},
	}
}

// TestSecretInTheWrongPlace puts a real secret, a real private key and a
// real token in every place of the command line where a mistake could put
// them. Each run must fail with its exit status and one line naming what is
// wrong, and no output may hold the value or any 16-byte piece of any
// spelling of it: tollgate's own messages quote none of it, and the flag
// package's are scrubbed where they are printed.
func TestSecretInTheWrongPlace(t *testing.T) {
	hs, es, ms := secretMaterial(t)
	// Relative paths land in a directory of the test's, checked at the end:
	// nothing may be written there.
	dir := t.TempDir()
	t.Chdir(dir)
	out := filepath.Join(dir, "new.key")
	tok := ms[3].value
	issue := func(extra ...string) []string {
		return append([]string{"token", "issue", "-key", hs, "-alg", "HS256", "-iss", "auth", "-aud", "orders", "-sub", "alice"}, extra...)
	}
	verify := func(extra ...string) []string {
		return append([]string{"token", "inspect", "-key", hs, "-alg", "HS256", "-iss", "auth", "-aud", "orders"}, extra...)
	}
	cases := []struct {
		name string
		args func(v string) []string
		code int
		want string
		skip []string // materials accepted there (no mistake the CLI can see)
	}{
		{"command", func(v string) []string { return []string{v} }, exitUsage, "unknown command", nil},
		{"token subcommand", func(v string) []string { return []string{"token", v} }, exitUsage, "unknown subcommand", nil},
		{"keygen -alg", func(v string) []string { return []string{"keygen", "-alg", v, "-out", out} }, exitUsage, "unknown -alg", nil},
		{"keygen -out", func(v string) []string { return []string{"keygen", "-alg", "HS256", "-out", v} }, exitUsage, "-out", nil},
		{"keygen -out=", func(v string) []string { return []string{"keygen", "-alg", "HS256", "-out=" + v} }, exitUsage, "-out", nil},
		{"keygen -out in a directory", func(v string) []string { return []string{"keygen", "-alg", "HS256", "-out", filepath.Join(dir, v)} }, exitUsage, "-out", nil},
		{"keygen -kid", func(v string) []string { return []string{"keygen", "-alg", "HS256", "-out", out, "-kid", v} }, exitUsage, "invalid -kid", []string{"HS256 secret", "HS256 secret, URL-safe", "token"}},
		{"keygen argument", func(v string) []string { return []string{"keygen", "-alg", "HS256", "-out", out, v} }, exitUsage, "keygen: unexpected argument", nil},
		{"keygen flag name", func(v string) []string { return []string{"keygen", "-" + v} }, exitUsage, "keygen:", nil},
		{"issue -key", func(v string) []string { return issue("-key", v) }, exitUsage, "token issue: -key: ", nil},
		{"issue -key=", func(v string) []string { return issue("-key=" + v) }, exitUsage, "token issue: -key: ", nil},
		{"issue -alg", func(v string) []string { return issue("-alg", v) }, exitUsage, "unknown -alg", nil},
		{"issue -ttl", func(v string) []string { return issue("-ttl", v) }, exitUsage, "token issue: -ttl: want a duration", nil},
		{"issue -ttl=", func(v string) []string { return issue("-ttl=" + v) }, exitUsage, "token issue: -ttl: want a duration", nil},
		{"issue -iat", func(v string) []string { return issue("-iat", v) }, exitUsage, "token issue: -iat: want a duration", nil},
		{"issue -auth-time", func(v string) []string { return issue("-auth-time", v) }, exitUsage, "token issue: -auth-time: want a duration", nil},
		{"issue -claim", func(v string) []string { return issue("-claim", v) }, exitUsage, "token issue: -claim: want name=value", []string{"HS256 secret", "ES256 private key"}},
		{"issue -kid", func(v string) []string { return issue("-kid", v) }, exitUsage, "token issue: invalid -kid", []string{"HS256 secret", "HS256 secret, URL-safe", "token"}},
		{"issue argument", func(v string) []string { return issue(v) }, exitUsage, "token issue: unexpected argument", nil},
		{"issue flag name", func(v string) []string { return issue("-" + v) }, exitUsage, "token issue:", nil},
		{"inspect -key", func(v string) []string {
			return []string{"token", "inspect", "-key", v, "-alg", "HS256", "-iss", "auth", "-aud", "orders", tok}
		}, exitUsage, "token inspect: -key: ", nil},
		{"inspect -alg", func(v string) []string {
			return []string{"token", "inspect", "-key", hs, "-alg", v, "-iss", "auth", "-aud", "orders", tok}
		}, exitUsage, "unknown -alg", nil},
		{"inspect second argument", func(v string) []string { return verify(tok, v) }, exitUsage, "want one TOKEN after the flags, got 2", nil},
		{"inspect a key as the token", func(v string) []string { return verify(v) }, exitFail, "the token is not decodable", []string{"token"}},
		{"inspect a key as the token, no -key", func(v string) []string { return []string{"token", "inspect", v} }, exitFail, "the token is not decodable", []string{"token"}},
		// jwks writes what it is given to a published document: a kid,
		// a path or an output file that holds a secret must fail.
		{"jwks -key", func(v string) []string { return []string{"jwks", "-key", v} }, exitUsage, "jwks: -key #1: want KID:ALG:PATH", nil},
		{"jwks -key=", func(v string) []string { return []string{"jwks", "-key=" + v} }, exitUsage, "jwks: -key #1: want KID:ALG:PATH", nil},
		{"jwks -key second", func(v string) []string { return []string{"jwks", "-key", "a:ES256:" + es + ".pub", "-key", v} }, exitUsage, "jwks: -key #2: want KID:ALG:PATH", nil},
		{"jwks kid", func(v string) []string { return []string{"jwks", "-key", v + ":ES256:" + es + ".pub"} }, exitUsage, "jwks: -key #1: ", nil},
		{"jwks alg", func(v string) []string { return []string{"jwks", "-key", "a:" + v + ":" + es + ".pub"} }, exitUsage, "jwks: -key #1: unknown algorithm", nil},
		{"jwks path", func(v string) []string { return []string{"jwks", "-key", "a:ES256:" + v} }, exitUsage, "jwks: -key #1: ", nil},
		{"jwks HMAC path", func(v string) []string { return []string{"jwks", "-key", "a:HS256:" + v} }, exitUsage, "jwks: -key #1: an HS256 key is a shared secret and is never published", nil},
		{"jwks -out", func(v string) []string { return []string{"jwks", "-key", "a:ES256:" + es + ".pub", "-out", v} }, exitUsage, "jwks: -out", nil},
		{"jwks -out in a directory", func(v string) []string {
			return []string{"jwks", "-key", "a:ES256:" + es + ".pub", "-out", filepath.Join(dir, v)}
		}, exitUsage, "jwks: -out", nil},
		{"jwks argument", func(v string) []string { return []string{"jwks", "-key", "a:ES256:" + es + ".pub", v} }, exitUsage, "jwks: unexpected argument", nil},
		{"jwks flag name", func(v string) []string { return []string{"jwks", "-" + v} }, exitUsage, "jwks:", nil},
	}
	positional := map[string]bool{"keygen argument": true, "issue argument": true, "jwks argument": true,
		"inspect a key as the token": true, "inspect a key as the token, no -key": true}
	for _, c := range cases {
		for _, m := range ms {
			if slices.Contains(c.skip, m.name) {
				continue
			}
			t.Run(c.name+"/"+m.name, func(t *testing.T) {
				code, want, byFlagPackage := c.code, c.want, strings.HasSuffix(c.name, "flag name")
				if positional[c.name] && strings.HasPrefix(m.value, "-") {
					// A PEM block starts with dashes, and so may a
					// URL-safe secret: the flag package takes it for a
					// flag ("bad flag syntax", "flag provided but not
					// defined").
					code, want, byFlagPackage = exitUsage, "flag", true
				}
				r := runCLI(t, c.args(m.value)...)
				if r.code != code {
					t.Errorf("exit %d, want %d (stderr %q)", r.code, code, r.stderr)
				}
				checkOneLine(t, r.stderr, want)
				if code == exitUsage && r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
				if w := m.leak(r.stdout + r.stderr); w != "" {
					t.Errorf("output holds %q of the %s:\nstdout %q\nstderr %q", w, m.name, r.stdout, r.stderr)
				}
				// The flag package quotes a bad flag name, and only
				// token.Redact stands between it and the terminal; every
				// other message is tollgate's own and must quote nothing
				// that Redact would have to cut.
				if !byFlagPackage && strings.Contains(r.stderr, "[redacted]") {
					t.Errorf("stderr %q: the message itself held the %s", r.stderr, m.name)
				}
			})
		}
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("failed keygens left files: %v, %v", left, err)
	}
}

// TestNoSecretInOutput runs keygen, issue and inspect in their normal use:
// what they print holds no part of the key.
func TestNoSecretInOutput(t *testing.T) {
	for _, alg := range []string{"HS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			priv := filepath.Join(t.TempDir(), "key")
			var outputs []result
			record := func(r result) result { outputs = append(outputs, r); return r }
			mustSucceed(t, record(runCLI(t, "keygen", "-alg", alg, "-out", priv)))
			pub := priv + ".pub"
			if alg == "HS256" {
				pub = priv
			}
			text, err := os.ReadFile(priv)
			if err != nil {
				t.Fatal(err)
			}
			key := material{name: "key", spellings: []string{string(text)}}
			for line := range strings.Lines(string(text)) {
				if line = strings.TrimSpace(line); !strings.HasPrefix(line, "-----") {
					key.spellings = append(key.spellings, line)
				}
			}
			r := record(runCLI(t, "token", "issue", "-key", priv, "-alg", alg, "-iss", "auth", "-aud", "orders", "-sub", "alice"))
			mustSucceed(t, r)
			tok := strings.TrimSpace(r.stdout)
			record(runCLI(t, "token", "inspect", "-key", pub, "-alg", alg, "-iss", "auth", "-aud", "orders", tok))
			record(runCLI(t, "token", "inspect", "-key", pub, "-alg", alg, "-iss", "auth", "-aud", "billing", tok))
			record(runCLI(t, "token", "inspect", tok))
			for i, r := range outputs {
				if w := key.leak(r.stdout + r.stderr); w != "" {
					t.Errorf("output %d holds %q of the key:\nstdout %q\nstderr %q", i, w, r.stdout, r.stderr)
				}
			}
		})
	}
}

// TestSecretWithLeadingSlashAsOut: a standard base64 secret may start with
// "/"; given as -out (here after a directory, so that a failure writes
// nowhere but the test's directory) its file name alone, one character
// short, no longer looks like base64. keygen and jwks must refuse it all
// the same, and print none of it.
func TestSecretWithLeadingSlashAsOut(t *testing.T) {
	_, es, _ := secretMaterial(t)
	// A secret whose only slash is its first character (sextet 63), so
	// that it names one file.
	raw := make([]byte, 32)
	var secret string
	for i := 0; ; i++ {
		for j := range raw {
			raw[j] = byte(i*131 + j*37 + 11)
		}
		raw[0] = 0xfc
		if secret = base64.StdEncoding.EncodeToString(raw); strings.Count(secret, "/") == 1 {
			break
		}
	}
	m := material{name: "secret", spellings: b64Spellings(raw)}
	dir := t.TempDir()
	out := dir + secret
	for _, args := range [][]string{
		{"keygen", "-alg", "HS256", "-out", out},
		{"jwks", "-key", "a:ES256:" + es + ".pub", "-out", out},
	} {
		r := runCLI(t, args...)
		mustFailUsage(t, r, "-out looks like key material or a token")
		if w := m.leak(r.stdout + r.stderr); w != "" {
			t.Errorf("%s: output holds %q of the secret", args[0], w)
		}
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("refused runs left files: %v, %v", left, err)
	}
}
