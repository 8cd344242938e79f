package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/token"
)

// An identity provider as a test runs it: a loopback HTTP server publishing
// a JWK Set (and a discovery document naming it), whose keys sign tokens
// in the provider's own header and claim shapes.
type idp struct {
	srv     *httptest.Server
	base    string // the server's URL
	issuer  string // the discovery document's issuer: the server's URL, plus suffix
	jwks    atomic.Pointer[[]byte]
	fetches atomic.Int64
	status  atomic.Int64 // when non-zero, the status every request gets
}

func newIdP(t *testing.T, suffix string) *idp {
	t.Helper()
	p := &idp{}
	mux := http.NewServeMux()
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		if s := p.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(*p.jwks.Load())
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.issuer, "jwks_uri": p.base + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"response_types_supported":              []string{"code"}, "subject_types_supported": []string{"public"},
		})
	})
	// Every field the handlers read is set before the server starts.
	p.srv = httptest.NewUnstartedServer(mux)
	p.base = "http://" + p.srv.Listener.Addr().String()
	p.issuer = p.base + suffix
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

// publish serves keys (their public halves); stripAlg drops each JWK's
// alg, as Entra ID publishes them.
func (p *idp) publish(t *testing.T, stripAlg bool, keys ...*token.Key) {
	t.Helper()
	doc, err := token.MarshalJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	if stripAlg {
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal(doc, &set); err != nil {
			t.Fatal(err)
		}
		for _, k := range set.Keys {
			delete(k, "alg")
		}
		if doc, err = json.Marshal(set); err != nil {
			t.Fatal(err)
		}
	}
	p.jwks.Store(&doc)
}

var (
	idpKeyOnce sync.Once
	idpRSA     [2]*rsa.PrivateKey
	idpEC      *ecdsa.PrivateKey
	idpKeyErr  error
)

func idpKeys(t *testing.T) ([2]*rsa.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	idpKeyOnce.Do(func() {
		for i := range idpRSA {
			if idpRSA[i], idpKeyErr = rsa.GenerateKey(rand.Reader, 2048); idpKeyErr != nil {
				return
			}
		}
		idpEC, idpKeyErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	if idpKeyErr != nil {
		t.Fatal(idpKeyErr)
	}
	return idpRSA, idpEC
}

func tkey(t *testing.T, kid, alg string, priv any) *token.Key {
	t.Helper()
	var k *token.Key
	var err error
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		k, err = token.NewPrivateKey(kid, alg, p)
	case *ecdsa.PrivateKey:
		k, err = token.NewPrivateKey(kid, alg, p)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signJSON signs header and claims, exactly as written.
func signJSON(t *testing.T, alg string, priv any, header, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	in := enc([]byte(header)) + "." + enc([]byte(claims))
	sig, err := jwt.GetSigningMethod(alg).Sign(in, priv)
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc(sig)
}

// unix returns now + d as JSON seconds.
func unix(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }

// callGet calls GetPrice with tok and returns the error's code and
// ErrorInfo reason ("" when none).
func callGet(t *testing.T, addr, tok string) (codes.Code, string) {
	t.Helper()
	_, err := getPrice(t, addr, tok, grpc.WithTransportCredentials(insecure.NewCredentials()))
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.Reason
		}
	}
	return st.Code(), ""
}

// The tokens of each provider, in the shape it issues, pass pricing-server
// started on that provider's published keys and profile, over real gRPC:
// permissions come from the claim the profile names, a caller without the
// permission is denied (so it was authenticated), and a token the profile
// does not allow, or signed by another key, is refused.
func TestIdentityProviders(t *testing.T) {
	rsaKeys, ec := idpKeys(t)
	type provider struct {
		name    string
		args    func(p *idp) []string
		keys    []*token.Key
		strip   bool
		suffix  string
		header  string
		claims  func(iss, perm string) string // perm "" leaves the permission out
		alg     string
		priv    any
		allowed bool // the permission claim can grant prices.read
	}
	providers := []provider{{
		name: "keycloak", alg: "RS256", priv: rsaKeys[0], keys: []*token.Key{tkey(t, "kc-1", "RS256", rsaKeys[0])},
		args: func(p *idp) []string {
			return []string{"-jwks-url", p.srv.URL + "/keys", "-issuer", "https://sso.example.com/realms/pricing", "-profile", "keycloak"}
		},
		header: `{"alg":"RS256","typ":"JWT","kid":"kc-1"}`,
		claims: func(_, perm string) string {
			return `{"exp":` + unix(5*time.Minute) + `,"iat":` + unix(-time.Minute) + `,"jti":"onrtcc:1","iss":"https://sso.example.com/realms/pricing",` +
				`"aud":["pricing","account"],"sub":"5b0b3c1e","typ":"Bearer","azp":"orders-service",` +
				`"realm_access":{"roles":["offline_access"` + strings.Repeat(`,"`+perm+`"`, min(len(perm), 1)) + `]},"scope":"profile email","client_id":"orders-service"}`
		},
		allowed: true,
	}, {
		// Auth0's issuer ends in "/": discovery appends its path after
		// removing it, and the document's issuer keeps it.
		name: "auth0", alg: "RS256", priv: rsaKeys[1], keys: []*token.Key{tkey(t, "a0-1", "RS256", rsaKeys[1])}, suffix: "/",
		args:   func(p *idp) []string { return []string{"-oidc-issuer", p.issuer, "-profile", "auth0"} },
		header: `{"alg":"RS256","typ":"JWT","kid":"a0-1"}`,
		claims: func(iss, perm string) string {
			perms := `[]`
			if perm != "" {
				perms = `["` + perm + `"]`
			}
			return `{"iss":"` + iss + `","sub":"X3bF@clients","aud":"pricing","iat":` + unix(-time.Minute) + `,"exp":` + unix(23*time.Hour) +
				`,"gty":"client-credentials","azp":"X3bF","scope":"","permissions":` + perms + `}`
		},
		allowed: true,
	}, {
		name: "okta", alg: "RS256", priv: rsaKeys[0], keys: []*token.Key{tkey(t, "okta-1", "RS256", rsaKeys[0])},
		args:   func(p *idp) []string { return []string{"-oidc-issuer", p.issuer, "-profile", "okta"} },
		header: `{"kid":"okta-1","alg":"RS256"}`,
		claims: func(iss, perm string) string {
			return `{"ver":1,"jti":"AT.x1","iss":"` + iss + `","aud":"pricing","iat":` + unix(-time.Minute) + `,"exp":` + unix(time.Hour-2*time.Minute) +
				`,"cid":"0oa8orders","scp":["openid"` + strings.Repeat(`,"`+perm+`"`, min(len(perm), 1)) + `],"sub":"0oa8orders"}`
		},
		allowed: true,
	}, {
		// Entra ID publishes its RSA keys without alg: -alg names it.
		name: "entra", alg: "RS256", priv: rsaKeys[1], keys: []*token.Key{tkey(t, "entra-1", "RS256", rsaKeys[1])}, strip: true,
		args: func(p *idp) []string {
			return []string{"-jwks-url", p.srv.URL + "/keys", "-issuer", "https://login.microsoftonline.com/tid/v2.0", "-alg", "RS256", "-profile", "entra"}
		},
		header: `{"typ":"JWT","alg":"RS256","x5t":"nOo3ZDrODXEK1jKWhXslHR_KXEg","kid":"entra-1"}`,
		claims: func(_, perm string) string {
			return `{"aud":"pricing","iss":"https://login.microsoftonline.com/tid/v2.0","iat":` + unix(-time.Minute) + `,"nbf":` + unix(-time.Minute) +
				`,"exp":` + unix(time.Hour) + `,"azp":"d3590ed6","azpacr":"1","oid":"a9c3","roles":[` + strings.TrimPrefix(strings.Repeat(`,"`+perm+`"`, min(len(perm), 1)), ",") +
				`],"sub":"a9c3","tid":"tid","uti":"fqiB","ver":"2.0"}`
		},
		allowed: true,
	}, {
		// Google's ID tokens carry no permissions: authenticated, and
		// denied a method that needs one.
		name: "google", alg: "RS256", priv: rsaKeys[0], keys: []*token.Key{tkey(t, "g-1", "RS256", rsaKeys[0])},
		args: func(p *idp) []string {
			return []string{"-jwks-url", p.srv.URL + "/keys", "-issuer", "https://accounts.google.com", "-profile", "google"}
		},
		header: `{"alg":"RS256","kid":"g-1","typ":"JWT"}`,
		claims: func(_, _ string) string {
			return `{"aud":"pricing","azp":"1145638","email":"orders@p.iam.gserviceaccount.com","email_verified":true,"exp":` + unix(time.Hour) +
				`,"iat":` + unix(-time.Minute) + `,"iss":"https://accounts.google.com","sub":"1145638"}`
		},
	}, {
		// A SPIFFE JWT-SVID: no iss, no iat, no jti; the trust domain's
		// bundle endpoint serves its keys. -permissions-claim reads a claim
		// the workload's SVIDs carry.
		name: "spiffe", alg: "ES256", priv: ec, keys: []*token.Key{tkey(t, "spire-1", "ES256", ec)},
		args: func(p *idp) []string {
			return []string{"-jwks-url", p.srv.URL + "/keys", "-issuer", "spiffe://example.org", "-profile", "spiffe", "-permissions-claim", "grants"}
		},
		header: `{"alg":"ES256","kid":"spire-1","typ":"JWT"}`,
		claims: func(_, perm string) string {
			return `{"aud":["pricing"],"exp":` + unix(5*time.Minute) + `,"sub":"spiffe://example.org/ns/default/sa/orders","grants":"` + perm + `"}`
		},
		allowed: true,
	}}
	for _, pv := range providers {
		t.Run(pv.name, func(t *testing.T) {
			t.Parallel()
			p := newIdP(t, pv.suffix)
			p.publish(t, pv.strip, pv.keys...)
			args := append([]string{"-listen", "127.0.0.1:0", "-audience", "pricing"}, pv.args(p)...)
			_, addr := startServer(t, envWithout(keyEnv), args...)

			tok := signJSON(t, pv.alg, pv.priv, pv.header, pv.claims(p.issuer, "prices.read"))
			code, reason := callGet(t, addr, tok)
			if pv.allowed && code != codes.OK {
				t.Fatalf("GetPrice with the provider's token: %v %s", code, reason)
			}
			if !pv.allowed && (code != codes.PermissionDenied || reason != "PERMISSION_DENIED") {
				t.Fatalf("GetPrice with a token granting nothing: %v %s, want PermissionDenied", code, reason)
			}
			if code, reason := callGet(t, addr, signJSON(t, pv.alg, pv.priv, pv.header, pv.claims(p.issuer, ""))); code != codes.PermissionDenied {
				t.Errorf("GetPrice without the permission: %v %s, want PermissionDenied", code, reason)
			}
			// Tollgate's own header shape is no help: a header member
			// no profile tolerates refuses the token.
			bad := strings.Replace(pv.header, `{`, `{"jku":"https://evil.example/keys",`, 1)
			if code, reason := callGet(t, addr, signJSON(t, pv.alg, pv.priv, bad, pv.claims(p.issuer, "prices.read"))); code != codes.Unauthenticated || reason != "TOKEN_INVALID" {
				t.Errorf("a jku header: %v %s, want Unauthenticated TOKEN_INVALID", code, reason)
			}
			// Another key under the same kid.
			var other any = rsaKeys[1]
			if pv.priv == rsaKeys[1] {
				other = rsaKeys[0]
			}
			alg := "RS256"
			if _, isEC := pv.priv.(*ecdsa.PrivateKey); isEC {
				other, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				alg = "ES256"
			}
			if code, _ := callGet(t, addr, signJSON(t, alg, other, pv.header, pv.claims(p.issuer, "prices.read"))); code != codes.Unauthenticated {
				t.Errorf("a token signed by another key: %v, want Unauthenticated", code)
			}
		})
	}
}

// The issuer adds a key and signs with it at once: pricing-server, started
// on the old set, learns the new one on the first token that names it,
// long before its scheduled refresh. A kid the issuer never published
// costs no more fetches than the refetch interval allows.
func TestFollowsRotation(t *testing.T) {
	rsaKeys, _ := idpKeys(t)
	k1, k2 := tkey(t, "k1", "RS256", rsaKeys[0]), tkey(t, "k2", "RS256", rsaKeys[1])
	p := newIdP(t, "")
	p.publish(t, false, k1)
	_, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-audience", "pricing", "-oidc-issuer", p.issuer, "-profile", "oidc")
	claims := func(scope string) string {
		return `{"iss":"` + p.issuer + `","sub":"orders","aud":"pricing","iat":` + unix(-time.Minute) + `,"exp":` + unix(10*time.Minute) +
			`,"client_id":"orders","scope":"` + scope + `"}`
	}
	hdr := func(kid string) string { return `{"alg":"RS256","typ":"at+jwt","kid":"` + kid + `"}` }
	if code, reason := callGet(t, addr, signJSON(t, "RS256", rsaKeys[0], hdr("k1"), claims("prices.read"))); code != codes.OK {
		t.Fatalf("k1 token: %v %s", code, reason)
	}
	start := p.fetches.Load()
	p.publish(t, false, k1, k2)
	if code, reason := callGet(t, addr, signJSON(t, "RS256", rsaKeys[1], hdr("k2"), claims("prices.read"))); code != codes.OK {
		t.Fatalf("k2 token right after the issuer added k2: %v %s", code, reason)
	}
	if got := p.fetches.Load() - start; got != 1 {
		t.Errorf("%d fetches to learn k2, want 1", got)
	}
	// The guard's failed-authentication budget (20 per peer) refuses the
	// rest before any verification: both bounds hold.
	for i := range 50 {
		kid := "random-" + strconv.Itoa(i)
		code, reason := callGet(t, addr, signJSON(t, "RS256", rsaKeys[1], hdr(kid), claims("prices.read")))
		if code != codes.Unauthenticated && (i < 20 || code != codes.ResourceExhausted) {
			t.Fatalf("unknown kid %s: %v %s", kid, code, reason)
		}
	}
	if got := p.fetches.Load() - start; got != 1 {
		t.Errorf("%d fetches after 50 unknown kids within the refetch interval, want still 1", got)
	}
}

// Misconfiguration and an issuer that does not answer stop the server at
// start with one clear line; nothing is served on a guess.
func TestRefusesToStartWithoutIssuerKeys(t *testing.T) {
	rsaKeys, _ := idpKeys(t)
	down := newIdP(t, "")
	down.status.Store(http.StatusInternalServerError)
	good := newIdP(t, "")
	good.publish(t, false, tkey(t, "k1", "RS256", rsaKeys[0]))
	keyFile, _ := writeKey(t, 32)
	cases := []struct {
		name     string
		args     []string
		code     int
		mentions string
	}{
		{"issuer returns 500", []string{"-jwks-url", down.srv.URL + "/keys", "-issuer", "x"}, 1, "JWKS"},
		{"discovery names another issuer", []string{"-oidc-issuer", good.issuer + "/"}, 1, "issuer"},
		{"-jwks-url without -issuer", []string{"-jwks-url", good.srv.URL + "/keys"}, 2, "-issuer"},
		{"-key with -jwks-url", []string{"-key", keyFile, "-jwks-url", good.srv.URL + "/keys", "-issuer", "x"}, 2, "-key"},
		{"-oidc-issuer with -issuer", []string{"-oidc-issuer", good.issuer, "-issuer", "x"}, 2, "-issuer"},
		{"both remote sources", []string{"-oidc-issuer", good.issuer, "-jwks-url", good.srv.URL + "/keys"}, 2, "not both"},
		{"plain http to a remote host", []string{"-jwks-url", "http://keys.example.com/jwks", "-issuer", "x"}, 1, "http"},
		{"-jwks-listen with remote keys", []string{"-oidc-issuer", good.issuer, "-jwks-listen", "127.0.0.1:0"}, 2, "-jwks-listen"},
		{"unknown profile", []string{"-jwks-url", good.srv.URL + "/keys", "-issuer", "x", "-profile", "nope"}, 2, "-profile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runToExit(t, envWithout(keyEnv), append([]string{"-listen", "127.0.0.1:0"}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit status %d, want %d; stderr: %s", code, c.code, stderr)
			}
			if strings.Contains(stdout, "listening on") {
				t.Errorf("printed %q although it refused to start", stdout)
			}
			if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.Contains(stderr, c.mentions) {
				t.Errorf("stderr = %q; want one line mentioning %q", stderr, c.mentions)
			}
		})
	}
}

// tollgate's own issuer publishes its keys and another service verifies
// through them: one pricing-server signs with an ES256 key file and serves
// its public half (-jwks-listen); a second one holds no key file and
// follows that set (-jwks-url, tollgate's own profile). A token of the
// first passes the second; rotation is a publish, not a copied file.
func TestVerifiesThroughAnotherServersPublishedKeys(t *testing.T) {
	path, priv := writeES256(t)
	url := startWithJWKS(t, "-key", path, "-alg", token.ES256, "-issuer", "tollgate-demo")
	_, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-audience", "pricing",
		"-jwks-url", url, "-issuer", "tollgate-demo", "-profile", "tollgate")
	key, err := token.NewPrivateKey("", token.ES256, priv)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "orders", Audience: []string{"pricing"}, AuthorizedParty: "orders",
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), Permissions: []string{"prices.read"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, reason := callGet(t, addr, tok); code != codes.OK {
		t.Fatalf("a token of the publishing server's key: %v %s", code, reason)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	okey, err := token.NewPrivateKey("", token.ES256, other)
	if err != nil {
		t.Fatal(err)
	}
	osigner, _ := token.NewSigner(okey)
	forged, _ := osigner.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "orders", Audience: []string{"pricing"},
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), Permissions: []string{"prices.read"}})
	if code, _ := callGet(t, addr, forged); code != codes.Unauthenticated {
		t.Fatalf("a token of another key: %v", code)
	}
}
