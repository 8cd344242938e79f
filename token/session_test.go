package token

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
)

// What a verified session.Session exposes: registered claims, custom claims,
// permissions and the consumer.

func TestSessionAccessors(t *testing.T) {
	f := newFixture(t)
	c := claimsAt(fixedNow)
	c["aud"] = []string{testAud, "billing"}
	s := mustVerify(t, f.v, token(t, f.key, c))

	unix := func(name string) time.Time { return time.Unix(c[name].(int64), 0) }
	checks := []struct {
		name      string
		got, want any
	}{
		{"Subject", s.Subject(), "user-42"},
		{"Issuer", s.Issuer(), testIss},
		{"Audience", s.Audience(), []string{testAud, "billing"}},
		{"ID", s.ID(), "jti-0001"},
		{"SessionID", s.SessionID(), "sid-0001"},
		{"AuthorizedParty", s.AuthorizedParty(), "checkout"},
		{"KeyID", s.KeyID(), testKID},
		{"Algorithm", s.Algorithm(), HS256},
		{"Permissions", s.Permissions(), []string{"prices.read", "orders.*"}},
		{"ClaimNames", s.ClaimNames(), []string{"seller_id"}},
	}
	for _, ch := range checks {
		if mustJSON(t, ch.got) != mustJSON(t, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	for name, pair := range map[string][2]time.Time{
		"IssuedAt":  {s.IssuedAt(), unix("iat")},
		"NotBefore": {s.NotBefore(), unix("nbf")},
		"ExpiresAt": {s.ExpiresAt(), unix("exp")},
		"AuthTime":  {s.AuthTime(), unix("auth_time")},
	} {
		if !pair[0].Equal(pair[1]) {
			t.Errorf("%s = %v, want %v", name, pair[0], pair[1])
		}
	}

	// Slices handed out are copies: a caller cannot change a session that
	// the cache shares with other calls.
	aud := s.Audience()
	aud[0] = "evil"
	perms := s.Permissions()
	perms[0] = "admin.write"
	again := mustVerify(t, f.v, token(t, f.key, c)) // same token text: a cache hit
	if again != s {
		t.Fatal("second Verify of the same token was not served from the cache")
	}
	if s.Audience()[0] != testAud || s.Has("admin.write") || s.Permissions()[0] != "prices.read" {
		t.Fatal("mutating returned slices changed the session")
	}

	// String is for logs: no jti, no token.
	str := s.String()
	if strings.Contains(str, "jti-0001") || !strings.Contains(str, "user-42") || !strings.Contains(str, session.Fingerprint("jti-0001")) {
		t.Errorf("String() = %q", str)
	}
	if session.Fingerprint("") != "" || len(session.Fingerprint("x")) != 16 || session.Fingerprint("a") == session.Fingerprint("b") {
		t.Error("Fingerprint is not a 16-hex-digit digest")
	}

	// Registered claims are not custom claims.
	for _, name := range []string{"sub", "exp", "perms", "aud", "scope", "missing"} {
		if v, ok := s.Claim(name); ok {
			t.Errorf("Claim(%q) = %v, true; want absent", name, v)
		}
	}
}

func TestSessionCustomClaims(t *testing.T) {
	f := newFixture(t)
	raw := `{"iss":"` + testIss + `","sub":"u","aud":"` + testAud + `","exp":` + itoa(fixedNow.Add(time.Minute).Unix()) +
		`,"iat":` + itoa(fixedNow.Unix()) + `,"jti":"j",` +
		`"seller_id":"s-77","quota":12345678901234567890,"ratio":1.50,"vip":true,"off":false,` +
		`"nothing":null,"tags":["a","b"],"meta":{"k":"v"},"esc\u0061ped":"yes","esc_val":"a\u00e9\"b","neg":-0.5e-3}`
	s := mustVerify(t, f.v, signWith(t, f.key, hdr(HS256, testKID), raw))

	strs := []struct {
		name string
		want string
		ok   bool
	}{
		{"seller_id", "s-77", true},
		{"quota", "12345678901234567890", true}, // as written: no float rounding
		{"ratio", "1.50", true},
		{"vip", "true", true},
		{"off", "false", true},
		{"escaped", "yes", true},
		{"esc_val", "a\u00e9\"b", true},
		{"neg", "-0.5e-3", true},
		{"nothing", "", false},
		{"tags", "", false},
		{"meta", "", false},
		{"missing", "", false},
		{"sub", "", false},
	}
	for _, tc := range strs {
		got, ok := s.ClaimString(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ClaimString(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if v, ok := s.Claim("seller_id"); !ok || v != "s-77" {
		t.Errorf("Claim(seller_id) = %#v, %v", v, ok)
	}
	if v, ok := s.Claim("quota"); !ok || v != json.Number("12345678901234567890") {
		t.Errorf("Claim(quota) = %#v, %v; want a json.Number", v, ok)
	}
	if v, ok := s.Claim("vip"); !ok || v != true {
		t.Errorf("Claim(vip) = %#v, %v", v, ok)
	}
	if v, ok := s.Claim("nothing"); !ok || v != nil {
		t.Errorf("Claim(nothing) = %#v, %v; want nil, true", v, ok)
	}
	if v, ok := s.Claim("tags"); !ok || mustJSON(t, v) != `["a","b"]` {
		t.Errorf("Claim(tags) = %#v, %v", v, ok)
	}
	if v, ok := s.Claim("meta"); !ok || mustJSON(t, v) != `{"k":"v"}` {
		t.Errorf("Claim(meta) = %#v, %v", v, ok)
	}
	// Arrays and objects handed out are copies: the cache shares this
	// session with every later call presenting the same token.
	tags, _ := s.Claim("tags")
	tags.([]any)[0] = "changed"
	meta, _ := s.Claim("meta")
	meta.(map[string]any)["k"] = "changed"
	meta.(map[string]any)["new"] = true
	if v, _ := s.Claim("tags"); mustJSON(t, v) != `["a","b"]` {
		t.Errorf("mutating a returned array changed the session: %v", v)
	}
	if v, _ := s.Claim("meta"); mustJSON(t, v) != `{"k":"v"}` {
		t.Errorf("mutating a returned object changed the session: %v", v)
	}
	want := []string{"esc_val", "escaped", "meta", "neg", "nothing", "off", "quota", "ratio", "seller_id", "tags", "vip"}
	if got := s.ClaimNames(); !slices.Equal(got, want) {
		t.Errorf("ClaimNames = %v, want %v", got, want)
	}
}

func TestSessionHas(t *testing.T) {
	f := newFixture(t)
	s := mustVerify(t, f.v, token(t, f.key, with(claimsAt(fixedNow), "perms",
		[]string{"prices.*", "orders.read", "*", ".*", "*.*"})))
	for _, tc := range []struct {
		perm string
		want bool
	}{
		{"prices.read", true},
		{"prices.x.y", true},
		{"prices.write", true},
		{"orders.read", true},
		{"prices", false},
		{"prices.", false},
		{"pricesx.read", false},
		{"Prices.read", false},
		{"orders.write", false},
		{"orders", false},
		{"orders.read.all", false},
		{"billing.read", false},
		{"anything", false},
		{"x.y", false},
		{"", false},
		{"read", false},
	} {
		if got := s.Has(tc.perm); got != tc.want {
			t.Errorf("Has(%q) = %v, want %v", tc.perm, got, tc.want)
		}
	}

	// "*" alone grants no real permission.
	star := mustVerify(t, f.v, token(t, f.key, with(claimsAt(fixedNow), "perms", []string{"*"})))
	for _, p := range []string{"prices.read", "admin", "a.b.c", "x"} {
		if star.Has(p) {
			t.Errorf(`perms ["*"] grants %q`, p)
		}
	}
	// A pattern asked for is never granted, not even by the same literal
	// string in the token: Require(ctx, "*") must not pass.
	for _, p := range []string{"*", "prices.*", "*.*", ".*"} {
		if s.Has(p) || star.Has(p) {
			t.Errorf("Has(%q) = true; a permission asked for is never a pattern", p)
		}
	}

	// perms of the wrong type are refused outright.
	for name, perms := range map[string]string{
		"string":        `"prices.read"`,
		"numbers":       `[1,2]`,
		"mixed":         `["prices.read",1]`,
		"object":        `{"prices.read":true}`,
		"nested arrays": `[["prices.read"]]`,
	} {
		t.Run(name, func(t *testing.T) {
			assertInvalid(t, f.v, signWith(t, f.key, hdr(HS256, testKID), rawClaims(t, claimsAt(fixedNow), "perms", perms)))
		})
	}
}

func TestSessionScope(t *testing.T) {
	c := with(claimsAt(fixedNow), "scope", "a b  prices.* ", "perms", []string{"p"})
	plain := newFixture(t)
	scoped := newFixtureFor(t, plain.key, WithScopeClaim())
	tok := token(t, plain.key, c)

	s := mustVerify(t, scoped.v, tok)
	for _, p := range []string{"a", "b", "p", "prices.read"} {
		if !s.Has(p) {
			t.Errorf("WithScopeClaim: Has(%q) = false", p)
		}
	}
	if s.Has("a b") || s.Has("") || s.Has("c") {
		t.Error("WithScopeClaim: scope grants more than its words")
	}
	if got := s.Permissions(); !slices.Equal(got, []string{"p", "a", "b", "prices.*"}) {
		t.Errorf("Permissions = %v", got)
	}

	s = mustVerify(t, plain.v, tok)
	for _, p := range []string{"a", "b", "prices.read"} {
		if s.Has(p) {
			t.Errorf("without WithScopeClaim: scope grants %q", p)
		}
	}
	if !s.Has("p") {
		t.Error("without WithScopeClaim: perms ignored")
	}
	// A scope that is not a string is refused, configured or not.
	bad := signWith(t, plain.key, hdr(HS256, testKID), rawClaims(t, c, "scope", `["a","b"]`))
	assertInvalid(t, plain.v, bad)
	assertInvalid(t, scoped.v, bad)
}

func TestSessionConsumer(t *testing.T) {
	f := newFixture(t)
	c := claimsAt(fixedNow)
	if s := mustVerify(t, f.v, token(t, f.key, c)); s.Consumer() != "checkout" || s.ConsumerKey() != "azp:checkout" {
		t.Errorf("with azp: Consumer %q, ConsumerKey %q; want the azp", s.Consumer(), s.ConsumerKey())
	}
	for name, claims := range map[string]map[string]any{
		"azp absent": with(c, "azp", nil),
		"azp empty":  with(c, "azp", ""),
	} {
		if s := mustVerify(t, f.v, token(t, f.key, claims)); s.Consumer() != "user-42" || s.ConsumerKey() != "sub:user-42" {
			t.Errorf("%s: Consumer %q, ConsumerKey %q; want the subject", name, s.Consumer(), s.ConsumerKey())
		}
	}
	// A subject named like a service is not that service.
	asService := mustVerify(t, f.v, token(t, f.key, with(c, "azp", nil, "sub", "checkout", "jti", "j-2")))
	if asService.Consumer() != "checkout" || asService.ConsumerKey() == "azp:checkout" {
		t.Errorf("sub=checkout without azp: ConsumerKey %q must differ from the service's", asService.ConsumerKey())
	}
	assertInvalid(t, f.v, signWith(t, f.key, hdr(HS256, testKID), rawClaims(t, c, "azp", `1`)))
}

// Verifier.Expired is false up to ValidUntil+leeway and true from it, the
// same instant Verify starts refusing the token.
func TestVerifierExpiredBoundary(t *testing.T) {
	for _, withAuth := range []bool{false, true} {
		f := newFixture(t)
		c := claimsAt(fixedNow)
		if withAuth {
			c["auth_time"] = fixedNow.Add(-8*time.Hour + 5*time.Minute).Unix() // ends before exp
		} else {
			delete(c, "auth_time")
		}
		tok := token(t, f.key, c)
		s := mustVerify(t, f.v, tok)
		edge := s.ValidUntil().Add(f.v.Leeway())
		fresh := newFixtureFor(t, f.key, WithCache(0, 0))

		for _, tc := range []struct {
			at      time.Time
			expired bool
		}{
			{fixedNow, false},
			{edge.Add(-time.Nanosecond), false},
			{edge, true},
			{edge.Add(time.Hour), true},
		} {
			f.clock.Set(tc.at)
			fresh.clock.Set(tc.at)
			if got := f.v.Expired(s); got != tc.expired {
				t.Errorf("auth_time=%v: Expired at ValidUntil+leeway%+v = %v, want %v", withAuth, tc.at.Sub(edge), got, tc.expired)
			}
			_, err := fresh.v.Verify(t.Context(), tok)
			if (err != nil) != tc.expired {
				t.Errorf("auth_time=%v: at ValidUntil+leeway%+v Verify err = %v, Expired = %v: they disagree", withAuth, tc.at.Sub(edge), err, tc.expired)
			}
		}
	}
}

func TestContext(t *testing.T) {
	if s, ok := session.FromContext(context.Background()); ok || s != nil {
		t.Fatal("FromContext of an empty context found a session")
	}
	if _, ok := session.FromContext(session.NewContext(context.Background(), nil)); ok {
		t.Fatal("FromContext found a nil session")
	}
	f := newFixture(t)
	s := mustVerify(t, f.v, token(t, f.key, claimsAt(fixedNow)))
	got, ok := session.FromContext(session.NewContext(context.Background(), s))
	if !ok || got != s {
		t.Fatal("FromContext did not return the session put in")
	}
}

// Cached reports only tokens Verify accepted and the cache may still serve:
// never one that was refused, never past ValidUntil, never after its key
// left the set.
func TestVerifierCached(t *testing.T) {
	f := newFixture(t)
	tok := token(t, f.key, claimsAt(fixedNow))
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("a token never verified is cached")
	}
	sess := mustVerify(t, f.v, tok)
	if got, ok := f.v.Cached(tok); !ok || got != sess {
		t.Fatalf("Cached after Verify = %v, %v; want the same session", got, ok)
	}
	forged := token(t, newHMAC(t, testKID, HS256), claimsAt(fixedNow))
	_ = assertInvalid(t, f.v, forged)
	if _, ok := f.v.Cached(forged); ok {
		t.Fatal("a refused token is cached")
	}
	f.clock.Set(sess.ValidUntil())
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("served at ValidUntil")
	}
	f.clock.Set(fixedNow)
	mustVerify(t, f.v, tok)
	if err := f.v.SetKeys(keySet(t, newHMAC(t, testKID, HS256))); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("served after its key left the set")
	}
	if _, ok := f.v.Cached(""); ok {
		t.Fatal("the empty token is cached")
	}
}
