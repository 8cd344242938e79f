// Package leaktest gives the pricing programs' tests real key material and
// tokens in every spelling, and finds any piece of them in a program's
// output: no error may print a key or a token, not even in part.
package leaktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"io"
	"strings"
	"testing"
)

// Material is a secret or a token and every spelling of it that must never
// appear in any output.
type Material struct {
	Name, Value string
	Spellings   []string
}

// Leak returns the first 16-byte piece of a spelling of m that out holds,
// or "".
func (m Material) Leak(out string) string {
	for _, s := range m.Spellings {
		for i := 0; i+16 <= len(s); i++ {
			if strings.Contains(out, s[i:i+16]) {
				return s[i : i+16]
			}
		}
	}
	return ""
}

// Token is tok as material: itself and its standard base64 spelling.
func Token(tok string) Material {
	return Material{"token", tok, []string{tok, base64.StdEncoding.EncodeToString([]byte(tok))}}
}

// Secrets returns a random 32-byte secret (raw, for signing), and as
// material that secret in its standard and URL-safe spellings and an ES256
// private key in PEM, each with all its base64 spellings.
func Secrets(tb testing.TB) (raw []byte, ms []Material) {
	tb.Helper()
	raw = make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		tb.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pemSpellings := append([]string{pemKey}, b64Spellings(der)...)
	for line := range strings.Lines(pemKey) {
		pemSpellings = append(pemSpellings, strings.TrimSpace(line))
	}
	return raw, []Material{
		{"secret", base64.StdEncoding.EncodeToString(raw), b64Spellings(raw)},
		{"secret, URL-safe", base64.RawURLEncoding.EncodeToString(raw), b64Spellings(raw)},
		{"ES256 private key", pemKey, pemSpellings},
	}
}

// FlagError returns what the flag package says, before its first colon,
// when arg is parsed as a command line of its own against no flags: "flag
// provided but not defined" for "-x" and "--x", "bad flag syntax" for
// "---x" or "-=x". A secret that starts with a dash (a URL-safe secret may,
// a PEM block does) is taken for a flag, and which message it gets depends
// on how many dashes it starts with.
func FlagError(arg string) string {
	set := flag.NewFlagSet("leaktest", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	err := set.Parse([]string{arg})
	if err == nil {
		return ""
	}
	msg, _, _ := strings.Cut(err.Error(), ":")
	return msg
}

// b64Spellings returns b in the four base64 spellings.
func b64Spellings(b []byte) []string {
	var out []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString(b))
	}
	return out
}
