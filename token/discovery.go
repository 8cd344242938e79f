package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrDiscovery reports an OpenID Connect discovery document that cannot be
// used: not JSON, an issuer other than the one configured, no usable
// jwks_uri.
var ErrDiscovery = errors.New("token: OIDC discovery")

// DiscoveryDocument is what tollgate reads of an OpenID Connect discovery
// document (OpenID Connect Discovery 1.0, §3).
type DiscoveryDocument struct {
	// Issuer equals the configured issuer, byte for byte.
	Issuer string
	// JWKSURI is the key set's URL (jwks_uri).
	JWKSURI string
	// SigningAlgorithms is id_token_signing_alg_values_supported, as
	// published (possibly empty).
	SigningAlgorithms []string
}

// discoveryPath is what OpenID Connect Discovery 1.0 §4 appends to the
// issuer, after removing a terminating "/".
const discoveryPath = "/.well-known/openid-configuration"

// FetchDiscovery reads issuer's discovery document at issuer (without a
// terminating "/") + "/.well-known/openid-configuration", with the same
// scheme rules, time bound and size bound as a key set. The document's
// issuer must equal issuer exactly (a trailing "/" differs), and its
// jwks_uri must obey the scheme rules. Of the options, [JWKSHTTPClient],
// [JWKSTimeout] and [JWKSAllowInsecureHTTP] apply.
func FetchDiscovery(ctx context.Context, issuer string, opts ...JWKSOption) (*DiscoveryDocument, error) {
	o, err := newJWKSOptions(opts)
	if err != nil {
		return nil, err
	}
	return fetchDiscovery(ctx, issuer, &o)
}

// Discover finds the key set of the OpenID Connect issuer through its
// discovery document ([FetchDiscovery]) and returns [NewJWKS] of its
// jwks_uri, with opts. When opts set no [JWKSAlgorithms], the algorithms
// are the default ones the document lists in
// id_token_signing_alg_values_supported (all the defaults when it lists
// none of them), so that an issuer publishing RSA keys without alg and
// listing only RS256 (Entra ID) needs no configuration.
//
// The document is read once: the key set is followed, the document is not.
func Discover(ctx context.Context, issuer string, opts ...JWKSOption) (*JWKS, error) {
	o, err := newJWKSOptions(opts)
	if err != nil {
		return nil, err
	}
	d, err := fetchDiscovery(ctx, issuer, &o)
	if err != nil {
		return nil, err
	}
	if !o.algsSet {
		var algs []string
		for _, a := range o.algs {
			if slices.Contains(d.SigningAlgorithms, a) {
				algs = append(algs, a)
			}
		}
		if len(algs) > 0 {
			o.algs = algs
		}
	}
	return newJWKS(ctx, d.JWKSURI, o, d)
}

func fetchDiscovery(ctx context.Context, issuer string, o *jwksOptions) (*DiscoveryDocument, error) {
	u, err := checkFetchURL(issuer, o.insecure)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer: %w", ErrDiscovery, err)
	}
	if u.RawQuery != "" || u.ForceQuery || strings.Contains(issuer, "#") {
		return nil, fmt.Errorf("%w: issuer %s: an issuer has no query or fragment", ErrDiscovery, redactURL(u))
	}
	docURL := strings.TrimSuffix(issuer, "/") + discoveryPath
	du, err := checkFetchURL(docURL, o.insecure)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	source := redactURL(du)
	body, _, err := httpGet(ctx, fetchClient(o), du.String(), source, o.timeout, "application/json")
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: %s: malformed JSON%s", ErrDiscovery, source, jsonWhere(err))
	}
	var d DiscoveryDocument
	if err := discoveryString(doc, "issuer", &d.Issuer); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDiscovery, source, err)
	}
	if d.Issuer != issuer {
		// The published value is not quoted: it is not what we trust.
		return nil, fmt.Errorf("%w: %s: the document's issuer is not %q, byte for byte", ErrDiscovery, source, issuer)
	}
	if err := discoveryString(doc, "jwks_uri", &d.JWKSURI); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDiscovery, source, err)
	}
	ju, err := checkFetchURL(d.JWKSURI, o.insecure)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: jwks_uri: %w", ErrDiscovery, source, err)
	}
	if !ju.IsAbs() {
		return nil, fmt.Errorf("%w: %s: jwks_uri is not an absolute URL", ErrDiscovery, source)
	}
	if raw, ok := doc["id_token_signing_alg_values_supported"]; ok {
		if err := json.Unmarshal(raw, &d.SigningAlgorithms); err != nil {
			return nil, fmt.Errorf("%w: %s: id_token_signing_alg_values_supported is not an array of strings", ErrDiscovery, source)
		}
	}
	return &d, nil
}

// discoveryString reads the required string member name of doc into dst.
func discoveryString(doc map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := doc[name]
	if !ok {
		return fmt.Errorf("no %q", name)
	}
	if err := json.Unmarshal(raw, dst); err != nil || *dst == "" {
		return fmt.Errorf("%q is not a non-empty string", name)
	}
	return nil
}
