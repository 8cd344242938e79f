package tokenservice

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/token"
)

// The paths [NewKeysHandler] serves, under the issuer URL's path.
const (
	JWKSPath      = "/.well-known/jwks.json"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// DefaultKeysMaxAge is how long clients may cache the documents of
// [NewKeysHandler] unless [WithKeysMaxAge] says otherwise.
const DefaultKeysMaxAge = 5 * time.Minute

// KeysOption configures [NewKeysHandler].
type KeysOption func(*keysHandler) error

// WithKeysMaxAge sets the Cache-Control max-age of both documents, in whole
// seconds (default [DefaultKeysMaxAge]; 0 allowed: clients revalidate every
// time). It bounds how long a verifier may go on without a key just
// published: publish a new key at least this long before signing with it.
func WithKeysMaxAge(d time.Duration) KeysOption {
	return func(h *keysHandler) error {
		if d < 0 {
			return errors.New("tokenservice: keys max-age must not be negative")
		}
		h.cacheControl = "public, max-age=" + strconv.FormatInt(int64(d/time.Second), 10)
		return nil
	}
}

// keysHandler serves the published documents of one key source.
type keysHandler struct {
	issuer        string // as configured; "" serves the JWKS alone
	jwksURI       string
	jwksPath      string
	discoveryPath string
	cacheControl  string
	docs          atomic.Pointer[keysDocs]
}

// keysDocs are the encoded documents of one key set, built when the set is
// adopted, never per request.
type keysDocs struct {
	jwks, discovery doc
	err             error // the set cannot be published: served as 500
}

type doc struct {
	body []byte
	etag string
}

func newDoc(body []byte) doc {
	sum := sha256.Sum256(body)
	return doc{body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
}

// NewKeysHandler returns the HTTP handler with which tollgate's own issuer
// publishes its keys, so that services verify its tokens with keys fetched
// from it (token.JWKS, or OIDC discovery) instead of key files, and a
// rotation is a publish. It serves, for GET and HEAD:
//
//   - issuer's path + [JWKSPath]: the public half of keys.Current() as a
//     JWK Set (token.MarshalJWKS: kty, kid, use "sig", alg and public
//     parameters only; private material is never written);
//   - issuer's path + [DiscoveryPath]: an OpenID Provider configuration
//     (OIDC Discovery 1.0 §3) with issuer exactly as given, jwks_uri (the
//     issuer without a trailing "/", then [JWKSPath]), and the other members
//     that section requires: response_types_supported ["token"] and
//     subject_types_supported ["public"], since tollgate has no
//     authorization endpoint and its subjects are the same to every
//     audience, and id_token_signing_alg_values_supported, the algorithms
//     of the set's keys in the set's order, which discovery clients read as
//     the algorithms to accept. authorization_endpoint and token_endpoint
//     are left out: tollgate has neither (tokens are renewed through the
//     gRPC TokenService).
//
// Mount it at the issuer's origin (a mux pattern "/.well-known/" for an
// issuer without a path). With issuer "" it serves the JWKS alone, at
// [JWKSPath]: for an issuer whose iss is not a URL, verified with a
// configured JWKS URL. Otherwise issuer must be an https URL, or http on a
// loopback host (localhost, 127.0.0.0/8, ::1), without query, fragment or
// user information.
//
// The documents are encoded once per key set: at construction, and again
// for each set keys hands to the watchers of keys.Watch (a [*token.KeySet]
// never changes). Responses carry Content-Type application/json,
// Cache-Control "public, max-age=N" ([WithKeysMaxAge]) and a strong ETag;
// a matching If-None-Match gets 304 Not Modified. Other methods get 405,
// other paths 404.
//
// A set holding an HMAC key is refused with an error, as is a source with
// no set: an HMAC secret is never published. Should the source later adopt
// such a set, the documents answer 500 until it adopts a publishable one;
// no secret is ever written.
func NewKeysHandler(issuer string, keys token.KeySource, opts ...KeysOption) (http.Handler, error) {
	if keys == nil {
		return nil, errors.New("tokenservice: no key source")
	}
	h := &keysHandler{issuer: issuer, jwksPath: JWKSPath}
	if err := WithKeysMaxAge(DefaultKeysMaxAge)(h); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if err := o(h); err != nil {
			return nil, err
		}
	}
	if issuer != "" {
		u, err := checkIssuerURL(issuer)
		if err != nil {
			return nil, err
		}
		prefix := strings.TrimSuffix(u.Path, "/")
		h.jwksPath, h.discoveryPath = prefix+JWKSPath, prefix+DiscoveryPath
		h.jwksURI = strings.TrimSuffix(issuer, "/") + JWKSPath
	}
	// Refused before anything is registered with the source.
	if first := h.encode(keys.Current()); first.err != nil {
		return nil, first.err
	}
	// Watch, then Current again: a set adopted in between is not lost (the
	// watcher stores it; the store below only fills an empty slot).
	keys.Watch(func(ks *token.KeySet) { h.docs.Store(h.encode(ks)) })
	h.docs.CompareAndSwap(nil, h.encode(keys.Current()))
	return h, nil
}

// checkIssuerURL parses issuer and checks it names an https origin, or an
// http one on a loopback host. Its errors do not quote the value.
func checkIssuerURL(issuer string) (*url.URL, error) {
	const want = "tokenservice: the issuer must be an https URL (or http on a loopback host) without query, fragment or user information"
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#") {
		return nil, errors.New(want)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return nil, errors.New("tokenservice: an http issuer must be on a loopback host (localhost, 127.0.0.0/8, ::1); use https")
		}
	default:
		return nil, errors.New(want)
	}
	return u, nil
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// encode builds the documents of ks.
func (h *keysHandler) encode(ks *token.KeySet) *keysDocs {
	if ks == nil {
		return &keysDocs{err: errors.New("tokenservice: the key source has no key set to publish")}
	}
	jwks, err := ks.MarshalJWKS()
	if err != nil {
		// MarshalJWKS names keys by position, never by material.
		return &keysDocs{err: fmt.Errorf("tokenservice: the key set cannot be published: %w", err)}
	}
	d := &keysDocs{jwks: newDoc(jwks)}
	if h.issuer == "" {
		return d
	}
	var algs []string
	for _, k := range ks.Keys() {
		if !slices.Contains(algs, k.Algorithm()) {
			algs = append(algs, k.Algorithm())
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err = enc.Encode(struct {
		Issuer             string   `json:"issuer"`
		JWKSURI            string   `json:"jwks_uri"`
		ResponseTypes      []string `json:"response_types_supported"`
		SubjectTypes       []string `json:"subject_types_supported"`
		IDTokenSigningAlgs []string `json:"id_token_signing_alg_values_supported"`
	}{h.issuer, h.jwksURI, []string{"token"}, []string{"public"}, algs})
	if err != nil {
		return &keysDocs{err: fmt.Errorf("tokenservice: %w", err)}
	}
	d.discovery = newDoc(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return d
}

func (h *keysHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var which func(*keysDocs) doc
	switch {
	case r.URL.Path == h.jwksPath:
		which = func(d *keysDocs) doc { return d.jwks }
	case h.discoveryPath != "" && r.URL.Path == h.discoveryPath:
		which = func(d *keysDocs) doc { return d.discovery }
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	docs := h.docs.Load()
	if docs == nil || docs.err != nil {
		// The reason stays on the server side: it is about the server's
		// keys, and says nothing a client could act on.
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "key set unavailable", http.StatusInternalServerError)
		return
	}
	d := which(docs)
	hdr := w.Header()
	hdr.Set("Cache-Control", h.cacheControl)
	hdr.Set("ETag", d.etag)
	if etagMatch(r.Header.Values("If-None-Match"), d.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(d.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(d.body)
	}
}

// etagMatch reports whether an If-None-Match header list matches etag
// (weak comparison, RFC 9110 §13.1.2).
func etagMatch(values []string, etag string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}
