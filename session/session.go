package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Session is a verified caller: the claims of a token that passed every
// check of a [Verifier]. A Session is immutable and may be shared by
// concurrent calls (the verified-token cache hands the same Session to every
// call that presents the same token).
type Session struct {
	text        string // the claim set and the consumer key: most strings below are parts of it
	subject     string
	issuer      string
	audience    []string
	aud1        [1]string // audience, when it is one
	id          string    // jti
	sessionID   string    // sid
	azp         string
	keyID       string
	algorithm   string
	issuedAt    time.Time
	notBefore   time.Time
	expiresAt   time.Time
	authTime    time.Time
	perms       []string
	exact       map[string]struct{}     // more than maxScannedGrants perms: the exact grants
	wildcards   []string                // and the grants "p.*", stored as "p."
	claims      []customClaim           // sorted by name
	claimMap    map[string]*customClaim // more than maxScannedClaims: the claims by name
	validUntil  time.Time               // min(exp, auth_time + max session)
	consumerKey string                  // "azp:" + azp, or "sub:" + subject
}

// Subject returns the sub claim: who the token was issued to.
func (s *Session) Subject() string { return s.subject }

// Issuer returns the iss claim.
func (s *Session) Issuer() string { return s.issuer }

// Audience returns a copy of the aud claim.
func (s *Session) Audience() []string { return slices.Clone(s.audience) }

// ID returns the jti claim, unique per token.
func (s *Session) ID() string { return s.id }

// SessionID returns the sid claim, shared by a token and its renewals; empty
// when the token has none.
func (s *Session) SessionID() string { return s.sessionID }

// AuthorizedParty returns the azp claim, the calling service; empty when the
// token has none.
func (s *Session) AuthorizedParty() string { return s.azp }

// Consumer returns who is calling, for throttling and logs: the azp claim,
// or the subject when azp is absent.
func (s *Session) Consumer() string {
	if s.azp != "" {
		return s.azp
	}
	return s.subject
}

// ConsumerKey returns [Session.Consumer] qualified by the claim it came from:
// "azp:orders" or "sub:orders". Throttle buckets are keyed on it, so that a
// token whose sub merely equals a service's name never spends that
// service's budget.
func (s *Session) ConsumerKey() string { return s.consumerKey }

// KeyID returns the kid of the key that signed the token.
func (s *Session) KeyID() string { return s.keyID }

// Algorithm returns the signing algorithm of the token.
func (s *Session) Algorithm() string { return s.algorithm }

// IssuedAt returns the iat claim, or the zero time when absent.
func (s *Session) IssuedAt() time.Time { return s.issuedAt }

// NotBefore returns the nbf claim, or the zero time when absent.
func (s *Session) NotBefore() time.Time { return s.notBefore }

// ExpiresAt returns the exp claim.
func (s *Session) ExpiresAt() time.Time { return s.expiresAt }

// AuthTime returns the auth_time claim, when the caller first
// authenticated, or the zero time when absent.
func (s *Session) AuthTime() time.Time { return s.authTime }

// ValidUntil returns the instant the session stops being valid: the earlier
// of its expiry and, when it has an auth_time, the end of its maximum
// session. Streams that outlive it are ended.
func (s *Session) ValidUntil() time.Time { return s.validUntil }

// Permissions returns a copy of the permissions the token grants.
func (s *Session) Permissions() []string { return slices.Clone(s.perms) }

// Has reports whether the session grants permission p, exactly or through a
// wildcard grant "prefix.*" that covers every permission starting with
// "prefix.". A bare "*" grants nothing: there is no grant of everything.
func (s *Session) Has(p string) bool {
	// A permission asked for is never a pattern: "*" or "prices.*" would
	// otherwise match a token that literally carries that string.
	if p == "" || strings.IndexByte(p, '*') >= 0 {
		return false
	}
	if s.exact != nil {
		// Many grants: a map of the exact ones, and the prefixes.
		if _, ok := s.exact[p]; ok {
			return true
		}
		for _, w := range s.wildcards {
			if len(p) > len(w) && strings.HasPrefix(p, w) {
				return true
			}
		}
		return false
	}
	// A few grants (the usual case) are read in place: cheaper than
	// hashing p.
	for _, g := range s.perms {
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
	return cloneClaim(c.value), true
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
	if c == nil || !c.isText {
		return "", false
	}
	return c.text, true
}

// ClaimNames returns the names of the custom claims, sorted.
func (s *Session) ClaimNames() []string {
	names := make([]string, len(s.claims))
	for i := range s.claims {
		names[i] = s.claims[i].name
	}
	return names
}

// customClaim is a custom claim of a session, with its canonical text
// (for ClaimString) when it has one. A session of a few custom claims (the
// usual case) holds them in a slice sorted by name, one allocation where a
// map cost two, and reads them in place, faster than hashing the name;
// past maxScannedClaims a map finds them.
type customClaim struct {
	name   string
	value  any
	text   string
	isText bool
}

const maxScannedClaims = 4

// set sets c to the custom claim name of value v. Not inlined: it would
// widen the frame under newSession's allocations.
//
//go:noinline
func (c *customClaim) set(name string, v any) {
	c.name, c.value, c.isText = name, v, true
	switch v := v.(type) {
	case string:
		c.text = v
	case json.Number:
		c.text = v.String()
	case bool:
		c.text = strconv.FormatBool(v)
	default:
		c.isText = false
	}
}

// findClaim returns the custom claim name, or nil.
func (s *Session) findClaim(name string) *customClaim {
	if s.claimMap != nil {
		return s.claimMap[name]
	}
	for i := range s.claims {
		if s.claims[i].name == name {
			return &s.claims[i]
		}
	}
	return nil
}

// claimsByName returns a map of claims, nil for a few.
func claimsByName(claims []customClaim) map[string]*customClaim {
	if len(claims) <= maxScannedClaims {
		return nil
	}
	m := make(map[string]*customClaim, len(claims))
	for i := range claims {
		m[claims[i].name] = &claims[i]
	}
	return m
}

// claimsMap returns the custom claims as a map, nil when there are none.
func (s *Session) claimsMap() map[string]any {
	if len(s.claims) == 0 {
		return nil
	}
	m := make(map[string]any, len(s.claims))
	for _, c := range s.claims {
		m[c.name] = c.value
	}
	return m
}

// String describes the session for logs without any secret: subject,
// consumer and a fingerprint is all it shows.
func (s *Session) String() string {
	return "session{sub=" + strconv.Quote(s.subject) + " consumer=" + strconv.Quote(s.consumerKey) +
		" jti#=" + Fingerprint(s.id) + "}"
}

type contextKey struct{}

// NewContext returns a copy of ctx that carries sess.
func NewContext(ctx context.Context, sess *Session) context.Context {
	return context.WithValue(ctx, contextKey{}, sess)
}

// FromContext returns the session in ctx, if any.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(contextKey{}).(*Session)
	return s, ok && s != nil
}

// maxScannedGrants is the most permissions Has reads one by one; a session
// with more has them in a map.
const maxScannedGrants = 8

// newGrants splits perms into exact grants and wildcard prefixes. Not
// inlined: the rare large permission set should not widen newSession's
// frame.
//
//go:noinline
func newGrants(perms []string) (map[string]struct{}, []string) {
	exact := make(map[string]struct{}, len(perms))
	var wild []string
	for _, p := range perms {
		if strings.HasSuffix(p, ".*") && len(p) > 2 {
			wild = append(wild, p[:len(p)-1])
			continue
		}
		exact[p] = struct{}{}
	}
	return exact, wild
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
