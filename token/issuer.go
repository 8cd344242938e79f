package token

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Issuer is one issuer a [Verifier] trusts: its name, its keys, the
// audiences its tokens must name one of, and the profile of its tokens.
// A token's iss picks its issuer before anything else is checked, and only
// that issuer's keys may verify it: never a key of another issuer.
type Issuer struct {
	// Name is the iss its tokens carry, compared byte for byte.
	Name string
	// Keys is where its keys come from: a [*KeySet] (files, environment
	// variables) or a [*JWKS] (a published key set, OIDC discovery).
	Keys KeySource
	// Audiences: a token must name at least one of them in aud.
	Audiences []string
	// Profile says what its tokens look like; required. [TollgateProfile]
	// is tollgate's own strict one; the others are for identity providers.
	Profile Profile
}

// Profile describes the tokens an issuer issues: the header members and
// typ values they carry, which claims are optional, how long they may live,
// and where permissions and the consumer are read from. Everything a
// profile does not allow is refused, as for tollgate's own tokens: crit,
// jku, x5u, jwk, x5c, zip and enc headers are refused under every profile.
type Profile struct {
	// Name names the profile in errors and logs ("tollgate", "keycloak").
	Name string
	// Types are the typ header values accepted, compared without case and
	// with or without the "application/" prefix; "" accepts a header with
	// no typ. Empty means at+jwt only.
	Types []string
	// TolerateHeaders are header members accepted and ignored: never used
	// to select a key. Only "x5t" and "x5t#S256" may be named.
	TolerateHeaders []string
	// OptionalJTI accepts tokens without a jti. The verified-token cache
	// and the renewal single flight key on the token itself anyway; the
	// logs then refer to it by a fingerprint of its claim set
	// (session.Session.LogRef).
	OptionalJTI bool
	// OptionalIAT accepts tokens without an iat (SPIFFE JWT-SVIDs need not
	// carry one). Such a token is never renewed, and is refused when
	// MaxLifetime is set, which it cannot be checked against.
	OptionalIAT bool
	// OptionalIssuer attributes a token without iss to this issuer (SPIFFE
	// JWT-SVIDs need not carry one). At most one issuer of a verifier may
	// set it. A token that names an iss must still name this one.
	OptionalIssuer bool
	// MaxLifetime bounds exp - iat; 0 leaves the bound to exp alone, since
	// providers issue tokens of their own lifetimes (Auth0's access tokens
	// live 24 h).
	MaxLifetime time.Duration
	// PermissionsClaims are the claims whose values are the caller's
	// permissions, all of them together: "perms", "scope", "scp",
	// "permissions", "roles", or a dotted path into an object such as
	// "realm_access.roles". A value is an array of strings or one string of
	// space-separated words. Empty means "perms".
	PermissionsClaims []string
	// ConsumerClaims name who is calling, for throttling and logs: the
	// first of them present in a token wins, and sub when none is. Empty
	// means "azp". A consumer key is the claim's name, ":", its value
	// ("azp:orders", "client_id:orders", "sub:spiffe://...").
	ConsumerClaims []string
	// Renewable lets this service renew the issuer's tokens (tollgate's
	// own, signed by keys the service's renewer holds). Tokens of an
	// external issuer are never renewed by a service: their issuer renews
	// them, through its own refresh flow.
	Renewable bool
	// RequireBoundTokens refuses the issuer's tokens that are not bound to
	// a client certificate (RFC 8705: no cnf claim with x5t#S256), as
	// invalid. A bound token is refused on every connection but a
	// mutual-TLS one with that certificate, so a stolen one is useless;
	// with this set, no bearer token of the issuer is accepted at all.
	// A bound token of any issuer is checked whether this is set or not.
	RequireBoundTokens bool
}

// TollgateProfile is the profile of tollgate's own tokens, as strict as
// tollgate has always been: typ at+jwt, no header member but alg, kid and
// typ, jti and iat required, at most [DefaultMaxLifetime] from iat to exp,
// permissions in perms, the consumer in azp, renewable.
func TollgateProfile() Profile {
	return Profile{
		Name:        "tollgate",
		Types:       []string{"at+jwt"},
		MaxLifetime: DefaultMaxLifetime,
		Renewable:   true,
	}
}

// OIDCProfile is a generic profile for an OAuth 2.0 / OpenID Connect
// provider's access tokens (RFC 9068 and the common variants): typ at+jwt
// or JWT, jti optional, permissions in scope, the consumer in azp or
// client_id. A provider with a profile of its own is better served by it.
func OIDCProfile() Profile {
	return Profile{
		Name:              "oidc",
		Types:             []string{"at+jwt", "JWT"},
		OptionalJTI:       true,
		PermissionsClaims: []string{"scope"},
		ConsumerClaims:    []string{"azp", "client_id"},
	}
}

// KeycloakProfile: Keycloak access tokens carry typ JWT (at+jwt when the
// realm asks for RFC 9068 tokens), realm roles in realm_access.roles and
// the client in azp.
func KeycloakProfile() Profile {
	return Profile{
		Name:              "keycloak",
		Types:             []string{"at+jwt", "JWT"},
		OptionalJTI:       true,
		PermissionsClaims: []string{"realm_access.roles"},
		ConsumerClaims:    []string{"azp"},
	}
}

// Auth0Profile: Auth0 access tokens carry typ JWT or at+jwt, scopes in
// scope, RBAC permissions in permissions, the client in azp, and live up to
// 24 h.
func Auth0Profile() Profile {
	return Profile{
		Name:              "auth0",
		Types:             []string{"at+jwt", "JWT"},
		OptionalJTI:       true,
		PermissionsClaims: []string{"permissions", "scope"},
		ConsumerClaims:    []string{"azp"},
	}
}

// OktaProfile: Okta access tokens carry no typ, scopes as an array in scp,
// and the client in cid.
func OktaProfile() Profile {
	return Profile{
		Name:              "okta",
		Types:             []string{"", "at+jwt", "JWT"},
		OptionalJTI:       true,
		PermissionsClaims: []string{"scp"},
		ConsumerClaims:    []string{"cid"},
	}
}

// GoogleProfile: Google-signed ID tokens (service-to-service calls carry
// them) have typ JWT, no jti and no permissions, and name the calling
// client in azp. Rules that need a permission deny them; rules that need
// only an authenticated caller admit them.
func GoogleProfile() Profile {
	return Profile{
		Name:           "google",
		Types:          []string{"", "JWT"},
		OptionalJTI:    true,
		ConsumerClaims: []string{"azp"},
	}
}

// EntraProfile: Microsoft Entra ID access tokens carry typ JWT and an x5t
// header, no jti, application permissions in roles and delegated ones in
// scp, and the client in azp (v2.0 tokens) or appid (v1.0).
func EntraProfile() Profile {
	return Profile{
		Name:              "entra",
		Types:             []string{"JWT"},
		TolerateHeaders:   []string{"x5t", "x5t#S256"},
		OptionalJTI:       true,
		PermissionsClaims: []string{"roles", "scp"},
		ConsumerClaims:    []string{"azp", "appid"},
	}
}

// SPIFFEProfile: SPIFFE JWT-SVIDs carry typ JWT or JOSE or none, no jti,
// possibly no iat and no iss, and name the workload in sub, which is the
// consumer. They carry no permissions.
func SPIFFEProfile() Profile {
	return Profile{
		Name:           "spiffe",
		Types:          []string{"", "JWT", "JOSE"},
		OptionalJTI:    true,
		OptionalIAT:    true,
		OptionalIssuer: true,
		ConsumerClaims: []string{"sub"},
	}
}

// Profiles returns the named profiles, for configuration by name.
func Profiles() map[string]func() Profile {
	return map[string]func() Profile{
		"tollgate": TollgateProfile,
		"oidc":     OIDCProfile,
		"keycloak": KeycloakProfile,
		"auth0":    Auth0Profile,
		"okta":     OktaProfile,
		"google":   GoogleProfile,
		"entra":    EntraProfile,
		"spiffe":   SPIFFEProfile,
	}
}

// noKeys is the set of an issuer whose source has none yet.
var noKeys = &KeySet{byID: map[string]*Key{}}

// issuer is an Issuer compiled for verification.
type issuer struct {
	name      string
	audiences []string
	src       KeySource
	keys      atomic.Pointer[KeySet]
	hdr       headerPolicy
	profile   string
	optJTI    bool
	optIAT    bool
	optIss    bool
	maxLife   time.Duration
	// maxSession bounds auth_time + max session for renewable issuers; 0
	// for the others, whose sessions end at exp.
	maxSession time.Duration
	// perms: the registered claims read as permissions, and the paths of
	// custom claims (split at dots).
	permsArray, permsScope bool
	permPaths              [][]string
	// consumer claims: registered (azp, sub) and custom ones, in order.
	consumers []string
	// plain: the tollgate fast paths apply (perms array [+ scope], azp
	// falling back to sub).
	plain     bool
	renewable bool
	// requireBound: only tokens bound to a client certificate (cnf
	// x5t#S256) are accepted.
	requireBound bool
}

// headerPolicy is what a profile accepts in a token's header.
type headerPolicy struct {
	types     [][]byte // accepted typ values, lower case, without "application/"
	noTyp     bool     // a header without typ is accepted
	x5t, x5ts bool     // x5t, x5t#S256 tolerated
	errTyp    error    // what a refused typ is
}

var errNoProfile = errors.New("token: an issuer needs a profile (token.TollgateProfile() or a provider's)")

// compileIssuer checks is and builds its verification form; o holds the
// verifier's options.
func compileIssuer(is Issuer, o *verifierOptions) (*issuer, error) {
	if is.Name == "" && !is.Profile.OptionalIssuer {
		return nil, errors.New("token: issuer and audience are required")
	}
	if len(is.Audiences) == 0 || slicesHasEmpty(is.Audiences) {
		return nil, errors.New("token: issuer and audience are required")
	}
	p := is.Profile
	if p.Name == "" {
		return nil, fmt.Errorf("%w: issuer %q", errNoProfile, is.Name)
	}
	if is.Keys == nil {
		return nil, fmt.Errorf("%w: issuer %q has no key source (tollgate has no default key)", ErrKeySet, is.Name)
	}
	if p.MaxLifetime < 0 {
		return nil, fmt.Errorf("token: issuer %q: negative maximum lifetime", is.Name)
	}
	st := &issuer{
		name:      is.Name,
		audiences: append([]string(nil), is.Audiences...),
		src:       is.Keys,
		profile:   p.Name,
		optJTI:    p.OptionalJTI,
		optIAT:    p.OptionalIAT,
		optIss:    p.OptionalIssuer,
		maxLife:   p.MaxLifetime,
		renewable: p.Renewable,

		requireBound: p.RequireBoundTokens,
	}
	if p.Renewable {
		st.maxSession = o.maxSession
	}
	types := p.Types
	if len(types) == 0 {
		types = []string{"at+jwt"}
	}
	for _, t := range types {
		t = strings.TrimPrefix(strings.ToLower(t), "application/")
		if t == "" {
			st.hdr.noTyp = true
			continue
		}
		st.hdr.types = append(st.hdr.types, []byte(t))
	}
	st.hdr.errTyp = errTypProfile
	if len(st.hdr.types) == 1 && string(st.hdr.types[0]) == "at+jwt" && !st.hdr.noTyp {
		st.hdr.errTyp = errTyp
	}
	for _, h := range p.TolerateHeaders {
		switch h {
		case "x5t":
			st.hdr.x5t = true
		case "x5t#S256":
			st.hdr.x5ts = true
		default:
			return nil, fmt.Errorf("token: issuer %q: header %q cannot be tolerated (only x5t and x5t#S256)", is.Name, h)
		}
	}
	perms := p.PermissionsClaims
	if len(perms) == 0 {
		perms = []string{"perms"}
	}
	for _, c := range perms {
		switch c {
		case "perms":
			st.permsArray = true
		case "scope":
			st.permsScope = true
		case "":
			return nil, fmt.Errorf("token: issuer %q: an empty permissions claim", is.Name)
		default:
			path := strings.Split(c, ".")
			for _, seg := range path {
				if seg == "" {
					return nil, fmt.Errorf("token: issuer %q: permissions claim %q has an empty part", is.Name, c)
				}
			}
			if registered([]byte(path[0])) {
				return nil, fmt.Errorf("token: issuer %q: permissions claim %q: %s is not an object", is.Name, c, path[0])
			}
			st.permPaths = append(st.permPaths, path)
		}
	}
	consumers := p.ConsumerClaims
	if len(consumers) == 0 {
		consumers = []string{"azp"}
	}
	for _, c := range consumers {
		if c == "" || strings.ContainsAny(c, ". :") {
			return nil, fmt.Errorf("token: issuer %q: consumer claim %q is not a claim name", is.Name, c)
		}
		if registered([]byte(c)) && c != "azp" && c != "sub" {
			return nil, fmt.Errorf("token: issuer %q: consumer claim %q is not a string naming a caller", is.Name, c)
		}
	}
	st.consumers = consumers
	st.plain = len(st.permPaths) == 0 && len(consumers) == 1 && consumers[0] == "azp"
	ks := is.Keys.Current()
	if ks == nil {
		// A source started without keys (its issuer was down): every kid
		// is unknown until its first good set, and asked of it.
		ks = noKeys
	}
	st.keys.Store(ks)
	return st, nil
}

func slicesHasEmpty(s []string) bool {
	for _, v := range s {
		if v == "" {
			return true
		}
	}
	return false
}

var typApplication = []byte("application/")

// typeOK reports whether typ (a header's typ value, unescaped) is accepted.
func (p *headerPolicy) typeOK(typ []byte) bool {
	if len(typ) > len(typApplication) && bytes.EqualFold(typ[:len(typApplication)], typApplication) {
		typ = typ[len(typApplication):]
	}
	for _, t := range p.types {
		if bytes.EqualFold(typ, t) {
			return true
		}
	}
	return false
}

// pick returns the issuer of a token whose iss is iss (present tells
// whether the token has one), or nil.
func (v *Verifier) pick(iss []byte, present bool) *issuer {
	for _, is := range v.issuers {
		if present && string(iss) == is.name || !present && is.optIss {
			return is
		}
	}
	return nil
}
