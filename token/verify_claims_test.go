package token

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// Claim-level cases of research/security.md, at the Verifier: every token
// here is validly signed, so a rejection comes from the claim under test.

type claimCase struct {
	name   string
	claims map[string]any // nil value deletes a member; see with
	raw    string         // when set, the claims JSON as written
	want   error          // nil: accepted
	cause  string         // when set, the Cause() the refusal must have
}

func runClaimCases(t *testing.T, f *fixture, cases []claimCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := tc.raw
			if claims == "" {
				claims = mustJSON(t, tc.claims)
			}
			tok := signWith(t, f.key, hdr(HS256, testKID), claims)
			if tc.want == nil {
				mustVerify(t, f.v, tok)
				return
			}
			err := assertRejected(t, f.v, tok, tc.want)
			if tc.cause != "" {
				assertCausePhrase(t, err, tc.cause)
			}
		})
	}
}

// rawClaims renders claims with member name set to the JSON text value.
func rawClaims(t *testing.T, claims map[string]any, name, value string) string {
	t.Helper()
	js := mustJSON(t, with(claims, name, nil))
	return `{"` + name + `":` + value + `,` + js[1:]
}

// security.md case 15: exp required, a number, honoured with the leeway.
func TestVerifyExp(t *testing.T) {
	now := fixedNow
	c := claimsAt(now)
	f := newFixture(t)
	sec := func(d time.Duration) int64 { return now.Add(d).Unix() }
	runClaimCases(t, f, []claimCase{
		{name: "valid", claims: c},
		// golang-jwt's validator would refuse it too, as "claims invalid":
		// the cause proves that tollgate's own check refused it first.
		{name: "exp missing", claims: with(c, "exp", nil), want: ErrInvalidToken, cause: "missing exp"},
		{name: "exp now-29s (inside leeway)", claims: with(c, "exp", sec(-29*time.Second))},
		{name: "exp now-30s (leeway boundary)", claims: with(c, "exp", sec(-30*time.Second)), want: ErrExpiredToken},
		{name: "exp now-31s", claims: with(c, "exp", sec(-31*time.Second)), want: ErrExpiredToken},
		{name: "exp 0", raw: rawClaims(t, c, "exp", "0"), want: ErrExpiredToken},
		{name: "exp -1", raw: rawClaims(t, c, "exp", "-1"), want: ErrExpiredToken},
		{name: "exp string", raw: rawClaims(t, c, "exp", `"9999999999"`), want: ErrInvalidToken},
		{name: "exp string of now", raw: rawClaims(t, c, "exp", `"`+itoa(sec(time.Minute))+`"`), want: ErrInvalidToken},
		{name: "exp null", raw: rawClaims(t, c, "exp", "null"), want: ErrInvalidToken},
		{name: "exp true", raw: rawClaims(t, c, "exp", "true"), want: ErrInvalidToken},
		{name: "exp array", raw: rawClaims(t, c, "exp", "["+itoa(sec(time.Minute))+"]"), want: ErrInvalidToken},
		{name: "exp object", raw: rawClaims(t, c, "exp", "{}"), want: ErrInvalidToken},
		{name: "exp past year 9999", raw: rawClaims(t, c, "exp", "253402300800"), want: ErrInvalidToken},
		{name: "exp 1e400", raw: rawClaims(t, c, "exp", "1e400"), want: ErrInvalidToken},
		{name: "exp fractional valid", raw: rawClaims(t, c, "exp", itoa(sec(time.Minute))+".5")},
		{name: "exp exponent form valid", raw: rawClaims(t, c, "exp", "1.8000006e9")},
		{name: "iat missing", claims: with(c, "iat", nil), want: ErrInvalidToken},
		{name: "iat string", raw: rawClaims(t, c, "iat", `"`+itoa(sec(-time.Minute))+`"`), want: ErrInvalidToken},
		{name: "iat null", raw: rawClaims(t, c, "iat", "null"), want: ErrInvalidToken},
	})

	// iat is required in its own right, not only through the lifetime
	// bound: even a verifier that allows any lifetime refuses a token
	// without iat.
	unbounded := newFixtureFor(t, f.key, WithMaxLifetime(time.Duration(math.MaxInt64)))
	noAuth := with(c, "auth_time", nil) // auth_time is checked against iat; keep it out
	mustVerify(t, unbounded.v, token(t, f.key, noAuth))
	assertInvalid(t, unbounded.v, token(t, f.key, with(noAuth, "iat", nil)))
	assertCausePhrase(t, assertInvalid(t, unbounded.v, token(t, f.key, with(noAuth, "exp", nil))), "missing exp")

	// exp == now is expired when there is no leeway; one second later is not.
	f0 := newFixtureFor(t, f.key, WithLeeway(0))
	assertExpired(t, f0.v, token(t, f.key, with(c, "exp", now.Unix())))
	mustVerify(t, f0.v, token(t, f.key, with(c, "exp", now.Unix()+1)))

	// The leeway is bounded.
	for _, d := range []time.Duration{-time.Second, MaxLeeway + time.Second} {
		if _, err := NewVerifier(f.ks, testIss, testAud, WithLeeway(d)); err == nil {
			t.Errorf("WithLeeway(%v) accepted", d)
		}
	}
}

// security.md case 16: nbf and iat in the future beyond the leeway.
func TestVerifyNbfIat(t *testing.T) {
	now := fixedNow
	c := claimsAt(now)
	c = with(c, "auth_time", nil) // auth_time may not follow iat; keep it out of the way
	sec := func(d time.Duration) int64 { return now.Add(d).Unix() }
	runClaimCases(t, newFixture(t), []claimCase{
		{name: "nbf now+29s", claims: with(c, "nbf", sec(29*time.Second))},
		{name: "nbf now+30s (boundary)", claims: with(c, "nbf", sec(30*time.Second))},
		{name: "nbf now+31s", claims: with(c, "nbf", sec(31*time.Second)), want: ErrInvalidToken},
		{name: "nbf in an hour", claims: with(c, "nbf", sec(time.Hour)), want: ErrInvalidToken},
		{name: "nbf absent", claims: with(c, "nbf", nil)},
		{name: "nbf string", raw: rawClaims(t, c, "nbf", `"0"`), want: ErrInvalidToken},
		{name: "iat now+29s", claims: with(c, "iat", sec(29*time.Second))},
		{name: "iat now+30s (boundary)", claims: with(c, "iat", sec(30*time.Second))},
		{name: "iat now+31s", claims: with(c, "iat", sec(31*time.Second)), want: ErrInvalidToken},
		{name: "iat in a day", claims: with(c, "iat", sec(24*time.Hour), "exp", sec(24*time.Hour+time.Minute)), want: ErrInvalidToken},
	})
}

// security.md case 17: exp - iat may not exceed the maximum lifetime.
func TestVerifyMaxLifetime(t *testing.T) {
	now := fixedNow
	c := claimsAt(now)
	iat := now.Add(-time.Minute)
	f := newFixture(t)
	runClaimCases(t, f, []claimCase{
		{name: "10 years", claims: with(c, "iat", iat.Unix(), "exp", iat.AddDate(10, 0, 0).Unix()), want: ErrInvalidToken},
		{name: "1h exactly", claims: with(c, "iat", iat.Unix(), "exp", iat.Add(time.Hour).Unix())},
		{name: "1h+1s", claims: with(c, "iat", iat.Unix(), "exp", iat.Add(time.Hour+time.Second).Unix()), want: ErrInvalidToken},
		{name: "old iat, near exp", claims: with(c, "iat", now.Add(-2*time.Hour).Unix(), "exp", now.Add(time.Minute).Unix(), "auth_time", nil), want: ErrInvalidToken},
		{name: "iat at the dawn of time", claims: with(c, "iat", 0, "auth_time", nil), want: ErrInvalidToken},
		{name: "iat very negative", raw: rawClaims(t, c, "iat", "-253402300799"), want: ErrInvalidToken},
	})
	long := newFixtureFor(t, f.key, WithMaxLifetime(24*time.Hour))
	mustVerify(t, long.v, token(t, f.key, with(c, "iat", iat.Unix(), "exp", iat.Add(10*time.Hour).Unix())))
	assertInvalid(t, long.v, token(t, f.key, with(c, "iat", iat.Unix(), "exp", iat.AddDate(10, 0, 0).Unix())))
	for _, d := range []time.Duration{0, -time.Hour} {
		if _, err := NewVerifier(f.ks, testIss, testAud, WithMaxLifetime(d)); err == nil {
			t.Errorf("WithMaxLifetime(%v) accepted", d)
		}
	}
}

// security.md case 18: iss must match exactly; one issuer's key cannot
// vouch for another issuer.
func TestVerifyIssuer(t *testing.T) {
	c := claimsAt(fixedNow)
	runClaimCases(t, newFixture(t), []claimCase{
		{name: "exact", claims: c},
		{name: "missing", claims: with(c, "iss", nil), want: ErrInvalidToken},
		{name: "empty", claims: with(c, "iss", ""), want: ErrInvalidToken},
		{name: "different", claims: with(c, "iss", "https://evil.test"), want: ErrInvalidToken},
		{name: "upper case", claims: with(c, "iss", strings.ToUpper(testIss)), want: ErrInvalidToken},
		{name: "host case", claims: with(c, "iss", "https://Auth.tollgate.test"), want: ErrInvalidToken},
		{name: "trailing slash", claims: with(c, "iss", testIss+"/"), want: ErrInvalidToken},
		{name: "trailing space", claims: with(c, "iss", testIss+" "), want: ErrInvalidToken},
		{name: "prefix", claims: with(c, "iss", testIss+".evil.test"), want: ErrInvalidToken},
		{name: "array", claims: with(c, "iss", []string{testIss}), want: ErrInvalidToken},
		{name: "null", raw: rawClaims(t, c, "iss", "null"), want: ErrInvalidToken},
		{name: "number", raw: rawClaims(t, c, "iss", "1"), want: ErrInvalidToken},
	})

	// Two issuers, each with its own key and verifier.
	const issA, issB = "https://a.tollgate.test", "https://b.tollgate.test"
	keyA := newES(t, "a1", ES256)
	keyB := newES(t, "b1", ES256)
	clock := newClock()
	vA, err := NewVerifier(keySet(t, keyA), issA, testAud, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	vB, err := NewVerifier(keySet(t, keyB), issB, testAud, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, vA, token(t, keyA, with(c, "iss", issA)))
	mustVerify(t, vB, token(t, keyB, with(c, "iss", issB)))
	// A's key signs a token claiming issuer B.
	forged := token(t, keyA, with(c, "iss", issB))
	assertInvalid(t, vB, forged) // B does not know A's kid
	assertInvalid(t, vA, forged) // A does not accept issuer B
	// Same, naming B's kid: B's key does not verify A's signature.
	assertInvalid(t, vB, signWith(t, keyA, hdr(ES256, "b1"), mustJSON(t, with(c, "iss", issB))))
	// And with no kid at all (single-key sets resolve it).
	assertInvalid(t, vB, signWith(t, keyA, `{"alg":"ES256","typ":"at+jwt"}`, mustJSON(t, with(c, "iss", issB))))
}

// security.md case 19: aud must name this service; a token for another
// service is not accepted here.
func TestVerifyAudience(t *testing.T) {
	c := claimsAt(fixedNow)
	f := newFixture(t)
	runClaimCases(t, f, []claimCase{
		{name: "string", claims: c},
		{name: "array with ours", claims: with(c, "aud", []string{"billing", testAud})},
		{name: "missing", claims: with(c, "aud", nil), want: ErrInvalidToken},
		{name: "empty array", claims: with(c, "aud", []string{}), want: ErrInvalidToken},
		{name: "empty string", claims: with(c, "aud", ""), want: ErrInvalidToken},
		{name: "array of empty", claims: with(c, "aud", []string{""}), want: ErrInvalidToken},
		{name: "foreign", claims: with(c, "aud", "billing"), want: ErrInvalidToken},
		{name: "foreign array", claims: with(c, "aud", []string{"billing", "orders"}), want: ErrInvalidToken},
		{name: "case variant", claims: with(c, "aud", "Pricing"), want: ErrInvalidToken},
		{name: "prefix", claims: with(c, "aud", testAud+"-admin"), want: ErrInvalidToken},
		{name: "wildcard", claims: with(c, "aud", "*"), want: ErrInvalidToken},
		{name: "numeric", raw: rawClaims(t, c, "aud", "1"), want: ErrInvalidToken},
		{name: "numeric in array", raw: rawClaims(t, c, "aud", `["pricing",1]`), want: ErrInvalidToken},
		{name: "null", raw: rawClaims(t, c, "aud", "null"), want: ErrInvalidToken},
		{name: "object", raw: rawClaims(t, c, "aud", `{"pricing":true}`), want: ErrInvalidToken},
		{name: "bool", raw: rawClaims(t, c, "aud", `true`), want: ErrInvalidToken},
	})

	// Substitution: the same key set, two services. The pricing token is
	// not accepted by billing.
	billing, err := NewVerifier(f.ks, testIss, "billing", WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	forPricing := token(t, f.key, c)
	mustVerify(t, f.v, forPricing)
	assertInvalid(t, billing, forPricing)
	mustVerify(t, billing, token(t, f.key, with(c, "aud", "billing")))
}

// security.md case 20: sub and jti are required; jti is at most 128 bytes.
func TestVerifySubAndJTI(t *testing.T) {
	c := claimsAt(fixedNow)
	runClaimCases(t, newFixture(t), []claimCase{
		{name: "sub missing", claims: with(c, "sub", nil), want: ErrInvalidToken},
		{name: "sub empty", claims: with(c, "sub", ""), want: ErrInvalidToken},
		{name: "sub null", raw: rawClaims(t, c, "sub", "null"), want: ErrInvalidToken},
		{name: "sub number", raw: rawClaims(t, c, "sub", "42"), want: ErrInvalidToken},
		{name: "sub array", claims: with(c, "sub", []string{"a"}), want: ErrInvalidToken},
		{name: "jti missing", claims: with(c, "jti", nil), want: ErrInvalidToken},
		{name: "jti empty", claims: with(c, "jti", ""), want: ErrInvalidToken},
		{name: "jti number", raw: rawClaims(t, c, "jti", "7"), want: ErrInvalidToken},
		{name: "jti 128", claims: with(c, "jti", strings.Repeat("j", 128))},
		{name: "jti 129", claims: with(c, "jti", strings.Repeat("j", 129)), want: ErrInvalidToken},
		{name: "jti 4096", claims: with(c, "jti", strings.Repeat("j", 4096)), want: ErrInvalidToken},
	})
}

// The time claims checked on their own: auth_time bounds the session.
func TestVerifyAuthTime(t *testing.T) {
	now := fixedNow
	c := claimsAt(now)
	sec := func(d time.Duration) int64 { return now.Add(d).Unix() }
	f := newFixture(t)
	runClaimCases(t, f, []claimCase{
		{name: "absent", claims: with(c, "auth_time", nil)},
		{name: "7h59m ago", claims: with(c, "auth_time", sec(-8*time.Hour+time.Minute))},
		{name: "8h ago (inside leeway)", claims: with(c, "auth_time", sec(-8*time.Hour))},
		{name: "8h30s ago (leeway boundary)", claims: with(c, "auth_time", sec(-8*time.Hour-30*time.Second)), want: ErrExpiredToken},
		{name: "9h ago", claims: with(c, "auth_time", sec(-9*time.Hour)), want: ErrExpiredToken},
		{name: "a week ago", claims: with(c, "auth_time", sec(-7*24*time.Hour)), want: ErrExpiredToken},
		// iat within the leeway, auth_time not after iat + leeway, but
		// auth_time itself beyond now + leeway.
		{name: "in the future", claims: with(c, "auth_time", sec(45*time.Second), "iat", sec(29*time.Second)), want: ErrInvalidToken},
		{name: "in the future, after iat", claims: with(c, "auth_time", sec(time.Minute), "iat", sec(29*time.Second)), want: ErrInvalidToken},
		{name: "in a day", claims: with(c, "auth_time", sec(24*time.Hour)), want: ErrInvalidToken},
		{name: "after iat", claims: with(c, "auth_time", sec(0)), want: ErrInvalidToken},
		{name: "string", raw: rawClaims(t, c, "auth_time", `"`+itoa(sec(-time.Hour))+`"`), want: ErrInvalidToken},
		{name: "null", raw: rawClaims(t, c, "auth_time", `null`), want: ErrInvalidToken},
	})

	// Without leeway, the end of the session is exact.
	f0 := newFixtureFor(t, f.key, WithLeeway(0))
	assertExpired(t, f0.v, token(t, f.key, with(c, "auth_time", sec(-8*time.Hour))))
	mustVerify(t, f0.v, token(t, f.key, with(c, "auth_time", sec(-8*time.Hour+time.Second))))
	// A shorter maximum session.
	short := newFixtureFor(t, f.key, WithMaxSession(2*time.Hour))
	assertExpired(t, short.v, token(t, f.key, with(c, "auth_time", sec(-3*time.Hour))))

	// ValidUntil is the earlier of exp and auth_time + max session.
	s := mustVerify(t, f.v, token(t, f.key, with(c, "auth_time", sec(-8*time.Hour+2*time.Minute))))
	if want := now.Add(2 * time.Minute); !s.ValidUntil().Equal(want) {
		t.Errorf("ValidUntil = %v, want auth_time+8h = %v", s.ValidUntil(), want)
	}
	s = mustVerify(t, f.v, token(t, f.key, c))
	if want := time.Unix(c["exp"].(int64), 0); !s.ValidUntil().Equal(want) {
		t.Errorf("ValidUntil = %v, want exp = %v", s.ValidUntil(), want)
	}
}

// An error says "expired" only when expiry is the sole problem: a token that
// is both expired and wrong in any other way is invalid, so that a caller
// never treats a forged or misdirected token as merely stale (and, say,
// tries to renew it).
func TestVerifyExpiredOnlyWhenOtherwiseValid(t *testing.T) {
	now := fixedNow
	old := with(claimsAt(now), "exp", now.Add(-time.Hour).Unix(), "iat", now.Add(-90*time.Minute).Unix(),
		"nbf", nil, "auth_time", nil)
	f := newFixture(t)
	runClaimCases(t, f, []claimCase{
		{name: "expired only", claims: old, want: ErrExpiredToken},
		{name: "expired, foreign aud", claims: with(old, "aud", "billing"), want: ErrInvalidToken},
		{name: "expired, no aud", claims: with(old, "aud", nil), want: ErrInvalidToken},
		{name: "expired, foreign iss", claims: with(old, "iss", "https://evil.test"), want: ErrInvalidToken},
		{name: "expired, no sub", claims: with(old, "sub", nil), want: ErrInvalidToken},
		{name: "expired, no jti", claims: with(old, "jti", nil), want: ErrInvalidToken},
		{name: "expired, too long lifetime", claims: with(old, "iat", now.AddDate(-10, 0, 0).Unix()), want: ErrInvalidToken},
		{name: "expired, nbf after exp in the future", claims: with(old, "nbf", now.Add(time.Hour).Unix()), want: ErrInvalidToken},
		{name: "expired, auth_time after iat", claims: with(old, "auth_time", now.Add(-time.Minute).Unix()), want: ErrInvalidToken},
		{name: "session over, foreign aud", claims: with(claimsAt(now), "auth_time", now.Add(-9*time.Hour).Unix(), "aud", "billing"), want: ErrInvalidToken},
	})
}

// security.md case 27 (opacity, at the Verifier): a bad signature, an
// unknown kid and a foreign aud all fail as ErrInvalidToken, and no error
// text carries the token, a segment, or any value from inside it.
func TestVerifyErrorOpacity(t *testing.T) {
	f := newFixture(t)
	const marker = "Zq7marker"
	c := with(claimsAt(fixedNow), "sub", marker+"-sub", "jti", marker+"-jti", "seller_id", marker+"-seller",
		"azp", marker+"-azp", "sid", marker+"-sid")
	good := token(t, f.key, c)
	mustVerify(t, f.v, good)
	seg := segments(t, good)
	badSig := seg[0] + "." + seg[1] + "." + segments(t, token(t, newHMAC(t, testKID, HS256), c))[2]
	unknownKID := signWith(t, f.key, hdr(HS256, marker+"-kid"), mustJSON(t, c))
	badAud := token(t, f.key, with(c, "aud", marker+"-aud"))
	for name, tok := range map[string]string{
		"bad signature": badSig,
		"unknown kid":   unknownKID,
		"bad aud":       badAud,
	} {
		t.Run(name, func(t *testing.T) {
			err := assertInvalid(t, f.v, tok)
			if strings.Contains(err.Error(), marker) {
				t.Fatalf("error text carries a value from the token: %q", err)
			}
			if !strings.HasPrefix(err.Error(), "invalid token") {
				t.Fatalf("error text %q does not start with the fixed phrase", err)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Expired() {
				t.Fatalf("VerifyError.Expired() true for %s", name)
			}
		})
	}
}
