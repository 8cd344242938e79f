package token_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/token"
)

// The JWK Set encoding is checked with the standard library alone: the
// public key is rebuilt from the JWK's members with crypto/*, compared with
// the key's own, and verifies a token the private key signed. No JWK parser
// of tollgate's is trusted to check tollgate's encoder.

var (
	pubRSAOnce sync.Once
	pubRSA     *rsa.PrivateKey
)

func jwkRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	pubRSAOnce.Do(func() {
		var err error
		if pubRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return pubRSA
}

// signers returns one private key per asymmetric algorithm, with kid
// "k-"+alg.
func signers(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{
		token.ES256: p256, token.ES384: p384, token.EdDSA: ed,
		token.RS256: jwkRSA(t), token.PS256: jwkRSA(t),
	}
}

var asymmetric = []string{token.ES256, token.ES384, token.EdDSA, token.RS256, token.PS256}

func mustPrivate(t *testing.T, kid, alg string, s crypto.Signer) *token.Key {
	t.Helper()
	k, err := token.NewPrivateKey(kid, alg, s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type testJWKS struct {
	Keys []map[string]any `json:"keys"`
}

func decodeJWKS(t *testing.T, b []byte) testJWKS {
	t.Helper()
	var s testJWKS
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("not a JWK Set: %v\n%s", err, b)
	}
	return s
}

func b64member(t *testing.T, j map[string]any, name string) []byte {
	t.Helper()
	s, ok := j[name].(string)
	if !ok {
		t.Fatalf("member %q missing or not a string in %v", name, j)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		t.Fatalf("member %q is not unpadded base64url: %v", name, err)
	}
	return b
}

// rebuild returns the public key a JWK describes, read with crypto/* only,
// failing on any member it does not expect.
func rebuild(t *testing.T, j map[string]any) crypto.PublicKey {
	t.Helper()
	allowed := map[string][]string{
		"RSA": {"kty", "kid", "use", "alg", "n", "e"},
		"EC":  {"kty", "kid", "use", "alg", "crv", "x", "y"},
		"OKP": {"kty", "kid", "use", "alg", "crv", "x"},
	}
	kty, _ := j["kty"].(string)
	for m := range j {
		if !slices.Contains(allowed[kty], m) {
			t.Errorf("kty %q JWK has member %q", kty, m)
		}
	}
	switch kty {
	case "RSA":
		n := b64member(t, j, "n")
		e := b64member(t, j, "e")
		if n[0] == 0 || e[0] == 0 {
			t.Errorf("n or e has a leading zero octet (RFC 7518 §6.3.1)")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[j["crv"].(string)]
		if curve == nil {
			t.Fatalf("crv %v", j["crv"])
		}
		size := (curve.Params().BitSize + 7) / 8
		x, y := b64member(t, j, "x"), b64member(t, j, "y")
		if len(x) != size || len(y) != size {
			t.Fatalf("coordinates of %d and %d bytes, want %d each (RFC 7518 §6.2.1.2)", len(x), len(y), size)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case "OKP":
		if j["crv"] != "Ed25519" {
			t.Fatalf("crv %v", j["crv"])
		}
		x := b64member(t, j, "x")
		if len(x) != ed25519.PublicKeySize {
			t.Fatalf("x of %d bytes", len(x))
		}
		return ed25519.PublicKey(x)
	}
	t.Fatalf("kty %q", kty)
	return nil
}

// verifyJWS checks tok's signature with pub for alg, with crypto/* only.
func verifyJWS(t *testing.T, alg string, pub crypto.PublicKey, tok string) bool {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	signed, sig := []byte(tok[:i]), tok[i+1:]
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	h256 := sha256.Sum256(signed)
	switch alg {
	case token.ES256, token.ES384:
		digest := h256[:]
		if alg == token.ES384 {
			h := sha512.Sum384(signed)
			digest = h[:]
		}
		n := len(raw) / 2
		r, s := new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])
		return ecdsa.Verify(pub.(*ecdsa.PublicKey), digest, r, s)
	case token.EdDSA:
		return ed25519.Verify(pub.(ed25519.PublicKey), signed, raw)
	case token.RS256:
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, h256[:], raw) == nil
	case token.PS256:
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, h256[:], raw, nil) == nil
	}
	t.Fatalf("alg %s", alg)
	return false
}

func signProbe(t *testing.T, k *token.Key) string {
	t.Helper()
	s, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, err := s.Sign(token.Claims{Issuer: "https://auth.tollgate.test", Subject: "alice",
		Audience: []string{"pricing"}, IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestMarshalJWKSRoundTrip: every asymmetric algorithm, from a key that can
// sign, gives a JWK with kty, kid, use "sig" and its alg, whose public key,
// rebuilt with crypto/*, equals the key's and verifies what the private key
// signed.
func TestMarshalJWKSRoundTrip(t *testing.T) {
	privs := signers(t)
	var keys []*token.Key
	for _, alg := range asymmetric {
		keys = append(keys, mustPrivate(t, "k-"+alg, alg, privs[alg]))
	}
	ks, err := token.NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ks.MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	set := decodeJWKS(t, out)
	if len(set.Keys) != len(asymmetric) {
		t.Fatalf("%d keys, want %d", len(set.Keys), len(asymmetric))
	}
	wantKty := map[string]string{token.ES256: "EC", token.ES384: "EC", token.EdDSA: "OKP", token.RS256: "RSA", token.PS256: "RSA"}
	for i, alg := range asymmetric {
		j := set.Keys[i]
		if j["kid"] != "k-"+alg || j["alg"] != alg || j["use"] != "sig" || j["kty"] != wantKty[alg] {
			t.Errorf("key %d: kid %v alg %v use %v kty %v; want k-%s %s sig %s", i, j["kid"], j["alg"], j["use"], j["kty"], alg, alg, wantKty[alg])
		}
		pub := rebuild(t, j)
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(privs[alg].Public()) {
			t.Errorf("%s: the rebuilt public key differs from the key's", alg)
		}
		if !verifyJWS(t, alg, pub, signProbe(t, keys[i])) {
			t.Errorf("%s: a token the private key signed does not verify with the published key", alg)
		}
		// The check itself can fail: another key's token does not verify.
		other := mustPrivate(t, "", alg, signers(t)[alg])
		if alg != token.RS256 && alg != token.PS256 && verifyJWS(t, alg, pub, signProbe(t, other)) {
			t.Errorf("%s: another key's token verifies", alg)
		}
	}
}

// TestMarshalJWKSNoPrivateMaterial: keys that can sign publish nothing of
// their private half, in any spelling.
func TestMarshalJWKSNoPrivateMaterial(t *testing.T) {
	privs := signers(t)
	var keys []*token.Key
	var secrets [][]byte
	for _, alg := range asymmetric {
		keys = append(keys, mustPrivate(t, "k-"+alg, alg, privs[alg]))
		switch p := privs[alg].(type) {
		case *ecdsa.PrivateKey:
			d, err := p.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, d)
		case ed25519.PrivateKey:
			secrets = append(secrets, p.Seed(), p)
		case *rsa.PrivateKey:
			secrets = append(secrets, p.D.Bytes(), p.Primes[0].Bytes(), p.Primes[1].Bytes(),
				p.Precomputed.Dp.Bytes(), p.Precomputed.Dq.Bytes(), p.Precomputed.Qinv.Bytes())
		}
	}
	out, err := token.MarshalJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
			spelled := enc.EncodeToString(s)
			// Any 16 characters of the spelling (12 bytes of the secret).
			for i := 0; i+16 <= len(spelled); i += 4 {
				if bytes.Contains(out, []byte(spelled[i:i+16])) {
					t.Fatalf("the JWKS holds private material: %q", spelled[i:i+16])
				}
			}
		}
	}
	for _, j := range decodeJWKS(t, out).Keys {
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := j[m]; ok {
				t.Errorf("JWK %v has private member %q", j["kid"], m)
			}
		}
	}
}

// TestMarshalJWKSECPadding: a coordinate with leading zero octets is
// written at the curve's full length (RFC 7518 §6.2.1.2), not shortened
// as big.Int.Bytes would.
func TestMarshalJWKSECPadding(t *testing.T) {
	for _, c := range []struct {
		alg   string
		curve elliptic.Curve
	}{{token.ES256, elliptic.P256()}, {token.ES384, elliptic.P384()}} {
		var priv *ecdsa.PrivateKey
		// About one key in 128 has a coordinate starting with a zero octet.
		for range 20000 {
			p, err := ecdsa.GenerateKey(c.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			point, err := p.PublicKey.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			n := (len(point) - 1) / 2
			if point[1] == 0 || point[1+n] == 0 {
				priv = p
				break
			}
		}
		if priv == nil {
			t.Fatalf("%s: no key with a short coordinate found", c.alg)
		}
		out, err := token.MarshalJWKS(mustPrivate(t, "", c.alg, priv))
		if err != nil {
			t.Fatal(err)
		}
		j := decodeJWKS(t, out).Keys[0]
		if _, ok := j["kid"]; ok {
			t.Errorf("a lone key without kid published kid %v", j["kid"])
		}
		if pub := rebuild(t, j); !pub.(*ecdsa.PublicKey).Equal(&priv.PublicKey) {
			t.Errorf("%s: rebuilt key differs", c.alg)
		}
	}
}

// TestMarshalJWKSDeterministic: the same keys give the same bytes, in the
// order given.
func TestMarshalJWKSDeterministic(t *testing.T) {
	privs := signers(t)
	a := mustPrivate(t, "a", token.EdDSA, privs[token.EdDSA])
	b := mustPrivate(t, "b<&>", token.ES256, privs[token.ES256])
	pubA, err := a.Public()
	if err != nil {
		t.Fatal(err)
	}
	first, err := token.MarshalJWKS(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		again, err := token.MarshalJWKS(a, b)
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("second encoding differs: %s vs %s (%v)", again, first, err)
		}
	}
	// A public copy publishes the same JWK as its private original.
	fromPublic, err := token.MarshalJWKS(pubA, b)
	if err != nil || !bytes.Equal(fromPublic, first) {
		t.Errorf("public copy encodes as %s, private as %s (%v)", fromPublic, first, err)
	}
	reversed, err := token.MarshalJWKS(b, a)
	if err != nil {
		t.Fatal(err)
	}
	set := decodeJWKS(t, reversed)
	if set.Keys[0]["kid"] != "b<&>" || set.Keys[1]["kid"] != "a" {
		t.Errorf("order not kept: %s", reversed)
	}
	if !bytes.Contains(first, []byte(`"kid":"b<&>"`)) {
		t.Errorf("kid escaped: %s", first)
	}
	if bytes.HasSuffix(first, []byte("\n")) || !bytes.HasPrefix(first, []byte(`{"keys":[{"kty":"OKP","kid":"a","use":"sig","alg":"EdDSA","crv":"Ed25519","x":"`)) {
		t.Errorf("unexpected layout: %s", first)
	}
}

// TestMarshalJWKSRefuses: HMAC keys, sets that a verifier could not pick a
// key from, and no key at all. The errors wrap ErrKey and never hold the
// HMAC secret.
func TestMarshalJWKSRefuses(t *testing.T) {
	privs := signers(t)
	ed := mustPrivate(t, "ed", token.EdDSA, privs[token.EdDSA])
	noKID := mustPrivate(t, "", token.ES256, privs[token.ES256])
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	hs, err := token.NewHMACKey("hs", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	sameKID := mustPrivate(t, "ed", token.ES256, privs[token.ES256])
	cases := []struct {
		name string
		keys []*token.Key
		want string
	}{
		{"no key", nil, "no key"},
		{"nil key", []*token.Key{ed, nil}, "key 1 is nil"},
		{"HMAC alone", []*token.Key{hs}, "key 0: an HS256 key is a shared secret, which is never published"},
		{"HMAC among others", []*token.Key{ed, hs}, "key 1: an HS256 key"},
		{"no kid among several", []*token.Key{ed, noKID}, "key 1 has no kid"},
		{"duplicate kid", []*token.Key{ed, sameKID}, "key 1 has the kid of an earlier key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := token.MarshalJWKS(c.keys...)
			if err == nil {
				t.Fatalf("published %s", out)
			}
			if out != nil {
				t.Errorf("output %q with the error", out)
			}
			if !errors.Is(err, token.ErrKey) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want ErrKey and %q", err, c.want)
			}
			for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
				if strings.Contains(err.Error(), enc.EncodeToString(secret)[:16]) {
					t.Errorf("error holds the secret: %q", err)
				}
			}
		})
	}
	// A KeySet with an HMAC key is refused the same way.
	ks, err := token.NewKeySet(ed, hs)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ks.MarshalJWKS(); err == nil || !errors.Is(err, token.ErrKey) {
		t.Errorf("KeySet with an HMAC key: %s, %v", out, err)
	}
}
