package main

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/token"
)

func TestKeygenEveryAlgorithm(t *testing.T) {
	for _, alg := range token.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key")
			r := runCLI(t, "keygen", "-alg", alg, "-out", path, "-kid", "k1")
			mustSucceed(t, r)
			checkMode(t, path, 0o600)

			key, err := token.LoadKeyFile(path, "k1", alg)
			if err != nil {
				t.Fatalf("LoadKeyFile: %v", err)
			}
			if !key.CanSign() || key.Algorithm() != alg {
				t.Errorf("loaded %v, CanSign %v; want a signing %s key", key, key.CanSign(), alg)
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			if n := token.MinHMACKeyLen(alg); n > 0 {
				if want := "wrote " + alg + " key to " + path + "\n"; r.stdout != want {
					t.Errorf("stdout %q, want %q", r.stdout, want)
				}
				line, ok := strings.CutSuffix(string(text), "\n")
				secret, err := base64.StdEncoding.DecodeString(line)
				if !ok || strings.Contains(line, "\n") || err != nil || len(secret) != n {
					t.Errorf("key file %q: want standard base64 of %d bytes and one trailing newline", text, n)
				}
				if _, err := os.Lstat(path + ".pub"); !os.IsNotExist(err) {
					t.Errorf("%s.pub: %v; an HMAC key has no public file", path, err)
				}
				return
			}

			pubPath := path + ".pub"
			if want := "wrote " + alg + " key to " + path + " and its public key to " + pubPath + "\n"; r.stdout != want {
				t.Errorf("stdout %q, want %q", r.stdout, want)
			}
			checkMode(t, pubPath, 0o644)
			block, rest := pem.Decode(text)
			if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("private key file: want one PEM block PRIVATE KEY")
			}
			priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatalf("private key is not PKCS#8: %v", err)
			}
			if rk, ok := priv.(*rsa.PrivateKey); ok && rk.N.BitLen() != 2048 {
				t.Errorf("RSA key of %d bits, want 2048", rk.N.BitLen())
			}

			pubText, err := os.ReadFile(pubPath)
			if err != nil {
				t.Fatal(err)
			}
			pubBlock, _ := pem.Decode(pubText)
			if pubBlock == nil || pubBlock.Type != "PUBLIC KEY" {
				t.Fatalf("public key file: want a PEM block PUBLIC KEY")
			}
			wantDER, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pubBlock.Bytes, wantDER) {
				t.Error("the public key file does not hold the public half of the private key")
			}
			pub, err := token.LoadKeyFile(pubPath, "k1", alg)
			if err != nil {
				t.Fatalf("LoadKeyFile(public): %v", err)
			}
			if pub.CanSign() {
				t.Error("the public key file loads as a signing key")
			}
		})
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()

	t.Run("second keygen", func(t *testing.T) {
		path := filepath.Join(dir, "hs")
		mustSucceed(t, runCLI(t, "keygen", "-alg", "HS256", "-out", path))
		before, _ := os.ReadFile(path)
		mustFailUsage(t, runCLI(t, "keygen", "-alg", "HS256", "-out", path), "already exists")
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Error("the existing key changed")
		}
	})

	t.Run("existing file", func(t *testing.T) {
		path := filepath.Join(dir, "notes")
		writeTestFile(t, path, "keep me\n", 0o644)
		mustFailUsage(t, runCLI(t, "keygen", "-alg", "ES256", "-out", path), "already exists")
		checkContent(t, path, "keep me\n")
		if _, err := os.Lstat(path + ".pub"); !os.IsNotExist(err) {
			t.Errorf("%s.pub was written next to a refused key: %v", path, err)
		}
	})

	t.Run("existing public file", func(t *testing.T) {
		path := filepath.Join(dir, "ed")
		writeTestFile(t, path+".pub", "keep me\n", 0o644)
		mustFailUsage(t, runCLI(t, "keygen", "-alg", "EdDSA", "-out", path), "already exists")
		checkContent(t, path+".pub", "keep me\n")
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("%s was written although its .pub exists: %v", path, err)
		}
	})

	t.Run("dangling symlink", func(t *testing.T) {
		path := filepath.Join(dir, "link")
		target := filepath.Join(dir, "elsewhere")
		if err := os.Symlink(target, path); err != nil {
			t.Skipf("no symlinks here: %v", err)
		}
		mustFailUsage(t, runCLI(t, "keygen", "-alg", "HS256", "-out", path), "already exists")
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Errorf("keygen wrote through a symlink to %s", target)
		}
	})
}

func writeTestFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func checkContent(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s: %q, %v; want %q unchanged", path, got, err, want)
	}
}
