package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
)

// Session is a verified caller: the claims of a token that passed every
// check of a [Verifier]. A Session is immutable and may be shared by
// concurrent calls (the verified-token cache hands the same Session to every
// call that presents the same token).
type Session struct {
	d sessionmint.Data // set only by the verifier, through internal/sessionmint
}

func init() {
	sessionmint.New = func() (any, *sessionmint.Data) {
		s := new(Session)
		return s, &s.d
	}
	sessionmint.Of = func(sess any) *sessionmint.Data { return &sess.(*Session).d }
}

// Subject returns the sub claim: who the token was issued to.
func (s *Session) Subject() string { return s.d.Subject }

// Issuer returns the iss claim.
func (s *Session) Issuer() string { return s.d.Issuer }

// Audience returns a copy of the aud claim.
func (s *Session) Audience() []string { return slices.Clone(s.d.Audience) }

// ID returns the jti claim, unique per token.
func (s *Session) ID() string { return s.d.ID }

// SessionID returns the sid claim, shared by a token and its renewals; empty
// when the token has none.
func (s *Session) SessionID() string { return s.d.SessionID }

// AuthorizedParty returns the azp claim, the calling service; empty when the
// token has none.
func (s *Session) AuthorizedParty() string { return s.d.AZP }

// Consumer returns who is calling, for throttling and logs: the azp claim,
// or the subject when azp is absent (an issuer's profile may name other
// claims, such as client_id or appid).
func (s *Session) Consumer() string { return s.d.Consumer() }

// ConsumerKey returns [Session.Consumer] qualified by the claim it came from:
// "azp:orders" or "sub:orders" ("appid:..." for a profile reading appid). Throttle buckets are keyed on it, so that a
// token whose sub merely equals a service's name never spends that
// service's budget.
func (s *Session) ConsumerKey() string { return s.d.ConsumerKey }

// LogRef returns a short, one-way reference to the token for logs: the
// [Fingerprint] of its jti, or, for a token without one (some issuers'
// profiles allow it), of its claim set, which its iat, exp and sub make
// distinct. Computed when asked, for a log line: never the token or the
// jti.
func (s *Session) LogRef() string { return Fingerprint(s.d.RefSource()) }

// CertThumbprint returns the thumbprint of the client certificate the token
// is bound to (RFC 8705: the cnf claim's x5t#S256, the unpadded base64url
// SHA-256 of the certificate's DER form), or "" for a bearer token. A bound
// token is proof of the caller only on a mutual-TLS connection whose client
// certificate has this thumbprint: tollgate's guard refuses it on any other
// connection. Code that receives a session by other means (a message
// queue, an HTTP server of its own) must check the binding itself, or
// refuse sessions for which this is not empty.
func (s *Session) CertThumbprint() string { return s.d.CertThumbprint }

// KeyID returns the kid of the key that signed the token.
func (s *Session) KeyID() string { return s.d.KeyID }

// Algorithm returns the signing algorithm of the token.
func (s *Session) Algorithm() string { return s.d.Algorithm }

// IssuedAt returns the iat claim, or the zero time when absent.
func (s *Session) IssuedAt() time.Time { return s.d.IssuedAt }

// NotBefore returns the nbf claim, or the zero time when absent.
func (s *Session) NotBefore() time.Time { return s.d.NotBefore }

// ExpiresAt returns the exp claim.
func (s *Session) ExpiresAt() time.Time { return s.d.ExpiresAt }

// AuthTime returns the auth_time claim, when the caller first
// authenticated, or the zero time when absent.
func (s *Session) AuthTime() time.Time { return s.d.AuthTime }

// ValidUntil returns the instant the session stops being valid: the earlier
// of its expiry and, when it has an auth_time, the end of its maximum
// session. Streams that outlive it are ended.
func (s *Session) ValidUntil() time.Time { return s.d.ValidUntil }

// Permissions returns a copy of the permissions the token grants.
func (s *Session) Permissions() []string { return slices.Clone(s.d.Perms) }

// Has reports whether the session grants permission p, exactly or through a
// wildcard grant "prefix.*" that covers every permission starting with
// "prefix.". A bare "*" grants nothing: there is no grant of everything.
func (s *Session) Has(p string) bool {
	// A permission asked for is never a pattern: "*" or "prices.*" would
	// otherwise match a token that literally carries that string.
	if p == "" || strings.IndexByte(p, '*') >= 0 {
		return false
	}
	if s.d.Exact != nil {
		// Many grants: a map of the exact ones, and the prefixes.
		if _, ok := s.d.Exact[p]; ok {
			return true
		}
		for _, w := range s.d.Wildcards {
			if len(p) > len(w) && strings.HasPrefix(p, w) {
				return true
			}
		}
		return false
	}
	// A few grants (the usual case) are read in place: cheaper than
	// hashing p.
	for _, g := range s.d.Perms {
		if g == p {
			return true
		}
		// "prefix.*" grants p when p is longer than "prefix." and starts
		// with it.
		if n := len(g) - 1; n >= 2 && n < len(p) && g[n] == '*' && g[n-1] == '.' && p[:n] == g[:n] {
			return true
		}
	}
	return false
}

// Claim returns a claim that is not one of the registered ones (such as a
// seller_id), as decoded from JSON: string, json.Number, bool, nil,
// []any or map[string]any (a copy).
func (s *Session) Claim(name string) (any, bool) {
	c := s.findClaim(name)
	if c == nil {
		return nil, false
	}
	return cloneClaim(c.Value), true
}

// cloneClaim deep-copies arrays and objects: the cache shares a Session
// between calls, so a caller must not be able to change what the next call
// sees (or race with it).
func cloneClaim(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneClaim(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cloneClaim(e)
		}
		return out
	}
	return v
}

// ClaimString returns a custom claim in its canonical text form: a string as
// is, a number as written in the token, a boolean as "true" or "false". It
// reports false for a missing claim and for null, array and object values.
func (s *Session) ClaimString(name string) (string, bool) {
	c := s.findClaim(name)
	if c == nil || !c.IsText {
		return "", false
	}
	return c.Text, true
}

// ClaimNames returns the names of the custom claims, sorted.
func (s *Session) ClaimNames() []string {
	names := make([]string, len(s.d.Claims))
	for i := range s.d.Claims {
		names[i] = s.d.Claims[i].Name
	}
	return names
}

// findClaim returns the custom claim name, or nil.
func (s *Session) findClaim(name string) *sessionmint.Claim {
	if s.d.ClaimMap != nil {
		return s.d.ClaimMap[name]
	}
	for i := range s.d.Claims {
		if s.d.Claims[i].Name == name {
			return &s.d.Claims[i]
		}
	}
	return nil
}

// String describes the session for logs without any secret: subject,
// consumer and a fingerprint is all it shows.
func (s *Session) String() string {
	return "session{sub=" + strconv.Quote(s.d.Subject) + " consumer=" + strconv.Quote(s.d.ConsumerKey) +
		" jti#=" + Fingerprint(s.d.ID) + "}"
}

type contextKey struct{}

// NewContext returns a copy of ctx that carries sess.
func NewContext(ctx context.Context, sess *Session) context.Context {
	return context.WithValue(ctx, contextKey{}, sess)
}

// FromContext returns the session in ctx, if any. A Session that no
// verifier built (the zero Session, which is all code outside tollgate can
// make) has no subject and counts as none.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(contextKey{}).(*Session)
	if !ok || s == nil || s.d.Subject == "" {
		return nil, false
	}
	return s, true
}

// Fingerprint returns a short, one-way digest of s (the first 8 bytes of its
// SHA-256, in hex), for correlating a jti or a token in logs without
// revealing it.
func Fingerprint(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
