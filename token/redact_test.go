package token

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strconv"
	"strings"
	"testing"
)

// leaked returns what of secret text holds: the secret in any of its
// spellings, or any 16-byte piece of one.
func leaked(text string, spellings ...string) string {
	for _, s := range spellings {
		for i := 0; i+minShared <= len(s); i++ {
			if w := s[i : i+minShared]; strings.Contains(text, w) {
				return w
			}
		}
	}
	return ""
}

// b64Spellings returns every base64 spelling of b.
func b64Spellings(b []byte) []string {
	var out []string
	for _, enc := range base64Encodings {
		out = append(out, enc.EncodeToString(b))
	}
	return out
}

// messages returns what programs print when s lands in the wrong place:
// the flag package's errors, os and net errors, and plain quoting.
func messages(s string) []string {
	return []string{
		"invalid value " + strconv.Quote(s) + " for flag -ttl: parse error",
		"invalid boolean value " + strconv.Quote(s) + " for -body-token: parse error",
		"flag provided but not defined: -" + s,
		"bad flag syntax: -=" + s,
		"open " + s + ": no such file or directory",
		"listen tcp: lookup " + s + ": no such host",
		"unknown command " + strconv.Quote(s) + " (see -h)",
		s,
		"token=" + s + ", next",
		// Behind a path's slashes: a method name, a file name.
		"call /pricing.v1.PriceService/" + s + " failed",
		"open /etc/tollgate/" + s + ": no such file or directory",
		"open /etc/tollgate/" + s + "/key.pem: no such file or directory",
	}
}

func TestRedactCutsSecretsByShape(t *testing.T) {
	es := newES(t, "", ES256)
	der, err := x509.MarshalPKCS8PrivateKey(es.signKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pemLines := strings.Split(strings.TrimSpace(pemKey), "\n")

	type secret struct {
		name      string
		value     string   // what lands in the message
		spellings []string // none of which may survive, not even in part
	}
	var secrets []secret
	for _, n := range []int{32, 48, 64} {
		raw := randBytes(t, n)
		for i, enc := range base64Encodings {
			secrets = append(secrets, secret{"secret " + strconv.Itoa(n) + " bytes, spelling " + strconv.Itoa(i), enc.EncodeToString(raw), b64Spellings(raw)})
		}
	}
	tok := token(t, newHMAC(t, testKID, HS256), claimsAt(fixedNow))
	secrets = append(secrets,
		secret{"token", tok, []string{tok}},
		secret{"PEM private key", pemKey, append([]string{pemKey}, pemLines[1:len(pemLines)-1]...)},
	)
	for _, s := range secrets {
		t.Run(s.name, func(t *testing.T) {
			for _, msg := range messages(s.value) {
				// By shape alone, with no suspects, the whole secret goes.
				if got := Redact(msg); leaked(got, s.spellings...) != "" || !strings.Contains(got, redacted) {
					t.Errorf("Redact(%q) = %q: holds %q", msg, got, leaked(got, s.spellings...))
				}
				if got := Redact(msg, "-x", s.value); leaked(got, s.spellings...) != "" {
					t.Errorf("Redact with the suspect = %q: holds %q", got, leaked(got, s.spellings...))
				}
			}
		})
	}
}

// A secret whose URL-safe spelling begins with "-" is cut behind a flag's
// dashes too: trimming every dash would eat the secret's own first
// character and leave a run that no longer decodes.
func TestRedactSecretStartingWithDash(t *testing.T) {
	for _, n := range []int{32, 48, 64} {
		raw := randBytes(t, n)
		raw[0] = 0xf8 // first six bits 62: "-" in the URL-safe alphabet
		for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding} {
			v := enc.EncodeToString(raw)
			if v[0] != '-' {
				t.Fatalf("spelling %q does not start with a dash", v)
			}
			for _, msg := range []string{"flag provided but not defined: -" + v, "flag provided but not defined: --" + v, v} {
				if got := Redact(msg); leaked(got, b64Spellings(raw)...) != "" {
					t.Errorf("Redact(%q) = %q: holds %q", msg, got, leaked(got, b64Spellings(raw)...))
				}
			}
		}
	}
}

// A piece of a suspect is cut wherever it lands, in whichever spelling:
// a secret with a "/" pasted as a path can end up split in two.
func TestRedactCutsPiecesOfSuspects(t *testing.T) {
	// A secret whose standard spelling has a '+' or '/' in the middle:
	// every 16-byte window of the URL-safe piece around it differs from
	// the standard spelling.
	var raw []byte
	var std, url string
	k := -1
	for k < 0 {
		raw = randBytes(t, 32)
		std = base64.StdEncoding.EncodeToString(raw)
		url = base64.RawURLEncoding.EncodeToString(raw)
		if i := strings.IndexAny(std[15:], "+/"); i >= 0 && 15+i+16 <= len(url) {
			k = 15 + i
		}
	}
	tok := token(t, newHMAC(t, testKID, HS256), claimsAt(fixedNow))
	for _, tc := range []struct {
		name, text string
		suspects   []string
		spellings  []string
	}{
		{"a piece of a secret", "open " + std[:20] + ": no such file", []string{std}, b64Spellings(raw)},
		{"another spelling of a secret", "got " + url[k-15:k+16], []string{std}, b64Spellings(raw)},
		{"a secret given as -key=value", "key " + std[10:40] + "!", []string{"-key=" + std}, b64Spellings(raw)},
		{"a secret with white space", "bad " + std[2:25], []string{"  " + std + "\n"}, b64Spellings(raw)},
		{"the claims of a token", "segment " + strings.Split(tok, ".")[1], []string{"--token=" + tok}, []string{tok}},
		{"the signature of a token", "sig:" + tok[strings.LastIndexByte(tok, '.')+1:], []string{tok}, []string{tok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.text, tc.suspects...)
			if w := leaked(got, tc.spellings...); w != "" || !strings.Contains(got, redacted) {
				t.Errorf("Redact(%q) = %q: holds %q", tc.text, got, w)
			}
		})
	}
}

// What is no secret stays: paths, addresses, words, flag names, and pieces
// of suspects that look like neither a token nor a key. (A path of 43
// characters or more without a dot may decode as base64 and be cut: a false
// positive, as documented.)
func TestRedactLeavesOrdinaryText(t *testing.T) {
	path := "/etc/pricing/keys/token.key"
	for _, tc := range []struct {
		text     string
		suspects []string
	}{
		{"pricing-server: -token-ttl: want a duration such as 15m", nil},
		{"listen tcp: lookup 256.0.0.1: no such host", []string{"-listen", "256.0.0.1:1"}},
		{"open " + path + ": permission denied", []string{"-key", path}},
		{"keys/production/HS256Key2024/current/key.b64 is a directory", []string{"keys/production/HS256Key2024/current/key.b64"}},
		{"refusing to send a token in plaintext to pricing-service.production-cluster.internal:443", nil},
		{"permission orders.read.write for service-account-pricing-worker-1", nil},
		{"token: unusable key: HS256 needs a secret of at least 32 bytes, got 16", []string{"a2VybmVsLWtleS10b28tc2hvcnQ="}},
		{"flag provided but not defined: -nonexistent-flag-of-some-length", []string{"-nonexistent-flag-of-some-length"}},
		{"averyveryverylongwordwithoutanyseparatorsatallreally", nil},
	} {
		if got := Redact(tc.text, tc.suspects...); got != tc.text {
			t.Errorf("Redact(%q, %q) = %q; want it unchanged", tc.text, tc.suspects, got)
		}
	}
}
