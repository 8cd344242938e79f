package token

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The claim set is decoded by hand (issue 8), and is exactly as strict as
// the encoding/json round it replaced: the whole claim set must be valid
// JSON, custom claim values included.
func TestVerifyClaimsJSONGrammar(t *testing.T) {
	f := newFixture(t)
	c := claimsAt(fixedNow)
	malformed := errClaims.(*VerifyError).Cause()
	for name, value := range map[string]string{
		"leading zero":            `01`,
		"negative leading zero":   `-01`,
		"bare dot":                `1.`,
		"leading dot":             `.5`,
		"plus sign":               `+1`,
		"hex float":               `0x1p3`,
		"exponent without digits": `1e`,
		"exponent sign only":      `1e+`,
		"minus alone":             `-`,
		"Infinity":                `Infinity`,
		"NaN":                     `NaN`,
		"bad escape":              `"\x41"`,
		"short unicode escape":    `"\u12"`,
		"unicode escape not hex":  `"\u12G4"`,
		"tab in a string":         "\"a\tb\"",
		"newline in a string":     "\"a\nb\"",
		"single quotes":           `'a'`,
		"truncated literal":       `tru`,
		"literal and more":        `truex`,
		"capitalised literal":     `True`,
		"array trailing comma":    `[1,]`,
		"array missing comma":     `[1 2]`,
		"object trailing comma":   `{"a":1,}`,
		"object missing colon":    `{"a" 1}`,
		"unquoted key":            `{a:1}`,
		"bad number deep inside":  `{"a":[{"b":[1,2,03]}]}`,
		"33 levels":               strings.Repeat("[", 33) + strings.Repeat("]", 33),
	} {
		t.Run("custom claim/"+name, func(t *testing.T) {
			err := assertInvalid(t, f.v, signWith(t, f.key, hdr(HS256, testKID), rawClaims(t, c, "x", value)))
			assertCausePhrase(t, err, malformed)
		})
		// In a registered claim too, a syntax error is malformed claims,
		// not a claim of the wrong type.
		t.Run("exp/"+name, func(t *testing.T) {
			err := assertInvalid(t, f.v, signWith(t, f.key, hdr(HS256, testKID), rawClaims(t, c, "exp", value)))
			assertCausePhrase(t, err, malformed)
		})
	}
	t.Run("trailing data", func(t *testing.T) {
		err := assertInvalid(t, f.v, signWith(t, f.key, hdr(HS256, testKID), mustJSON(t, c)+` {}`))
		assertCausePhrase(t, err, malformed)
	})

	// What is valid JSON is accepted, and reads back as encoding/json
	// decodes it.
	for name, value := range map[string]string{
		"exponent":        `1E+2`,
		"negative zero":   `-0`,
		"small fraction":  `-0.5e-3`,
		"escapes":         `"\u00e9\/\b\f\n\r\t\"\\"`,
		"lone surrogate":  `"\ud800"`,
		"32 levels":       strings.Repeat("[", 32) + strings.Repeat("]", 32),
		"nested":          `{"a":[{},[],{"b":null}],"c":"d"}`,
		"white space":     " [ 1 , { \"a\" : true } ] ",
		"literal":         `false`,
		"empty string":    `""`,
		"big integer":     `123456789012345678901234567890`,
		"empty object":    `{}`,
		"string of digit": `"7"`,
	} {
		t.Run("accepted/"+name, func(t *testing.T) {
			s := mustVerify(t, f.v, signWith(t, f.key, hdr(HS256, testKID), rawClaims(t, c, "x", value)))
			dec := json.NewDecoder(strings.NewReader(value))
			dec.UseNumber()
			var want any
			if err := dec.Decode(&want); err != nil {
				t.Fatal(err)
			}
			got, ok := s.Claim("x")
			if !ok || mustJSON(t, got) != mustJSON(t, want) {
				t.Fatalf("Claim(x) = %#v, encoding/json decodes %#v", got, want)
			}
		})
	}
}

// A claim set that is not valid JSON is "malformed claims" whatever else
// is wrong with it, a duplicate or case-variant name included: the one
// place where the decoder of issue 8 names another cause than the
// encoding/json one did (which reported the name first when the JSON was
// broken only inside a value). Valid JSON keeps the old order: a refused
// name before a claim of the wrong type.
func TestVerifyClaimsCausePrecedence(t *testing.T) {
	f := newFixture(t)
	c := claimsAt(fixedNow)
	for _, tc := range []struct {
		name, claims string
		want         error
	}{
		{"duplicate, then a bad number", rawClaims(t, c, "sub", `"a","sub":1.`), errClaims},
		{"case variant, then a bad escape", rawClaims(t, c, "sub", `"a","SUB":"\q"`), errClaims},
		{"bad literal, then a duplicate", rawClaims(t, c, "x", `nul,"x":1`), errClaims},
		{"wrong type, then a bad number", rawClaims(t, c, "sub", `1,"y":01`), errClaims},
		{"duplicate", rawClaims(t, c, "sub", `"a","sub":"b"`), errClaimsDup},
		{"escaped duplicate", rawClaims(t, c, "sub", `"a","\u0073ub":"b"`), errClaimsDup},
		{"folded duplicate", rawClaims(t, c, "kid", `1,"\u212aid":2`), errClaimsDup},
		{"case variant", rawClaims(t, c, "Sub", `"a"`), errClaimsCase},
		{"wrong type, then a duplicate", rawClaims(t, c, "sub", `1,"x":1,"X":2`), errClaimsDup},
		{"wrong type, then a case variant", rawClaims(t, c, "sub", `1,"AUD":2`), errClaimsCase},
		{"wrong type", rawClaims(t, c, "sub", `1`), errClaimType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertCause(t, assertInvalid(t, f.v, signWith(t, f.key, hdr(HS256, testKID), tc.claims)), tc.want)
		})
	}
}

// An uncached Verify allocates the session and one string for all its
// claim strings, plus what perms and custom claims need: a token of one
// aud and no perms or custom claims costs 2 allocations; the benchmark's
// token (3 perms, a seller_id) 5.
func TestVerifyMissAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops entries at random under the race detector")
	}
	f := newFixture(t, WithCache(0, 0))
	for _, tc := range []struct {
		name   string
		claims map[string]any
		max    float64
	}{
		{"one aud, no perms, no custom claims", with(claimsAt(fixedNow), "perms", nil, "seller_id", nil), 2},
		{"benchmark claims", map[string]any{
			"iss": testIss, "sub": "user-8f14e45f", "aud": testAud,
			"iat": fixedNow.Add(-time.Minute).Unix(), "nbf": fixedNow.Add(-time.Minute).Unix(),
			"exp": fixedNow.Add(14 * time.Minute).Unix(), "auth_time": fixedNow.Add(-2 * time.Hour).Unix(),
			"jti": "Yq3c8k2xT0m9vJ4bN7aLzw", "sid": "sess-0c9d1f2e", "azp": "checkout-service",
			"perms": []string{"prices.read", "prices.write", "orders.*"}, "seller_id": "seller-4711",
		}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := token(t, f.key, tc.claims)
			mustVerify(t, f.v, tok)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := f.v.Verify(t.Context(), tok); err != nil {
					panic(err)
				}
			})
			if allocs > tc.max {
				t.Fatalf("%v allocations, want at most %v", allocs, tc.max)
			}
		})
	}
}
