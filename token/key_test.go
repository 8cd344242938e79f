package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// security.md case 25: weak or missing key configuration is a constructor
// error, never a verifier with a hole in it.
func TestKeyConstructorsRejectWeakKeys(t *testing.T) {
	hmacCases := []struct {
		alg  string
		n    int
		okay bool
	}{
		{HS256, 0, false},
		{HS256, 16, false},
		{HS256, 31, false},
		{HS256, 32, true},
		{HS384, 32, false},
		{HS384, 47, false},
		{HS384, 48, true},
		{HS512, 63, false},
		{HS512, 64, true},
	}
	for _, tc := range hmacCases {
		t.Run(tc.alg+"/"+strconv.Itoa(tc.n), func(t *testing.T) {
			k, err := NewHMACKey(testKID, tc.alg, randBytes(t, tc.n))
			if tc.okay {
				if err != nil || k == nil {
					t.Fatalf("NewHMACKey(%d bytes): %v", tc.n, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrKey) || k != nil {
				t.Fatalf("NewHMACKey(%s, %d bytes) = %v, %v; want an ErrKey error", tc.alg, tc.n, k, err)
			}
		})
	}
	if _, err := NewHMACKey(testKID, HS256, nil); !errors.Is(err, ErrKey) {
		t.Errorf("NewHMACKey(nil secret) = %v, want ErrKey", err)
	}

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{RS256, PS256} {
		if _, err := NewPrivateKey(testKID, alg, weak); !errors.Is(err, ErrKey) {
			t.Errorf("NewPrivateKey(%s, RSA-1024) = %v, want ErrKey", alg, err)
		}
		if _, err := NewPublicKey(testKID, alg, &weak.PublicKey); !errors.Is(err, ErrKey) {
			t.Errorf("NewPublicKey(%s, RSA-1024) = %v, want ErrKey", alg, err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(weak)
		if _, err := ParseKey(testKID, alg, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); !errors.Is(err, ErrKey) {
			t.Errorf("ParseKey(%s, RSA-1024 PEM) = %v, want ErrKey", alg, err)
		}
	}

	// Algorithms and key types that do not belong together.
	ec := newES(t, "x", ES256).signKey.(*ecdsa.PrivateKey)
	for name, fn := range map[string]func() (*Key, error){
		"HMAC with a non-HMAC alg": func() (*Key, error) { return NewHMACKey(testKID, ES256, randBytes(t, 64)) },
		"HMAC with alg none":       func() (*Key, error) { return NewHMACKey(testKID, "none", randBytes(t, 64)) },
		"public key for HS256":     func() (*Key, error) { return NewPublicKey(testKID, HS256, &ec.PublicKey) },
		"public key for alg none":  func() (*Key, error) { return NewPublicKey(testKID, "none", &ec.PublicKey) },
		"EC key for RS256":         func() (*Key, error) { return NewPrivateKey(testKID, RS256, ec) },
		"nil private key":          func() (*Key, error) { return NewPrivateKey(testKID, ES256, nil) },
		"nil public key":           func() (*Key, error) { return NewPublicKey(testKID, ES256, nil) },
		"kid with a space":         func() (*Key, error) { return NewHMACKey("k 1", HS256, randBytes(t, 32)) },
		"kid with a quote":         func() (*Key, error) { return NewHMACKey(`k"1`, HS256, randBytes(t, 32)) },
		"kid with NUL":             func() (*Key, error) { return NewHMACKey("k\x001", HS256, randBytes(t, 32)) },
		"kid of 257 bytes":         func() (*Key, error) { return NewHMACKey(strings.Repeat("k", 257), HS256, randBytes(t, 32)) },
		"ParseKey alg none": func() (*Key, error) {
			return ParseKey(testKID, "none", []byte(base64.StdEncoding.EncodeToString(randBytes(t, 32))))
		},
		"ParseKey lower-case hs256": func() (*Key, error) {
			return ParseKey(testKID, "hs256", []byte(base64.StdEncoding.EncodeToString(randBytes(t, 32))))
		},
		"ParseKey short HMAC base64": func() (*Key, error) {
			return ParseKey(testKID, HS256, []byte(base64.StdEncoding.EncodeToString(randBytes(t, 31))))
		},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := fn()
			if !errors.Is(err, ErrKey) || k != nil {
				t.Fatalf("got %v, %v; want an ErrKey error", k, err)
			}
		})
	}

	// No key configured anywhere: every entry point says so.
	if ks, err := NewKeySet(); !errors.Is(err, ErrKeySet) || ks != nil {
		t.Errorf("NewKeySet() = %v, %v; want ErrKeySet", ks, err)
	}
	if _, err := NewKeySet(nil); !errors.Is(err, ErrKeySet) {
		t.Errorf("NewKeySet(nil) = %v; want ErrKeySet", err)
	}
	k1 := newHMAC(t, testKID, HS256)
	if _, err := NewKeySet(k1, newHMAC(t, testKID, HS256)); !errors.Is(err, ErrKeySet) {
		t.Errorf("NewKeySet with a duplicate kid = %v; want ErrKeySet", err)
	}
	if _, err := NewKeySet(k1, newHMAC(t, "", HS256)); !errors.Is(err, ErrKeySet) {
		t.Errorf("NewKeySet of two keys, one without kid = %v; want ErrKeySet", err)
	}
	if v, err := NewVerifier(nil, testIss, testAud); err == nil || v != nil {
		t.Errorf("NewVerifier(nil, ...) = %v, %v; want an error", v, err)
	}
	ks := keySet(t, k1)
	for name, args := range map[string][2]string{"no issuer": {"", testAud}, "no audience": {testIss, ""}} {
		if _, err := NewVerifier(ks, args[0], args[1]); err == nil {
			t.Errorf("NewVerifier with %s accepted", name)
		}
	}
	if _, err := NewVerifier(ks, testIss, testAud, WithClock(nil)); err == nil {
		t.Error("NewVerifier with a nil clock accepted")
	}
	if _, err := NewVerifier(ks, testIss, testAud, WithCache(-1, 0)); err == nil {
		t.Error("NewVerifier with negative cache bounds accepted")
	}
	v := newVerifier(t, ks, nil)
	if err := v.SetKeys(nil); !errors.Is(err, ErrKeySet) {
		t.Errorf("SetKeys(nil) = %v; want ErrKeySet", err)
	}
	if v.Keys() != ks {
		t.Error("a failed SetKeys(nil) replaced the key set")
	}
	if _, err := NewSigner(nil); !errors.Is(err, ErrKey) {
		t.Errorf("NewSigner(nil) = %v; want ErrKey", err)
	}
	pub, err := newES(t, testKID, ES256).Public()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner(pub); !errors.Is(err, ErrKey) {
		t.Errorf("NewSigner(verify-only key) = %v; want ErrKey", err)
	}
	if _, err := k1.Public(); !errors.Is(err, ErrKey) {
		t.Errorf("HMAC key Public() = %v; want ErrKey", err)
	}
}

// security.md case 25: keys come from the environment only when set and
// non-empty.
func TestLoadKeyEnv(t *testing.T) {
	const name = "TOLLGATE_TEST_KEY_ENV"
	secret := base64.StdEncoding.EncodeToString(randBytes(t, 32))

	// Unset (t.Setenv then Unsetenv restores the original at the end).
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadKeyEnv(name, testKID, HS256); !errors.Is(err, ErrKey) || k != nil {
		t.Errorf("unset: %v, %v; want ErrKey", k, err)
	}
	for _, val := range []string{"", "   ", "\n"} {
		t.Setenv(name, val)
		if k, err := LoadKeyEnv(name, testKID, HS256); !errors.Is(err, ErrKey) || k != nil {
			t.Errorf("value %q: %v, %v; want ErrKey", val, k, err)
		}
	}
	t.Setenv(name, "not base64 at all!")
	if _, err := LoadKeyEnv(name, testKID, HS256); !errors.Is(err, ErrKey) {
		t.Errorf("garbage value: %v; want ErrKey", err)
	} else if strings.Contains(err.Error(), "not base64 at all") {
		t.Errorf("error text repeats the variable's value: %q", err)
	}
	t.Setenv(name, secret+"\n")
	k, err := LoadKeyEnv(name, testKID, HS256)
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	if !k.CanSign() || k.Algorithm() != HS256 || k.ID() != testKID {
		t.Fatalf("loaded key %v", k)
	}
}

// security.md case 25: a key file with secret material readable by group
// or others is refused; public keys may be world-readable.
func TestLoadKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // exact mode, whatever the umask
			t.Fatal(err)
		}
		return p
	}
	secret := []byte(base64.StdEncoding.EncodeToString(randBytes(t, 32)) + "\n")
	es := newES(t, testKID, ES256)
	privDER, err := x509.MarshalPKCS8PrivateKey(es.signKey)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(es.verifyKey)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	tests := []struct {
		name string
		alg  string
		data []byte
		mode os.FileMode
		ok   bool
	}{
		{"hmac 0644", HS256, secret, 0o644, false},
		{"hmac 0640", HS256, secret, 0o640, false},
		{"hmac 0604", HS256, secret, 0o604, false},
		{"hmac 0600", HS256, secret, 0o600, true},
		{"hmac 0400", HS256, secret, 0o400, true},
		{"private pem 0644", ES256, privPEM, 0o644, false},
		{"private pem 0600", ES256, privPEM, 0o600, true},
		{"public pem 0644", ES256, pubPEM, 0o644, true},
		{"public pem 0600", ES256, pubPEM, 0o600, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write("key"+strconv.Itoa(i), tc.data, tc.mode)
			k, err := LoadKeyFile(p, testKID, tc.alg)
			if !tc.ok {
				if !errors.Is(err, ErrKey) || k != nil {
					t.Fatalf("LoadKeyFile = %v, %v; want ErrKey", k, err)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(string(tc.data))) {
					t.Fatalf("error text contains the key material")
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKeyFile: %v", err)
			}
			if k.Algorithm() != tc.alg || k.ID() != testKID {
				t.Fatalf("loaded %v", k)
			}
		})
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing"), testKID, HS256); !errors.Is(err, ErrKey) {
		t.Errorf("missing file: %v; want ErrKey", err)
	}
	if _, err := LoadKeyFile(dir, testKID, HS256); !errors.Is(err, ErrKey) {
		t.Errorf("directory: %v; want ErrKey", err)
	}
	if _, err := LoadKeyFile(write("empty", nil, 0o600), testKID, HS256); !errors.Is(err, ErrKey) {
		t.Errorf("empty file: %v; want ErrKey", err)
	}
}

// ParseKey's text forms: base64 secrets (standard and URL-safe, padded or
// not, with white space around), PKCS#8 / PKIX / PKCS#1 / SEC 1 PEM; and
// material that does not fit the algorithm is refused.
func TestParseKey(t *testing.T) {
	secret := randBytes(t, 64)
	for !strings.ContainsAny(base64.StdEncoding.EncodeToString(secret), "+/") {
		secret = randBytes(t, 64) // want a secret whose std and url forms differ
	}
	hmacForms := map[string]string{
		"std":              base64.StdEncoding.EncodeToString(secret),
		"std newline":      base64.StdEncoding.EncodeToString(secret) + "\n",
		"std CRLF":         base64.StdEncoding.EncodeToString(secret) + "\r\n",
		"raw std":          base64.RawStdEncoding.EncodeToString(secret),
		"url":              base64.URLEncoding.EncodeToString(secret),
		"url newline":      base64.URLEncoding.EncodeToString(secret) + "\n",
		"raw url newline":  base64.RawURLEncoding.EncodeToString(secret) + "\n",
		"surrounding tabs": "\t " + base64.StdEncoding.EncodeToString(secret) + " \n",
	}
	for name, text := range hmacForms {
		t.Run("hmac/"+name, func(t *testing.T) {
			k, err := ParseKey(testKID, HS512, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			if string(k.signKey.([]byte)) != string(secret) {
				t.Fatal("decoded secret differs")
			}
		})
	}
	for name, text := range map[string]string{
		"empty":             "",
		"blank":             " \n",
		"not base64":        "this is not base64!",
		"inner space":       base64.StdEncoding.EncodeToString(secret)[:20] + " " + base64.StdEncoding.EncodeToString(secret)[20:],
		"mixed alphabets":   strings.Replace(base64.StdEncoding.EncodeToString(secret), "A", "-", 1) + "+",
		"a PEM block":       string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: secret})),
		"too short decoded": base64.StdEncoding.EncodeToString(secret[:63]),
	} {
		t.Run("hmac bad/"+name, func(t *testing.T) {
			if k, err := ParseKey(testKID, HS512, []byte(text)); !errors.Is(err, ErrKey) || k != nil {
				t.Fatalf("ParseKey = %v, %v; want ErrKey", k, err)
			}
		})
	}

	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey := testRSA(t)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	sec1, _ := x509.MarshalECPrivateKey(p256)
	tests := []struct {
		name    string
		alg     string
		text    []byte
		canSign bool
		ok      bool
	}{
		{"ES256 PKCS#8", ES256, pkcs8(p256), true, true},
		{"ES256 PKIX", ES256, pkix(&p256.PublicKey), false, true},
		{"ES256 SEC 1", ES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), true, true},
		{"ES384 PKCS#8", ES384, pkcs8(p384), true, true},
		{"ES384 PKIX", ES384, pkix(&p384.PublicKey), false, true},
		{"EdDSA PKCS#8", EdDSA, pkcs8(edPriv), true, true},
		{"EdDSA PKIX", EdDSA, pkix(edPriv.Public()), false, true},
		{"RS256 PKCS#8", RS256, pkcs8(rsaKey), true, true},
		{"PS256 PKIX", PS256, pkix(&rsaKey.PublicKey), false, true},
		{"RS256 PKCS#1", RS256, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), true, true},
		{"PEM after text", ES256, append([]byte("comment\n"), pkix(&p256.PublicKey)...), false, true},

		{"ES384 given a P-256 private key", ES384, pkcs8(p256), false, false},
		{"ES384 given a P-256 public key", ES384, pkix(&p256.PublicKey), false, false},
		{"ES256 given a P-384 key", ES256, pkcs8(p384), false, false},
		{"ES256 given an Ed25519 key", ES256, pkcs8(edPriv), false, false},
		{"ES256 given an Ed25519 public key", ES256, pkix(edPriv.Public()), false, false},
		{"EdDSA given a P-256 key", EdDSA, pkcs8(p256), false, false},
		{"RS256 given a P-256 key", RS256, pkcs8(p256), false, false},
		{"ES256 given an RSA key", ES256, pkix(&rsaKey.PublicKey), false, false},
		{"no PEM", ES256, []byte("hello"), false, false},
		{"base64 for ES256", ES256, []byte(base64.StdEncoding.EncodeToString(secret)), false, false},
		{"certificate block", ES256, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), false, false},
		{"corrupt PKCS#8", ES256, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), false, false},
		{"corrupt PKIX", ES256, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), false, false},
		{"corrupt SEC 1", ES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}}), false, false},
		{"corrupt PKCS#1", RS256, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2, 3}}), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(testKID, tc.alg, tc.text)
			if !tc.ok {
				if !errors.Is(err, ErrKey) || k != nil {
					t.Fatalf("ParseKey = %v, %v; want ErrKey", k, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if k.Algorithm() != tc.alg || k.CanSign() != tc.canSign {
				t.Fatalf("key %v: CanSign %v, want %v", k, k.CanSign(), tc.canSign)
			}
		})
	}

	// A parsed private key signs what the parsed public key verifies.
	priv, err := ParseKey(testKID, ES256, pkcs8(p256))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParseKey(testKID, ES256, pkix(&p256.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, keySet(t, pub), nil)
	mustVerify(t, v, token(t, priv, claimsAt(fixedNow)))
	if _, isSigner := pub.verifyKey.(crypto.Signer); isSigner {
		t.Error("a public key's verification material is a crypto.Signer")
	}
}

// moduleRoot walks up from the package directory to go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
}

var (
	// A secret as a []byte literal, interpreted or raw string.
	embeddedSecretRE = regexp.MustCompile(`(?i)(secret|hmac|key)\w*\s*(:=|=)\s*\[\]byte\(["` + "`]")
	// A PEM armor line, "-----BEGIN <TYPE>-----": what every embedded PEM
	// key starts with. (A bare "-----BEGIN" also occurs in code that detects
	// PEM text in order to redact it, such as cmd/tollgate's error
	// scrubbing; that is not a key.)
	pemRE = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*-----`)
)

// security.md case 25: there is no default key anywhere in the module. No
// non-test Go file holds a secret as a []byte literal or a PEM block.
func TestNoEmbeddedKeys(t *testing.T) {
	root := moduleRoot(t)

	// The detectors detect: a file with either pattern is caught.
	for _, sample := range []string{
		"package p\nvar hmacSecret = []byte(\"0123456789abcdef0123456789abcdef\")\n",
		"package p\nfunc f() { signingKey := []byte(\"x\"); _ = signingKey }\n",
		"package p\nconst k = `-----BEGIN PRIVATE KEY-----`\n",
		"package p\nconst k = \"-----BEGIN EC PRIVATE KEY-----\\nMHcCAQ\"\n",
		"package p\nvar key = []byte(`x`)\n",
	} {
		if !embeddedSecretRE.MatchString(sample) && !pemRE.MatchString(sample) {
			t.Fatalf("detector misses %q", sample)
		}
	}

	scanned := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		rel, _ := filepath.Rel(root, path)
		if loc := embeddedSecretRE.FindIndex(src); loc != nil {
			t.Errorf("%s:%d: looks like an embedded secret", rel, lineOf(src, loc[0]))
		}
		if loc := pemRE.FindIndex(src); loc != nil {
			t.Errorf("%s:%d: PEM block in a non-test Go file", rel, lineOf(src, loc[0]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 10 {
		t.Fatalf("scanned only %d files from %s: the walk is broken", scanned, root)
	}
}

func lineOf(src []byte, off int) int { return strings.Count(string(src[:off]), "\n") + 1 }
