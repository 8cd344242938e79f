package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
)

// Provider fixtures: the header and claim shapes each identity provider
// documents for the tokens a service receives, member for member (values
// invented), signed by test keys. providerFixtures builds them at now.

var (
	providerRSAOnce sync.Once
	providerRSA     []*rsa.PrivateKey
	providerRSAErr  error
)

// providerKey returns the i-th of a few distinct RSA keys, so that issuers
// of one test never share key material.
func providerKey(t testing.TB, i int, kid string) *Key {
	t.Helper()
	providerRSAOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				providerRSAErr = err
				return
			}
			providerRSA = append(providerRSA, k)
		}
	})
	if providerRSAErr != nil {
		t.Fatal(providerRSAErr)
	}
	k, err := NewPrivateKey(kid, RS256, providerRSA[i%len(providerRSA)])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type providerFixture struct {
	name     string
	issuer   Issuer
	key      *Key
	header   string
	claims   string
	consumer string // want ConsumerKey
	perms    []string
}

func (f providerFixture) token(t testing.TB) string {
	t.Helper()
	return signWith(t, f.key, f.header, f.claims)
}

func providerFixtures(t testing.TB, now time.Time) []providerFixture {
	t.Helper()
	iat := now.Unix() - 60
	n := func(d int64) string { return itoa(iat + d) }
	kc := providerKey(t, 0, "kc-2026")
	a0 := providerKey(t, 1, "a0-NjVBRjY5MDlCMUIw")
	okta := providerKey(t, 2, "okta-k1")
	ggl := providerKey(t, 3, "g-6f7254101f56e41cf35c9926de84a2d552b4c6f1")
	entra := providerKey(t, 0, "entra-nOo3ZDrODXEK1jKWhXslHR_KXEg")
	spiffe := newES(t, "spire-k1", ES256)
	ks := func(k *Key) *KeySet {
		pub, err := k.Public()
		if err != nil {
			t.Fatal(err)
		}
		return keySet(t, pub)
	}
	return []providerFixture{{
		name: "keycloak",
		issuer: Issuer{Name: "https://sso.example.com/realms/pricing", Keys: ks(kc),
			Audiences: []string{"pricing"}, Profile: KeycloakProfile()},
		key:    kc,
		header: `{"alg":"RS256","typ":"JWT","kid":"kc-2026"}`,
		claims: `{"exp":` + n(300) + `,"iat":` + n(0) + `,"jti":"onrtcc:8c1f4c3e-6a2f-4c57-9b8e-2f3b1f0c6d11","iss":"https://sso.example.com/realms/pricing",` +
			`"aud":["pricing","account"],"sub":"5b0b3c1e-0f2a-4a8e-9c3d-7e6f5a4b3c2d","typ":"Bearer","azp":"orders-service","acr":"1",` +
			`"allowed-origins":["/*"],"realm_access":{"roles":["default-roles-pricing","offline_access","prices.read","uma_authorization"]},` +
			`"resource_access":{"account":{"roles":["manage-account","view-profile"]}},"scope":"profile email","clientHost":"10.0.0.7",` +
			`"email_verified":false,"preferred_username":"service-account-orders-service","clientAddress":"10.0.0.7","client_id":"orders-service"}`,
		consumer: "azp:orders-service",
		perms:    []string{"default-roles-pricing", "offline_access", "prices.read", "uma_authorization"},
	}, {
		name: "auth0",
		issuer: Issuer{Name: "https://pricing-example.eu.auth0.com/", Keys: ks(a0),
			Audiences: []string{"https://pricing.example.com"}, Profile: Auth0Profile()},
		key:    a0,
		header: `{"alg":"RS256","typ":"JWT","kid":"a0-NjVBRjY5MDlCMUIw"}`,
		claims: `{"iss":"https://pricing-example.eu.auth0.com/","sub":"X3bFq8sMv1Ck9pLz@clients","aud":"https://pricing.example.com",` +
			`"iat":` + n(0) + `,"exp":` + n(86400) + `,"gty":"client-credentials","azp":"X3bFq8sMv1Ck9pLz",` +
			`"scope":"read:prices write:prices","permissions":["read:prices","write:prices"]}`,
		consumer: "azp:X3bFq8sMv1Ck9pLz",
		perms:    []string{"read:prices", "write:prices", "read:prices", "write:prices"},
	}, {
		name: "okta",
		issuer: Issuer{Name: "https://example.okta.com/oauth2/default", Keys: ks(okta),
			Audiences: []string{"api://pricing"}, Profile: OktaProfile()},
		key:    okta,
		header: `{"kid":"okta-k1","alg":"RS256"}`,
		claims: `{"ver":1,"jti":"AT.u9y0nRk8VYk1LZtq3p0zJQk2G8wBqfYVQZ8c1l3JrHs","iss":"https://example.okta.com/oauth2/default",` +
			`"aud":"api://pricing","iat":` + n(0) + `,"exp":` + n(3600) + `,"cid":"0oa8ordersvc","scp":["prices.read","prices.write"],"sub":"0oa8ordersvc"}`,
		consumer: "cid:0oa8ordersvc",
		perms:    []string{"prices.read", "prices.write"},
	}, {
		name: "google",
		issuer: Issuer{Name: "https://accounts.google.com", Keys: ks(ggl),
			Audiences: []string{"https://pricing-abc123-ew.a.run.app"}, Profile: GoogleProfile()},
		key:    ggl,
		header: `{"alg":"RS256","kid":"g-6f7254101f56e41cf35c9926de84a2d552b4c6f1","typ":"JWT"}`,
		claims: `{"aud":"https://pricing-abc123-ew.a.run.app","azp":"114563819273645271839","email":"orders@example-project.iam.gserviceaccount.com",` +
			`"email_verified":true,"exp":` + n(3600) + `,"iat":` + n(0) + `,"iss":"https://accounts.google.com","sub":"114563819273645271839"}`,
		consumer: "azp:114563819273645271839",
	}, {
		name: "entra",
		issuer: Issuer{Name: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0", Keys: ks(entra),
			Audiences: []string{"api://pricing", "6e74172b-be56-4843-9ff4-e66a39bb12e3"}, Profile: EntraProfile()},
		key:    entra,
		header: `{"typ":"JWT","alg":"RS256","x5t":"nOo3ZDrODXEK1jKWhXslHR_KXEg","kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		claims: `{"aud":"6e74172b-be56-4843-9ff4-e66a39bb12e3","iss":"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",` +
			`"iat":` + n(0) + `,"nbf":` + n(0) + `,"exp":` + n(4500) + `,"aio":"E2RgYJg...","azp":"d3590ed6-52b3-4102-aeff-aad2292ab01c","azpacr":"1",` +
			`"oid":"a9c3f8a4-3d1e-4a43-9d4e-2b7f0c1e6d5a","rh":"0.AXcA...","roles":["Prices.Write"],"sub":"a9c3f8a4-3d1e-4a43-9d4e-2b7f0c1e6d5a",` +
			`"tid":"9188040d-6c67-4c5b-b112-36a304b66dad","uti":"fqiBqXLPj0eQa82S-IYFAA","ver":"2.0"}`,
		consumer: "azp:d3590ed6-52b3-4102-aeff-aad2292ab01c",
		perms:    []string{"Prices.Write"},
	}, {
		name: "spiffe",
		issuer: Issuer{Name: "spiffe://example.org", Keys: ks(spiffe),
			Audiences: []string{"spiffe://example.org/pricing"}, Profile: SPIFFEProfile()},
		key:      spiffe,
		header:   `{"alg":"ES256","kid":"spire-k1","typ":"JWT"}`,
		claims:   `{"aud":["spiffe://example.org/pricing"],"exp":` + n(300) + `,"sub":"spiffe://example.org/ns/default/sa/orders"}`,
		consumer: "sub:spiffe://example.org/ns/default/sa/orders",
	}}
}

// Each provider's token, in the shape the provider issues, verifies under
// that provider's profile: permissions and consumer come from the claims
// the profile names. Under tollgate's own strict profile every one of them
// is refused, as before.
func TestProviderTokens(t *testing.T) {
	clock := newClock()
	for _, f := range providerFixtures(t, clock.Now()) {
		t.Run(f.name, func(t *testing.T) {
			v, err := NewVerifierFor([]Issuer{f.issuer}, WithClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			tok := f.token(t)
			s := mustVerify(t, v, tok)
			if _, want, _ := strings.Cut(f.consumer, ":"); s.ConsumerKey() != f.consumer || s.Consumer() != want {
				t.Errorf("consumer key %q (consumer %q), want %q", s.ConsumerKey(), s.Consumer(), f.consumer)
			}
			if got := s.Permissions(); !slices.Equal(got, f.perms) && !(len(got) == 0 && len(f.perms) == 0) {
				t.Errorf("permissions %q, want %q", got, f.perms)
			}
			for _, p := range f.perms {
				if !s.Has(p) {
					t.Errorf("Has(%q) false", p)
				}
			}
			if s.Has("prices.admin") {
				t.Error("Has(prices.admin) true")
			}
			if s.Issuer() != f.issuer.Name && s.Issuer() != "" {
				t.Errorf("issuer %q", s.Issuer())
			}
			// Never renewed by a service.
			if DefaultRenewalPolicy().Due(s, clock.Now().Add(time.Hour)) {
				t.Error("an external token is due for renewal")
			}
			if _, err := DefaultRenewalPolicy().Successor(s, clock.Now()); !errors.Is(err, ErrNotRenewable) {
				t.Errorf("Successor = %v, want ErrNotRenewable", err)
			}

			strict := f.issuer
			strict.Profile = TollgateProfile()
			sv, err := NewVerifierFor([]Issuer{strict}, WithClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			assertInvalid(t, sv, tok)
		})
	}
}

// One verifier trusts all the providers and tollgate's own issuer. Each
// token is verified with its own issuer's keys only: a token that names
// one issuer and a kid of another issuer's set, or the same kid under
// another issuer's key, is refused; so is an iss the verifier does not
// know, before any key is looked up.
func TestSeveralIssuers(t *testing.T) {
	clock := newClock()
	fixtures := providerFixtures(t, clock.Now())
	own := newRSA(t, "tg-1", RS256)
	issuers := []Issuer{{Name: testIss, Keys: keySet(t, own), Audiences: []string{testAud}, Profile: TollgateProfile()}}
	for _, f := range fixtures {
		issuers = append(issuers, f.issuer)
	}
	v, err := NewVerifierFor(issuers, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Issuers(); len(got) != len(issuers) || got[0] != testIss {
		t.Fatalf("Issuers() = %q", got)
	}
	for _, f := range fixtures {
		if s := mustVerify(t, v, f.token(t)); s.ConsumerKey() != f.consumer {
			t.Errorf("%s: consumer %q, want %q", f.name, s.ConsumerKey(), f.consumer)
		}
	}
	s := mustVerify(t, v, token(t, own, claimsAt(clock.Now())))
	if s.ConsumerKey() != "azp:checkout" {
		t.Errorf("tollgate token: consumer %q", s.ConsumerKey())
	}

	kc, okta := fixtures[0], fixtures[2]
	// Keycloak's iss, Okta's kid, Okta's key: the kid is not in
	// Keycloak's set.
	cross := strings.Replace(kc.header, `"kid":"kc-2026"`, `"kid":"okta-k1"`, 1)
	assertCause(t, assertInvalid(t, v, signWith(t, okta.key, cross, kc.claims)), errUnknownKID)
	// Keycloak's iss and kid, signed by another issuer's key of the same
	// kid: the signature is checked against Keycloak's key only.
	impostor := providerKey(t, 2, "kc-2026")
	assertCause(t, assertInvalid(t, v, signWith(t, impostor, kc.header, kc.claims)), errSignature)

	unknown := strings.Replace(kc.claims, `"iss":"https://sso.example.com/realms/pricing"`, `"iss":"https://sso.example.com/realms/other"`, 1)
	assertCause(t, assertInvalid(t, v, signWith(t, kc.key, kc.header, unknown)), errUnknownIssuer)
	noIss := strings.Replace(kc.claims, `"iss":"https://sso.example.com/realms/pricing",`, ``, 1)
	// Without iss the token goes to the one issuer that accepts none
	// (SPIFFE), whose keys do not hold Keycloak's kid.
	assertCause(t, assertInvalid(t, v, signWith(t, kc.key, kc.header, noIss)), errUnknownKID)
	// An escaped iss picks its issuer by its decoded value.
	escaped := strings.Replace(kc.claims, `"iss":"https://sso.example.com/realms/pricing"`, `"iss":"https:\/\/sso.example.com\/realms\/pricing"`, 1)
	mustVerify(t, v, signWith(t, kc.key, kc.header, escaped))
}

// What each profile refuses: the header members it does not tolerate, the
// typ values it does not accept, jti and iat where required, lifetimes past
// its bound, permissions and consumer claims of the wrong type.
func TestProfileRefusals(t *testing.T) {
	clock := newClock()
	fx := providerFixtures(t, clock.Now())
	byName := map[string]providerFixture{}
	for _, f := range fx {
		byName[f.name] = f
	}
	verifier := func(t *testing.T, is Issuer) *Verifier {
		t.Helper()
		v, err := NewVerifierFor([]Issuer{is}, WithClock(clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	entra := byName["entra"]
	ev := verifier(t, entra.issuer)
	for _, h := range []string{
		`{"typ":"JWT","alg":"RS256","x5c":["MIIC"],"kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		`{"typ":"JWT","alg":"RS256","jku":"https://evil.example/keys","kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		`{"typ":"JWT","alg":"RS256","x5t":1,"kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		`{"typ":"JWT","alg":"RS256","x5t":"a","x5t":"b","kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		`{"typ":"at+jwt","alg":"RS256","kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		`{"alg":"RS256","kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
	} {
		assertInvalid(t, ev, signWith(t, entra.key, h, entra.claims))
	}
	// x5t is tolerated but never selects a key: a token whose x5t names
	// nothing known still needs its kid.
	mustVerify(t, ev, signWith(t, entra.key, `{"typ":"JWT","alg":"RS256","x5t#S256":"bm90aGluZw","kid":"entra-nOo3ZDrODXEK1jKWhXslHR_KXEg"}`, entra.claims))
	assertCause(t, assertInvalid(t, ev, signWith(t, entra.key, `{"typ":"JWT","alg":"RS256","x5t":"nOo3ZDrODXEK1jKWhXslHR_KXEg","kid":"other"}`, entra.claims)), errUnknownKID)
	// Okta's profile accepts a header without typ; Entra's does not, and
	// tollgate's x5t-less strictness stays for other profiles.
	okta := byName["okta"]
	ov := verifier(t, okta.issuer)
	assertInvalid(t, ov, signWith(t, okta.key, `{"kid":"okta-k1","alg":"RS256","x5t":"abc"}`, okta.claims))
	mustVerify(t, ov, signWith(t, okta.key, `{"kid":"okta-k1","alg":"RS256","typ":"application/JWT"}`, okta.claims))
	// A permissions claim of the wrong type refuses the token.
	bad := strings.Replace(okta.claims, `"scp":["prices.read","prices.write"]`, `"scp":["prices.read",7]`, 1)
	assertCause(t, assertInvalid(t, ov, signWith(t, okta.key, okta.header, bad)), errPermsClaim)
	bad = strings.Replace(okta.claims, `"scp":["prices.read","prices.write"]`, `"scp":{"a":1}`, 1)
	assertCause(t, assertInvalid(t, ov, signWith(t, okta.key, okta.header, bad)), errPermsClaim)
	bad = strings.Replace(okta.claims, `"cid":"0oa8ordersvc"`, `"cid":["0oa8ordersvc"]`, 1)
	assertCause(t, assertInvalid(t, ov, signWith(t, okta.key, okta.header, bad)), errConsumerClaim)
	// A space-separated scp string is accepted too.
	str := strings.Replace(okta.claims, `"scp":["prices.read","prices.write"]`, `"scp":"prices.read prices.write"`, 1)
	if s := mustVerify(t, ov, signWith(t, okta.key, okta.header, str)); !s.Has("prices.write") {
		t.Error("scp string not read")
	}
	// Without cid the consumer falls back to sub.
	nocid := strings.Replace(okta.claims, `"cid":"0oa8ordersvc",`, ``, 1)
	if s := mustVerify(t, ov, signWith(t, okta.key, okta.header, nocid)); s.ConsumerKey() != "sub:0oa8ordersvc" {
		t.Errorf("consumer %q", s.ConsumerKey())
	}

	// A lifetime bound, once configured, holds for an external issuer.
	a0 := byName["auth0"]
	bounded := a0.issuer
	bounded.Profile.MaxLifetime = 12 * time.Hour
	assertCause(t, assertInvalid(t, verifier(t, bounded), a0.token(t)), errLifetime)

	// SPIFFE: no iat and no iss are accepted, but sub, aud, exp are still
	// required, and a lifetime bound cannot be met without iat.
	sp := byName["spiffe"]
	sv := verifier(t, sp.issuer)
	noSub := strings.Replace(sp.claims, `,"sub":"spiffe://example.org/ns/default/sa/orders"`, ``, 1)
	assertCause(t, assertInvalid(t, sv, signWith(t, sp.key, sp.header, noSub)), errNoSub)
	noExp := strings.Replace(sp.claims, `"exp":`, `"nexp":`, 1)
	assertCause(t, assertInvalid(t, sv, signWith(t, sp.key, sp.header, noExp)), errNoExp)
	otherIss := strings.Replace(sp.claims, `{`, `{"iss":"spiffe://other.org",`, 1)
	assertCause(t, assertInvalid(t, sv, signWith(t, sp.key, sp.header, otherIss)), errIssuer)
	withIss := strings.Replace(sp.claims, `{`, `{"iss":"spiffe://example.org",`, 1)
	mustVerify(t, sv, signWith(t, sp.key, sp.header, withIss))
	lim := sp.issuer
	lim.Profile.MaxLifetime = time.Hour
	assertCause(t, assertInvalid(t, verifier(t, lim), sp.token(t)), errLifetime)

	// jti: optional where the profile says so, required by tollgate's.
	kc := byName["keycloak"]
	noJTI := strings.Replace(kc.claims, `"jti":"onrtcc:8c1f4c3e-6a2f-4c57-9b8e-2f3b1f0c6d11",`, ``, 1)
	s := mustVerify(t, verifier(t, kc.issuer), signWith(t, kc.key, kc.header, noJTI))
	if s.ID() != "" {
		t.Errorf("ID() = %q", s.ID())
	}
	// Logs then refer to the token by a fingerprint of its claims,
	// distinct for another token of the same subject.
	other := strings.Replace(noJTI, `"iat":`, `"nbf":`+itoa(clock.Now().Add(-time.Minute).Unix())+`,"iat":`, 1)
	s2 := mustVerify(t, verifier(t, kc.issuer), signWith(t, kc.key, kc.header, other))
	if s.LogRef() == "" || s.LogRef() == s2.LogRef() || s.LogRef() != session.Fingerprint(noJTI+"azp:orders-service") {
		t.Errorf("LogRef() = %q and %q, want distinct fingerprints of the claims", s.LogRef(), s2.LogRef())
	}
	if strings.Contains(s.LogRef(), "5b0b3c1e") {
		t.Error("LogRef holds the subject")
	}
	strictKC := kc.issuer
	strictKC.Profile.OptionalJTI = false
	assertCause(t, assertInvalid(t, verifier(t, strictKC), signWith(t, kc.key, kc.header, noJTI)), errJTI)

	// Keycloak's auth_time of a long SSO session does not end its
	// token: the maximum session bounds only tokens this service renews.
	old := strings.Replace(kc.claims, `{`, `{"auth_time":`+itoa(clock.Now().Add(-20*time.Hour).Unix())+`,`, 1)
	mustVerify(t, verifier(t, kc.issuer), signWith(t, kc.key, kc.header, old))
}

// Configuration mistakes are errors at construction, never a verifier
// with a hole.
func TestIssuerConfigErrors(t *testing.T) {
	ks := keySet(t, newRSA(t, "k", RS256))
	good := Issuer{Name: testIss, Keys: ks, Audiences: []string{testAud}, Profile: TollgateProfile()}
	cases := map[string]func(is *Issuer) []Issuer{
		"no profile":     func(is *Issuer) []Issuer { is.Profile = Profile{}; return nil },
		"no keys":        func(is *Issuer) []Issuer { is.Keys = nil; return nil },
		"no audience":    func(is *Issuer) []Issuer { is.Audiences = nil; return nil },
		"empty audience": func(is *Issuer) []Issuer { is.Audiences = []string{""}; return nil },
		"no name":        func(is *Issuer) []Issuer { is.Name = ""; return nil },
		"tolerate jku":   func(is *Issuer) []Issuer { is.Profile.TolerateHeaders = []string{"jku"}; return nil },
		"tolerate x5c":   func(is *Issuer) []Issuer { is.Profile.TolerateHeaders = []string{"x5c"}; return nil },
		"empty perms":    func(is *Issuer) []Issuer { is.Profile.PermissionsClaims = []string{"a..b"}; return nil },
		"perms in sub":   func(is *Issuer) []Issuer { is.Profile.PermissionsClaims = []string{"sub.roles"}; return nil },
		"consumer path":  func(is *Issuer) []Issuer { is.Profile.ConsumerClaims = []string{"a.b"}; return nil },
		"consumer exp":   func(is *Issuer) []Issuer { is.Profile.ConsumerClaims = []string{"exp"}; return nil },
		"negative life":  func(is *Issuer) []Issuer { is.Profile.MaxLifetime = -time.Second; return nil },
		"twice":          func(is *Issuer) []Issuer { return []Issuer{*is, *is} },
		"two without iss": func(is *Issuer) []Issuer {
			a, b := *is, *is
			a.Profile, b.Profile = SPIFFEProfile(), SPIFFEProfile()
			b.Name = "other"
			return []Issuer{a, b}
		},
	}
	for name, mutate := range cases {
		is := good
		is.Profile.TolerateHeaders = slices.Clone(is.Profile.TolerateHeaders)
		list := mutate(&is)
		if list == nil {
			list = []Issuer{is}
		}
		if _, err := NewVerifierFor(list); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewVerifierFor(nil); err == nil {
		t.Error("no issuers: no error")
	}
	if _, err := NewVerifierFor([]Issuer{good}, WithMaxLifetime(time.Hour)); err == nil {
		t.Error("WithMaxLifetime with NewVerifierFor: no error")
	}
	if _, err := NewVerifierFor([]Issuer{good}, WithScopeClaim()); err == nil {
		t.Error("WithScopeClaim with NewVerifierFor: no error")
	}
	v, err := NewVerifierFor([]Issuer{good, {Name: "https://other", Keys: ks, Audiences: []string{"x"}, Profile: KeycloakProfile()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.SetKeys(ks); err == nil {
		t.Error("SetKeys on a verifier of two issuers: no error")
	}
	// The renewer signs with the renewable issuer's keys; a verifier of
	// external issuers only has none to renew.
	ext, err := NewVerifierFor([]Issuer{{Name: "https://other", Keys: ks, Audiences: []string{"x"}, Profile: KeycloakProfile()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocalRenewer(ext, DefaultRenewalPolicy()); err == nil {
		t.Error("NewLocalRenewer of a verifier without a renewable issuer: no error")
	}
}

// fakeSource is a KeySource whose set the test replaces, and whose
// Unknown answers with the set the test prepared.
type fakeSource struct {
	mu       sync.Mutex
	cur      *KeySet
	next     *KeySet // what Unknown returns
	watchers []func(*KeySet)
	unknown  []string
}

func (s *fakeSource) Current() *KeySet { s.mu.Lock(); defer s.mu.Unlock(); return s.cur }
func (s *fakeSource) Watch(f func(*KeySet)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers = append(s.watchers, f)
}
func (s *fakeSource) Unknown(_ context.Context, kid string) *KeySet {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unknown = append(s.unknown, kid)
	return s.next
}
func (s *fakeSource) publish(ks *KeySet) {
	s.mu.Lock()
	s.cur = ks
	ws := slices.Clone(s.watchers)
	s.mu.Unlock()
	for _, w := range ws {
		w(ks)
	}
}

// A key source's new set replaces the verifier's: tokens of a key it
// learns verify, tokens of a key it dropped are refused even when cached,
// and a kid the set lacks is asked of the source once per verification.
func TestVerifierFollowsKeySource(t *testing.T) {
	clock := newClock()
	k1, k2 := newES(t, "k1", ES256), newES(t, "k2", ES256)
	src := &fakeSource{cur: keySet(t, k1)}
	v, err := NewVerifierFor([]Issuer{{Name: testIss, Keys: src, Audiences: []string{testAud}, Profile: TollgateProfile()}}, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t1 := token(t, k1, claimsAt(clock.Now()))
	s1 := mustVerify(t, v, t1)
	if s, ok := v.Cached(t1); !ok || s != s1 {
		t.Fatal("k1 token not cached")
	}

	// k2 is unknown: the source is asked, has nothing, the token is
	// refused.
	t2 := token(t, k2, claimsAt(clock.Now()))
	assertCause(t, assertInvalid(t, v, t2), errUnknownKID)
	if !slices.Equal(src.unknown, []string{"k2"}) {
		t.Fatalf("Unknown calls %q", src.unknown)
	}
	// The source learns k2 on the unknown-kid path: the token verifies,
	// and the verifier keeps the new set.
	both := keySet(t, k1, k2)
	src.next = both
	mustVerify(t, v, t2)
	if v.Keys() != both {
		t.Fatal("the set Unknown returned was not adopted")
	}
	// A published set without k1 drops k1's cached token.
	src.next = nil
	src.publish(keySet(t, k2))
	if _, ok := v.Cached(t1); ok {
		t.Fatal("cached token of a removed key still served")
	}
	assertCause(t, assertInvalid(t, v, t1), errUnknownKID)
	mustVerify(t, v, t2)
}

// A source that has no keys yet (its issuer was down at start, and it was
// told to start anyway) makes a verifier that refuses every token until the
// source learns a set: each kid is asked of it.
func TestVerifierOfEmptySource(t *testing.T) {
	clock := newClock()
	k1 := newES(t, "k1", ES256)
	src := &fakeSource{}
	v, err := NewVerifierFor([]Issuer{{Name: testIss, Keys: src, Audiences: []string{testAud}, Profile: TollgateProfile()}}, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, k1, claimsAt(clock.Now()))
	assertCause(t, assertInvalid(t, v, tok), errUnknownKID)
	src.next = keySet(t, k1)
	mustVerify(t, v, tok)
	src.next = nil
	src.publish(nil)
	assertCause(t, assertInvalid(t, v, token(t, k1, with(claimsAt(clock.Now()), "jti", "other"))), errUnknownKID)
}
