package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Helpers of the JWK tests; named jwks* so they clash with no other test.

func jwksB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwksJWK returns the public JWK of pub, with the members of extra on top
// (a nil value deletes a member).
func jwksJWK(t testing.TB, kid string, pub crypto.PublicKey, extra map[string]any) map[string]any {
	t.Helper()
	m := map[string]any{}
	if kid != "" {
		m["kid"] = kid
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", jwksB64(p.N.Bytes()), jwksB64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		b, err := p.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (len(b) - 1) / 2
		m["kty"], m["crv"] = "EC", p.Curve.Params().Name
		m["x"], m["y"] = jwksB64(b[1:1+size]), jwksB64(b[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", jwksB64(p)
	default:
		t.Fatalf("no JWK for %T", pub)
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func jwksDoc(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	jwksKeysOnce sync.Once
	jwksRSA2     *rsa.PrivateKey // a second RSA key, for rotations
	jwksRSA1024  *rsa.PrivateKey
	jwksKeysErr  error
)

func jwksTestKeys(t testing.TB) (rsa2, rsa1024 *rsa.PrivateKey) {
	t.Helper()
	jwksKeysOnce.Do(func() {
		if jwksRSA2, jwksKeysErr = rsa.GenerateKey(rand.Reader, 2048); jwksKeysErr != nil {
			return
		}
		// A weak key is what the test is about; Go refuses to make one
		// below 1024 bits, which is enough to be refused here.
		jwksRSA1024, jwksKeysErr = rsa.GenerateKey(rand.Reader, 1024)
	})
	if jwksKeysErr != nil {
		t.Fatal(jwksKeysErr)
	}
	return jwksRSA2, jwksRSA1024
}

func jwksEC(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func jwksEd(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksWant checks that ks holds kid bound to alg with the material of pub.
func jwksWant(t testing.TB, ks *KeySet, kid, alg string, pub crypto.PublicKey) {
	t.Helper()
	want, err := NewPublicKey(kid, alg, pub)
	if err != nil {
		t.Fatal(err)
	}
	got := ks.lookup([]byte(kid))
	switch {
	case got == nil:
		t.Fatalf("kid %q missing from the set", kid)
	case got.Algorithm() != alg:
		t.Fatalf("kid %q bound to %s, want %s", kid, got.Algorithm(), alg)
	case got.fingerprint != want.fingerprint:
		t.Fatalf("kid %q: material differs from the published key", kid)
	case got.CanSign():
		t.Fatalf("kid %q can sign: a fetched key must verify only", kid)
	}
}

func TestParseJWKSGood(t *testing.T) {
	rsaPub := &testRSA(t).PublicKey
	p256, p384, ed := jwksEC(t, elliptic.P256()), jwksEC(t, elliptic.P384()), jwksEd(t)
	doc := jwksDoc(t,
		jwksJWK(t, "rsa", rsaPub, map[string]any{"alg": "RS256", "use": "sig", "x5c": []string{"not-a-certificate"}, "x5t": "garbage"}),
		jwksJWK(t, "pss", rsaPub, map[string]any{"alg": "PS256", "key_ops": []string{"verify"}}),
		jwksJWK(t, "p256", &p256.PublicKey, nil), // no alg: ES256 is the one fit
		jwksJWK(t, "p384", &p384.PublicKey, map[string]any{"alg": "ES384"}),
		jwksJWK(t, "ed", ed.Public(), nil),
	)
	ks, err := ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Keys()) != 5 {
		t.Fatalf("%d keys, want 5", len(ks.Keys()))
	}
	jwksWant(t, ks, "rsa", RS256, rsaPub)
	jwksWant(t, ks, "pss", PS256, rsaPub)
	jwksWant(t, ks, "p256", ES256, &p256.PublicKey)
	jwksWant(t, ks, "p384", ES384, &p384.PublicKey)
	jwksWant(t, ks, "ed", EdDSA, ed.Public())
	if _, ok := ks.SigningKey(); ok {
		t.Fatal("a fetched set has a signing key")
	}
}

// Entra ID publishes RSA keys without alg: an issuer configured with RS256
// takes them as RS256; with both RSA algorithms allowed the key is skipped,
// never guessed.
func TestParseJWKSInferRSA(t *testing.T) {
	rsaPub := &testRSA(t).PublicKey
	doc := jwksDoc(t, jwksJWK(t, "entra", rsaPub, map[string]any{"use": "sig", "x5t": "abc", "issuer": "https://login.example/tenant/v2.0"}))
	ks, err := ParseJWKS(doc, JWKSAlgorithms(RS256))
	if err != nil {
		t.Fatal(err)
	}
	jwksWant(t, ks, "entra", RS256, rsaPub)
	ks, err = ParseJWKS(doc, JWKSAlgorithms(PS256, ES256))
	if err != nil {
		t.Fatal(err)
	}
	jwksWant(t, ks, "entra", PS256, rsaPub)
	_, err = ParseJWKS(doc)
	if err == nil || !strings.Contains(err.Error(), "several allowed algorithms fit (RS256, PS256)") {
		t.Fatalf("default algorithms and an RSA key without alg: %v", err)
	}
	_, err = ParseJWKS(doc, JWKSAlgorithms(ES256))
	if err == nil || !strings.Contains(err.Error(), "no allowed algorithm fits") {
		t.Fatalf("an RSA key without alg, only ES256 allowed: %v", err)
	}
}

// Keys meant for something else are skipped; the set keeps the others.
func TestParseJWKSSkips(t *testing.T) {
	good := jwksJWK(t, "good", &testRSA(t).PublicKey, map[string]any{"alg": "RS256"})
	p521 := jwksEC(t, elliptic.P521())
	rsaPub := &testRSA(t).PublicKey
	for _, tc := range []struct {
		name string
		key  map[string]any
		why  string
	}{
		{"use enc", jwksJWK(t, "enc", rsaPub, map[string]any{"alg": "RSA-OAEP", "use": "enc"}), `"use" is not "sig"`},
		{"use enc no alg", jwksJWK(t, "enc", rsaPub, map[string]any{"use": "enc"}), `"use" is not "sig"`},
		{"unknown kty", map[string]any{"kty": "PQC", "kid": "pq", "pub": "AAAA"}, "unknown kty"},
		{"key_ops without verify", jwksJWK(t, "ops", rsaPub, map[string]any{"alg": "RS256", "key_ops": []string{"encrypt"}}), `"key_ops" lacks "verify"`},
		{"unsupported alg", jwksJWK(t, "rs512", rsaPub, map[string]any{"alg": "RS512"}), "unsupported alg"},
		{"alg not allowed", jwksJWK(t, "ps", rsaPub, map[string]any{"alg": "PS256"}), "alg PS256 not allowed"},
		{"P-521", jwksJWK(t, "p521", &p521.PublicKey, nil), "unsupported curve"},
		{"X25519", map[string]any{"kty": "OKP", "kid": "x", "crv": "X25519", "x": jwksB64(make([]byte, 32))}, "unsupported curve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := newJWKSOptions([]JWKSOption{JWKSAlgorithms(RS256, ES256, EdDSA)})
			if err != nil {
				t.Fatal(err)
			}
			ks, skipped, err := parseJWKS(jwksDoc(t, good, tc.key), &o, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ks.Keys()) != 1 || ks.lookup([]byte("good")) == nil {
				t.Fatalf("set %v, want the good key alone", ks.Keys())
			}
			if len(skipped) != 1 || !strings.HasSuffix(skipped[0], tc.why) {
				t.Fatalf("skipped %q, want one ending %q", skipped, tc.why)
			}
			// Alone, the key leaves no usable key: refused, saying why.
			_, err = ParseJWKS(jwksDoc(t, tc.key), JWKSAlgorithms(RS256, ES256, EdDSA))
			if !errors.Is(err, ErrKeySet) || !strings.Contains(err.Error(), "no usable key") || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("alone: %v", err)
			}
		})
	}
}

// jwksRefusals are documents refused as a whole, the words their error
// says, and the key material it must not quote.
func jwksRefusals(t testing.TB) []struct {
	name   string
	doc    []byte
	why    string
	secret string
} {
	rsaPub := &testRSA(t).PublicKey
	_, weak := jwksTestKeys(t)
	good := jwksJWK(t, "good", rsaPub, map[string]any{"alg": "RS256"})
	secret := jwksB64(randBytes(t, 32))
	weakJWK := jwksJWK(t, "weak", &weak.PublicKey, map[string]any{"alg": "RS256"})
	p256 := jwksEC(t, elliptic.P256())
	offCurve := jwksJWK(t, "off", &p256.PublicKey, nil)
	y := []byte(offCurve["y"].(string))
	if y[3] == 'A' {
		y[3] = 'B'
	} else {
		y[3] = 'A'
	}
	offCurve["y"] = string(y)
	d, err := p256.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	priv := jwksJWK(t, "priv", &p256.PublicKey, map[string]any{"d": jwksB64(d)})
	evenN := jwksJWK(t, "even", rsaPub, map[string]any{"alg": "RS256"})
	nb := new(big.Int).SetBit(rsaPub.N, 0, 0).Bytes()
	evenN["n"] = jwksB64(nb)
	many := make([]map[string]any, 257)
	for i := range many {
		many[i] = jwksJWK(t, "k"+strconv.Itoa(i), rsaPub, map[string]any{"alg": "RS256"})
	}
	return []struct {
		name   string
		doc    []byte
		why    string
		secret string
	}{
		{"invalid JSON", []byte(`{"keys": [`), "malformed JSON", ""},
		{"not an object", []byte(`["keys"]`), "malformed JSON", ""},
		{"no keys member", []byte(`{"Keys": []}`), `no "keys" member`, ""},
		{"keys not objects", []byte(`{"keys": ["a"]}`), `"keys" is not an array of objects`, ""},
		{"empty", jwksDoc(t), "no key", ""},
		{"oct", jwksDoc(t, good, map[string]any{"kty": "oct", "kid": "hs", "alg": "HS256", "k": secret}), `key 1 (kid "hs"): an "oct" (shared secret) key`, secret},
		{"alg none", jwksDoc(t, good, jwksJWK(t, "none", rsaPub, map[string]any{"alg": "none"})), `key 1 (kid "none"): "alg" is "none"`, ""},
		{"RSA 1024", jwksDoc(t, good, weakJWK), `key 1 (kid "weak"): RS256 needs an RSA key of at least 2048 bits, got 1024`, weakJWK["n"].(string)},
		{"RSA 1024 PS256", jwksDoc(t, jwksJWK(t, "weak", &weak.PublicKey, map[string]any{"alg": "PS256"})), "PS256 needs an RSA key of at least 2048 bits", ""},
		{"duplicate kids", jwksDoc(t, good, jwksJWK(t, "good", &p256.PublicKey, nil)), `key 1 (kid "good"): kid also used by key 0`, ""},
		{"duplicate kid of a skipped key", jwksDoc(t, good, jwksJWK(t, "good", rsaPub, map[string]any{"use": "enc"})), "kid also used by key 0", ""},
		{"no kid in a set of two", jwksDoc(t, good, jwksJWK(t, "", &p256.PublicKey, nil)), "key 1 (no kid): every key of a set of several needs a kid", ""},
		{"bad kid", jwksDoc(t, jwksJWK(t, "a kid with spaces", rsaPub, map[string]any{"alg": "RS256"})), "key 0 (invalid kid): kid must be", ""},
		{"off curve", jwksDoc(t, offCurve), `key 0 (kid "off"): point not on curve P-256`, offCurve["x"].(string)},
		{"curve does not fit alg", jwksDoc(t, jwksJWK(t, "c", &p256.PublicKey, map[string]any{"alg": "ES384"})), "ES384 needs curve P-384", ""},
		{"ES256 on P-521", jwksDoc(t, jwksJWK(t, "c", &jwksEC(t, elliptic.P521()).PublicKey, map[string]any{"alg": "ES256"})), "ES256 needs curve P-256", ""},
		{"ES384 on an unknown curve", jwksDoc(t, map[string]any{"kty": "EC", "kid": "c", "alg": "ES384", "crv": "secp256k1", "x": "AA", "y": "AA"}), "ES384 needs curve P-384", ""},
		{"alg does not fit kty", jwksDoc(t, jwksJWK(t, "c", rsaPub, map[string]any{"alg": "ES256"})), "alg ES256 does not fit kty RSA", ""},
		{"HMAC alg on an RSA key", jwksDoc(t, jwksJWK(t, "c", rsaPub, map[string]any{"alg": "HS256"})), "alg HS256 does not fit kty RSA", ""},
		{"private material", jwksDoc(t, priv), "holds private key material", priv["d"].(string)},
		{"even modulus", jwksDoc(t, evenN), "RSA modulus is even", evenN["n"].(string)},
		{"exponent 1", jwksDoc(t, jwksJWK(t, "e", rsaPub, map[string]any{"alg": "RS256", "e": jwksB64([]byte{1})})), "RSA exponent", ""},
		{"even exponent", jwksDoc(t, jwksJWK(t, "e", rsaPub, map[string]any{"alg": "RS256", "e": jwksB64([]byte{1, 0, 0})})), "RSA exponent", ""},
		{"huge exponent", jwksDoc(t, jwksJWK(t, "e", rsaPub, map[string]any{"alg": "RS256", "e": jwksB64([]byte{1, 0, 0, 0, 1})})), "RSA exponent", ""},
		{"bad base64", jwksDoc(t, jwksJWK(t, "b", rsaPub, map[string]any{"alg": "RS256", "n": "!!!"})), `"n" is not base64url`, ""},
		{"no kty", jwksDoc(t, map[string]any{"kid": "x"}), `key 0 (kid "x"): no "kty"`, ""},
		{"kid not a string", jwksDoc(t, map[string]any{"kid": 7, "kty": "RSA"}), `"kid" is not a string`, ""},
		{"Ed25519 short", jwksDoc(t, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": jwksB64(make([]byte, 31))}), `Ed25519 "x" must be 32 bytes`, ""},
		{"too many keys", jwksDoc(t, many...), "257 keys, more than 256", ""},
	}
}

func TestParseJWKSRefused(t *testing.T) {
	for _, tc := range jwksRefusals(t) {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := ParseJWKS(tc.doc)
			if err == nil {
				t.Fatalf("accepted: %v", ks.Keys())
			}
			if !errors.Is(err, ErrKeySet) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %q, want ErrKeySet saying %q", err, tc.why)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret[:16]) {
				t.Fatalf("the error quotes key material: %q", err)
			}
		})
	}
}

func TestParseJWKSHMAC(t *testing.T) {
	secret := randBytes(t, 32)
	doc := jwksDoc(t, map[string]any{"kty": "oct", "kid": "hs", "k": jwksB64(secret)})
	if _, err := ParseJWKS(doc, JWKSAlgorithms(HS256)); err == nil || !strings.Contains(err.Error(), "JWKSAllowHMAC") {
		t.Fatalf("HS256 without JWKSAllowHMAC: %v", err)
	}
	ks, err := ParseJWKS(doc, JWKSAllowHMAC(), JWKSAlgorithms(HS256))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := NewHMACKey("hs", HS256, secret)
	if k := ks.lookup([]byte("hs")); k == nil || k.fingerprint != want.fingerprint || k.CanSign() || k.Algorithm() != HS256 {
		t.Fatalf("oct key: %v", k)
	}
	if _, ok := ks.SigningKey(); ok {
		t.Fatal("a fetched secret may sign")
	}
	// Allowed, but only HS384 and HS512 fit a key without alg: ambiguous.
	if _, err := ParseJWKS(doc, JWKSAllowHMAC(), JWKSAlgorithms(HS384, HS512)); err == nil || !strings.Contains(err.Error(), "several allowed algorithms fit") {
		t.Fatalf("ambiguous oct: %v", err)
	}
	short := jwksDoc(t, map[string]any{"kty": "oct", "kid": "hs", "alg": "HS256", "k": jwksB64(secret[:16])})
	if _, err := ParseJWKS(short, JWKSAllowHMAC(), JWKSAlgorithms(HS256)); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short secret: %v", err)
	}
}

// A key that did not change keeps its *Key, and a document that did not
// change keeps its *KeySet, so the verifier's cache and watchers see no
// change.
func TestParseJWKSReuse(t *testing.T) {
	rsaPub := &testRSA(t).PublicKey
	ed := jwksEd(t)
	o, _ := newJWKSOptions(nil)
	a := jwksJWK(t, "a", rsaPub, map[string]any{"alg": "RS256"})
	b := jwksJWK(t, "b", ed.Public(), nil)
	prev, _, err := parseJWKS(jwksDoc(t, a, b), &o, nil)
	if err != nil {
		t.Fatal(err)
	}
	same, _, err := parseJWKS(jwksDoc(t, a, b), &o, prev)
	if err != nil || same != prev {
		t.Fatalf("same document: new set (%v)", err)
	}
	c := jwksJWK(t, "c", jwksEd(t).Public(), nil)
	next, _, err := parseJWKS(jwksDoc(t, a, c), &o, prev)
	if err != nil || next == prev {
		t.Fatalf("changed document: same set (%v)", err)
	}
	if next.lookup([]byte("a")) != prev.lookup([]byte("a")) {
		t.Fatal("an unchanged key got a new *Key")
	}
	if next.holds(prev.lookup([]byte("b"))) {
		t.Fatal("a removed key is still held")
	}
	// Same kid, other material: a new key.
	a2 := jwksJWK(t, "a", jwksEd(t).Public(), nil)
	next2, _, err := parseJWKS(jwksDoc(t, a2, c), &o, next)
	if err != nil || next2.holds(prev.lookup([]byte("a"))) {
		t.Fatalf("kid a with new material still holds the old key (%v)", err)
	}
}

// FuzzParseJWKS: no document panics or is accepted empty, and errors stay
// short whatever the document holds.
func FuzzParseJWKS(f *testing.F) {
	for _, r := range jwksRefusals(f) {
		if len(r.doc) < 4096 {
			f.Add(r.doc)
		}
	}
	f.Add(jwksRSADoc(f, "k1", "k2"))
	f.Add([]byte(`{"keys":[{"kty":"EC","alg":"ES256","crv":"P-521","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		for _, opts := range [][]JWKSOption{nil, {JWKSAllowHMAC(), JWKSAlgorithms(HS256, RS256, ES384)}} {
			ks, err := ParseJWKS(doc, opts...)
			if err == nil && len(ks.Keys()) == 0 {
				t.Fatal("an empty set accepted")
			}
			if err != nil && len(err.Error()) > 4096 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
		}
	})
}

func TestParseJWKSManySkippedShortError(t *testing.T) {
	keys := make([]map[string]any, 200)
	for i := range keys {
		keys[i] = map[string]any{"kty": "PQC", "kid": "k" + strconv.Itoa(i)}
	}
	_, err := ParseJWKS(jwksDoc(t, keys...))
	if err == nil || len(err.Error()) > 1024 || !strings.Contains(err.Error(), "and 195 more") {
		t.Fatalf("%d bytes: %.200v", len(err.Error()), err)
	}
}
