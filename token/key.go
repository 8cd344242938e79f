package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms tollgate signs and verifies with. Each [Key] is bound to exactly
// one of them.
const (
	HS256 = "HS256"
	HS384 = "HS384"
	HS512 = "HS512"
	ES256 = "ES256"
	ES384 = "ES384"
	EdDSA = "EdDSA"
	RS256 = "RS256"
	PS256 = "PS256"
)

// Algorithms lists the supported algorithms.
func Algorithms() []string {
	return []string{HS256, HS384, HS512, ES256, ES384, EdDSA, RS256, PS256}
}

// Minimum key sizes (RFC 7518 §3.2 for HMAC: a key at least as long as the
// hash output; NIST SP 800-131A for RSA).
const (
	minRSABits = 2048
	maxKIDLen  = 256
)

// ErrKey reports a key that cannot be used: unknown algorithm, material of
// the wrong type or too weak, unreadable file. Constructors wrap it.
var ErrKey = errors.New("token: unusable key")

// Key is one key of a [KeySet]: an ID, exactly one algorithm, the material to
// verify with and, for keys that can sign, the material to sign with. A Key is
// immutable.
type Key struct {
	id          string
	alg         string
	method      jwt.SigningMethod
	verifyKey   any
	signKey     any // nil for verify-only keys
	fingerprint [32]byte
	verify      uint8      // how verifySignature checks a signature
	macs        *sync.Pool // HMAC keys: hashers keyed with the secret
}

// ID returns the key's kid.
func (k *Key) ID() string { return k.id }

// Algorithm returns the one algorithm the key is bound to.
func (k *Key) Algorithm() string { return k.alg }

// CanSign reports whether the key holds private (or, for HMAC, secret)
// material.
func (k *Key) CanSign() bool { return k.signKey != nil }

// Public returns a verify-only copy of the key: for asymmetric keys, the
// public half; HMAC keys have no public half and Public returns an error.
func (k *Key) Public() (*Key, error) {
	if isHMAC(k.alg) {
		return nil, fmt.Errorf("%w: an %s key has no public half", ErrKey, k.alg)
	}
	c := *k
	c.signKey = nil
	return &c, nil
}

// String names the key without its material.
func (k *Key) String() string { return "key{kid=" + k.id + " alg=" + k.alg + "}" }

func isHMAC(alg string) bool { return alg == HS256 || alg == HS384 || alg == HS512 }

func signingMethod(alg string) (jwt.SigningMethod, error) {
	switch alg {
	case HS256:
		return jwt.SigningMethodHS256, nil
	case HS384:
		return jwt.SigningMethodHS384, nil
	case HS512:
		return jwt.SigningMethodHS512, nil
	case ES256:
		return jwt.SigningMethodES256, nil
	case ES384:
		return jwt.SigningMethodES384, nil
	case EdDSA:
		return jwt.SigningMethodEdDSA, nil
	case RS256:
		return jwt.SigningMethodRS256, nil
	case PS256:
		return jwt.SigningMethodPS256, nil
	}
	// The value is not quoted: whatever was passed as the algorithm may be
	// a key or a token pasted in the wrong place.
	return nil, fmt.Errorf("%w: unsupported algorithm (supported: %s)", ErrKey, strings.Join(Algorithms(), ", "))
}

// MinHMACKeyLen returns the shortest secret accepted for an HMAC algorithm:
// 32, 48 and 64 bytes for HS256, HS384 and HS512; 0 for other algorithms.
func MinHMACKeyLen(alg string) int {
	switch alg {
	case HS256:
		return 32
	case HS384:
		return 48
	case HS512:
		return 64
	}
	return 0
}

// CheckKID reports whether kid can name a key: at most 256 bytes of
// printable ASCII without spaces, quotes or backslashes. Empty is allowed (a
// set of one key).
func CheckKID(kid string) error { return checkKID(kid) }

func checkKID(kid string) error {
	if len(kid) > maxKIDLen {
		return fmt.Errorf("%w: kid longer than %d bytes", ErrKey, maxKIDLen)
	}
	for i := 0; i < len(kid); i++ {
		if c := kid[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("%w: kid must be printable ASCII without quotes, backslashes or spaces", ErrKey)
		}
	}
	return nil
}

// NewHMACKey returns a key that signs and verifies with a shared secret. The
// secret must be at least [MinHMACKeyLen] bytes; it is copied.
func NewHMACKey(kid, alg string, secret []byte) (*Key, error) {
	if !isHMAC(alg) {
		return nil, fmt.Errorf("%w: not an HMAC algorithm (want HS256, HS384 or HS512)", ErrKey)
	}
	if err := checkKID(kid); err != nil {
		return nil, err
	}
	if n := MinHMACKeyLen(alg); len(secret) < n {
		return nil, fmt.Errorf("%w: %s needs a secret of at least %d bytes, got %d", ErrKey, alg, n, len(secret))
	}
	m, _ := signingMethod(alg)
	s := append([]byte(nil), secret...)
	k := &Key{id: kid, alg: alg, method: m, verifyKey: s, signKey: s, verify: verifyHMAC, macs: newMACPool(alg, s)}
	k.fingerprint = sha256.Sum256(append([]byte(alg+"\x00"), s...))
	return k, nil
}

// NewPublicKey returns a verify-only key for an asymmetric algorithm: an
// *ecdsa.PublicKey on the curve the algorithm names (P-256 for ES256, P-384
// for ES384), an ed25519.PublicKey for EdDSA, an *rsa.PublicKey of at least
// 2048 bits for RS256 and PS256.
func NewPublicKey(kid, alg string, pub crypto.PublicKey) (*Key, error) {
	return newAsymmetricKey(kid, alg, pub, nil)
}

// NewPrivateKey returns a key that signs with priv and verifies with its
// public half. The same type and size rules as [NewPublicKey] apply.
func NewPrivateKey(kid, alg string, priv crypto.Signer) (*Key, error) {
	if priv == nil {
		return nil, fmt.Errorf("%w: no private key", ErrKey)
	}
	return newAsymmetricKey(kid, alg, priv.Public(), priv)
}

func newAsymmetricKey(kid, alg string, pub crypto.PublicKey, priv crypto.Signer) (*Key, error) {
	if isHMAC(alg) {
		return nil, fmt.Errorf("%w: %s takes a secret, not a public key", ErrKey, alg)
	}
	m, err := signingMethod(alg)
	if err != nil {
		return nil, err
	}
	if err := checkKID(kid); err != nil {
		return nil, err
	}
	var verify, sign any
	switch alg {
	case ES256, ES384:
		p, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: %s needs an ECDSA key, got %T", ErrKey, alg, pub)
		}
		want := elliptic.P256()
		if alg == ES384 {
			want = elliptic.P384()
		}
		if p.Curve != want {
			return nil, fmt.Errorf("%w: %s needs curve %s", ErrKey, alg, want.Params().Name)
		}
		verify = p
		if priv != nil {
			sp, ok := priv.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%w: %s needs an *ecdsa.PrivateKey to sign, got %T", ErrKey, alg, priv)
			}
			sign = sp
		}
	case EdDSA:
		p, ok := pub.(ed25519.PublicKey)
		if !ok || len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: EdDSA needs an Ed25519 key, got %T", ErrKey, pub)
		}
		verify = p
		if priv != nil {
			switch sp := priv.(type) {
			case ed25519.PrivateKey:
				sign = sp
			case *ed25519.PrivateKey:
				sign = *sp
			default:
				return nil, fmt.Errorf("%w: EdDSA needs an ed25519.PrivateKey to sign, got %T", ErrKey, priv)
			}
		}
	case RS256, PS256:
		p, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: %s needs an RSA key, got %T", ErrKey, alg, pub)
		}
		if p.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: %s needs an RSA key of at least %d bits, got %d", ErrKey, alg, minRSABits, p.N.BitLen())
		}
		verify = p
		if priv != nil {
			sp, ok := priv.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%w: %s needs an *rsa.PrivateKey to sign, got %T", ErrKey, alg, priv)
			}
			sign = sp
		}
	}
	der, err := x509.MarshalPKIXPublicKey(verify)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	k := &Key{id: kid, alg: alg, method: m, verifyKey: verify, signKey: sign}
	switch alg {
	case EdDSA:
		k.verify = verifyEd25519
	case ES256, ES384:
		k.verify = verifyECDSA
	}
	k.fingerprint = sha256.Sum256(append([]byte(alg+"\x00"), der...))
	return k, nil
}

// ParseKey builds a key from its text form: for HMAC algorithms, the secret
// in standard or URL-safe base64 (surrounding white space ignored); for the
// others, a PEM block holding a PKCS#8 private key, a PKIX public key, or
// the PKCS#1 / SEC 1 private key forms. Its errors say what is wrong in
// fixed words: they never quote text, nor alg (which, coming from a flag,
// may be a key pasted in the wrong place).
func ParseKey(kid, alg string, text []byte) (*Key, error) {
	if _, err := signingMethod(alg); err != nil {
		return nil, err
	}
	if isHMAC(alg) {
		secret, err := decodeSecret(strings.TrimSpace(string(text)))
		if err != nil {
			return nil, err
		}
		return NewHMACKey(kid, alg, secret)
	}
	block, _ := pem.Decode(text)
	if block == nil {
		return nil, fmt.Errorf("%w: %s needs a PEM key, found no PEM block", ErrKey, alg)
	}
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: bad PKIX public key", ErrKey)
		}
		return NewPublicKey(kid, alg, pub)
	case "PRIVATE KEY":
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: bad PKCS#8 private key", ErrKey)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: PKCS#8 key of type %T cannot sign", ErrKey, priv)
		}
		return NewPrivateKey(kid, alg, signer)
	case "RSA PRIVATE KEY":
		priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: bad PKCS#1 private key", ErrKey)
		}
		return NewPrivateKey(kid, alg, priv)
	case "EC PRIVATE KEY":
		priv, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: bad SEC 1 private key", ErrKey)
		}
		return NewPrivateKey(kid, alg, priv)
	}
	return nil, fmt.Errorf("%w: unsupported PEM block (want PUBLIC KEY, PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", ErrKey)
}

func decodeSecret(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty secret", ErrKey)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: secret is not base64", ErrKey)
}

// maxKeyFileSize bounds what LoadKeyFile reads: the largest PEM key tollgate
// accepts (RSA 4096 PKCS#8) is about 3.3 KiB.
const maxKeyFileSize = 64 << 10

// LoadKeyFile reads a key from a file, in the text form [ParseKey] takes.
// Files holding secret or private material must not be readable by group or
// others (chmod 600): such a file is an error, not a warning, because a key
// that others could read must be assumed known. The file is opened once and
// checked through that handle (no race between check and read); devices are
// refused and at most 64 KiB is read, so a wrong path such as /dev/zero fails
// at once. Pipes are accepted (-key <(pass show key)).
//
// Errors say what is wrong with "the key file" and never contain path, nor
// anything read from the file: the likeliest thing to find in place of a key
// file's path is the key itself, pasted by mistake, and errors end up in
// logs. The caller knows where path came from and names that (the flag, the
// setting) when it reports the error.
func LoadKeyFile(path, kid, alg string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open the key file: %v", ErrKey, pathless(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read the key file: %v", ErrKey, pathless(err))
	}
	switch mode := info.Mode(); {
	case mode.IsDir():
		return nil, fmt.Errorf("%w: the key file is a directory", ErrKey)
	case mode&(os.ModeDevice|os.ModeCharDevice|os.ModeSocket) != 0:
		return nil, fmt.Errorf("%w: the key file is not a regular file", ErrKey)
	}
	text, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read the key file: %v", ErrKey, pathless(err))
	}
	if len(text) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: the key file is larger than %d bytes", ErrKey, maxKeyFileSize)
	}
	k, err := ParseKey(kid, alg, text)
	if err != nil {
		return nil, err
	}
	if k.CanSign() && info.Mode().IsRegular() && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: the key file holds secret material and is readable by group or others (mode %04o); chmod 600 it", ErrKey, info.Mode().Perm())
	}
	return k, nil
}

// pathless returns the cause of an os error without the path it names
// ("no such file or directory", "permission denied").
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// LoadKeyEnv reads a key from the environment variable name, in the text
// form [ParseKey] takes. An unset or empty variable is an error. Errors name
// the variable and never contain its value.
func LoadKeyEnv(name, kid, alg string) (*Key, error) {
	v, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("%w: environment variable %s is unset or empty", ErrKey, name)
	}
	k, err := ParseKey(kid, alg, []byte(v))
	if err != nil {
		return nil, fmt.Errorf("$%s: %w", name, err)
	}
	return k, nil
}
