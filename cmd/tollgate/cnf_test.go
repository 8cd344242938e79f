package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/token"
)

// writeCert writes a self-signed client certificate as PEM (after the
// blocks in before) and returns the file and the certificate's DER.
func writeCert(t *testing.T, before ...*pem.Block) (path string, der []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "client-a"},
		NotBefore:    fixedNow.Add(-time.Hour),
		NotAfter:     fixedNow.Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, b := range before {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	path = filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, der
}

// TestIssueBoundToCertificate: -cnf-cert binds the token to the
// certificate: cnf holds x5t#S256, the base64url SHA-256 of its DER, which
// the verifier reads back; without it there is no cnf.
func TestIssueBoundToCertificate(t *testing.T) {
	priv, pub := newKey(t, "ES256")
	// A PEM block of another type before the certificate is skipped.
	cert, der := writeCert(t, &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	sum := sha256.Sum256(der)
	want := base64.RawURLEncoding.EncodeToString(sum[:])

	tok := mint(t, priv, "ES256", "-cnf-cert", cert)
	cnf, ok := claimsOf(t, tok)["cnf"].(map[string]any)
	if !ok || len(cnf) != 1 || cnf["x5t#S256"] != want {
		t.Fatalf("cnf = %v, want {x5t#S256: %s}", claimsOf(t, tok)["cnf"], want)
	}
	if code, verdict := verify(t, fixedNow, tok, pub, "ES256", "orders"); code != exitOK || verdict != "valid" {
		t.Fatalf("inspect -key: exit %d, %q", code, verdict)
	}
	key, err := token.LoadKeyFile(pub, "", "ES256")
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
		t.Fatal(err)
	}
	if sess.CertThumbprint() != want {
		t.Fatalf("CertThumbprint() = %q, want %q", sess.CertThumbprint(), want)
	}
	if _, ok := claimsOf(t, mint(t, priv, "ES256"))["cnf"]; ok {
		t.Fatal("a token issued without -cnf-cert carries cnf")
	}
}

// TestIssueCnfCertRefused: a missing file, a file without a certificate
// (a private key pasted in its place among them) and a certificate block
// that does not parse are usage errors that never show the path or the
// file's content.
func TestIssueCnfCertRefused(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-key-material-0123456789")}))
	big := write("big.pem", strings.Repeat("A", maxCertInput+1))
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope-secret-name.pem"), "cannot open"},
		{"empty", write("empty.pem", ""), "no PEM CERTIFICATE block"},
		{"not PEM", write("text.pem", "hello secret-text"), "no PEM CERTIFICATE block"},
		{"a private key", write("key.pem", keyPEM), "no PEM CERTIFICATE block"},
		{"a broken certificate", write("broken.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("secret-junk")}))), "not a valid X.509 certificate"},
		{"too large", big, "larger than"},
	}
	base := []string{"token", "issue", "-key", priv, "-alg", "HS256", "-iss", "auth", "-aud", "orders", "-sub", "alice"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append(base, "-cnf-cert", tc.path)...)
			mustFailUsage(t, r, tc.want)
			for _, leak := range []string{tc.path, filepath.Base(tc.path), "secret"} {
				if strings.Contains(r.stderr, leak) {
					t.Fatalf("stderr %q shows %q", r.stderr, leak)
				}
			}
		})
	}
}
