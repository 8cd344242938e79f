package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type jwkSet struct {
	Keys []map[string]string `json:"keys"`
}

func parseJWKS(t *testing.T, text string) jwkSet {
	t.Helper()
	var s jwkSet
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("not a JWK Set of string members: %v\n%s", err, text)
	}
	return s
}

// jwkPublic rebuilds the public key of j with crypto/* alone.
func jwkPublic(t *testing.T, j map[string]string) crypto.PublicKey {
	t.Helper()
	dec := func(name string) []byte {
		b, err := base64.RawURLEncoding.Strict().DecodeString(j[name])
		if err != nil || len(b) == 0 {
			t.Fatalf("member %q: %v", name, err)
		}
		return b
	}
	switch j["kty"] {
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(dec("n")), E: int(new(big.Int).SetBytes(dec("e")).Int64())}
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[j["crv"]]
		if curve == nil {
			t.Fatalf("crv %q", j["crv"])
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, dec("x")...), dec("y")...))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case "OKP":
		return ed25519.PublicKey(dec("x"))
	}
	t.Fatalf("kty %q", j["kty"])
	return nil
}

func pemPublic(t *testing.T, path string) crypto.PublicKey {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(text)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestJWKS publishes keys given by their private and by their public files:
// each JWK has the kid and algorithm of its -key, in the order given, and
// the very public key of its .pub file, rebuilt with crypto/*; the private
// files' material appears nowhere.
func TestJWKS(t *testing.T) {
	esPriv, esPub := newKey(t, "ES256")
	edPriv, edPub := newKey(t, "EdDSA")
	rsPriv, rsPub := newKey(t, "RS256")
	r := runCLI(t, "jwks", "-key", "es-1:ES256:"+esPriv, "-key", "ed-1:EdDSA:"+edPub, "-key", "rs-1:RS256:"+rsPriv)
	mustSucceed(t, r)
	set := parseJWKS(t, r.stdout)
	want := []struct{ kid, alg, kty, pub string }{
		{"es-1", "ES256", "EC", esPub}, {"ed-1", "EdDSA", "OKP", edPub}, {"rs-1", "RS256", "RSA", rsPub},
	}
	if len(set.Keys) != len(want) {
		t.Fatalf("%d keys, want %d:\n%s", len(set.Keys), len(want), r.stdout)
	}
	for i, w := range want {
		j := set.Keys[i]
		if j["kid"] != w.kid || j["alg"] != w.alg || j["kty"] != w.kty || j["use"] != "sig" {
			t.Errorf("key %d: %v, want kid %s alg %s kty %s use sig", i, j, w.kid, w.alg, w.kty)
		}
		if !jwkPublic(t, j).(interface{ Equal(crypto.PublicKey) bool }).Equal(pemPublic(t, w.pub)) {
			t.Errorf("key %d (%s): the published key is not the one of its .pub file", i, w.alg)
		}
	}
	for _, priv := range []string{esPriv, edPriv, rsPriv} {
		text, err := os.ReadFile(priv)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(text)
		m := material{name: "private key", spellings: b64Spellings(block.Bytes)}
		if w := m.leak(r.stdout); w != "" {
			t.Errorf("the JWKS holds %q of a private key file", w)
		}
	}

	// The private and the public file of a key publish the same bytes.
	a := runCLI(t, "jwks", "-key", "k:ES256:"+esPriv)
	b := runCLI(t, "jwks", "-key", "k:ES256:"+esPub)
	mustSucceed(t, a)
	if a.stdout != b.stdout || !strings.HasSuffix(a.stdout, "}\n") {
		t.Errorf("private file gives %q, public file %q", a.stdout, b.stdout)
	}
	// A lone key may go without kid; a path may hold colons.
	dir := t.TempDir()
	colon := filepath.Join(dir, "a:b.pub")
	if err := os.WriteFile(colon, mustRead(t, edPub), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "jwks", "-key", ":EdDSA:"+colon)
	mustSucceed(t, r)
	if j := parseJWKS(t, r.stdout).Keys[0]; j["kid"] != "" || j["alg"] != "EdDSA" {
		t.Errorf("lone key without kid: %v", j)
	}
	if _, ok := parseJWKS(t, r.stdout).Keys[0]["kid"]; ok {
		t.Errorf("an empty kid was published: %s", r.stdout)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJWKSOut: -out writes the set (mode 0644) through a rename, replacing
// the previous set whole and leaving no temporary file.
func TestJWKSOut(t *testing.T) {
	_, esPub := newKey(t, "ES256")
	_, edPub := newKey(t, "EdDSA")
	dir := t.TempDir()
	out := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(out, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "jwks", "-out", out, "-key", "a:ES256:"+esPub, "-key", "b:EdDSA:"+edPub)
	mustSucceed(t, r)
	if r.stdout != "wrote 2 keys to "+out+"\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode %04o, want 0644", info.Mode().Perm())
	}
	stdout := runCLI(t, "jwks", "-key", "a:ES256:"+esPub, "-key", "b:EdDSA:"+edPub)
	if got := string(mustRead(t, out)); got != stdout.stdout {
		t.Errorf("file holds %q, standard output %q", got, stdout.stdout)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v, want jwks.json alone", entries)
	}
	r = runCLI(t, "jwks", "-out", out, "-key", "a:ES256:"+esPub)
	mustSucceed(t, r)
	if r.stdout != "wrote 1 key to "+out+"\n" || len(parseJWKS(t, string(mustRead(t, out))).Keys) != 1 {
		t.Errorf("second run: stdout %q, file %s", r.stdout, mustRead(t, out))
	}
	// A directory that does not exist: usage, without the path.
	missingDir := filepath.Join(dir, "nope", "jwks.json")
	r = runCLI(t, "jwks", "-out", missingDir, "-key", "a:ES256:"+esPub)
	mustFailUsage(t, r, "jwks: -out: cannot write the file: no such file or directory")
	if strings.Contains(r.stderr, "nope") {
		t.Errorf("stderr names the path: %q", r.stderr)
	}
}

// TestJWKSRefuses: every refusal is a usage error naming the -key by its
// place, with no value quoted; an HMAC key's file is not even read.
func TestJWKSRefuses(t *testing.T) {
	esPriv, esPub := newKey(t, "ES256")
	hs, _ := newKey(t, "HS256")
	loose := filepath.Join(t.TempDir(), "loose.key")
	if err := os.WriteFile(loose, mustRead(t, esPriv), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no -key", []string{"jwks"}, "jwks: missing required flag: -key KID:ALG:PATH"},
		{"argument", []string{"jwks", "-key", "a:ES256:" + esPub, "extra"}, "jwks: unexpected argument after the flags"},
		{"not a spec", []string{"jwks", "-key", esPub}, "jwks: -key #1: want KID:ALG:PATH"},
		{"no path", []string{"jwks", "-key", "a:ES256:"}, "jwks: -key #1: want KID:ALG:PATH"},
		{"unknown alg", []string{"jwks", "-key", "a:ES256:" + esPub, "-key", "b:ES999:" + esPub}, "jwks: -key #2: unknown algorithm (supported: "},
		{"HMAC", []string{"jwks", "-key", "a:HS256:" + hs}, "jwks: -key #1: an HS256 key is a shared secret and is never published"},
		{"HMAC, file not read", []string{"jwks", "-key", "a:HS512:/does/not/exist"}, "jwks: -key #1: an HS512 key is a shared secret"},
		{"no kid among several", []string{"jwks", "-key", "a:ES256:" + esPub, "-key", ":ES256:" + esPub}, "jwks: -key #2 has no kid; every key of a set of several needs one"},
		{"duplicate kid", []string{"jwks", "-key", "a:ES256:" + esPub, "-key", "b:ES256:" + esPub, "-key", "a:ES256:" + esPub}, "jwks: -key #3 has the kid of -key #1"},
		{"invalid kid", []string{"jwks", "-key", "a b:ES256:" + esPub}, "jwks: -key #1: invalid kid"},
		{"wrong algorithm for the file", []string{"jwks", "-key", "a:EdDSA:" + esPub}, "jwks: -key #1: token: unusable key: EdDSA needs an Ed25519 key"},
		{"missing file", []string{"jwks", "-key", "a:ES256:" + esPub + ".nope"}, "jwks: -key #1: token: unusable key: cannot open the key file: no such file or directory"},
		{"private file readable by others", []string{"jwks", "-key", "a:ES256:" + loose}, "readable by group or others"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, c.args...)
			mustFailUsage(t, r, c.want)
			if strings.Contains(r.stderr, filepath.Dir(esPub)) || strings.Contains(r.stderr, "/does/") {
				t.Errorf("stderr names a path: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "ES999") {
				t.Errorf("stderr quotes the value: %q", r.stderr)
			}
		})
	}
	// The output is all or nothing: a refused key leaves no partial set on
	// standard output nor in -out.
	out := filepath.Join(t.TempDir(), "jwks.json")
	r := runCLI(t, "jwks", "-out", out, "-key", "a:ES256:"+esPub, "-key", "b:HS256:"+hs)
	mustFailUsage(t, r, "never published")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("-out written by a refused run: %v", err)
	}
}
