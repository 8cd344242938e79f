package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Header-level and shape-level negative cases of research/security.md
// ("Negative and security test cases"), each checked at the Verifier. Every
// test first proves its construction yields an accepted token when nothing
// is wrong, so a rejection can only come from the one thing changed.

// security.md case 1: alg none in any spelling, with and without a signature.
func TestVerifyRejectsAlgNone(t *testing.T) {
	f := newFixture(t)
	claims := mustJSON(t, claimsAt(fixedNow))
	mustVerify(t, f.v, signWith(t, f.key, hdr(HS256, testKID), claims)) // control

	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		for _, kid := range []string{testKID, ""} {
			input := enc([]byte(hdr(alg, kid))) + "." + enc([]byte(claims))
			mac, err := f.key.method.Sign(input, f.key.signKey)
			if err != nil {
				t.Fatal(err)
			}
			cases := map[string]string{
				"no signature":          input + ".",
				"random signature":      input + "." + enc(randBytes(t, 32)),
				"valid MAC of the key":  input + "." + enc(mac),
				"no signature no dot":   input,
				"signature of one byte": input + ".AA",
			}
			for name, tok := range cases {
				t.Run(alg+"/kid="+kid+"/"+name, func(t *testing.T) {
					assertInvalid(t, f.v, tok)
				})
			}
		}
	}
}

// security.md case 2: alg missing, null, numeric, empty or not a string.
func TestVerifyRejectsMissingOrMalformedAlg(t *testing.T) {
	f := newFixture(t)
	claims := mustJSON(t, claimsAt(fixedNow))
	mustVerify(t, f.v, signWith(t, f.key, `{"alg":"HS256","kid":"k1","typ":"at+jwt"}`, claims))

	for name, h := range map[string]string{
		"missing": `{"kid":"k1","typ":"at+jwt"}`,
		"null":    `{"alg":null,"kid":"k1","typ":"at+jwt"}`,
		"number":  `{"alg":256,"kid":"k1","typ":"at+jwt"}`,
		"empty":   `{"alg":"","kid":"k1","typ":"at+jwt"}`,
		"array":   `{"alg":["HS256"],"kid":"k1","typ":"at+jwt"}`,
		"object":  `{"alg":{"name":"HS256"},"kid":"k1","typ":"at+jwt"}`,
		"bool":    `{"alg":true,"kid":"k1","typ":"at+jwt"}`,
	} {
		t.Run(name, func(t *testing.T) {
			assertInvalid(t, f.v, signWith(t, f.key, h, claims))
		})
	}
}

// security.md case 3: an alg other than the one the resolved key is bound
// to is rejected, even when the signature is valid for that other alg.
func TestVerifyRejectsAlgNotBoundToKey(t *testing.T) {
	claims := []byte(mustJSON(t, claimsAt(fixedNow)))

	hs := newHMAC(t, testKID, HS256)
	es := newES(t, testKID, ES256)
	ps := newRSA(t, testKID, PS256)
	es384 := newES(t, "other", ES384)
	rsaOther := newRSA(t, "other", PS256)
	ed := newEd(t, "other")

	tests := []struct {
		name     string
		verifier *Key // the only key of the verifier's set
		method   jwt.SigningMethod
		material any
	}{
		{"HS512 with the HS256 secret", hs, jwt.SigningMethodHS512, hs.signKey},
		{"HS384 with the HS256 secret", hs, jwt.SigningMethodHS384, hs.signKey},
		{"ES384 against an ES256 key", es, jwt.SigningMethodES384, es384.signKey},
		{"PS256 against an ES256 key", es, jwt.SigningMethodPS256, rsaOther.signKey},
		{"EdDSA against an ES256 key", es, jwt.SigningMethodEdDSA, ed.signKey},
		{"RS256 with the PS256 key's own material", ps, jwt.SigningMethodRS256, ps.signKey},
		{"ES256 against an HS256 key", hs, jwt.SigningMethodES256, es.signKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureFor(t, tc.verifier)
			mustVerify(t, f.v, signRaw(t, tc.verifier.method, tc.verifier.signKey,
				[]byte(hdr(tc.verifier.alg, testKID)), claims)) // control
			tok := signRaw(t, tc.method, tc.material, []byte(hdr(tc.method.Alg(), testKID)), claims)
			assertInvalid(t, f.v, tok)
			// Without a kid the single key still resolves, and still refuses.
			tok = signRaw(t, tc.method, tc.material, []byte(hdr(tc.method.Alg(), "")), claims)
			assertInvalid(t, f.v, tok)
		})
	}
}

// security.md case 4: RS/EC -> HS confusion. An HS256 token MACed with the
// verifier's public key (PEM, DER, raw) is rejected, and no asymmetric key
// ever hands its public material out as an HMAC secret ([]byte).
func TestVerifyRejectsKeyConfusion(t *testing.T) {
	claims := []byte(mustJSON(t, claimsAt(fixedNow)))
	es := newES(t, testKID, ES256)
	rs := newRSA(t, testKID, RS256)
	ed := newEd(t, testKID)

	for _, signing := range []*Key{es, rs, ed} {
		pubKey, err := signing.Public()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(pubKey.verifyKey)
		if err != nil {
			t.Fatal(err)
		}
		var raw []byte
		switch p := pubKey.verifyKey.(type) {
		case *ecdsa.PublicKey:
			ecdhKey, err := p.ECDH()
			if err != nil {
				t.Fatal(err)
			}
			raw = ecdhKey.Bytes()
		case *rsa.PublicKey:
			raw = p.N.Bytes()
		case ed25519.PublicKey:
			raw = []byte(p)
		default:
			t.Fatalf("unexpected public key type %T", p)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		forms := map[string][]byte{
			"PEM":             pemBytes,
			"PEM without nl":  []byte(strings.TrimSpace(string(pemBytes))),
			"DER":             der,
			"raw":             raw,
			"public key text": []byte(pubKey.String()),
		}
		// The verifier holds only the public half, as a real one would.
		f := newFixtureFor(t, pubKey)
		mustVerify(t, f.v, signRaw(t, signing.method, signing.signKey, []byte(hdr(signing.alg, testKID)), claims))
		for name, secret := range forms {
			for _, alg := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
				for _, kid := range []string{testKID, ""} {
					t.Run(signing.alg+"/"+name+"/"+alg.Alg()+"/kid="+kid, func(t *testing.T) {
						tok := signRaw(t, alg, secret, []byte(hdr(alg.Alg(), kid)), claims)
						// The forgery is a real one: a verifier that took the
						// public key as an HMAC secret would accept it.
						seg := segments(t, tok)
						sig, _ := b64.DecodeString(seg[2])
						if alg.Verify(seg[0]+"."+seg[1], sig, secret) != nil {
							t.Fatal("test forgery does not verify as HMAC over the public key")
						}
						assertInvalid(t, f.v, tok)
					})
				}
			}
		}
	}

	// The verification material of an asymmetric key is never a []byte, so no
	// code path can feed it to an HMAC.
	for _, k := range []*Key{es, rs, ed, newES(t, "x", ES384), newRSA(t, "y", PS256)} {
		if _, isBytes := k.verifyKey.([]byte); isBytes {
			t.Errorf("%s: verification material is []byte", k)
		}
		pub, _ := k.Public()
		if _, isBytes := pub.verifyKey.([]byte); isBytes {
			t.Errorf("%s (public): verification material is []byte", k)
		}
	}
	// ParseKey refuses a public key PEM as an HMAC secret.
	der, _ := x509.MarshalPKIXPublicKey(&testRSA(t).PublicKey)
	if _, err := ParseKey(testKID, HS256, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err == nil {
		t.Error("ParseKey accepted a PEM public key as an HS256 secret")
	}
}

// security.md case 5: alg in the wrong case, or with extra bytes.
func TestVerifyRejectsAlgWrongCase(t *testing.T) {
	claims := []byte(mustJSON(t, claimsAt(fixedNow)))
	for _, k := range []*Key{newHMAC(t, testKID, HS256), newES(t, testKID, ES256), newEd(t, testKID)} {
		f := newFixtureFor(t, k)
		mustVerify(t, f.v, signRaw(t, k.method, k.signKey, []byte(hdr(k.alg, testKID)), claims))
		variants := []string{strings.ToLower(k.alg), strings.ToUpper(k.alg), k.alg + " ", " " + k.alg, k.alg + "\u0000"}
		for _, alg := range variants {
			if alg == k.alg {
				continue // upper-casing HS256 changes nothing
			}
			t.Run(k.alg+"/"+alg, func(t *testing.T) {
				assertInvalid(t, f.v, signRaw(t, k.method, k.signKey, []byte(hdr(alg, testKID)), claims))
			})
		}
	}
}

// security.md case 6: every single-bit flip in the decoded header, claims
// and signature is rejected; so are a signature by a foreign key, a
// two-segment token and an empty signature.
func TestVerifyRejectsTamperedTokens(t *testing.T) {
	f := newFixture(t)
	tok := token(t, f.key, claimsAt(fixedNow))
	mustVerify(t, f.v, tok)
	seg := segments(t, tok)

	for i := range 3 {
		raw, err := b64.DecodeString(seg[i])
		if err != nil {
			t.Fatal(err)
		}
		for bit := range len(raw) * 8 {
			flipped := append([]byte(nil), raw...)
			flipped[bit/8] ^= 1 << (bit % 8)
			s := seg
			s[i] = enc(flipped)
			bad := s[0] + "." + s[1] + "." + s[2]
			// A fresh verifier each time would be slow; the cache holds only
			// the original token, and a variant is always a miss.
			if sess, err := f.v.Verify(t.Context(), bad); err == nil {
				t.Fatalf("segment %d bit %d flipped: accepted (sub %q)", i, bit, sess.Subject())
			} else {
				assertRejected(t, f.v, bad, ErrInvalidToken)
			}
		}
	}

	foreign, err := NewHMACKey(testKID, HS256, randBytes(t, 32))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"foreign key signature": token(t, foreign, claimsAt(fixedNow)),
		"two segments":          seg[0] + "." + seg[1],
		"empty signature":       seg[0] + "." + seg[1] + ".",
		"empty claims":          seg[0] + ".." + seg[2],
		"empty header":          "." + seg[1] + "." + seg[2],
		"one segment":           seg[0],
		"signature truncated":   seg[0] + "." + seg[1] + "." + seg[2][:len(seg[2])-4],
		"signature swapped":     seg[0] + "." + seg[1] + "." + segments(t, token(t, f.key, with(claimsAt(fixedNow), "sub", "other")))[2],
		"only dots":             "..",
	} {
		t.Run(name, func(t *testing.T) { assertInvalid(t, f.v, bad) })
	}
}

// security.md case 7: kid missing (several keys), unknown, not a string,
// 8 KiB long, or holding NUL, a path or SQL; every one a mere map miss.
func TestVerifyKID(t *testing.T) {
	claims := mustJSON(t, claimsAt(fixedNow))
	k1 := newHMAC(t, testKID, HS256)
	k2 := newHMAC(t, "k2", HS256)
	clock := newClock()
	single := newVerifier(t, keySet(t, k1), clock, WithMaxTokenSize(MaxTokenSizeLimit))
	double := newVerifier(t, keySet(t, k1, k2), clock, WithMaxTokenSize(MaxTokenSizeLimit))

	// Controls: the right kid verifies on both; no kid verifies on the
	// single-key set only (the intended design).
	mustVerify(t, single, signWith(t, k1, hdr(HS256, testKID), claims))
	mustVerify(t, double, signWith(t, k2, hdr(HS256, "k2"), claims))
	noKID := signWith(t, k1, `{"alg":"HS256","typ":"at+jwt"}`, claims)
	if s := mustVerify(t, single, noKID); s.KeyID() != testKID {
		t.Fatalf("KeyID = %q, want %q", s.KeyID(), testKID)
	}
	// Without its own check the set would look up the empty kid and
	// refuse with "unknown kid": the cause proves which check refused.
	assertCausePhrase(t, assertInvalid(t, double, noKID), "missing kid")
	assertCausePhrase(t, assertInvalid(t, double, signWith(t, k2, `{"alg":"HS256","typ":"at+jwt"}`, claims)), "missing kid")

	long := strings.Repeat("k", 8<<10)
	for name, h := range map[string]string{
		"unknown":          hdr(HS256, "k3"),
		"empty string":     `{"alg":"HS256","kid":"","typ":"at+jwt"}`,
		"number":           `{"alg":"HS256","kid":1,"typ":"at+jwt"}`,
		"null":             `{"alg":"HS256","kid":null,"typ":"at+jwt"}`,
		"object":           `{"alg":"HS256","kid":{"id":"k1"},"typ":"at+jwt"}`,
		"array":            `{"alg":"HS256","kid":["k1"],"typ":"at+jwt"}`,
		"8 KiB":            hdr(HS256, long),
		"8 KiB prefix k1":  hdr(HS256, testKID+long),
		"NUL":              `{"alg":"HS256","kid":"k1\u0000","typ":"at+jwt"}`,
		"NUL only":         `{"alg":"HS256","kid":"\u0000","typ":"at+jwt"}`,
		"path traversal":   hdr(HS256, "../../etc/passwd"),
		"path to k1":       hdr(HS256, "../k1"),
		"SQL":              hdr(HS256, "' OR 1=1--"),
		"case variant":     hdr(HS256, "K1"),
		"trailing space":   hdr(HS256, "k1 "),
		"url":              hdr(HS256, "http://127.0.0.1/k1"),
		"escaped k1 plus":  `{"alg":"HS256","kid":"k\u0031x","typ":"at+jwt"}`,
		"kid member twice": `{"alg":"HS256","kid":"k9","kid":"k1","typ":"at+jwt"}`,
	} {
		t.Run(name, func(t *testing.T) {
			// Signed with k1's secret: only the kid is wrong.
			assertInvalid(t, single, signWith(t, k1, h, claims))
			assertInvalid(t, double, signWith(t, k1, h, claims))
		})
	}
}

// security.md case 8: jku, x5u, jwk and x5c pointing at a server are
// rejected, and the server sees no request.
func TestVerifyRejectsRemoteKeyHeaders(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()

	// The server works: a request to it is counted (then reset).
	resp, err := srv.Client().Get(srv.URL + "/probe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("probe request not counted: %d", hits.Load())
	}
	hits.Store(0)

	f := newFixture(t)
	claims := mustJSON(t, claimsAt(fixedNow))
	u := jsonQuote(srv.URL + "/jwks.json")
	for name, extra := range map[string]string{
		"jku":             `"jku":` + u,
		"x5u":             `"x5u":` + u,
		"jwk":             `"jwk":{"kty":"oct","k":"c2VjcmV0","x5u":` + u + `}`,
		"x5c":             `"x5c":[` + u + `]`,
		"jku and x5u":     `"jku":` + u + `,"x5u":` + u,
		"JKU upper case":  `"JKU":` + u,
		"jku escaped":     `"\u006aku":` + u,
		"jwk of our key":  `"jwk":{"kty":"oct","kid":"k1"}`,
		"x5t":             `"x5t":"AAAA"`,
		"x5t#S256":        `"x5t#S256":"AAAA"`,
		"cty":             `"cty":"JWT"`,
		"b64 false":       `"b64":false`,
		"jku before alg":  `"jku":` + u,
		"unknown private": `"tollgate_key":` + u,
	} {
		t.Run(name, func(t *testing.T) {
			h := `{"alg":"HS256","kid":"k1","typ":"at+jwt",` + extra + `}`
			if name == "jku before alg" {
				h = `{` + extra + `,"alg":"HS256","kid":"k1","typ":"at+jwt"}`
			}
			assertInvalid(t, f.v, signWith(t, f.key, h, claims))
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the key server received %d requests; want 0", n)
	}
}

// security.md case 9: crit with any value, zip and enc headers, and a
// 5-segment JWE.
func TestVerifyRejectsCritZipEncAndJWE(t *testing.T) {
	f := newFixture(t)
	claims := mustJSON(t, claimsAt(fixedNow))
	for name, extra := range map[string]string{
		"crit exp":   `"crit":["exp"]`,
		"crit empty": `"crit":[]`,
		"crit b64":   `"crit":["b64"],"b64":true`,
		"crit null":  `"crit":null`,
		"crit str":   `"crit":"kid"`,
		"zip":        `"zip":"DEF"`,
		"enc":        `"enc":"A256GCM"`,
		"zip null":   `"zip":null`,
	} {
		t.Run(name, func(t *testing.T) {
			assertInvalid(t, f.v, signWith(t, f.key, `{"alg":"HS256","kid":"k1","typ":"at+jwt",`+extra+`}`, claims))
		})
	}

	jweHeader := enc([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k1","typ":"at+jwt"}`))
	jwe := jweHeader + "." + enc(randBytes(t, 256)) + "." + enc(randBytes(t, 12)) + "." +
		enc([]byte(claims)) + "." + enc(randBytes(t, 16))
	t.Run("JWE 5 segments", func(t *testing.T) {
		// Refused by the shape check, before anything is decoded.
		assertCause(t, assertInvalid(t, f.v, jwe), errShape)
	})
	// The first three segments of a validly signed token followed by two
	// more: still not a JWS.
	good := token(t, f.key, claimsAt(fixedNow))
	t.Run("valid JWS plus two segments", func(t *testing.T) { assertCause(t, assertInvalid(t, f.v, good+".AAAA.AAAA"), errShape) })
	t.Run("valid JWS plus a dot", func(t *testing.T) { assertCause(t, assertInvalid(t, f.v, good+"."), errShape) })
	t.Run("dir JWE header", func(t *testing.T) {
		assertInvalid(t, f.v, signWith(t, f.key, `{"alg":"dir","enc":"A128GCM","kid":"k1","typ":"at+jwt"}`, claims))
	})
}

// security.md case 10: typ must be at+jwt or application/at+jwt, in any case.
func TestVerifyTyp(t *testing.T) {
	f := newFixture(t)
	claims := mustJSON(t, claimsAt(fixedNow))
	tests := []struct {
		typ    string // JSON value of typ; empty means no typ member
		accept bool
	}{
		{`"at+jwt"`, true},
		{`"AT+JWT"`, true},
		{`"At+Jwt"`, true},
		{`"application/at+jwt"`, true},
		{`"APPLICATION/AT+JWT"`, true},
		{`"at\u002bjwt"`, true}, // the same string, escaped
		{``, false},
		{`"JWT"`, false},
		{`"jwt"`, false},
		{`"refresh+jwt"`, false},
		{`"id_token+jwt"`, false},
		{`"application/jwt"`, false},
		{`""`, false},
		{`null`, false},
		{`1`, false},
		{`["at+jwt"]`, false},
		{`"at+jwt "`, false},
		{`" at+jwt"`, false},
		{`"at+jwt\u0000"`, false},
		{`"application/at+jwt;q=1"`, false},
		{`"xat+jwt"`, false},
		{`"logout+jwt"`, false},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			h := `{"alg":"HS256","kid":"k1"`
			if tc.typ != "" {
				h += `,"typ":` + tc.typ
			}
			h += `}`
			tok := signWith(t, f.key, h, claims)
			if tc.accept {
				mustVerify(t, f.v, tok)
				return
			}
			assertInvalid(t, f.v, tok)
		})
	}
	// The member name is case-sensitive too.
	assertInvalid(t, f.v, signWith(t, f.key, `{"alg":"HS256","kid":"k1","TYP":"at+jwt"}`, claims))
	assertInvalid(t, f.v, signWith(t, f.key, `{"alg":"HS256","kid":"k1","Typ":"at+jwt"}`, claims))
}

// security.md case 11: duplicate header members, plain, escaped or
// case-variant.
func TestVerifyRejectsDuplicateHeaderMembers(t *testing.T) {
	ed := newEd(t, testKID)
	hs := newHMAC(t, testKID, HS256)
	claims := mustJSON(t, claimsAt(fixedNow))
	tests := []struct {
		name   string
		key    *Key
		header string
	}{
		{"alg none then EdDSA", ed, `{"alg":"none","alg":"EdDSA","kid":"k1","typ":"at+jwt"}`},
		{"alg EdDSA then none", ed, `{"alg":"EdDSA","alg":"none","kid":"k1","typ":"at+jwt"}`},
		{"alg twice same", hs, `{"alg":"HS256","alg":"HS256","kid":"k1","typ":"at+jwt"}`},
		{"alg escaped twice", hs, `{"alg":"HS256","\u0061lg":"HS256","kid":"k1","typ":"at+jwt"}`},
		{"kid twice same", hs, `{"alg":"HS256","kid":"k1","kid":"k1","typ":"at+jwt"}`},
		{"typ twice", hs, `{"alg":"HS256","kid":"k1","typ":"JWT","typ":"at+jwt"}`},
		{"typ twice same", hs, `{"alg":"HS256","kid":"k1","typ":"at+jwt","typ":"at+jwt"}`},
		{"ALG variant", hs, `{"alg":"HS256","ALG":"none","kid":"k1","typ":"at+jwt"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureFor(t, tc.key)
			mustVerify(t, f.v, signWith(t, tc.key, hdr(tc.key.alg, testKID), claims))
			assertInvalid(t, f.v, signWith(t, tc.key, tc.header, claims))
		})
	}
}

// security.md case 11 (claims) and the case-folding rules: a claim set with
// duplicate members, in any spelling a JSON decoder might fold together, is
// rejected; so is a custom claim named like a registered one but for case.
func TestVerifyRejectsDuplicateClaims(t *testing.T) {
	f := newFixture(t)
	h := hdr(HS256, testKID)
	base := mustJSON(t, claimsAt(fixedNow)) // {"aud":...,...}
	mustVerify(t, f.v, signWith(t, f.key, h, base))
	exp := fixedNow.Add(5 * time.Minute).Unix()
	prefix := func(extra string) string { return `{` + extra + `,` + base[1:] }
	for name, claims := range map[string]string{
		"exp twice":               prefix(`"exp":` + itoa(exp)),
		"sub twice":               prefix(`"sub":"admin"`),
		"sub twice same value":    prefix(`"sub":"user-42"`),
		"SUB case variant":        prefix(`"SUB":"b"`),
		"Sub case variant":        prefix(`"Sub":"b"`),
		"sub escaped":             prefix(`"\u0073ub":"b"`),
		"sub escaped upper":       prefix(`"\u0053UB":"b"`),
		"sub long-s fold":         prefix(`"ſub":"b"`),
		"aud twice":               prefix(`"aud":"billing"`),
		"custom Exp":              prefix(`"Exp":1`),
		"custom EXP":              prefix(`"EXP":99999999999`),
		"custom Perms":            prefix(`"Perms":["admin.*"]`),
		"custom Auth_Time":        prefix(`"Auth_Time":1`),
		"custom twice":            prefix(`"seller_id":"other"`),
		"custom case twice":       prefix(`"Seller_ID":"other"`),
		"jti twice":               prefix(`"jti":"jti-0002"`),
		"perms twice":             prefix(`"perms":["admin.*"]`),
		"iss twice":               prefix(`"iss":"https://evil.test"`),
		"kelvin sign fold (K)":    `{"k":1,"\u212a":2,` + base[1:],
		"escaped custom twice":    prefix(`"seller\u005fid":"other"`),
		"duplicate at the end":    base[:len(base)-1] + `,"sub":"b"}`,
		"case variant at the end": base[:len(base)-1] + `,"ISS":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			assertInvalid(t, f.v, signWith(t, f.key, h, claims))
		})
	}

	// A case variant of a registered claim that is otherwise absent: a
	// case-insensitive decoder (encoding/json is one) would read "PERMS" as
	// perms, "AZP" as azp. Refused, with or without WithScopeClaim.
	scoped := newFixtureFor(t, f.key, WithScopeClaim())
	noOptional := with(claimsAt(fixedNow), "perms", nil, "azp", nil, "sid", nil, "nbf", nil, "auth_time", nil)
	mustVerify(t, f.v, token(t, f.key, noOptional))
	for _, extra := range []string{
		`"PERMS":["admin.*"]`,
		`"Perms":["admin.*"]`,
		`"AZP":"billing"`,
		`"Sid":"other"`,
		`"NBF":1`,
		`"Auth_Time":1`,
		`"SCOPE":"admin"`,
		`"Perms":["admin.*"]`,
	} {
		t.Run("absent registered claim/"+extra, func(t *testing.T) {
			tok := signWith(t, f.key, h, `{`+extra+`,`+mustJSON(t, noOptional)[1:])
			assertInvalid(t, f.v, tok)
			assertInvalid(t, scoped.v, tok)
		})
	}
}

// security.md case 12: invalid UTF-8 or a BOM in header or claims; a claim
// set that is not an object.
func TestVerifyRejectsBadJSON(t *testing.T) {
	f := newFixture(t)
	h := []byte(hdr(HS256, testKID))
	claims := []byte(mustJSON(t, claimsAt(fixedNow)))
	mustVerify(t, f.v, signRaw(t, f.key.method, f.key.signKey, h, claims))

	bom := []byte("\xef\xbb\xbf")
	invalidInValue := func(b []byte, member string) []byte {
		// Put a lone 0xff byte inside the value of member.
		i := strings.Index(string(b), `"`+member+`":"`)
		if i < 0 {
			t.Fatalf("no string member %s", member)
		}
		j := i + len(member) + 4
		return append(append(append([]byte(nil), b[:j]...), 0xff), b[j:]...)
	}
	cases := []struct {
		name           string
		header, claims []byte
	}{
		{"BOM before header", append(append([]byte(nil), bom...), h...), claims},
		{"BOM before claims", h, append(append([]byte(nil), bom...), claims...)},
		{"invalid UTF-8 in header value", invalidInValue(h, "kid"), claims},
		{"invalid UTF-8 in header name", []byte(`{"alg":"HS256","kid":"k1","typ":"at+jwt","\xff":"x"}`), claims},
		{"invalid UTF-8 in sub", h, invalidInValue(claims, "sub")},
		{"invalid UTF-8 in custom claim", h, invalidInValue(claims, "seller_id")},
		{"overlong UTF-8 in claims", h, []byte(strings.Replace(string(claims), `"user-42"`, "\"user\xc0\xaf42\"", 1))},
		{"surrogate bytes in claims", h, []byte(strings.Replace(string(claims), `"user-42"`, "\"user\xed\xa0\x80\"", 1))},
		{"claims null", h, []byte(`null`)},
		{"claims array", h, []byte(`[]`)},
		{"claims array of object", h, append(append([]byte("["), claims...), ']')},
		{"claims string", h, []byte(`"x"`)},
		{"claims number", h, []byte(`1`)},
		{"claims true", h, []byte(`true`)},
		{"claims empty", h, []byte(``)},
		{"claims two objects", h, append(append([]byte(nil), claims...), []byte(`{}`)...)},
		{"claims trailing garbage", h, append(append([]byte(nil), claims...), 'x')},
		{"claims truncated", h, claims[:len(claims)-1]},
		{"claims trailing comma", h, append(append([]byte(nil), claims[:len(claims)-1]...), []byte(`,}`)...)},
		{"header null", []byte(`null`), claims},
		{"header array", []byte(`["HS256"]`), claims},
		{"header truncated", h[:len(h)-1], claims},
		{"header trailing garbage", append(append([]byte(nil), h...), '}'), claims},
		{"header single quotes", []byte(`{'alg':'HS256','kid':'k1','typ':'at+jwt'}`), claims},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertInvalid(t, f.v, signRaw(t, f.key.method, f.key.signKey, tc.header, tc.claims))
		})
	}
}

// security.md case 13: any spelling of the token other than canonical
// unpadded base64url is rejected: padding, set trailing bits, the standard
// alphabet, white space anywhere.
func TestVerifyRejectsNonCanonicalEncoding(t *testing.T) {
	f := newFixture(t)
	// seller_id "???>>>" encodes to '_' and '-' in base64url ('/' and '+' in
	// the standard alphabet); the extra claim is sized so that the header,
	// claims and signature segments all have unused trailing bits.
	claims := with(claimsAt(fixedNow), "seller_id", "???>>>")
	var tok string
	for pad := range 3 {
		claims["x"] = strings.Repeat("a", pad)
		tok = signWith(t, f.key, hdr(HS256, "k1"), mustJSON(t, claims))
		if s := segments(t, tok); len(s[1])%4 != 0 && len(s[0])%4 != 0 {
			break
		}
	}
	f2 := newFixtureFor(t, f.key) // a second verifier with the same key
	mustVerify(t, f.v, tok)       // the original is cached in f.v
	seg := segments(t, tok)
	if !strings.ContainsAny(seg[1], "-_") {
		t.Fatal("claims segment has no '-' or '_'; the alphabet case would test nothing")
	}

	join := func(s [3]string) string { return s[0] + "." + s[1] + "." + s[2] }
	var variants = map[string]string{}
	for i, name := range []string{"header", "claims", "signature"} {
		flipped, ok := flipTrailingBits(seg[i])
		if !ok {
			t.Fatalf("%s segment has no unused bits (len %d)", name, len(seg[i]))
		}
		// It really is the same bytes to a lax decoder.
		a, _ := base64.RawURLEncoding.DecodeString(seg[i])
		b, err := base64.RawURLEncoding.DecodeString(flipped)
		if err != nil || string(a) != string(b) {
			t.Fatalf("%s: flipped spelling does not decode to the same bytes", name)
		}
		s := seg
		s[i] = flipped
		variants[name+" trailing bits"] = join(s)

		s = seg
		s[i] += strings.Repeat("=", (4-len(seg[i])%4)%4)
		variants[name+" padded"] = join(s)
		s = seg
		s[i] += "="
		variants[name+" one ="] = join(s)
		s = seg
		s[i] = seg[i][:4] + " " + seg[i][4:]
		variants[name+" inner space"] = join(s)
		s = seg
		s[i] = seg[i][:4] + "\n" + seg[i][4:]
		variants[name+" inner newline"] = join(s)
		s = seg
		s[i] = seg[i][:4] + "\r\n" + seg[i][4:]
		variants[name+" inner CRLF"] = join(s)
		s = seg
		s[i] = seg[i][:4] + "\t" + seg[i][4:]
		variants[name+" inner tab"] = join(s)
		s = seg
		s[i] = strings.NewReplacer("-", "+", "_", "/").Replace(seg[i])
		if s[i] != seg[i] {
			variants[name+" standard alphabet"] = join(s)
		}
		s = seg
		s[i] = base64.StdEncoding.EncodeToString(a)
		variants[name+" standard padded"] = join(s)
	}
	variants["leading space"] = " " + tok
	variants["trailing space"] = tok + " "
	variants["trailing newline"] = tok + "\n"
	variants["leading tab"] = "\t" + tok
	variants["Bearer prefix"] = "Bearer " + tok
	variants["trailing NUL"] = tok + "\x00"
	variants["space before dot"] = seg[0] + " ." + seg[1] + "." + seg[2]
	variants["percent-encoded"] = strings.ReplaceAll(tok, ".", "%2E")
	variants["quoted"] = `"` + tok + `"`
	variants["non-ASCII"] = seg[0] + "." + seg[1] + "é." + seg[2]

	for name, bad := range variants {
		if bad == tok {
			t.Fatalf("%s: variant equals the original", name)
		}
		t.Run(name, func(t *testing.T) {
			// Rejected by the verifier that cached the original and by a
			// fresh one.
			assertInvalid(t, f.v, bad)
			assertInvalid(t, f2.v, bad)
		})
	}
}

// security.md case 14: oversized tokens are rejected before any decoding,
// with no more than 2 allocations.
func TestVerifyRejectsOversizedTokens(t *testing.T) {
	f := newFixture(t)
	good := token(t, f.key, claimsAt(fixedNow))
	seg := segments(t, good)

	mib := strings.Repeat("A", 1<<20)
	dots := strings.Repeat(".", 100_000)
	dotsInToken := seg[0] + strings.Repeat(".", 100_000) + seg[1] // fits no cap either
	nearCapDots := strings.Repeat("a.", DefaultMaxTokenSize/2)[:DefaultMaxTokenSize]
	pad := strings.Repeat("A", DefaultMaxTokenSize+1-len(good))
	overByOne := seg[0] + "." + seg[1] + pad + "." + seg[2]
	if len(overByOne) != DefaultMaxTokenSize+1 {
		t.Fatalf("over-by-one token is %d bytes", len(overByOne))
	}

	for name, tok := range map[string]string{
		"1 MiB":              mib,
		"1 MiB token-shaped": seg[0] + "." + mib + "." + seg[2],
		"100k dots":          dots,
		"100k dots in token": dotsInToken,
		"8 KiB + 1":          overByOne,
		"8 KiB of a.":        nearCapDots, // within the size cap: the shape check stops at the third dot
		"8 KiB of dots":      strings.Repeat(".", DefaultMaxTokenSize),
	} {
		t.Run(name, func(t *testing.T) {
			err := assertInvalid(t, f.v, tok)
			if len(tok) <= DefaultMaxTokenSize {
				// Within the size cap: the shape check refuses it, at
				// the third dot, before any decoding.
				assertCause(t, err, errShape)
			} else {
				assertCause(t, err, errTooLarge)
			}
			allocs := testing.AllocsPerRun(20, func() {
				if _, err := f.v.Verify(t.Context(), tok); err == nil {
					panic("accepted")
				}
			})
			if allocs > 2 {
				t.Fatalf("rejection cost %v allocations, want <= 2", allocs)
			}
		})
	}

	// WithMaxTokenSize(4096): 4096 bytes pass the size gate (and verify),
	// 4097 bytes do not, even though they are otherwise valid.
	small := newFixtureFor(t, f.key, WithMaxTokenSize(4096))
	claims := claimsAt(fixedNow)
	var at4096, at4097 string
	// Not every length is reachable with one header (a segment is never
	// 4k+1 characters), so white space in the header varies it too.
	for sp := range 3 {
		h := `{"alg":"HS256",` + strings.Repeat(" ", sp) + `"kid":"k1","typ":"at+jwt"}`
		for n := 2000; n < 3500; n++ {
			tok := signWith(t, f.key, h, mustJSON(t, with(claims, "pad", strings.Repeat("p", n))))
			switch len(tok) {
			case 4096:
				at4096 = tok
			case 4097:
				at4097 = tok
			}
		}
	}
	if at4096 == "" || at4097 == "" {
		t.Fatal("could not build tokens of exactly 4096 and 4097 bytes")
	}
	mustVerify(t, small.v, at4096)
	mustVerify(t, f.v, at4097) // valid under the default 8 KiB cap
	err := assertInvalid(t, small.v, at4097)
	assertCause(t, err, errTooLarge)
	allocs := testing.AllocsPerRun(20, func() { _, _ = small.v.Verify(t.Context(), at4097) })
	if allocs > 2 {
		t.Fatalf("4097-byte rejection cost %v allocations, want <= 2", allocs)
	}

	// The cap is configurable up to 64 KiB only.
	for _, n := range []int{0, -1, MaxTokenSizeLimit + 1} {
		if _, err := NewVerifier(f.ks, testIss, testAud, WithMaxTokenSize(n)); err == nil {
			t.Errorf("WithMaxTokenSize(%d) accepted", n)
		}
	}
	if _, err := NewVerifier(f.ks, testIss, testAud, WithMaxTokenSize(MaxTokenSizeLimit)); err != nil {
		t.Errorf("WithMaxTokenSize(64 KiB): %v", err)
	}
	assertInvalid(t, f.v, "")
}
