package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/token"
)

// writeES256 writes a new ES256 private key (PKCS#8 PEM, mode 0600) and
// returns its path and the key.
func writeES256(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "es256.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, priv
}

// startWithJWKS starts the binary with -jwks-listen 127.0.0.1:0 and returns
// the JWKS URL it printed after its listening line.
func startWithJWKS(t *testing.T, args ...string) string {
	t.Helper()
	_, _, v, _ := startPrinting(t, append(args, "-listen", "127.0.0.1:0", "-jwks-listen", "127.0.0.1:0"), "listening on ", "jwks on ")
	boundURL(t, "jwks", v[1], "/.well-known/jwks.json")
	return v[1]
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: waitLimit}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestJWKSListen: the server publishes its ES256 key's public half, from
// which a token its private key signed verifies (crypto/* only); with an
// issuer URL the discovery document names it and the JWKS URL.
func TestJWKSListen(t *testing.T) {
	path, priv := writeES256(t)
	const iss = "https://auth.pricing.test"
	url := startWithJWKS(t, "-key", path, "-alg", token.ES256, "-issuer", iss)

	status, body := httpGet(t, url)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	j := set.Keys[0]
	if j["kty"] != "EC" || j["crv"] != "P-256" || j["alg"] != "ES256" || j["use"] != "sig" || j["d"] != "" {
		t.Errorf("JWK %v", j)
	}
	if _, ok := j["kid"]; ok {
		t.Errorf("the key file's key has no kid, but one was published: %v", j)
	}
	x, _ := base64.RawURLEncoding.DecodeString(j["x"])
	y, _ := base64.RawURLEncoding.DecodeString(j["y"])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.NewPrivateKey("", token.ES256, priv)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := signer.Sign(token.Claims{Issuer: iss, Subject: "test", Audience: []string{"pricing"}, IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	digest := sha256.Sum256([]byte(tok[:i]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("a token of the server's key does not verify with the published key")
	}

	status, body = httpGet(t, strings.TrimSuffix(url, "/.well-known/jwks.json")+"/.well-known/openid-configuration")
	var d struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &d) != nil || d.Issuer != iss || d.JWKSURI != iss+"/.well-known/jwks.json" {
		t.Errorf("discovery: %d %s", status, body)
	}
}

// TestJWKSListenWithoutIssuerURL: with an -issuer that is no URL (the
// default, tollgate-demo) the JWKS alone is served.
func TestJWKSListenWithoutIssuerURL(t *testing.T) {
	path, _ := writeES256(t)
	url := startWithJWKS(t, "-key", path, "-alg", token.ES256)
	if status, body := httpGet(t, url); status != http.StatusOK || !strings.Contains(string(body), `"alg":"ES256"`) {
		t.Errorf("JWKS: %d %s", status, body)
	}
	if status, _ := httpGet(t, strings.TrimSuffix(url, "jwks.json")+"openid-configuration"); status != http.StatusNotFound {
		t.Errorf("discovery without an issuer URL: %d, want 404", status)
	}
}

// TestJWKSListenRefuses: an HMAC key is never published (usage, before
// anything is bound), nor is a key under an http issuer off loopback.
func TestJWKSListenRefuses(t *testing.T) {
	hmacKey, _ := writeKey(t, 32)
	esKey, _ := writeES256(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"HMAC", []string{"-key", hmacKey, "-jwks-listen", "127.0.0.1:0"}, 2, "-jwks-listen: an HMAC key is a shared secret and is never published"},
		{"no port", []string{"-key", esKey, "-alg", "ES256", "-jwks-listen", "localhost"}, 2, "-jwks-listen: want HOST:PORT"},
		{"http issuer off loopback", []string{"-key", esKey, "-alg", "ES256", "-issuer", "http://auth.example.com", "-jwks-listen", "127.0.0.1:0"}, 1, "-jwks-listen: tokenservice: an http issuer must be on a loopback host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runToExit(t, envWithout(keyEnv), append([]string{"-listen", "127.0.0.1:0"}, c.args...)...)
			if code != c.code || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and one line with %q", code, stdout, stderr, c.code, c.want)
			}
		})
	}
}
