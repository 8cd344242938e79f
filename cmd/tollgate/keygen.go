package main

import (
	"context"
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
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/token"
)

// rsaBits is the size of generated RSA keys: the minimum session accepts,
// and the common choice for RS256 and PS256.
const rsaBits = 2048

// keyFile is one file keygen writes.
type keyFile struct {
	path string
	flag string // how errors name the file: "-out" or "-out.pub"
	text []byte
	mode os.FileMode
}

// keygen implements "tollgate keygen -alg ALG -out PATH [-kid KID]".
func keygen(e *env, args []string) int {
	fs := newFlagSet("keygen")
	alg := fs.String("alg", "", "algorithm the key is for")
	out := fs.String("out", "", "path of the key file")
	kid := fs.String("kid", "", "key ID, checked for validity only")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return e.fail(exitUsage, "keygen: unexpected argument after the flags")
	}
	if m := missing(fs, "alg", "out"); m != "" {
		return e.fail(exitUsage, "keygen: missing required flags: %s", m)
	}
	if err := checkAlg(*alg); err != nil {
		return e.fail(exitUsage, "keygen: %v", err)
	}
	if err := token.CheckKID(*kid); err != nil {
		return e.fail(exitUsage, "keygen: invalid -kid: %v", err)
	}
	// keygen prints the path it wrote to, and a key or a token given as
	// -out would name a file for anyone listing the directory: refuse a
	// file name that Redact would cut. (A key with a "/" names a directory
	// that does not exist, and fails below without being echoed.)
	if looksSecretPath(*out) {
		return e.fail(exitUsage, "keygen: -out looks like key material or a token, not a path (a long file name without a dot can look like base64: give it an extension such as .key)")
	}

	hmac := token.MinHMACKeyLen(*alg) > 0
	files := []keyFile{{path: *out, flag: "-out", mode: 0o600}}
	if !hmac {
		files = append(files, keyFile{path: *out + ".pub", flag: "-out.pub", mode: 0o644})
	}
	// Checked before generating (an RSA key takes a while); writeNew checks
	// again, atomically.
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return e.fail(exitUsage, "keygen: %s already exists; refusing to overwrite it", f.flag)
		}
	}

	priv, pub, err := generate(*alg)
	if err != nil {
		return e.fail(exitFail, "keygen: %v", err)
	}
	files[0].text = priv
	if !hmac {
		files[1].text = pub
	}
	if err := writeNew(files); err != nil {
		return e.fail(exitUsage, "keygen: %v", err)
	}
	if err := loadBack(*alg, *kid, files, e.now); err != nil {
		for _, f := range files {
			os.Remove(f.path)
		}
		return e.fail(exitFail, "keygen: the new key does not load back, removed it: %v", err)
	}

	if hmac {
		fmt.Fprintf(e.stdout, "wrote %s key to %s\n", *alg, files[0].path)
	} else {
		fmt.Fprintf(e.stdout, "wrote %s key to %s and its public key to %s\n", *alg, files[0].path, files[1].path)
	}
	return exitOK
}

// generate returns a new key for alg in the text forms token.ParseKey
// reads: for HMAC, the secret in base64 and no public part; otherwise the
// PKCS#8 private key and the PKIX public key, PEM-encoded.
func generate(alg string) (priv, pub []byte, err error) {
	if n := token.MinHMACKeyLen(alg); n > 0 {
		secret := make([]byte, n)
		defer clear(secret)
		if _, err := rand.Read(secret); err != nil {
			return nil, nil, err
		}
		return []byte(base64.StdEncoding.EncodeToString(secret) + "\n"), nil, nil
	}
	var signer crypto.Signer
	switch alg {
	case token.ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.ES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case token.EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case token.RS256, token.PS256:
		signer, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		err = fmt.Errorf("no generator for %s", alg)
	}
	if err != nil {
		return nil, nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// writeNew creates every file, never replacing an existing one (O_EXCL, so
// a file created meanwhile or a dangling symlink is refused too). On any
// error it removes the files it created.
func writeNew(files []keyFile) error {
	for i, f := range files {
		if err := writeFile(f); err != nil {
			for _, w := range files[:i] {
				os.Remove(w.path)
			}
			return err
		}
	}
	return nil
}

// writeFile creates f. Its errors name the file by its flag, not its path
// (see pathless).
func writeFile(f keyFile) (err error) {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; refusing to overwrite it", f.flag)
	}
	if err != nil {
		return fmt.Errorf("%s: cannot create the file: %w", f.flag, pathless(err))
	}
	defer func() {
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.path)
		}
	}()
	// The umask may have taken bits off the mode: set it exactly.
	if err := fh.Chmod(f.mode); err != nil {
		return fmt.Errorf("%s: %w", f.flag, pathless(err))
	}
	if _, err := fh.Write(f.text); err != nil {
		return fmt.Errorf("%s: %w", f.flag, pathless(err))
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("%s: %w", f.flag, pathless(err))
	}
	return nil
}

// loadBack loads the written files the way services will (token.LoadKeyFile,
// which also checks the private file's mode) and signs a probe token with the
// private key that must verify with the public one.
func loadBack(alg, kid string, files []keyFile, now func() time.Time) error {
	key, err := token.LoadKeyFile(files[0].path, kid, alg)
	if err != nil {
		return err
	}
	verifyKey := key
	if len(files) > 1 {
		if verifyKey, err = token.LoadKeyFile(files[1].path, kid, alg); err != nil {
			return err
		}
		if verifyKey.CanSign() {
			return errors.New("the public key file holds private material")
		}
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		return err
	}
	const probe = "tollgate keygen"
	t := now()
	tok, err := signer.Sign(token.Claims{Issuer: probe, Subject: probe, Audience: []string{probe},
		IssuedAt: t, ExpiresAt: t.Add(time.Minute)})
	if err != nil {
		return err
	}
	ks, err := token.NewKeySet(verifyKey)
	if err != nil {
		return err
	}
	v, err := token.NewVerifier(ks, probe, probe, token.WithClock(now), token.WithCache(0, 0))
	if err != nil {
		return err
	}
	_, err = v.Verify(context.Background(), tok)
	return err
}

// looksSecretPath reports whether path's file name is what token.Redact
// would cut: a key or a token pasted in place of a path. The name is
// checked with its slash as well: a standard base64 secret may start with
// "/" (pasted alone, or after a directory), and the name after it, shifted
// by one character, no longer decodes. (Not the whole path: a long dotless
// directory name, such as a test's temporary directory, can look like
// base64.)
func looksSecretPath(path string) bool {
	base := filepath.Base(path)
	slashed := "/" + base
	return token.Redact(base) != base || token.Redact(slashed) != slashed
}

// pathless returns the cause of an os error without the path it names.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
