package token

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadKeyFileRefusesDevicesAndHugeFiles(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := LoadKeyFile("/dev/zero", "", HS256)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("/dev/zero: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("LoadKeyFile(/dev/zero) did not return: it must refuse devices, not read them")
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("A", maxKeyFileSize+10)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(big, "", HS256); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized key file: %v", err)
	}
}

func TestSignRefusesSubSecondLifetime(t *testing.T) {
	k, err := NewHMACKey("", HS256, []byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewSigner(k)
	iat := time.Unix(10, 100e6)
	_, err = s.Sign(Claims{Issuer: "i", Subject: "s", Audience: []string{"a"}, IssuedAt: iat, ExpiresAt: iat.Add(400 * time.Millisecond)})
	if !errors.Is(err, ErrClaims) {
		t.Fatalf("exp and iat in the same second must be refused (they would be written equal): %v", err)
	}
}

// Key loader errors name what is wrong and never echo what they were
// given: not the path (a key pasted where its path belongs), not the
// file's content, not the variable's value, not the algorithm. Each case
// puts real secrets and a real token where they do not belong.
func TestKeyErrorsEchoNothing(t *testing.T) {
	raw := randBytes(t, 32)
	std := base64.StdEncoding.EncodeToString(raw)
	url := base64.RawURLEncoding.EncodeToString(raw) // a valid file name: no '/'
	tok := token(t, newHMAC(t, testKID, HS256), claimsAt(fixedNow))
	es := newES(t, "", ES256)
	der, err := x509.MarshalPKCS8PrivateKey(es.signKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	spellings := append(b64Spellings(raw), tok, pemKey, strings.Split(pemKey, "\n")[1])

	dir := t.TempDir()
	// Files and a directory whose names are the secret and the token.
	secretDir := filepath.Join(dir, url)
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	readable := write(url+".key", std+"\n", 0o644)
	tokenFile := write("token-"+url, tok, 0o600)
	short := write("short-"+url, base64.StdEncoding.EncodeToString(raw[:16]), 0o600)
	pemFile := write("pem-"+url, pemKey, 0o600)
	huge := write("huge-"+url, strings.Repeat(std, 2000), 0o600)
	env := "TOLLGATE_TEST_ECHO"

	for _, tc := range []struct {
		name string
		load func() (*Key, error)
		want string // what the error must say
	}{
		{"a secret as the path", func() (*Key, error) { return LoadKeyFile(std, "", HS256) }, "cannot open the key file"},
		{"a URL-safe secret as the path", func() (*Key, error) { return LoadKeyFile(url, "", HS256) }, "no such file"},
		{"a token as the path", func() (*Key, error) { return LoadKeyFile(tok, "", HS256) }, "cannot open the key file"},
		{"a PEM key as the path", func() (*Key, error) { return LoadKeyFile(pemKey, "", ES256) }, "key file"},
		{"a directory named by the secret", func() (*Key, error) { return LoadKeyFile(secretDir, "", HS256) }, "directory"},
		{"a readable file named by the secret", func() (*Key, error) { return LoadKeyFile(readable, "", HS256) }, "chmod 600"},
		{"a file holding a token", func() (*Key, error) { return LoadKeyFile(tokenFile, "", HS256) }, "not base64"},
		{"a short secret in a file named by the secret", func() (*Key, error) { return LoadKeyFile(short, "", HS256) }, "at least 32 bytes"},
		{"a PEM key read as HMAC", func() (*Key, error) { return LoadKeyFile(pemFile, "", HS256) }, "not base64"},
		{"a secret read as ES256", func() (*Key, error) { return LoadKeyFile(readable, "", ES256) }, "PEM"},
		{"a huge file named by the secret", func() (*Key, error) { return LoadKeyFile(huge, "", HS256) }, "larger than"},
		{"a secret as the algorithm", func() (*Key, error) { return LoadKeyFile(pemFile, "", std) }, "unsupported algorithm"},
		{"a token as the algorithm", func() (*Key, error) { return ParseKey("", tok, []byte(std)) }, "unsupported algorithm"},
		{"a secret as an HMAC algorithm", func() (*Key, error) { return NewHMACKey("", std, raw) }, "not an HMAC algorithm"},
		{"a token in the variable", func() (*Key, error) { t.Setenv(env, tok); return LoadKeyEnv(env, "", HS256) }, "$" + env},
		{"a PEM key in the variable, for HMAC", func() (*Key, error) { t.Setenv(env, pemKey); return LoadKeyEnv(env, "", HS256) }, "not base64"},
		{"a secret in the variable, for ES256", func() (*Key, error) { t.Setenv(env, std); return LoadKeyEnv(env, "", ES256) }, "PEM"},
		{"a certificate-shaped block", func() (*Key, error) {
			return ParseKey("", ES256, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE " + url, Bytes: raw}))
		}, "unsupported PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tc.load()
			if err == nil || k != nil {
				t.Fatalf("= %v, %v; want an error", k, err)
			}
			if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want ErrKey saying %q", err, tc.want)
			}
			if w := leaked(err.Error(), spellings...); w != "" {
				t.Errorf("error %q holds %q of a secret or token", err, w)
			}
		})
	}
}
