package token

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
	"github.com/tollgate/tollgate/session"
)

// The claim decoder of issue 8 against the one it replaced
// (claims_ref_test.go): for every claim set, both accept it with the same
// session, or both refuse it for the same cause. The one deliberate
// difference: a claim set that is not valid JSON is "malformed claims"
// even when it also has a duplicate or case-variant member name, which the
// old decoder reported first when the JSON was broken only inside a value
// (a bad number, literal or escape) rather than in its structure.

// diffVerifiers are the verifier configurations the differential runs
// under, picked by the fuzzer: with and without leeway and scope, default
// and long lifetimes and sessions.
func diffVerifiers(t testing.TB, ks *KeySet) []*Verifier {
	var vs []*Verifier
	for _, opts := range [][]VerifierOption{
		nil,
		{WithScopeClaim()},
		{WithLeeway(0)},
		{WithLeeway(MaxLeeway), WithScopeClaim(), WithMaxLifetime(24 * time.Hour), WithMaxSession(time.Hour)},
	} {
		vs = append(vs, newVerifier(t, ks, nil, opts...))
	}
	return vs
}

// newClaimsSession runs the claim stage of Verify (decode, parse, check,
// build) on the claim set data, as Verify runs it after a valid signature.
func newClaimsSession(v *Verifier, key *Key, data []byte, now time.Time) (*session.Session, error) {
	sc := getScratch()
	defer putScratch(sc)
	sc.tok = append(sc.tok[:0], "e30."...)
	sc.tok = b64.AppendEncode(sc.tok, data)
	sc.dot1, sc.dot2 = 3, len(sc.tok)
	sc.tok = append(sc.tok, ".AA"...)
	sc.key, sc.now, sc.iss = key, now, v.issuers[0]
	return v.claimsSession(sc)
}

// diffProbes are the permissions Has is asked for: each grant, and what
// lies around it.
func diffProbes(perms []string) []string {
	probes := []string{"", "*", "a", "a.b", "prices.read", "x.y.z"}
	for _, p := range perms {
		probes = append(probes, p, p+"x", p+".x", strings.TrimSuffix(p, "*"), strings.TrimSuffix(p, "*")+"x")
		if i := strings.LastIndexByte(p, '.'); i >= 0 {
			probes = append(probes, p[:i], p[:i+1])
		}
	}
	return probes
}

func checkDifferential(t *testing.T, v *Verifier, key *Key, data []byte, now time.Time) {
	t.Helper()
	got, err := newClaimsSession(v, key, data, now)
	want, werr := refVerifyClaims(v, data, now)
	switch {
	case err != nil && werr != nil:
		gc, wc := err.(*VerifyError).Cause(), werr.(*VerifyError).Cause()
		if gc == wc {
			return
		}
		// The documented tightening: a syntax error takes precedence over a
		// duplicate or case-variant name.
		if gc == errClaims.(*VerifyError).Cause() && (werr == errClaimsDup || werr == errClaimsCase) && !json.Valid(data) {
			return
		}
		t.Fatalf("claims %q: refused for %q, the old decoder for %q", data, gc, wc)
	case err != nil:
		t.Fatalf("claims %q: refused (%v), the old decoder accepts them", data, err)
	case werr != nil:
		t.Fatalf("claims %q: accepted, the old decoder refuses them (%v)", data, werr)
	}
	same := func(what string, g, w any) {
		t.Helper()
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("claims %q: %s = %#v, the old decoder %#v", data, what, g, w)
		}
	}
	sameTime := func(what string, g, w time.Time) {
		t.Helper()
		if !g.Equal(w) || g.Unix() != w.Unix() || g.Nanosecond() != w.Nanosecond() {
			t.Fatalf("claims %q: %s = %v, the old decoder %v", data, what, g, w)
		}
	}
	same("sub", got.Subject(), want.subject)
	same("iss", got.Issuer(), want.issuer)
	same("aud", sessionmint.Of(got).Audience, want.audience)
	same("jti", got.ID(), want.id)
	same("sid", got.SessionID(), want.sessionID)
	same("azp", got.AuthorizedParty(), want.azp)
	same("consumer key", got.ConsumerKey(), want.consumerKey)
	same("cert thumbprint", got.CertThumbprint(), want.certThumbprint)
	same("perms", got.Permissions(), slices.Clone(want.perms))
	same("perms nil", got.Permissions() == nil, want.perms == nil)
	same("custom claims", sessionmint.Of(got).ClaimsMap(), want.claims)
	if names := got.ClaimNames(); names == nil || !slices.Equal(names, slices.Sorted(maps.Keys(want.claims))) {
		t.Fatalf("claims %q: ClaimNames = %#v, want the sorted names of %v, never nil", data, names, want.claims)
	}
	for name, w := range want.claims {
		g, ok := got.Claim(name)
		same("Claim("+name+")", g, w)
		same("Claim("+name+") found", ok, true)
		for _, n := range []string{name, name + "x", name[:len(name)/2], "~"} {
			_, wok := want.claims[n]
			_, gok := got.Claim(n)
			same("Claim("+n+") found", gok, wok)
			gs, gok := got.ClaimString(n)
			ws, wok := refClaimString(want.claims, n)
			same("ClaimString("+n+")", [2]any{gs, gok}, [2]any{ws, wok})
		}
	}
	sameTime("iat", got.IssuedAt(), want.issuedAt)
	sameTime("nbf", got.NotBefore(), want.notBefore)
	sameTime("exp", got.ExpiresAt(), want.expiresAt)
	sameTime("auth_time", got.AuthTime(), want.authTime)
	sameTime("valid until", got.ValidUntil(), want.validUntil)
	for _, p := range diffProbes(want.perms) {
		if g, w := got.Has(p), want.has(p); g != w {
			t.Fatalf("claims %q: Has(%q) = %v, the old Has %v", data, p, g, w)
		}
	}
}

// diffSeeds are claim sets around every rule of the decoder.
func diffSeeds(t testing.TB) [][]byte {
	base := claimsAt(fixedNow)
	js := func(m map[string]any) []byte { return []byte(mustJSON(t, m)) }
	raw := func(name, value string) []byte {
		b := mustJSON(t, with(base, name, nil))
		return []byte(`{"` + name + `":` + value + `,` + b[1:])
	}
	var many []string
	for i := range 40 {
		many = append(many, "perm."+itoa(int64(i)), "wild"+itoa(int64(i))+".*")
	}
	seeds := [][]byte{
		js(base),
		js(with(base, "aud", []string{"billing", testAud}, "perms", []string{}, "scope", "a  b\tc.*", "azp", "")),
		js(with(base, "perms", many)),
		js(with(base, "perms", nil, "seller_id", nil, "sid", nil, "nbf", nil, "auth_time", nil)),
		js(with(base, "n", 1.5, "b", true, "f", false, "z", nil, "arr", []any{1, "a", nil}, "o", map[string]any{"a": []any{}})),
		js(with(base, "c1", 1, "c2", "2", "c3", 3.5, "c4", true, "c5", "", "c6", []any{}, "c7", "x", "c8", 8, "c9", "9", "c10", false, "c11", "k", "c12", map[string]any{})),
		raw("perms", `["a",null,"b.*"]`),
		raw("perms", `null`),
		raw("aud", `["pricing",null]`),
		raw("aud", `[""]`),
		raw("aud", `["","pricing"]`),
		raw("aud", `[]`),
		raw("iss", `"https:\/\/auth.tollgate.test"`),
		raw("sub", `"\u00e9\ud83d\ude00\ud800"`),
		raw("azp", `"a\"b"`),
		raw("jti", `null`),
		raw("exp", `1800000600.5`),
		raw("exp", `18000006e2`),
		raw("exp", `1.8000006E+9`),
		raw("exp", `-0`),
		raw("exp", `253402300799`),
		raw("exp", `253402300800`),
		raw("exp", `0253402300`),
		raw("exp", `1800000600.`),
		raw("exp", `.5`),
		raw("exp", `+1800000600`),
		raw("exp", `0x1p31`),
		raw("exp", `1e400`),
		raw("iat", `"1799999940"`),
		raw("auth_time", `null`),
		raw("x", `[`+strings.Repeat("[", 31)+strings.Repeat("]", 31)+`]`),
		raw("x", `[`+strings.Repeat("[", 32)+strings.Repeat("]", 32)+`]`),
		raw("x", `"\x"`),
		raw("x", "\"a\tb\""),
		raw("x", `tru`),
		raw("x", `[1,]`),
		raw("x", `{"a":1,}`),
		raw("x", `{"a" 1}`),
		raw("sub", `"a","SUB":1.`),
		raw("sub", `"a","sub":"b"`),
		raw("\u212aid", `1`),
		raw("\\u0073ub", `"b"`),
		raw("Exp", `1`),
		raw("cnf", `{"x5t#S256":"`+testThumb+`"}`),
		raw("cnf", `{"x5t#S256":"`+testThumb+`","jkt":"a","jwk":{"kty":"oct"}}`),
		raw("cnf", `{"x5t\u0023S256":"\u0041`+testThumb[1:]+`"}`),
		raw("cnf", `{"x5t#S256":"`+testThumb+`","X5T#S256":"`+testThumb+`"}`),
		raw("cnf", `{"x5t#S256":"`+testThumb+`","x5t#S256":"`+testThumb+`"}`),
		raw("cnf", `{"x5t#S256":"`+testThumb[:42]+`"}`),
		raw("cnf", `{"x5t#S256":"`+testThumb[:42]+`B"}`),
		raw("cnf", `{"x5t#S256":1}`),
		raw("cnf", `{"x5t#S256":null}`),
		raw("cnf", `{"jkt":"abc"}`),
		raw("cnf", `{}`),
		raw("cnf", `null`),
		raw("cnf", `"x"`),
		raw("cnf", `[]`),
		raw("cnf", `{"jkt":"a",}`),
		raw("cnf", `{"x5t#S256":"`+testThumb+`"`+manyMembers(maxCnfMembers)+`}`),
		raw("Cnf", `{"x5t#S256":"`+testThumb+`"}`),
		[]byte(`{}`),
		[]byte(`{"exp":1800000600,"iat":1799999940}`),
		[]byte(`[]`),
		[]byte(`null`),
		[]byte(" {\"sub\":\"a\"} \n"),
		[]byte(`{"sub":"a"} {}`),
		[]byte("\xef\xbb\xbf{}"),
	}
	return seeds
}

// FuzzClaimsDifferential fuzzes the claim set against the old decoder
// under the verifier configurations of diffVerifiers, at clock readings
// around the claims' times.
func FuzzClaimsDifferential(f *testing.F) {
	key := newHMAC(f, testKID, HS256)
	vs := diffVerifiers(f, keySet(f, key))
	for i, s := range diffSeeds(f) {
		f.Add(s, int64(i%5-2)*31, uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, offset int64, which uint8) {
		v := vs[int(which)%len(vs)]
		// Within two days of fixedNow, to the second: the claims of the
		// seeds sit around fixedNow.
		now := fixedNow.Add(time.Duration(offset%(2*86400)) * time.Second)
		checkDifferential(t, v, key, data, now)
	})
}

// TestClaimsDifferentialSeeds runs the differential over its seeds and
// every clock reading and configuration, so a plain go test checks it too.
func TestClaimsDifferentialSeeds(t *testing.T) {
	key := newHMAC(t, testKID, HS256)
	vs := diffVerifiers(t, keySet(t, key))
	accepted := 0
	for _, s := range diffSeeds(t) {
		for _, v := range vs {
			for _, off := range []int64{-3600, -31, -30, -1, 0, 1, 29, 30, 31, 600, 601, 630, 631, 3600} {
				checkDifferential(t, v, key, s, fixedNow.Add(time.Duration(off)*time.Second))
				if _, err := newClaimsSession(v, key, s, fixedNow.Add(time.Duration(off)*time.Second)); err == nil {
					accepted++
				}
			}
		}
	}
	// The seeds are not all refusals: the differential compares sessions.
	if accepted < 100 {
		t.Fatalf("only %d seed runs accepted", accepted)
	}
}
