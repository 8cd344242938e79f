package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are what a [Signer] puts in a token. Times are truncated to whole
// seconds (NumericDate).
type Claims struct {
	Issuer          string
	Subject         string
	Audience        []string
	IssuedAt        time.Time // required
	NotBefore       time.Time // optional
	ExpiresAt       time.Time // required
	AuthTime        time.Time // optional; renewal needs it
	ID              string    // jti; a random one when empty
	SessionID       string    // sid; optional
	AuthorizedParty string    // azp, the calling service; optional
	Permissions     []string
	// CertThumbprint binds the token to a client certificate (RFC 8705):
	// the certificate's [CertThumbprint], written as
	// "cnf":{"x5t#S256":...}. A verifier's guard then accepts the token
	// only on a mutual-TLS connection with that certificate. Empty: a
	// bearer token.
	CertThumbprint string
	// Extra holds custom claims, such as a seller_id. Their names may not
	// collide with a registered claim, in any case.
	Extra map[string]any
}

// ErrClaims reports claims a [Signer] refuses to sign.
var ErrClaims = errors.New("token: cannot sign claims")

// Signer issues tokens with one key: header {"alg","kid","typ":"at+jwt"}.
// It is safe for concurrent use.
type Signer struct {
	key *Key
}

// NewSigner returns a signer for key, which must hold private (or secret)
// material.
func NewSigner(key *Key) (*Signer, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no key configured (tollgate has no default key)", ErrKey)
	}
	if !key.CanSign() {
		return nil, fmt.Errorf("%w: key %q is verify-only", ErrKey, key.id)
	}
	return &Signer{key: key}, nil
}

// Key returns the signing key.
func (s *Signer) Key() *Key { return s.key }

// Sign returns the compact token for c. It fails when c lacks iss, sub, aud,
// iat or exp, when exp is not after iat, or when a custom claim collides with
// a registered one.
func (s *Signer) Sign(c Claims) (string, error) {
	switch {
	case c.Issuer == "":
		return "", fmt.Errorf("%w: missing issuer", ErrClaims)
	case c.Subject == "":
		return "", fmt.Errorf("%w: missing subject", ErrClaims)
	case len(c.Audience) == 0:
		return "", fmt.Errorf("%w: missing audience", ErrClaims)
	case c.IssuedAt.IsZero():
		return "", fmt.Errorf("%w: missing issued-at", ErrClaims)
	case c.ExpiresAt.IsZero() || c.ExpiresAt.Unix() <= c.IssuedAt.Unix():
		// Compared in whole seconds, as they are written: 10.1 s and 10.5 s
		// would sign exp == iat.
		return "", fmt.Errorf("%w: expiry must be at least a second after issued-at", ErrClaims)
	case len(c.ID) > maxJTILen:
		return "", fmt.Errorf("%w: jti longer than %d", ErrClaims, maxJTILen)
	case c.CertThumbprint != "" && !validThumbprint(c.CertThumbprint):
		return "", fmt.Errorf("%w: certificate thumbprint is not 43 base64url characters of a SHA-256 (see token.CertThumbprint)", ErrClaims)
	}
	for _, a := range c.Audience {
		if a == "" {
			return "", fmt.Errorf("%w: empty audience", ErrClaims)
		}
	}
	m := jwt.MapClaims{
		"iss": c.Issuer,
		"sub": c.Subject,
		"iat": c.IssuedAt.Unix(),
		"exp": c.ExpiresAt.Unix(),
	}
	if len(c.Audience) == 1 {
		m["aud"] = c.Audience[0]
	} else {
		m["aud"] = c.Audience
	}
	if !c.NotBefore.IsZero() {
		m["nbf"] = c.NotBefore.Unix()
	}
	if !c.AuthTime.IsZero() {
		m["auth_time"] = c.AuthTime.Unix()
	}
	id := c.ID
	if id == "" {
		var err error
		if id, err = NewID(); err != nil {
			return "", err
		}
	}
	m["jti"] = id
	if c.SessionID != "" {
		m["sid"] = c.SessionID
	}
	if c.AuthorizedParty != "" {
		m["azp"] = c.AuthorizedParty
	}
	if c.Permissions != nil {
		m["perms"] = c.Permissions
	}
	if c.CertThumbprint != "" {
		m["cnf"] = map[string]string{"x5t#S256": c.CertThumbprint}
	}
	for k, v := range c.Extra {
		for _, r := range registeredClaims {
			if strings.EqualFold(k, r) {
				return "", fmt.Errorf("%w: custom claim %q collides with a registered claim", ErrClaims, k)
			}
		}
		if k == "" {
			return "", fmt.Errorf("%w: custom claim with an empty name", ErrClaims)
		}
		m[k] = v
	}
	t := jwt.NewWithClaims(s.key.method, m)
	t.Header["typ"] = "at+jwt"
	if s.key.id != "" {
		t.Header["kid"] = s.key.id
	}
	out, err := t.SignedString(s.key.signKey)
	if err != nil {
		return "", fmt.Errorf("token: signing failed: %w", err)
	}
	return out, nil
}

// CertThumbprint returns the thumbprint of the X.509 certificate der (its
// DER form, x509.Certificate.Raw) that binds a token to it (RFC 8705
// §3.1): the unpadded base64url encoding of its SHA-256, 43 characters.
// It is what [Claims.CertThumbprint] takes and
// session.Session.CertThumbprint returns.
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validThumbprint reports whether t is a SHA-256 thumbprint as the
// verifier accepts it: 43 base64url characters, decoding strictly to 32
// bytes.
func validThumbprint(t string) bool {
	if len(t) != thumbprintLen {
		return false
	}
	b, err := b64.DecodeString(t)
	return err == nil && len(b) == sha256.Size
}

// NewID returns a random identifier of 128 bits in base64url, for jti and
// sid.
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token: no randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
