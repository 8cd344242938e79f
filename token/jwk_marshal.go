package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

// publishedJWK is the public half of one key as a JSON Web Key (RFC 7517),
// members in the order they are written. It has no member that could hold
// private material: there is no d, p, q, dp, dq, qi or k to fill in.
type publishedJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv,omitempty"` // EC, OKP
	X   string `json:"x,omitempty"`   // EC, OKP
	Y   string `json:"y,omitempty"`   // EC
	N   string `json:"n,omitempty"`   // RSA
	E   string `json:"e,omitempty"`   // RSA
}

// MarshalJWKS returns the public half of the set's keys as a JWK Set, in the
// set's order: see [MarshalJWKS].
func (ks *KeySet) MarshalJWKS() ([]byte, error) { return MarshalJWKS(ks.keys...) }

// MarshalJWKS returns the public half of keys as a JWK Set (RFC 7517 §5),
// {"keys":[...]}, one JWK per key in the order given, compact and without a
// trailing newline: the same keys give the same bytes.
//
// Each JWK has kty, kid (omitted only for a lone key without one), use
// "sig", the one alg the key is bound to, and the public parameters alone:
// n and e for RSA (RS256, PS256); crv, x and y for EC (ES256 on P-256,
// ES384 on P-384), coordinates padded to the curve's full length as RFC 7518
// §6.2.1 requires; kty OKP, crv Ed25519 and x for EdDSA (RFC 8037). A key
// that can sign contributes its public half only: no private parameter is
// ever written.
//
// It refuses, with an error wrapping [ErrKey]: no key at all; an HMAC key
// (a shared secret has no public half and is never published: verifiers of
// HMAC tokens get the secret out of band); more than one key when one has no
// kid, or two keys with the same kid (a verifier picks the key by the
// token's kid and must find one). Errors name keys by their position, never
// by their material.
func MarshalJWKS(keys ...*Key) ([]byte, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key to publish", ErrKey)
	}
	set := struct {
		Keys []publishedJWK `json:"keys"`
	}{Keys: make([]publishedJWK, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if k == nil {
			return nil, fmt.Errorf("%w: key %d is nil", ErrKey, i)
		}
		if len(keys) > 1 && k.id == "" {
			return nil, fmt.Errorf("%w: key %d has no kid; every key of a published set of several needs one", ErrKey, i)
		}
		if seen[k.id] {
			return nil, fmt.Errorf("%w: key %d has the kid of an earlier key; kids of a published set must be unique", ErrKey, i)
		}
		seen[k.id] = true
		j, err := k.publicJWK()
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrKey, i, err)
		}
		set.Keys = append(set.Keys, j)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// A kid is printable ASCII; keep it as it is rather than as \u003c.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// publicJWK returns the public half of k. It reads verifyKey alone, the
// public key (or, for HMAC, the secret, which is refused before it is
// touched); signKey is never read.
func (k *Key) publicJWK() (publishedJWK, error) {
	j := publishedJWK{Kid: k.id, Use: "sig", Alg: k.alg}
	if isHMAC(k.alg) {
		return publishedJWK{}, fmt.Errorf("an %s key is a shared secret, which is never published", k.alg)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := k.verifyKey.(type) {
	case *rsa.PublicKey:
		j.Kty, j.N, j.E = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		// SEC 1 uncompressed point: 0x04 || X || Y, each coordinate
		// already the curve's full length.
		point, err := pub.Bytes()
		if err != nil || len(point) < 3 || len(point)%2 != 1 {
			return publishedJWK{}, fmt.Errorf("invalid EC public key")
		}
		n := (len(point) - 1) / 2
		j.Kty, j.Crv = "EC", pub.Curve.Params().Name
		j.X, j.Y = b64(point[1:1+n]), b64(point[1+n:])
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(pub)
	default:
		return publishedJWK{}, fmt.Errorf("an %s key of type %T cannot be published", k.alg, k.verifyKey)
	}
	return j, nil
}
