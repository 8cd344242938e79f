package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/token"
)

// firstFetchTimeout bounds the first fetch of a remote key set (and of the
// discovery document): a server that cannot learn its issuer's keys says
// so at start instead of serving refusals.
const firstFetchTimeout = 10 * time.Second

// profileNames lists the profiles -profile accepts, sorted.
func profileNames() []string {
	var names []string
	for n := range token.Profiles() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// splitList splits a comma-separated flag value, dropping empty parts.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// remote reports whether the keys come from the issuer rather than a file.
func (c *config) remote() bool { return c.jwksURL != "" || c.oidcIssuer != "" }

// checkIssuer checks the flags that choose the issuer and its keys; its
// errors are usage errors and never quote a flag's value, which may be a
// secret pasted in the wrong place.
func (c *config) checkIssuer() error {
	switch {
	case c.jwksURL != "" && c.oidcIssuer != "":
		return errors.New("-jwks-url and -oidc-issuer: give one, not both")
	case c.remote() && c.keySet:
		return errors.New("-key and -jwks-url or -oidc-issuer: the keys come from a file or from the issuer, not both")
	case c.oidcIssuer != "" && c.issuerSet:
		return errors.New("-oidc-issuer names the issuer: -issuer does not apply")
	case c.jwksURL != "" && !c.issuerSet:
		return errors.New("-jwks-url needs -issuer: the iss its tokens carry")
	case c.remote() && c.jwksListen != "":
		return errors.New("-jwks-listen publishes this server's own key; with -jwks-url or -oidc-issuer the issuer publishes its keys")
	}
	for name, raw := range map[string]string{"-jwks-url": c.jwksURL, "-oidc-issuer": c.oidcIssuer} {
		if raw == "" {
			continue
		}
		if token.Redact(raw) != raw {
			return fmt.Errorf("%s: the URL looks like key material or a token", name)
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%s: want an https URL (http only on a loopback host)", name)
		}
	}
	if c.profile != "" {
		if _, ok := token.Profiles()[c.profile]; !ok {
			return fmt.Errorf("-profile: unknown profile (known: %s)", strings.Join(profileNames(), ", "))
		}
	}
	return nil
}

// verifier builds the verifier the flags describe: of a key file (or
// $TOLLGATE_KEY), or of the issuer's published key set. signs reports
// whether the key can sign renewed tokens; closeKeys stops following a
// remote key set.
func verifier(ctx context.Context, c config) (v *token.Verifier, signs bool, closeKeys func(), err error) {
	closeKeys = func() {}
	name := c.profile
	if name == "" {
		name = "tollgate"
		if c.remote() {
			name = "oidc"
		}
	}
	profile := token.Profiles()[name]()
	if c.permsClaims != nil {
		profile.PermissionsClaims = c.permsClaims
	}
	if c.consumerClaims != nil {
		profile.ConsumerClaims = c.consumerClaims
	}
	// QuotePrices takes tokens in its body, up to 64 KiB; metadata tokens
	// stay capped at 8 KiB by the guard.
	opts := []token.VerifierOption{token.WithMaxTokenSize(64 << 10), token.WithMaxSession(c.maxSession)}
	if c.revocations != nil {
		// Checked on every call, cache hits included.
		opts = append(opts, token.WithRevocations(c.revocations))
	}

	if !c.remote() {
		key, err := loadKey(c.keyPath, c.alg)
		if err != nil {
			return nil, false, closeKeys, err
		}
		ks, err := token.NewKeySet(key)
		if err != nil {
			return nil, false, closeKeys, err
		}
		_, signs = ks.SigningKey()
		if name == "tollgate" && c.permsClaims == nil && c.consumerClaims == nil {
			// Renewed tokens live -token-ttl, so the verifier must accept
			// that lifetime (and the default hour besides).
			v, err = token.NewVerifier(ks, c.issuer, c.audience, append(opts, token.WithMaxLifetime(max(c.tokenTTL, time.Hour)))...)
			return v, signs, closeKeys, err
		}
		if profile.Renewable {
			profile.MaxLifetime = max(c.tokenTTL, time.Hour)
		}
		v, err = token.NewVerifierFor([]token.Issuer{{Name: c.issuer, Keys: ks, Audiences: []string{c.audience}, Profile: profile}}, opts...)
		return v, signs && profile.Renewable, closeKeys, err
	}

	// The issuer's own keys, followed in the background. A key set holds
	// public keys only, so nothing here signs: renewal stays with the
	// issuer.
	var jopts []token.JWKSOption
	if c.algSet {
		// An issuer publishing keys without alg (Entra ID) needs the
		// algorithm named.
		jopts = append(jopts, token.JWKSAlgorithms(c.alg))
	}
	fctx, cancel := context.WithTimeout(ctx, firstFetchTimeout)
	defer cancel()
	var src *token.JWKS
	iss := c.issuer
	if c.oidcIssuer != "" {
		iss = c.oidcIssuer
		src, err = token.Discover(fctx, c.oidcIssuer, jopts...)
	} else {
		src, err = token.NewJWKS(fctx, c.jwksURL, jopts...)
	}
	if err != nil {
		return nil, false, closeKeys, err
	}
	closeKeys = func() { _ = src.Close() }
	if profile.Renewable {
		// Renewal is for tokens this service signs; a published key set
		// cannot sign them.
		profile.Renewable = false
		profile.MaxLifetime = max(c.tokenTTL, time.Hour)
	}
	v, err = token.NewVerifierFor([]token.Issuer{{Name: iss, Keys: src, Audiences: []string{c.audience}, Profile: profile}}, opts...)
	if err != nil {
		closeKeys()
		return nil, false, func() {}, err
	}
	return v, false, closeKeys, nil
}
