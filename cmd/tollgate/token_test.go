package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tollgate/tollgate/token"
)

// newKey runs keygen into a temporary directory and returns the private
// key file and the file to verify with (the same file for HMAC).
func newKey(t *testing.T, alg string) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(t.TempDir(), "key")
	mustSucceed(t, runCLI(t, "keygen", "-alg", alg, "-out", priv))
	if token.MinHMACKeyLen(alg) > 0 {
		return priv, priv
	}
	return priv, priv + ".pub"
}

// issueAt runs token issue at now and returns the token.
func issueAt(t *testing.T, now time.Time, args ...string) string {
	t.Helper()
	r := runAt(t, now, "", append([]string{"token", "issue"}, args...)...)
	mustSucceed(t, r)
	tok, ok := strings.CutSuffix(r.stdout, "\n")
	if !ok || strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("issue printed %q, want one compact token and a newline", r.stdout)
	}
	return tok
}

// mint issues a token with key for iss "auth", aud "orders", sub "alice",
// at fixedNow; later args override earlier ones, as the flag package does.
func mint(t *testing.T, key, alg string, args ...string) string {
	t.Helper()
	base := []string{"-key", key, "-alg", alg, "-iss", "auth", "-aud", "orders", "-sub", "alice"}
	return issueAt(t, fixedNow, append(base, args...)...)
}

type inspected struct {
	Header map[string]any `json:"header"`
	Claims map[string]any `json:"claims"`
}

// parseInspect decodes the JSON inspect printed, numbers as json.Number.
func parseInspect(t *testing.T, out string) inspected {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var v inspected
	if err := dec.Decode(&v); err != nil || v.Header == nil || v.Claims == nil {
		t.Fatalf("inspect output %q: %v; want {\"header\": {...}, \"claims\": {...}}", out, err)
	}
	return v
}

// claimsOf inspects tok without a key and returns its claims.
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	r := runCLI(t, "token", "inspect", tok)
	mustSucceed(t, r)
	return parseInspect(t, r.stdout).Claims
}

// verify runs inspect with a key at now and returns the exit code and the
// verdict (the last line of stdout), checking that stderr stays empty and
// that the raw token is never echoed.
func verify(t *testing.T, now time.Time, tok, pub, alg, aud string) (int, string) {
	t.Helper()
	r := runAt(t, now, "", "token", "inspect", "-key", pub, "-alg", alg, "-iss", "auth", "-aud", aud, tok)
	if r.stderr != "" {
		t.Errorf("inspect stderr %q, want nothing", r.stderr)
	}
	if strings.Contains(r.stdout, tok) || strings.Contains(r.stdout, tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Errorf("inspect echoed the token or its signature: %q", r.stdout)
	}
	body, verdict := splitVerdict(r.stdout)
	if body != "" {
		parseInspect(t, body)
	}
	return r.code, verdict
}

func splitVerdict(out string) (body, verdict string) {
	out = strings.TrimSuffix(out, "\n")
	i := strings.LastIndexByte(out, '\n')
	return out[:i+1], out[i+1:]
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a JSON number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestIssueInspectRoundTrip(t *testing.T) {
	for _, alg := range []string{"HS256", "ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			priv, pub := newKey(t, alg)
			tok := mint(t, priv, alg, "-azp", "pricing", "-perms", "orders.read,orders.write", "-sid", "s1")

			code, verdict := verify(t, fixedNow, tok, pub, alg, "orders")
			if code != exitOK || verdict != "valid" {
				t.Fatalf("inspect with the key: exit %d, verdict %q; want 0 and %q", code, verdict, "valid")
			}
			// A key file carries no kid: a service loading it refuses tokens
			// that name one, and inspect must say exactly what it would.
			kidTok := mint(t, priv, alg, "-kid", "k1")
			if code, verdict := verify(t, fixedNow, kidTok, pub, alg, "orders"); code != exitFail || verdict != "invalid token: unknown kid" {
				t.Fatalf("a kid the key file does not carry: exit %d, verdict %q", code, verdict)
			}

			r := runCLI(t, "token", "inspect", tok)
			mustSucceed(t, r)
			got := parseInspect(t, r.stdout)
			wantHeader := map[string]any{"alg": alg, "typ": "at+jwt"}
			if len(got.Header) != len(wantHeader) {
				t.Errorf("header %v, want %v", got.Header, wantHeader)
			}
			for k, v := range wantHeader {
				if got.Header[k] != v {
					t.Errorf("header %s = %v, want %v", k, got.Header[k], v)
				}
			}
			c := got.Claims
			for k, v := range map[string]any{"iss": "auth", "aud": "orders", "sub": "alice", "azp": "pricing", "sid": "s1"} {
				if c[k] != v {
					t.Errorf("claim %s = %v, want %v", k, c[k], v)
				}
			}
			if perms, _ := c["perms"].([]any); !slices.Equal(perms, []any{"orders.read", "orders.write"}) {
				t.Errorf("perms = %v, want [orders.read orders.write]", c["perms"])
			}
			if jti, _ := c["jti"].(string); jti == "" {
				t.Error("no jti")
			}

			// A service's own verifier agrees.
			key, err := token.LoadKeyFile(pub, "k1", alg)
			if err != nil {
				t.Fatal(err)
			}
			ks, _ := token.NewKeySet(key)
			v, err := token.NewVerifier(ks, "auth", "orders", token.WithClock(func() time.Time { return fixedNow }))
			if err != nil {
				t.Fatal(err)
			}
			sess, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("session verifier: %v", err)
			}
			if sess.Consumer() != "pricing" || !sess.Has("orders.write") || sess.SessionID() != "s1" {
				t.Errorf("session %v: consumer %q, perms %v, sid %q", sess, sess.Consumer(), sess.Permissions(), sess.SessionID())
			}
		})
	}
}

func TestIssueTimes(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	now := fixedNow.Unix()
	tests := []struct {
		name               string
		clock              time.Time
		args               []string
		iat, exp, authTime int64
	}{
		{"defaults", fixedNow, nil, now, now + 15*60, now},
		{"iat in the past", fixedNow, []string{"-iat", "-50s", "-ttl", "10m"}, now - 50, now - 50 + 600, now - 50},
		{"iat in the future", fixedNow, []string{"-iat", "+10m"}, now + 600, now + 600 + 900, now + 600},
		{"iat zero", fixedNow, []string{"-iat", "0", "-ttl", "1h"}, now, now + 3600, now},
		{"auth-time", fixedNow, []string{"-iat", "-50s", "-auth-time", "-2h"}, now - 50, now - 50 + 900, now - 7200},
		{"auth-time zero", fixedNow, []string{"-iat", "-50s", "-auth-time", "0"}, now - 50, now - 50 + 900, now},
		{"sub-second clock", fixedNow.Add(999 * time.Millisecond), []string{"-ttl", "90s"}, now, now + 90, now},
		{"long ttl", fixedNow, []string{"-ttl", "10h"}, now, now + 36000, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-key", priv, "-alg", "HS256", "-iss", "auth", "-aud", "orders", "-sub", "alice"}, tt.args...)
			c := claimsOf(t, issueAt(t, tt.clock, args...))
			if got := num(t, c["iat"]); got != tt.iat {
				t.Errorf("iat = %d, want now%+d", got, got-now)
			}
			if got := num(t, c["exp"]); got != tt.exp {
				t.Errorf("exp = %d, want %d (exp-iat = %d)", got, tt.exp, got-num(t, c["iat"]))
			}
			if got := num(t, c["auth_time"]); got != tt.authTime {
				t.Errorf("auth_time = %d, want now%+d", got, tt.authTime-now)
			}
			if _, ok := c["nbf"]; ok {
				t.Error("nbf set; issue sets none")
			}
		})
	}
}

func TestIssueClaimTyping(t *testing.T) {
	priv, pub := newKey(t, "HS256")
	tok := mint(t, priv, "HS256",
		"-claim", "seller_id=42",
		"-claim", "ratio=-1.5e3",
		"-claim", "big=12345678901234567890",
		"-claim", "beta=true",
		"-claim", "off=false",
		"-claim", "region=eu",
		"-claim", "zip=01234",
		"-claim", "flag=True",
		"-claim", "expr=a=b",
		"-claim", "empty=")
	c := claimsOf(t, tok)
	want := map[string]any{
		"seller_id": json.Number("42"),
		"ratio":     json.Number("-1.5e3"),
		"big":       json.Number("12345678901234567890"),
		"beta":      true,
		"off":       false,
		"region":    "eu",
		"zip":       "01234", // not a JSON number: a leading zero
		"flag":      "True",
		"expr":      "a=b",
		"empty":     "",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %#v (%T), want %#v (%T)", k, c[k], c[k], v, v)
		}
	}
	if code, verdict := verify(t, fixedNow, tok, pub, "HS256", "orders"); code != exitOK || verdict != "valid" {
		t.Errorf("inspect with the key: exit %d, %q; want valid", code, verdict)
	}
}

func TestIssueAudienceList(t *testing.T) {
	priv, pub := newKey(t, "ES256")
	tok := issueAt(t, fixedNow, "-key", priv, "-alg", "ES256", "-iss", "auth", "-aud", "orders, billing,", "-sub", "alice")
	if aud, _ := claimsOf(t, tok)["aud"].([]any); !slices.Equal(aud, []any{"orders", "billing"}) {
		t.Errorf("aud = %v, want [orders billing]", claimsOf(t, tok)["aud"])
	}
	for _, aud := range []string{"orders", "billing"} {
		if code, verdict := verify(t, fixedNow, tok, pub, "ES256", aud); code != exitOK || verdict != "valid" {
			t.Errorf("-aud %s: exit %d, %q; want valid", aud, code, verdict)
		}
	}
}

func TestIssuePermsAndIDs(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	if c := claimsOf(t, mint(t, priv, "HS256")); c["perms"] != nil {
		t.Errorf("no -perms: perms = %v, want no claim", c["perms"])
	}
	if perms, ok := claimsOf(t, mint(t, priv, "HS256", "-perms", ""))["perms"].([]any); !ok || len(perms) != 0 {
		t.Errorf(`-perms "": perms = %v, want []`, perms)
	}
	if perms, _ := claimsOf(t, mint(t, priv, "HS256", "-perms", "a,,b,"))["perms"].([]any); !slices.Equal(perms, []any{"a", "b"}) {
		t.Errorf("-perms a,,b,: perms = %v, want [a b]", perms)
	}

	c1 := claimsOf(t, mint(t, priv, "HS256"))
	c2 := claimsOf(t, mint(t, priv, "HS256"))
	for _, k := range []string{"sid", "jti"} {
		if s, _ := c1[k].(string); s == "" || c1[k] == c2[k] {
			t.Errorf("%s: %v then %v; want a fresh random value each time", k, c1[k], c2[k])
		}
	}
	if _, ok := c1["kid"]; ok {
		t.Error("kid is a header member, not a claim")
	}
}

func TestInspectRejects(t *testing.T) {
	priv, pub := newKey(t, "EdDSA")
	tests := []struct {
		name     string
		args     []string
		aud      string
		code     int
		verdict  string
		viaClock time.Time
	}{
		{"expired", []string{"-iat", "-2h", "-ttl", "15m"}, "orders", exitFail, "token expired: past exp", fixedNow},
		{"wrong audience", nil, "billing", exitFail, "invalid token: audience mismatch", fixedNow},
		{"lifetime of 10h", []string{"-ttl", "10h"}, "orders", exitFail, "invalid token: lifetime exceeds the maximum", fixedNow},
		{"iat in the future", []string{"-iat", "+10m"}, "orders", exitFail, "invalid token: iat in the future", fixedNow},
		{"session over", []string{"-auth-time", "-9h"}, "orders", exitFail, "token expired: past the maximum session since auth_time", fixedNow},
		{"auth_time after iat", []string{"-iat", "-10m", "-auth-time", "0"}, "orders", exitFail, "invalid token: auth_time in the future or after iat", fixedNow},
		{"iat 50s ago", []string{"-iat", "-50s"}, "orders", exitOK, "valid", fixedNow},
		{"checked later", nil, "orders", exitFail, "token expired: past exp", fixedNow.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mint(t, priv, "EdDSA", tt.args...)
			code, verdict := verify(t, tt.viaClock, tok, pub, "EdDSA", tt.aud)
			if code != tt.code || verdict != tt.verdict {
				t.Errorf("exit %d, verdict %q; want %d, %q", code, verdict, tt.code, tt.verdict)
			}
		})
	}

	t.Run("forged claims", func(t *testing.T) {
		tok := mint(t, priv, "EdDSA")
		parts := strings.Split(tok, ".")
		claims, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		parts[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(claims, []byte(`"alice"`), []byte(`"admin"`), 1))
		code, verdict := verify(t, fixedNow, strings.Join(parts, "."), pub, "EdDSA", "orders")
		if code != exitFail || verdict != "invalid token: signature invalid" {
			t.Errorf("exit %d, verdict %q; want 1, %q", code, verdict, "invalid token: signature invalid")
		}
	})

	t.Run("other key", func(t *testing.T) {
		_, otherPub := newKey(t, "EdDSA")
		code, verdict := verify(t, fixedNow, mint(t, priv, "EdDSA"), otherPub, "EdDSA", "orders")
		if code != exitFail || verdict != "invalid token: signature invalid" {
			t.Errorf("exit %d, verdict %q; want 1, %q", code, verdict, "invalid token: signature invalid")
		}
	})
}

func TestInspectStdin(t *testing.T) {
	priv, pub := newKey(t, "HS384")
	tok := mint(t, priv, "HS384")
	r := runAt(t, fixedNow, "\n  "+tok+"\r\n", "token", "inspect", "-key", pub, "-alg", "HS384", "-iss", "auth", "-aud", "orders", "-")
	mustSucceed(t, r)
	if body, verdict := splitVerdict(r.stdout); verdict != "valid" || parseInspect(t, body).Claims["sub"] != "alice" {
		t.Errorf("stdout %q, want the claims and then %q", r.stdout, "valid")
	}

	r = runAt(t, fixedNow, tok, "token", "inspect", "-")
	mustSucceed(t, r)
	if parseInspect(t, r.stdout).Header["alg"] != "HS384" {
		t.Errorf("stdout %q, want the header with alg HS384", r.stdout)
	}
}

func TestInspectUndecodable(t *testing.T) {
	priv, pub := newKey(t, "HS256")
	good := mint(t, priv, "HS256")
	parts := strings.Split(good, ".")
	for name, tok := range map[string]string{
		"two segments":     parts[0] + "." + parts[1],
		"four segments":    good + ".x",
		"not base64":       parts[0] + ".%%%." + parts[2],
		"claims not JSON":  parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("secret-ish")) + "." + parts[2],
		"header an array":  base64.RawURLEncoding.EncodeToString([]byte(`["x"]`)) + "." + parts[1] + "." + parts[2],
		"trailing data":    parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"a"} {}`)) + "." + parts[2],
		"claims JSON null": parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`null`)) + "." + parts[2],
	} {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "token", "inspect", tok)
			if r.code != exitFail || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", r.code, r.stdout)
			}
			checkOneLine(t, r.stderr, "not decodable")
			if strings.Contains(r.stderr, "secret-ish") || strings.Contains(r.stderr, parts[2]) {
				t.Errorf("stderr %q echoes the token", r.stderr)
			}

			// With a key, the verifier's reason follows.
			r = runCLI(t, "token", "inspect", "-key", pub, "-alg", "HS256", "-iss", "auth", "-aud", "orders", tok)
			if r.code != exitFail || !strings.HasPrefix(r.stdout, "invalid token: ") || strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("with -key: exit %d, stdout %q; want 1 and one line \"invalid token: ...\"", r.code, r.stdout)
			}
			checkOneLine(t, r.stderr, "not decodable")
		})
	}
}

// TestBadInput covers every way to hold the command wrong: each is exit 2,
// one line on stderr and nothing on stdout, and no key file is written.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	hs, _ := newKey(t, "HS256")
	es, esPub := newKey(t, "ES256")
	short := filepath.Join(dir, "short.key")
	writeTestFile(t, short, base64.StdEncoding.EncodeToString(make([]byte, 16))+"\n", 0o600)
	loose := filepath.Join(dir, "loose.key")
	text, err := os.ReadFile(hs)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, loose, string(text), 0o644)
	newOut := filepath.Join(dir, "new.key")

	sign := func(extra ...string) []string {
		return append([]string{"token", "issue", "-key", hs, "-alg", "HS256", "-iss", "auth", "-aud", "orders", "-sub", "alice"}, extra...)
	}
	check := func(extra ...string) []string {
		return append([]string{"token", "inspect", "-key", hs, "-alg", "HS256", "-iss", "auth", "-aud", "orders"}, extra...)
	}
	tok := mint(t, hs, "HS256")

	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"unknown command", []string{"frob"}, "", "unknown command (want keygen, token, jwks, proto, rules, explain or revoke"},
		{"flag before command", []string{"-alg", "HS256"}, "", "unknown command"},
		{"token alone", []string{"token"}, "", "missing subcommand"},
		{"token unknown subcommand", []string{"token", "verify"}, "", "unknown subcommand (want issue or inspect)"},

		{"keygen unknown flag", []string{"keygen", "-alg", "RS256", "-bits", "4096", "-out", newOut}, "", "flag provided but not defined: -bits"},
		{"keygen flag without value", []string{"keygen", "-alg"}, "", "flag needs an argument: -alg"},
		{"keygen no flags", []string{"keygen"}, "", "missing required flags: -alg, -out"},
		{"keygen no -out", []string{"keygen", "-alg", "HS256"}, "", "-out"},
		{"keygen unknown alg", []string{"keygen", "-alg", "HS999", "-out", newOut}, "", "unknown -alg (supported: HS256,"},
		{"keygen alg none", []string{"keygen", "-alg", "none", "-out", newOut}, "", "unknown -alg"},
		{"keygen alg in lower case", []string{"keygen", "-alg", "hs256", "-out", newOut}, "", "unknown -alg"},
		{"keygen bad kid", []string{"keygen", "-alg", "HS256", "-out", newOut, "-kid", "a b"}, "", "invalid -kid"},
		{"keygen argument", []string{"keygen", "-alg", "HS256", "-out", newOut, "extra"}, "", "unexpected argument"},
		{"keygen no such directory", []string{"keygen", "-alg", "HS256", "-out", filepath.Join(dir, "nope", "k")}, "", "no such file or directory"},
		{"keygen path with a newline", []string{"keygen", "-alg", "HS256", "-out", filepath.Join(dir, "no\nsuch.d", "k")}, "", "no such file or directory"},
		{"keygen terminal escape", []string{"keygen", "-alg", "HS256\x1b[2J", "-out", newOut}, "", "unknown -alg"},
		{"keygen path with an escape", []string{"keygen", "-alg", "HS256", "-out", filepath.Join(dir, "x\x1b]0;owned\x07.d", "k")}, "", "no such file or directory"},
		{"keygen existing", []string{"keygen", "-alg", "HS256", "-out", hs}, "", "-out already exists"},

		{"issue unknown flag", sign("-nbf", "0"), "", "flag provided but not defined: -nbf"},
		{"issue no flags", []string{"token", "issue"}, "", "missing required flags: -key, -alg, -iss, -aud, -sub"},
		{"issue no -sub", []string{"token", "issue", "-key", hs, "-alg", "HS256", "-iss", "auth", "-aud", "orders"}, "", "-sub"},
		{"issue bad -ttl", sign("-ttl", "5x"), "", "-ttl: want a duration"},
		{"issue bad -iat", sign("-iat", "yesterday"), "", "-iat: want a duration"},
		{"issue bad -auth-time", sign("-auth-time", "1d"), "", "-auth-time: want a duration"},
		{"issue zero -ttl", sign("-ttl", "0"), "", "-ttl"},
		{"issue negative -ttl", sign("-ttl", "-1m"), "", "-ttl"},
		{"issue sub-second -ttl", sign("-ttl", "500ms"), "", "-ttl"},
		{"issue unknown alg", sign("-alg", "none"), "", "unknown -alg"},
		{"issue key of another alg", sign("-key", es, "-alg", "RS256"), "", "RSA"},
		{"issue no such key file", sign("-key", filepath.Join(dir, "missing")), "", "-key: token: unusable key: cannot open the key file: no such file or directory"},
		{"issue key is a directory", sign("-key", dir), "", "is a directory"},
		{"issue key too short", sign("-key", short), "", "at least 32 bytes"},
		{"issue HS512 with a 32-byte key", sign("-alg", "HS512"), "", "at least 64 bytes"},
		{"issue key readable by others", sign("-key", loose), "", "-key: token: unusable key: the key file holds secret material and is readable by group or others (mode 0644); chmod 600 it"},
		{"issue public key", sign("-key", esPub, "-alg", "ES256"), "", "public key"},
		{"issue claim sub", sign("-claim", "sub=bob"), "", "collides with a registered claim"},
		{"issue claim Perms", sign("-claim", "Perms=x"), "", "collides with a registered claim"},
		{"issue claim auth_time", sign("-claim", "auth_time=0"), "", "collides with a registered claim"},
		{"issue claim without =", sign("-claim", "seller"), "", "want name=value"},
		{"issue claim without name", sign("-claim", "=1"), "", "want name=value"},
		{"issue claim twice", sign("-claim", "a=1", "-claim", "a=2"), "", "-claim: a claim name given twice"},
		{"issue empty -aud", sign("-aud", " , "), "", "-aud names no audience"},
		{"issue bad kid", sign("-kid", `a"b`), "", "invalid -kid"},
		{"issue argument", sign("extra"), "", "unexpected argument"},

		{"inspect no token", []string{"token", "inspect"}, "", "missing TOKEN"},
		{"inspect two tokens", []string{"token", "inspect", tok, tok}, "", "got 2 arguments"},
		{"inspect flag after token", []string{"token", "inspect", tok, "-key", hs}, "", "after the flags"},
		{"inspect unknown flag", []string{"token", "inspect", "-kid", "k1", tok}, "", "flag provided but not defined: -kid"},
		{"inspect -key alone", []string{"token", "inspect", "-key", hs, tok}, "", "missing -alg, -iss, -aud"},
		{"inspect -key without -aud", []string{"token", "inspect", "-key", hs, "-alg", "HS256", "-iss", "auth", tok}, "", "missing -aud"},
		{"inspect -iss without -key", []string{"token", "inspect", "-iss", "auth", tok}, "", "only with -key"},
		{"inspect unknown alg", check("-alg", "HS257", tok), "", "unknown -alg"},
		{"inspect no such key file", check("-key", filepath.Join(dir, "missing"), tok), "", "no such file or directory"},
		{"inspect key too short", check("-key", short, tok), "", "at least 32 bytes"},
		{"inspect public key of another alg", check("-key", esPub, "-alg", "EdDSA", tok), "", "Ed25519"},
		{"inspect empty stdin", []string{"token", "inspect", "-"}, "", "the token is empty"},
		{"inspect blank token", []string{"token", "inspect", "  "}, "", "the token is empty"},
		{"inspect oversized stdin", []string{"token", "inspect", "-"}, strings.Repeat("a", maxTokenInput+1), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runAt(t, fixedNow, tt.stdin, tt.args...)
			mustFailUsage(t, r, tt.want)
			if strings.ContainsFunc(r.stderr, func(c rune) bool { return c != '\n' && !unicode.IsPrint(c) }) {
				t.Errorf("stderr %q holds control characters", r.stderr)
			}
			if strings.Contains(r.stderr, tok) {
				t.Errorf("stderr %q echoes the token", r.stderr)
			}
			if _, err := os.Lstat(newOut); !os.IsNotExist(err) {
				t.Fatalf("%s exists after a refused command", newOut)
			}
		})
	}
}

// TestTokenArgumentNeverEchoed passes a token where a flag is expected: the
// flag package's error quotes it, the command must not.
func TestTokenArgumentNeverEchoed(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	tok := mint(t, priv, "HS256")
	for _, args := range [][]string{
		{"token", "inspect", "-" + tok},
		{"token", "inspect", "--" + tok + "=x"},
		{"token", "issue", "-sub=x", tok},
		{"token", "issue", "-ttl", tok},
		{tok},
	} {
		r := runCLI(t, args...)
		mustFailUsage(t, r, "")
		if strings.Contains(r.stderr, tok) || strings.Contains(r.stderr, strings.Split(tok, ".")[2]) {
			t.Errorf("%d args: stderr %q echoes the token", len(args), r.stderr)
		}
	}
}
