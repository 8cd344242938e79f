// Package sessionmint is the bridge through which package token builds the
// verified sessions of package session, whose fields no one else can set.
//
// A session.Session holds one unexported field of type [Data]. Package
// session sets [New] and [Of] in its init; package token, the verifier,
// calls them. Go's internal rule keeps this package out of reach of code
// outside tollgate, and internal/archtest allows only session and token to
// import it, so a Session made anywhere else is the zero Session: no
// subject, no permissions, expired.
package sessionmint

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Data is what a verified session holds.
type Data struct {
	Text        string // the claim set and the consumer key: most strings below are parts of it
	Subject     string
	Issuer      string
	Audience    []string
	Aud1        [1]string // Audience, when it is one
	ID          string    // jti
	SessionID   string    // sid
	AZP         string
	KeyID       string
	Algorithm   string
	IssuedAt    time.Time
	NotBefore   time.Time
	ExpiresAt   time.Time
	AuthTime    time.Time
	Perms       []string
	Exact       map[string]struct{} // more than MaxScannedGrants perms: the exact grants
	Wildcards   []string            // and the grants "p.*", stored as "p."
	Claims      []Claim             // sorted by name
	ClaimMap    map[string]*Claim   // more than MaxScannedClaims: the claims by name
	ValidUntil  time.Time           // min(exp, auth_time + max session)
	ConsumerKey string              // "azp:" + azp, or "sub:" + subject (or the claim the issuer's profile names)
	Renewable   bool                // of an issuer this service renews (tollgate's own)
	// CertThumbprint is cnf's x5t#S256 (RFC 8705): the base64url SHA-256
	// thumbprint of the client certificate the token is bound to; empty
	// for a bearer token.
	CertThumbprint string
}

// Consumer is the consumer of the session's ConsumerKey ("claim:value":
// claim names hold no colon): its value.
func (d *Data) Consumer() string {
	k := d.ConsumerKey
	return k[strings.IndexByte(k, ':')+1:]
}

// RefSource is what a session's log reference is the fingerprint of: its
// jti, or, without one, its claim set. Session.LogRef and the revocation
// set's ref entries both use it, so they always agree.
func (d *Data) RefSource() string {
	if d.ID != "" {
		return d.ID
	}
	return d.Text
}

// New returns a new, empty *session.Session (as any) and its fields, to
// fill in before the session is handed to anyone. Set by package session.
var New func() (sess any, d *Data)

// Of returns the fields of sess, a *session.Session. Set by package
// session.
var Of func(sess any) *Data

// Claim is a custom claim of a session, with its canonical text (for
// ClaimString) when it has one. A session of a few custom claims (the usual
// case) holds them in a slice sorted by name, one allocation where a map
// cost two, and reads them in place, faster than hashing the name; past
// MaxScannedClaims a map finds them.
type Claim struct {
	Name   string
	Value  any
	Text   string
	IsText bool
}

// MaxScannedClaims is the most custom claims a session reads one by one; a
// session with more has them in a map.
const MaxScannedClaims = 4

// Set sets c to the custom claim name of value v. Not inlined: it would
// widen the frame under the verifier's newSession allocations.
//
//go:noinline
func (c *Claim) Set(name string, v any) {
	c.Name, c.Value, c.IsText = name, v, true
	switch v := v.(type) {
	case string:
		c.Text = v
	case json.Number:
		c.Text = v.String()
	case bool:
		c.Text = strconv.FormatBool(v)
	default:
		c.IsText = false
	}
}

// ClaimsByName returns a map of claims, nil for a few.
func ClaimsByName(claims []Claim) map[string]*Claim {
	if len(claims) <= MaxScannedClaims {
		return nil
	}
	m := make(map[string]*Claim, len(claims))
	for i := range claims {
		m[claims[i].Name] = &claims[i]
	}
	return m
}

// ClaimsMap returns the custom claims as a map, nil when there are none.
func (d *Data) ClaimsMap() map[string]any {
	if len(d.Claims) == 0 {
		return nil
	}
	m := make(map[string]any, len(d.Claims))
	for _, c := range d.Claims {
		m[c.Name] = c.Value
	}
	return m
}

// MaxScannedGrants is the most permissions Session.Has reads one by one; a
// session with more has them in a map.
const MaxScannedGrants = 8

// NewGrants splits perms into exact grants and wildcard prefixes. Not
// inlined: the rare large permission set should not widen newSession's
// frame.
//
//go:noinline
func NewGrants(perms []string) (map[string]struct{}, []string) {
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
