package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// Bounds of a JWK set document.
const (
	// maxJWKSKeys bounds the keys of one document; real sets hold a few.
	maxJWKSKeys = 256
	// maxRSABits bounds an RSA modulus, so a published key cannot make
	// each verification arbitrarily slow.
	maxRSABits = 8192
)

// ParseJWKS builds a verify-only key set from a JWK set document (RFC 7517),
// under the same rules as keys from files: each key bound to one algorithm,
// RSA of at least 2048 bits, EC curves matching their algorithm.
//
// A key meant for something else is skipped: "use" other than "sig",
// "key_ops" without "verify", an unknown "kty", an unsupported curve, an
// "alg" that tollgate does not support or the options do not allow, and a
// key without "alg" for which not exactly one allowed algorithm fits its
// kty and crv. Providers publish such keys next to their signing keys
// (encryption keys, algorithms a verifier may not want), and skipping them
// costs nothing: a skipped key verifies no token.
//
// A document that is wrong or dangerous is refused as a whole: malformed
// JSON, more than 256 keys, duplicate kids, a key without kid in a set of
// several, "alg": "none", an "oct" (HMAC) key unless [JWKSAllowHMAC], a key
// holding private material ("d", or "k" of a refused oct key), and a key of
// an allowed algorithm whose material is unusable (bad base64, RSA under 2048
// bits or with a bad exponent, an EC point not on its curve, alg and kty
// that do not match). So is a document left with no usable key: a source
// never adopts an empty set.
//
// "x5c", "x5t" and "x5t#S256" are ignored (never used to select or check a
// key). Errors name keys by index and kid and never hold key material.
//
// Of the options, only [JWKSAlgorithms] and [JWKSAllowHMAC] apply.
func ParseJWKS(data []byte, opts ...JWKSOption) (*KeySet, error) {
	o, err := newJWKSOptions(opts)
	if err != nil {
		return nil, err
	}
	ks, _, err := parseJWKS(data, &o, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: JWKS: %w", ErrKeySet, err)
	}
	return ks, nil
}

// errJWKS is why a document is refused; callers prefix [ErrKeySet] and the
// document's name.
func errJWKS(format string, args ...any) error { return fmt.Errorf(format, args...) }

// jwkName names key i of a document: its index and, when it is a valid kid,
// its kid (never anything else the document holds).
func jwkName(i int, kid string, hasKID bool) string {
	switch {
	case !hasKID:
		return fmt.Sprintf("key %d (no kid)", i)
	case checkKID(kid) != nil || kid == "":
		return fmt.Sprintf("key %d (invalid kid)", i)
	}
	return fmt.Sprintf("key %d (kid %q)", i, kid)
}

// parseJWKS parses data. prev, when not nil, is the set in use: a key equal
// to one of prev (same kid, algorithm and material) is returned as prev's
// *Key, and when every key is, prev itself is returned. skipped describes
// the keys skipped, in the words of errors.
func parseJWKS(data []byte, o *jwksOptions, prev *KeySet) (ks *KeySet, skipped []string, err error) {
	// Members are read through maps, not struct tags: encoding/json
	// matches struct fields case-insensitively, so "KID" would stand for
	// "kid".
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, errJWKS("malformed JSON%s", jsonWhere(err))
	}
	rawKeys, ok := doc["keys"]
	if !ok {
		return nil, nil, errJWKS(`no "keys" member`)
	}
	var keys []map[string]json.RawMessage
	if err := json.Unmarshal(rawKeys, &keys); err != nil {
		return nil, nil, errJWKS(`"keys" is not an array of objects`)
	}
	if len(keys) > maxJWKSKeys {
		return nil, nil, errJWKS("%d keys, more than %d", len(keys), maxJWKSKeys)
	}
	seen := make(map[string]int, len(keys))
	var out []*Key
	for i, m := range keys {
		if m == nil {
			return nil, nil, errJWKS("key %d is not an object", i)
		}
		j, err := readJWK(m)
		name := jwkName(i, j.kid, j.hasKID)
		if err != nil {
			return nil, nil, errJWKS("%s: %v", name, err)
		}
		if j.hasKID {
			if err := checkKID(j.kid); err != nil || j.kid == "" {
				return nil, nil, errJWKS("%s: kid must be 1 to %d bytes of printable ASCII without quotes, backslashes or spaces", name, maxKIDLen)
			}
			if first, dup := seen[j.kid]; dup {
				return nil, nil, errJWKS("%s: kid also used by key %d; a set with duplicate kids is refused", name, first)
			}
			seen[j.kid] = i
		} else if len(keys) > 1 {
			return nil, nil, errJWKS("%s: every key of a set of several needs a kid", name)
		}
		k, skip, err := j.key(o)
		switch {
		case err != nil:
			return nil, nil, errJWKS("%s: %v", name, err)
		case skip != "":
			skipped = append(skipped, name+": "+skip)
			continue
		}
		if prev != nil {
			if old := prev.byID[k.id]; old != nil && old.alg == k.alg && old.fingerprint == k.fingerprint {
				k = old
			}
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		if len(skipped) > 0 {
			shown := skipped
			more := ""
			if len(shown) > 5 {
				shown, more = shown[:5], fmt.Sprintf("; and %d more", len(skipped)-5)
			}
			return nil, skipped, errJWKS("no usable key (skipped: %s%s)", strings.Join(shown, "; "), more)
		}
		return nil, nil, errJWKS("no key")
	}
	if prev != nil && len(prev.keys) == len(out) {
		same := true
		for i, k := range out {
			if prev.keys[i] != k {
				same = false
				break
			}
		}
		if same {
			return prev, skipped, nil
		}
	}
	ks, err = NewKeySet(out...)
	if err != nil {
		return nil, skipped, errors.New(strings.TrimPrefix(err.Error(), ErrKeySet.Error()+": "))
	}
	return ks, skipped, nil
}

// jsonWhere says where a JSON syntax error is, never what was found there.
func jsonWhere(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf(" at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return " (not an object)"
	}
	return ""
}

// jwk is the part of a JWK that tollgate reads.
type jwk struct {
	kty, use, alg, kid, crv string
	hasKID, hasAlg, hasUse  bool
	keyOps                  []string
	hasKeyOps               bool
	n, e, x, y, k           []byte
	private                 bool // holds a private member (d, p, q, dp, dq, qi, oth)
}

// readJWK reads the members of m that tollgate uses. The error says which
// member is wrong, never its value.
func readJWK(m map[string]json.RawMessage) (jwk, error) {
	var j jwk
	str := func(name string, dst *string, has *bool) error {
		raw, ok := m[name]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return fmt.Errorf("%q is not a string", name)
		}
		if has != nil {
			*has = true
		}
		return nil
	}
	// kid first, so that later errors can name the key.
	if err := str("kid", &j.kid, &j.hasKID); err != nil {
		return j, err
	}
	if err := str("kty", &j.kty, nil); err != nil {
		return j, err
	}
	if j.kty == "" {
		return j, errors.New(`no "kty"`)
	}
	if err := str("use", &j.use, &j.hasUse); err != nil {
		return j, err
	}
	if err := str("alg", &j.alg, &j.hasAlg); err != nil {
		return j, err
	}
	if err := str("crv", &j.crv, nil); err != nil {
		return j, err
	}
	if raw, ok := m["key_ops"]; ok {
		if err := json.Unmarshal(raw, &j.keyOps); err != nil || j.keyOps == nil {
			return j, errors.New(`"key_ops" is not an array of strings`)
		}
		j.hasKeyOps = true
	}
	for _, p := range []string{"d", "p", "q", "dp", "dq", "qi", "oth"} {
		if _, ok := m[p]; ok {
			j.private = true
		}
	}
	b64 := func(name string, dst *[]byte) error {
		raw, ok := m[name]
		if !ok {
			return nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%q is not a string", name)
		}
		b, err := decodeB64URL(s)
		if err != nil {
			return fmt.Errorf("%q is not base64url", name)
		}
		*dst = b
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"n", &j.n}, {"e", &j.e}, {"x", &j.x}, {"y", &j.y}, {"k", &j.k}} {
		if err := b64(f.name, f.dst); err != nil {
			return j, err
		}
	}
	return j, nil
}

// decodeB64URL decodes base64url, unpadded as RFC 7515 says or padded as
// some publishers write it.
func decodeB64URL(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.URLEncoding.Strict().DecodeString(s)
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// algFamily is the kty an algorithm's keys have: "RSA", "EC", "OKP", "oct";
// "" for an algorithm tollgate does not support.
func algFamily(alg string) string {
	switch alg {
	case RS256, PS256, "RS384", "RS512", "PS384", "PS512":
		return "RSA"
	case ES256, ES384, "ES512", "ES256K":
		return "EC"
	case EdDSA, "Ed25519", "Ed448":
		return "OKP"
	case HS256, HS384, HS512:
		return "oct"
	}
	return ""
}

// fits reports the algorithms tollgate supports that a key of j's kty and
// crv can be bound to.
func (j *jwk) fits() []string {
	switch j.kty {
	case "RSA":
		return []string{RS256, PS256}
	case "EC":
		switch j.crv {
		case "P-256":
			return []string{ES256}
		case "P-384":
			return []string{ES384}
		}
	case "OKP":
		if j.crv == "Ed25519" {
			return []string{EdDSA}
		}
	case "oct":
		return []string{HS256, HS384, HS512}
	}
	return nil
}

// key builds the key j describes. It returns a reason to skip j, or an
// error that refuses the whole document.
func (j *jwk) key(o *jwksOptions) (k *Key, skip string, err error) {
	if j.hasAlg && strings.EqualFold(j.alg, "none") {
		return nil, "", errors.New(`"alg" is "none"`)
	}
	switch j.kty {
	case "RSA", "EC", "OKP":
	case "oct":
		if !o.allowHMAC {
			return nil, "", errors.New(`an "oct" (shared secret) key in a published key set; refused unless HMAC keys are explicitly allowed`)
		}
	default:
		return nil, "unknown kty", nil
	}
	if j.private && j.kty != "oct" {
		return nil, "", errors.New("holds private key material; a published key set must hold public keys only")
	}
	if j.hasUse && j.use != "sig" {
		return nil, `"use" is not "sig"`, nil
	}
	if j.hasKeyOps && !slices.Contains(j.keyOps, "verify") {
		return nil, `"key_ops" lacks "verify"`, nil
	}
	alg := j.alg
	if j.hasAlg {
		fam := algFamily(alg)
		if fam == "" {
			return nil, "unsupported alg", nil
		}
		if fam != j.kty {
			return nil, "", fmt.Errorf("alg %s does not fit kty %s", alg, j.kty)
		}
		if !slices.Contains(Algorithms(), alg) {
			return nil, "unsupported alg", nil
		}
		if !slices.Contains(o.algs, alg) {
			return nil, fmt.Sprintf("alg %s not allowed", alg), nil
		}
	} else {
		var fit []string
		for _, a := range j.fits() {
			if slices.Contains(o.algs, a) {
				fit = append(fit, a)
			}
		}
		switch len(fit) {
		case 0:
			if j.fits() == nil {
				return nil, "unsupported curve", nil
			}
			return nil, "no alg, and no allowed algorithm fits its kty", nil
		case 1:
			alg = fit[0]
		default:
			return nil, fmt.Sprintf("no alg, and several allowed algorithms fit (%s): allow only one, or publish alg", strings.Join(fit, ", ")), nil
		}
	}
	var pub crypto.PublicKey
	switch j.kty {
	case "RSA":
		pub, err = j.rsa()
	case "EC":
		// Assigned through p: a nil *ecdsa.PublicKey in pub would not be
		// a nil interface.
		p, ecErr := j.ec(alg)
		if ecErr != nil {
			return nil, "", ecErr
		}
		pub = p
	case "OKP":
		if j.crv != "Ed25519" {
			return nil, "unsupported curve", nil
		}
		if len(j.x) != ed25519.PublicKeySize {
			return nil, "", fmt.Errorf(`Ed25519 "x" must be %d bytes`, ed25519.PublicKeySize)
		}
		pub = ed25519.PublicKey(j.x)
	case "oct":
		k, err = NewHMACKey(j.kid, alg, j.k)
		if err != nil {
			return nil, "", bareKeyErr(err)
		}
		// A key from a key set verifies only: tollgate never signs with
		// a secret it fetched.
		c := *k
		c.signKey = nil
		return &c, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	k, err = NewPublicKey(j.kid, alg, pub)
	if err != nil {
		return nil, "", bareKeyErr(err)
	}
	return k, "", nil
}

// bareKeyErr drops the "token: unusable key: " prefix of a constructor's
// error, which the document's error already says in its own words.
func bareKeyErr(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), ErrKey.Error()+": "))
}

func (j *jwk) rsa() (*rsa.PublicKey, error) {
	if len(j.n) == 0 || len(j.e) == 0 {
		return nil, errors.New(`RSA key needs "n" and "e"`)
	}
	n := new(big.Int).SetBytes(j.n)
	if bits := n.BitLen(); bits > maxRSABits {
		return nil, fmt.Errorf("RSA key of %d bits, more than %d", bits, maxRSABits)
	}
	if n.Bit(0) == 0 {
		return nil, errors.New("RSA modulus is even")
	}
	e := new(big.Int).SetBytes(j.e)
	if e.BitLen() > 31 || e.Int64() < 3 || e.Bit(0) == 0 {
		return nil, errors.New("RSA exponent must be odd, at least 3 and below 2^31")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// ec returns the public key of an EC JWK for alg (ES256 or ES384): the
// JWK's curve must be the one alg names.
func (j *jwk) ec(alg string) (*ecdsa.PublicKey, error) {
	curve, want := elliptic.P256(), "P-256"
	if alg == ES384 {
		curve, want = elliptic.P384(), "P-384"
	}
	if j.crv != want {
		return nil, fmt.Errorf("%s needs curve %s", alg, want)
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(j.x) != size || len(j.y) != size {
		return nil, fmt.Errorf(`%s "x" and "y" must be %d bytes each`, j.crv, size)
	}
	pt := make([]byte, 0, 1+2*size)
	pt = append(append(append(pt, 4), j.x...), j.y...)
	p, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
	if err != nil {
		return nil, fmt.Errorf("point not on curve %s", j.crv)
	}
	return p, nil
}
