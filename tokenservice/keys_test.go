package tokenservice_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
)

// The keys handler is tested over real HTTP (httptest on loopback): the
// documents are fetched, parsed with encoding/json, and each served key is
// rebuilt with crypto/* alone and must verify what its private key signed.

var (
	keysRSAOnce sync.Once
	keysRSA     *rsa.PrivateKey
)

// signingKey returns a new private key for alg with kid.
func signingKey(t *testing.T, kid, alg string) *token.Key {
	t.Helper()
	var s crypto.Signer
	var err error
	switch alg {
	case token.ES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.ES384:
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case token.EdDSA:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case token.RS256, token.PS256:
		keysRSAOnce.Do(func() { keysRSA, err = rsa.GenerateKey(rand.Reader, 2048) })
		s = keysRSA
	}
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.NewPrivateKey(kid, alg, s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKeySet(t *testing.T, keys ...*token.Key) *token.KeySet {
	t.Helper()
	ks, err := token.NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// keysServer serves the handler of issuer (with "{}" replaced by the
// server's own http://127.0.0.1:PORT) on loopback.
func keysServer(t *testing.T, issuer string, keys token.KeySource, opts ...tokenservice.KeysOption) (base, iss string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base = "http://" + srv.Listener.Addr().String()
	iss = strings.ReplaceAll(issuer, "{}", base)
	h, err := tokenservice.NewKeysHandler(iss, keys, opts...)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return base, iss
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func fetch(t *testing.T, method, url string, header ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

type discoveryDoc struct {
	Issuer             string   `json:"issuer"`
	JWKSURI            string   `json:"jwks_uri"`
	ResponseTypes      []string `json:"response_types_supported"`
	SubjectTypes       []string `json:"subject_types_supported"`
	IDTokenSigningAlgs []string `json:"id_token_signing_alg_values_supported"`
}

func strictJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
}

type servedJWKS struct {
	Keys []map[string]string `json:"keys"`
}

// publicKey rebuilds the public key of a served JWK with crypto/* alone.
func publicKey(t *testing.T, j map[string]string) crypto.PublicKey {
	t.Helper()
	dec := func(name string) []byte {
		b, err := base64.RawURLEncoding.Strict().DecodeString(j[name])
		if err != nil || len(b) == 0 {
			t.Fatalf("member %q of %v: %v", name, j, err)
		}
		return b
	}
	switch j["kty"] {
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(dec("n")), E: int(new(big.Int).SetBytes(dec("e")).Int64())}
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[j["crv"]]
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, dec("x")...), dec("y")...))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case "OKP":
		if j["crv"] != "Ed25519" {
			t.Fatalf("crv %q", j["crv"])
		}
		return ed25519.PublicKey(dec("x"))
	}
	t.Fatalf("kty %q", j["kty"])
	return nil
}

// signedBy returns a token signed by k.
func signedBy(t *testing.T, k *token.Key) string {
	t.Helper()
	s, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(token.Claims{Issuer: testIss, Subject: "alice", Audience: []string{testAud},
		IssuedAt: t0, ExpiresAt: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verifies checks tok's signature with pub and alg, with crypto/* alone.
func verifies(t *testing.T, alg string, pub crypto.PublicKey, tok string) bool {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	signed := []byte(tok[:i])
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(signed)
	switch alg {
	case token.ES256:
		n := len(sig) / 2
		return ecdsa.Verify(pub.(*ecdsa.PublicKey), digest[:], new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
	case token.EdDSA:
		return ed25519.Verify(pub.(ed25519.PublicKey), signed, sig)
	case token.RS256:
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, digest[:], sig) == nil
	case token.PS256:
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digest[:], sig, nil) == nil
	}
	t.Fatalf("alg %s", alg)
	return false
}

// TestKeysHandlerServes fetches the discovery document, follows its
// jwks_uri, and checks that every served key verifies the tokens of its
// private key.
func TestKeysHandlerServes(t *testing.T) {
	keys := []*token.Key{signingKey(t, "es-1", token.ES256), signingKey(t, "ed-1", token.EdDSA),
		signingKey(t, "rs-1", token.RS256), signingKey(t, "ps-1", token.PS256)}
	_, iss := keysServer(t, "{}", mustKeySet(t, keys...))

	r := fetch(t, http.MethodGet, iss+tokenservice.DiscoveryPath)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("Cache-Control") != "public, max-age=300" || r.header.Get("ETag") == "" {
		t.Fatalf("discovery: %d %v %s", r.status, r.header, r.body)
	}
	var d discoveryDoc
	strictJSON(t, r.body, &d)
	want := discoveryDoc{Issuer: iss, JWKSURI: iss + "/.well-known/jwks.json", ResponseTypes: []string{"token"},
		SubjectTypes: []string{"public"}, IDTokenSigningAlgs: []string{token.ES256, token.EdDSA, token.RS256, token.PS256}}
	if d.Issuer != want.Issuer || d.JWKSURI != want.JWKSURI || !slices.Equal(d.ResponseTypes, want.ResponseTypes) ||
		!slices.Equal(d.SubjectTypes, want.SubjectTypes) || !slices.Equal(d.IDTokenSigningAlgs, want.IDTokenSigningAlgs) {
		t.Errorf("discovery document\n%+v, want\n%+v", d, want)
	}

	r = fetch(t, http.MethodGet, d.JWKSURI)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("jwks: %d %v %s", r.status, r.header, r.body)
	}
	var set servedJWKS
	strictJSON(t, r.body, &set)
	if len(set.Keys) != len(keys) {
		t.Fatalf("%d keys served, want %d", len(set.Keys), len(keys))
	}
	for i, k := range keys {
		j := set.Keys[i]
		if j["kid"] != k.ID() || j["alg"] != k.Algorithm() || j["use"] != "sig" {
			t.Errorf("key %d: %v, want kid %s alg %s use sig", i, j, k.ID(), k.Algorithm())
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := j[private]; ok {
				t.Errorf("key %d has private member %q", i, private)
			}
		}
		pub := publicKey(t, j)
		if !verifies(t, k.Algorithm(), pub, signedBy(t, k)) {
			t.Errorf("%s: a token of the private key does not verify with the served key", k)
		}
	}
	// The check can fail: a token of another key does not verify.
	if verifies(t, token.ES256, publicKey(t, set.Keys[0]), signedBy(t, signingKey(t, "es-1", token.ES256))) {
		t.Error("a token of another ES256 key verifies with the served key")
	}

	// HEAD: the same headers, no body.
	get := fetch(t, http.MethodGet, d.JWKSURI)
	head := fetch(t, http.MethodHead, d.JWKSURI)
	if head.status != http.StatusOK || len(head.body) != 0 || head.header.Get("Content-Length") != get.header.Get("Content-Length") ||
		head.header.Get("ETag") != get.header.Get("ETag") {
		t.Errorf("HEAD: %d %v body %q; GET %v", head.status, head.header, head.body, get.header)
	}
	// A cached copy is revalidated with its ETag.
	for _, inm := range []string{get.header.Get("ETag"), `"other", ` + get.header.Get("ETag"), "W/" + get.header.Get("ETag"), "*"} {
		nm := fetch(t, http.MethodGet, d.JWKSURI, "If-None-Match", inm)
		if nm.status != http.StatusNotModified || len(nm.body) != 0 || nm.header.Get("ETag") != get.header.Get("ETag") {
			t.Errorf("If-None-Match %s: %d %v %q", inm, nm.status, nm.header, nm.body)
		}
	}
	if r := fetch(t, http.MethodGet, d.JWKSURI, "If-None-Match", `"other"`); r.status != http.StatusOK {
		t.Errorf("a stale ETag: %d", r.status)
	}
	// Other methods and paths.
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		r := fetch(t, m, d.JWKSURI)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q", m, r.status, r.header.Get("Allow"))
		}
	}
	for _, p := range []string{"/", "/.well-known/", "/.well-known/jwks.json/", "/.well-known/jwks", "/x/.well-known/jwks.json"} {
		if r := fetch(t, http.MethodGet, iss+p); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.status)
		}
	}
}

// TestKeysHandlerIssuerForms: the issuer member is the configured issuer
// byte for byte; jwks_uri drops a trailing slash; an issuer with a path is
// served under that path; "" serves the JWKS alone.
func TestKeysHandlerIssuerForms(t *testing.T) {
	ks := mustKeySet(t, signingKey(t, "k", token.EdDSA))
	for _, c := range []struct{ issuer, prefix string }{{"{}/", ""}, {"{}/tenant", "/tenant"}, {"{}/tenant/", "/tenant"}} {
		base, iss := keysServer(t, c.issuer, ks)
		var d discoveryDoc
		r := fetch(t, http.MethodGet, base+c.prefix+tokenservice.DiscoveryPath)
		if r.status != http.StatusOK {
			t.Fatalf("%s: discovery %d", iss, r.status)
		}
		strictJSON(t, r.body, &d)
		if d.Issuer != iss || d.JWKSURI != base+c.prefix+"/.well-known/jwks.json" {
			t.Errorf("issuer %s: document %+v", iss, d)
		}
		if r := fetch(t, http.MethodGet, d.JWKSURI); r.status != http.StatusOK {
			t.Errorf("issuer %s: jwks_uri %d", iss, r.status)
		}
		if c.prefix != "" {
			if r := fetch(t, http.MethodGet, base+tokenservice.JWKSPath); r.status != http.StatusNotFound {
				t.Errorf("issuer %s: root JWKS %d, want 404", iss, r.status)
			}
		}
	}
	// "localhost" is loopback too.
	if _, err := tokenservice.NewKeysHandler("http://localhost:8080", ks); err != nil {
		t.Error(err)
	}
	if _, err := tokenservice.NewKeysHandler("http://[::1]:8080", ks); err != nil {
		t.Error(err)
	}
	base, _ := keysServer(t, "", ks, tokenservice.WithKeysMaxAge(90*time.Second+500*time.Millisecond))
	r := fetch(t, http.MethodGet, base+tokenservice.JWKSPath)
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "public, max-age=90" {
		t.Errorf("no issuer: JWKS %d %v", r.status, r.header)
	}
	if r := fetch(t, http.MethodGet, base+tokenservice.DiscoveryPath); r.status != http.StatusNotFound {
		t.Errorf("no issuer: discovery %d, want 404", r.status)
	}
	base, _ = keysServer(t, "", ks, tokenservice.WithKeysMaxAge(0))
	if r := fetch(t, http.MethodGet, base+tokenservice.JWKSPath); r.header.Get("Cache-Control") != "public, max-age=0" {
		t.Errorf("max-age 0: %v", r.header)
	}
}

// rotatingSource is a key source whose set the test replaces, telling the
// watchers as a remote source would. It counts calls of Current.
type rotatingSource struct {
	mu       sync.Mutex
	cur      *token.KeySet
	watchers []func(*token.KeySet)
	currents atomic.Int64
}

func (s *rotatingSource) Current() *token.KeySet {
	s.currents.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *rotatingSource) Watch(f func(*token.KeySet)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers = append(s.watchers, f)
}

func (s *rotatingSource) Unknown(context.Context, string) *token.KeySet { return nil }

func (s *rotatingSource) adopt(ks *token.KeySet) {
	s.mu.Lock()
	s.cur = ks
	ws := slices.Clone(s.watchers)
	s.mu.Unlock()
	for _, f := range ws {
		f(ks)
	}
}

func servedKIDs(t *testing.T, url string) ([]string, response) {
	t.Helper()
	r := fetch(t, http.MethodGet, url)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	var set servedJWKS
	strictJSON(t, r.body, &set)
	var kids []string
	for _, j := range set.Keys {
		kids = append(kids, j["kid"])
	}
	return kids, r
}

// TestKeysHandlerRotation: the next GET after the source adopts a set
// serves it (K1; K1+K2; K2), with a new ETag and the new algorithms in the
// discovery document; requests never call the source.
func TestKeysHandlerRotation(t *testing.T) {
	k1, k2 := signingKey(t, "k1", token.ES256), signingKey(t, "k2", token.EdDSA)
	src := &rotatingSource{cur: mustKeySet(t, k1)}
	_, iss := keysServer(t, "{}", src)
	jwks := iss + tokenservice.JWKSPath
	calls := src.currents.Load()

	kids, first := servedKIDs(t, jwks)
	if !slices.Equal(kids, []string{"k1"}) {
		t.Fatalf("kids %v, want [k1]", kids)
	}
	src.adopt(mustKeySet(t, k1, k2))
	kids, second := servedKIDs(t, jwks)
	if !slices.Equal(kids, []string{"k1", "k2"}) {
		t.Errorf("after adding k2: kids %v", kids)
	}
	if second.header.Get("ETag") == first.header.Get("ETag") {
		t.Error("the ETag did not change with the set")
	}
	if r := fetch(t, http.MethodGet, jwks, "If-None-Match", first.header.Get("ETag")); r.status != http.StatusOK {
		t.Errorf("the old set's ETag: %d, want 200 with the new set", r.status)
	}
	var d discoveryDoc
	strictJSON(t, fetch(t, http.MethodGet, iss+tokenservice.DiscoveryPath).body, &d)
	if !slices.Equal(d.IDTokenSigningAlgs, []string{token.ES256, token.EdDSA}) {
		t.Errorf("algorithms %v after adding k2", d.IDTokenSigningAlgs)
	}
	src.adopt(mustKeySet(t, k2))
	if kids, _ := servedKIDs(t, jwks); !slices.Equal(kids, []string{"k2"}) {
		t.Errorf("after dropping k1: kids %v", kids)
	}
	if got := src.currents.Load(); got != calls {
		t.Errorf("requests called Current %d times", got-calls)
	}

	// A set the source adopts later that holds an HMAC key is not served,
	// and nothing of its secret is; a publishable set is served again.
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	hs, err := token.NewHMACKey("hs", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	src.adopt(mustKeySet(t, k2, hs))
	for _, p := range []string{tokenservice.JWKSPath, tokenservice.DiscoveryPath} {
		r := fetch(t, http.MethodGet, iss+p)
		if r.status != http.StatusInternalServerError || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s with an HMAC key in the set: %d %v", p, r.status, r.header)
		}
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.StdEncoding} {
			if strings.Contains(string(r.body), enc.EncodeToString(secret)[:16]) {
				t.Errorf("the response holds the secret: %q", r.body)
			}
		}
	}
	src.adopt(mustKeySet(t, k1))
	if kids, _ := servedKIDs(t, jwks); !slices.Equal(kids, []string{"k1"}) {
		t.Errorf("after a good set again: kids %v", kids)
	}
}

// TestKeysHandlerRefuses: what cannot be published is an error at
// construction, naming no secret and no value.
func TestKeysHandlerRefuses(t *testing.T) {
	ed := signingKey(t, "ed", token.EdDSA)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	hs, err := token.NewHMACKey("hs", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	good := mustKeySet(t, ed)
	cases := []struct {
		name   string
		issuer string
		keys   token.KeySource
		opts   []tokenservice.KeysOption
		want   string
	}{
		{"HMAC key", testIss, mustKeySet(t, ed, hs), nil, "an HS256 key is a shared secret, which is never published"},
		{"HMAC key alone", testIss, mustKeySet(t, hs), nil, "never published"},
		{"no source", testIss, nil, nil, "no key source"},
		{"source without a set", testIss, &rotatingSource{}, nil, "no key set to publish"},
		{"negative max-age", testIss, good, []tokenservice.KeysOption{tokenservice.WithKeysMaxAge(-time.Second)}, "must not be negative"},
		{"not a URL", "tollgate-demo", good, nil, "must be an https URL"},
		{"no host", "https://", good, nil, "must be an https URL"},
		{"other scheme", "ftp://auth.example.com", good, nil, "must be an https URL"},
		{"http, not loopback", "http://auth.example.com", good, nil, "an http issuer must be on a loopback host"},
		{"http, private address", "http://10.0.0.1", good, nil, "an http issuer must be on a loopback host"},
		{"query", "https://auth.example.com/?a=b", good, nil, "without query"},
		{"empty query", "https://auth.example.com/?", good, nil, "without query"},
		{"fragment", "https://auth.example.com/#x", good, nil, "without query, fragment"},
		{"user", "https://u:p@auth.example.com", good, nil, "user information"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := tokenservice.NewKeysHandler(c.issuer, c.keys, c.opts...)
			if err == nil || h != nil {
				t.Fatalf("handler %v, error %v; want an error", h, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %q", err, c.want)
			}
			for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.StdEncoding} {
				if strings.Contains(err.Error(), enc.EncodeToString(secret)[:16]) {
					t.Errorf("error holds the secret: %q", err)
				}
			}
			if c.issuer != "" && strings.Contains(err.Error(), c.issuer) {
				t.Errorf("error quotes the issuer: %q", err)
			}
		})
	}
	// A refused source is not watched.
	src := &rotatingSource{cur: mustKeySet(t, ed, hs)}
	if _, err := tokenservice.NewKeysHandler(testIss, src); err == nil || len(src.watchers) != 0 {
		t.Errorf("refused source: error %v, %d watchers", err, len(src.watchers))
	}
}
