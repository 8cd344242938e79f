package token

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// Certificate-bound tokens (RFC 8705 §3): the cnf claim and its x5t#S256
// member, as the verifier reads them.

// testThumb is the thumbprint of a made-up DER certificate.
var testThumb = CertThumbprint([]byte("a certificate's DER form"))

func TestCertThumbprint(t *testing.T) {
	der := []byte{0x30, 0x82, 0x01, 0x0a, 0x02, 0x82}
	sum := sha256.Sum256(der)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := CertThumbprint(der); got != want || len(got) != 43 || strings.ContainsAny(got, "=+/") {
		t.Fatalf("CertThumbprint = %q, want %q (43 unpadded base64url characters)", got, want)
	}
}

func TestVerifyBoundToken(t *testing.T) {
	f := newFixture(t)
	c := claimsAt(fixedNow)
	s := mustVerify(t, f.v, token(t, f.key, with(c, "cnf", map[string]any{"x5t#S256": testThumb})))
	if s.CertThumbprint() != testThumb {
		t.Fatalf("CertThumbprint() = %q, want %q", s.CertThumbprint(), testThumb)
	}
	if _, ok := s.Claim("cnf"); ok {
		t.Fatal("cnf is a registered claim: it must not show as a custom claim")
	}
	// Members tollgate does not check, next to x5t#S256, are ignored
	// (RFC 7800 §3): the certificate binding is what is checked.
	s = mustVerify(t, f.v, token(t, f.key, with(c, "cnf", map[string]any{"x5t#S256": testThumb, "jkt": "abc"})))
	if s.CertThumbprint() != testThumb {
		t.Fatalf("with jkt too: CertThumbprint() = %q", s.CertThumbprint())
	}
	// An escaped thumbprint is its decoded value.
	esc := `"` + `\u00` + itoaHex(testThumb[0]) + testThumb[1:] + `"`
	s = mustVerify(t, f.v, signWith(t, f.key, hdr(HS256, testKID), rawClaims(t, c, "cnf", `{"x5t#S256":`+esc+`}`)))
	if s.CertThumbprint() != testThumb {
		t.Fatalf("escaped: CertThumbprint() = %q", s.CertThumbprint())
	}
	// A bearer token has none.
	if s := mustVerify(t, f.v, token(t, f.key, c)); s.CertThumbprint() != "" {
		t.Fatalf("bearer token: CertThumbprint() = %q", s.CertThumbprint())
	}
	// Cache hits carry it too (the same session).
	tok := token(t, f.key, with(c, "cnf", map[string]any{"x5t#S256": testThumb}))
	mustVerify(t, f.v, tok)
	if s, ok := f.v.Cached(tok); !ok || s.CertThumbprint() != testThumb {
		t.Fatalf("cache hit: %v %v", s, ok)
	}
}

func itoaHex(b byte) string {
	const hex = "0123456789abcdef"
	return string([]byte{hex[b>>4], hex[b&15]})
}

func TestVerifyCnfRefusals(t *testing.T) {
	f := newFixture(t)
	c := claimsAt(fixedNow)
	malformed, method := errCnf.(*VerifyError).Cause(), errCnfMethod.(*VerifyError).Cause()
	other := CertThumbprint([]byte("another certificate"))
	// flipped is testThumb with a trailing bit set: the same 32 bytes to a
	// lax decoder, refused by the strict one.
	flipped, ok := flipTrailingBits(testThumb)
	if !ok {
		t.Fatal("no unused bits in a 43-character thumbprint?")
	}
	raw := func(v string) string { return rawClaims(t, c, "cnf", v) }
	runClaimCases(t, f, []claimCase{
		{name: "valid", raw: raw(`{"x5t#S256":"` + testThumb + `"}`)},
		{name: "null", raw: raw(`null`), want: ErrInvalidToken, cause: malformed},
		{name: "string", raw: raw(`"` + testThumb + `"`), want: ErrInvalidToken, cause: malformed},
		{name: "array", raw: raw(`[{"x5t#S256":"` + testThumb + `"}]`), want: ErrInvalidToken, cause: malformed},
		{name: "number", raw: raw(`1`), want: ErrInvalidToken, cause: malformed},
		{name: "empty object", raw: raw(`{}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint a number", raw: raw(`{"x5t#S256":1}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint null", raw: raw(`{"x5t#S256":null}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint an object", raw: raw(`{"x5t#S256":{"v":"` + testThumb + `"}}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint empty", raw: raw(`{"x5t#S256":""}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint short", raw: raw(`{"x5t#S256":"` + testThumb[:42] + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint long", raw: raw(`{"x5t#S256":"` + testThumb + `A"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint padded", raw: raw(`{"x5t#S256":"` + testThumb + `="}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint std base64", raw: raw(`{"x5t#S256":"` + strings.Repeat("+", 42) + `A"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint trailing bits", raw: raw(`{"x5t#S256":"` + flipped + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint hex", raw: raw(`{"x5t#S256":"` + strings.Repeat("ab", 32) + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint twice", raw: raw(`{"x5t#S256":"` + testThumb + `","x5t#S256":"` + other + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint twice, same", raw: raw(`{"x5t#S256":"` + testThumb + `","x5t#S256":"` + testThumb + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint in another case", raw: raw(`{"X5T#s256":"` + testThumb + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "thumbprint and a case variant", raw: raw(`{"x5t#S256":"` + testThumb + `","x5t#s256":"` + other + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "escaped name, twice", raw: raw(`{"x5t#S256":"` + testThumb + `","x5t\u0023S256":"` + other + `"}`), want: ErrInvalidToken, cause: malformed},
		{name: "other member twice, case folded", raw: raw(`{"x5t#S256":"` + testThumb + `","jkt":"a","JKT":"b"}`), want: ErrInvalidToken, cause: malformed},
		{name: "other member twice", raw: raw(`{"x5t#S256":"` + testThumb + `","jkt":"a","jkt":"b"}`), want: ErrInvalidToken, cause: malformed},
		{name: "too many members", raw: raw(`{"x5t#S256":"` + testThumb + `"` + manyMembers(maxCnfMembers) + `}`), want: ErrInvalidToken, cause: malformed},
		{name: "jkt only (DPoP)", raw: raw(`{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}`), want: ErrInvalidToken, cause: method},
		{name: "jwk only", raw: raw(`{"jwk":{"kty":"oct","k":"AAAA"}}`), want: ErrInvalidToken, cause: method},
		{name: "kid only", raw: raw(`{"kid":"dfd1aa97-6d8d-4575-a0fe-34b96de2bfad"}`), want: ErrInvalidToken, cause: method},
		{name: "x5t (SHA-1) only", raw: raw(`{"x5t":"` + testThumb[:27] + `"}`), want: ErrInvalidToken, cause: method},
		{name: "cnf twice", raw: raw(`{"x5t#S256":"` + testThumb + `"},"cnf":{"x5t#S256":"` + other + `"}`), want: ErrInvalidToken, cause: errClaimsDup.(*VerifyError).Cause()},
		{name: "CNF", raw: rawClaims(t, c, "CNF", `{"x5t#S256":"`+testThumb+`"}`), want: ErrInvalidToken, cause: errClaimsCase.(*VerifyError).Cause()},
		{name: "cnf broken JSON", raw: raw(`{"x5t#S256":"` + testThumb + `",}`), want: ErrInvalidToken, cause: errClaims.(*VerifyError).Cause()},
		{name: "cnf broken JSON inside another member", raw: raw(`{"x5t#S256":"` + testThumb + `","jwk":{"k":tru}}`), want: ErrInvalidToken, cause: errClaims.(*VerifyError).Cause()},
	})
	// Exactly maxCnfMembers members is fine.
	mustVerify(t, f.v, signWith(t, f.key, hdr(HS256, testKID), raw(`{"x5t#S256":"`+testThumb+`"`+manyMembers(maxCnfMembers-1)+`}`)))
}

// manyMembers returns n members ,"m0":0,... to append to an object.
func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`,"m` + itoa(int64(i)) + `":0`)
	}
	return b.String()
}

// A refused cnf is refused from the cache's point of view too: the token is
// never cached, so a second presentation is refused again.
func TestVerifyCnfRefusedTwice(t *testing.T) {
	f := newFixture(t)
	tok := token(t, f.key, with(claimsAt(fixedNow), "cnf", map[string]any{"jkt": "x"}))
	for range 2 {
		assertCausePhrase(t, assertInvalid(t, f.v, tok), errCnfMethod.(*VerifyError).Cause())
	}
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("a refused token is cached")
	}
}

func TestRequireBoundTokens(t *testing.T) {
	clock := newClock()
	key := newHMAC(t, testKID, HS256)
	p := TollgateProfile()
	p.RequireBoundTokens = true
	other := newRSA(t, "other-1", RS256)
	v, err := NewVerifierFor([]Issuer{
		{Name: testIss, Keys: keySet(t, key), Audiences: []string{testAud}, Profile: p},
		{Name: "https://other.test", Keys: keySet(t, other), Audiences: []string{testAud}, Profile: TollgateProfile()},
	}, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	c := claimsAt(clock.Now())
	bound := with(c, "cnf", map[string]any{"x5t#S256": testThumb})
	if s := mustVerify(t, v, token(t, key, bound)); s.CertThumbprint() != testThumb {
		t.Fatalf("bound token: CertThumbprint() = %q", s.CertThumbprint())
	}
	assertCause(t, assertInvalid(t, v, token(t, key, c)), errUnbound)
	// Even an expired unbound token is invalid, not merely expired.
	stale := with(c, "exp", clock.Now().Add(-time.Hour).Unix(), "iat", clock.Now().Add(-2*time.Hour).Unix(), "nbf", nil, "auth_time", nil)
	assertCause(t, assertInvalid(t, v, token(t, key, stale)), errUnbound)
	// The other issuer's bearer tokens are still accepted.
	oc := with(c, "iss", "https://other.test")
	if s := mustVerify(t, v, token(t, other, oc)); s.CertThumbprint() != "" {
		t.Fatal("bearer token with a thumbprint")
	}
	// And a bound token of the issuer without the requirement is bound.
	if s := mustVerify(t, v, token(t, other, with(oc, "cnf", map[string]any{"x5t#S256": testThumb}))); s.CertThumbprint() != testThumb {
		t.Fatal("bound token of the other issuer lost its binding")
	}
}

func TestSignBoundToken(t *testing.T) {
	f := newFixture(t)
	signer, err := NewSigner(f.key)
	if err != nil {
		t.Fatal(err)
	}
	c := Claims{
		Issuer: testIss, Subject: "user-1", Audience: []string{testAud},
		IssuedAt: fixedNow, ExpiresAt: fixedNow.Add(time.Minute), CertThumbprint: testThumb,
	}
	tok, err := signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	seg := segments(t, tok)
	payload, _ := base64.RawURLEncoding.DecodeString(seg[1])
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if got, want := string(m["cnf"]), `{"x5t#S256":"`+testThumb+`"}`; got != want {
		t.Fatalf("cnf = %s, want %s", got, want)
	}
	if s := mustVerify(t, f.v, tok); s.CertThumbprint() != testThumb {
		t.Fatalf("CertThumbprint() = %q", s.CertThumbprint())
	}
	u, err := UnverifiedClaims(tok)
	if err != nil || u.CertThumbprint != testThumb {
		t.Fatalf("UnverifiedClaims: %q, %v", u.CertThumbprint, err)
	}
	// Unbound: no cnf at all.
	c.CertThumbprint = ""
	tok, err = signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mustDecode(t, segments(t, tok)[1]), "cnf") {
		t.Fatal("a bearer token carries cnf")
	}
	for _, bad := range []string{"abc", testThumb + "A", testThumb[:42] + "=", strings.Repeat("+", 43), strings.Repeat("a", 64)} {
		c.CertThumbprint = bad
		if _, err := signer.Sign(c); !errors.Is(err, ErrClaims) {
			t.Errorf("thumbprint %q: Sign error %v, want ErrClaims", bad, err)
		}
	}
	c.CertThumbprint = ""
	c.Extra = map[string]any{"cnf": map[string]any{"jkt": "x"}}
	if _, err := signer.Sign(c); !errors.Is(err, ErrClaims) {
		t.Errorf("cnf as a custom claim: Sign error %v, want ErrClaims", err)
	}
}

func mustDecode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An unbound token's verification allocates what it always did: the cnf
// check adds nothing to a bearer token's miss, and a bound token's session
// holds its thumbprint as a part of the claim set's text.
func TestVerifyBoundAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops entries at random under the race detector")
	}
	f := newFixture(t, WithCache(0, 0))
	c := claimsAt(fixedNow)
	bearer := token(t, f.key, c)
	bound := token(t, f.key, with(c, "cnf", map[string]any{"x5t#S256": testThumb}))
	mustVerify(t, f.v, bearer)
	mustVerify(t, f.v, bound)
	a := testing.AllocsPerRun(100, func() { _, _ = f.v.Verify(t.Context(), bearer) })
	b := testing.AllocsPerRun(100, func() { _, _ = f.v.Verify(t.Context(), bound) })
	if b != a {
		t.Fatalf("a bound token's verification allocates %v times, a bearer token's %v", b, a)
	}
}
