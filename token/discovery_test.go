package token

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// jwksOIDC is an OpenID Connect provider on loopback: its discovery
// document at issuerPath + /.well-known/openid-configuration, its keys at
// /keys.
type jwksOIDC struct {
	srv *httptest.Server

	mu       sync.Mutex
	doc      map[string]any
	keys     []byte
	docPaths []string
}

func newJWKSOIDC(t *testing.T, issuerPath string, keys []byte) *jwksOIDC {
	t.Helper()
	p := &jwksOIDC{keys: keys}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case r.URL.Path == "/keys":
			_, _ = w.Write(p.keys)
		case strings.HasSuffix(r.URL.Path, discoveryPath):
			p.docPaths = append(p.docPaths, r.URL.Path)
			_ = json.NewEncoder(w).Encode(p.doc)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	p.doc = map[string]any{
		"issuer":                                p.srv.URL + issuerPath,
		"jwks_uri":                              p.srv.URL + "/keys",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code"},
	}
	return p
}

func (p *jwksOIDC) setDoc(name string, v any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v == nil {
		delete(p.doc, name)
	} else {
		p.doc[name] = v
	}
}

func TestDiscover(t *testing.T) {
	p := newJWKSOIDC(t, "/realms/shop", jwksRSADoc(t, "k1"))
	iss := p.srv.URL + "/realms/shop"
	src, err := Discover(context.Background(), iss)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	jwksWant(t, src.Current(), "k1", RS256, &testRSA(t).PublicKey)
	d := src.Discovery()
	if d.Issuer != iss || d.JWKSURI != p.srv.URL+"/keys" || len(d.SigningAlgorithms) != 1 || src.URL() != p.srv.URL+"/keys" {
		t.Fatalf("discovery %+v, url %s", d, src.URL())
	}
	if p.docPaths[0] != "/realms/shop"+discoveryPath {
		t.Fatalf("document read at %s", p.docPaths[0])
	}
}

// An issuer ending in "/" loses it before the well-known path is appended,
// but the document's issuer must still be the configured one, slash and
// all.
func TestDiscoverTrailingSlash(t *testing.T) {
	p := newJWKSOIDC(t, "/tenant/", jwksRSADoc(t, "k1"))
	src, err := Discover(context.Background(), p.srv.URL+"/tenant/")
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	if p.docPaths[0] != "/tenant"+discoveryPath {
		t.Fatalf("document read at %s", p.docPaths[0])
	}
	// Configured without the slash, published with it: refused.
	_, err = Discover(context.Background(), p.srv.URL+"/tenant")
	if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "issuer is not") {
		t.Fatalf("trailing-slash mismatch: %v", err)
	}
}

// Entra ID publishes RSA keys without alg and lists RS256 alone: discovery
// binds them to RS256 with no configuration, while NewJWKS with the default
// algorithms refuses to guess.
func TestDiscoverEntraKeysWithoutAlg(t *testing.T) {
	keys := jwksDoc(t, jwksJWK(t, "entra", &testRSA(t).PublicKey, map[string]any{"use": "sig", "x5t": "x", "x5c": []string{"MIIB"}}))
	p := newJWKSOIDC(t, "/tenant/v2.0", keys)
	src, err := Discover(context.Background(), p.srv.URL+"/tenant/v2.0")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	jwksWant(t, src.Current(), "entra", RS256, &testRSA(t).PublicKey)
	if _, err := NewJWKS(context.Background(), p.srv.URL+"/keys"); err == nil || !strings.Contains(err.Error(), "several allowed algorithms fit") {
		t.Fatalf("NewJWKS with both RSA algorithms allowed: %v", err)
	}
	// Explicit algorithms win over the document's list.
	if _, err := Discover(context.Background(), p.srv.URL+"/tenant/v2.0", JWKSAlgorithms(ES256)); err == nil || !strings.Contains(err.Error(), "no allowed algorithm fits") {
		t.Fatalf("explicit ES256: %v", err)
	}
}

func TestDiscoverRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		member string
		value  any
		why    string
	}{
		{"issuer mismatch", "issuer", "https://evil.example/realms/shop", "issuer is not"},
		{"issuer with trailing slash", "issuer", "", "issuer is not"}, // set below
		{"no issuer", "issuer", nil, `no "issuer"`},
		{"no jwks_uri", "jwks_uri", nil, `no "jwks_uri"`},
		{"empty jwks_uri", "jwks_uri", "", `"jwks_uri" is not a non-empty string`},
		{"jwks_uri not a string", "jwks_uri", 7, `"jwks_uri" is not a non-empty string`},
		{"http jwks_uri remote", "jwks_uri", "http://idp.example/keys", "plain http is allowed only for loopback hosts"},
		{"relative jwks_uri", "jwks_uri", "/keys", "URL needs a host"},
		{"bad algs", "id_token_signing_alg_values_supported", "RS256", "not an array of strings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newJWKSOIDC(t, "/realms/shop", jwksRSADoc(t, "k1"))
			v := tc.value
			if tc.name == "issuer with trailing slash" {
				v = p.srv.URL + "/realms/shop/"
			}
			p.setDoc(tc.member, v)
			_, err := Discover(context.Background(), p.srv.URL+"/realms/shop")
			if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %v, want ErrDiscovery saying %q", err, tc.why)
			}
			if strings.Contains(err.Error(), "evil.example") {
				t.Fatalf("the error quotes the published issuer: %v", err)
			}
		})
	}
}

func TestDiscoverIssuerRules(t *testing.T) {
	p := newJWKSOIDC(t, "", jwksRSADoc(t, "k1"))
	for iss, why := range map[string]string{
		"http://idp.example":         "plain http is allowed only for loopback hosts",
		p.srv.URL + "?tenant=secret": "no query or fragment",
		p.srv.URL + "#frag":          "no query or fragment",
		"":                           "URL needs a host",
	} {
		_, err := Discover(context.Background(), iss)
		if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), why) || strings.Contains(err.Error(), "secret") {
			t.Errorf("issuer %q: %v, want %q", iss, err, why)
		}
	}
	p.mu.Lock()
	p.doc = nil
	p.mu.Unlock()
	if _, err := Discover(context.Background(), p.srv.URL); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("a null document: %v", err)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == discoveryPath {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer bad.Close()
	if _, err := Discover(context.Background(), bad.URL); !errors.Is(err, ErrJWKSFetch) || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("discovery down: %v", err)
	}
}
