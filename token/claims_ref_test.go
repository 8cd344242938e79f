package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// The claim decoder and checks as they were before issue 8, kept as the
// reference of the differential fuzz test (FuzzClaimsDifferential): a
// structural scan, then encoding/json by reflection into a struct, golang-
// jwt's ClaimStrings for aud and golang-jwt's Validator for the time, iss
// and aud checks. Nothing outside the tests calls it.

type refTokenClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt refNumericDate   `json:"exp"`
	NotBefore refNumericDate   `json:"nbf"`
	IssuedAt  refNumericDate   `json:"iat"`
	ID        string           `json:"jti"`
	SID       string           `json:"sid"`
	AZP       string           `json:"azp"`
	AuthTime  refNumericDate   `json:"auth_time"`
	Perms     []string         `json:"perms"`
	Scope     string           `json:"scope"`

	custom map[string]any
	thumb  string // cnf's x5t#S256, read by refCnf
}

type refNumericDate struct {
	t   time.Time
	set bool
}

var errRefNotNumber = errors.New("numeric date must be a JSON number")

func (d *refNumericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errRefNotNumber
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > maxNumericDate || f < -maxNumericDate {
		return errRefNotNumber
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9))
	d.set = true
	return nil
}

func (d refNumericDate) ptr() *jwt.NumericDate {
	if !d.set {
		return nil
	}
	return &jwt.NumericDate{Time: d.t}
}

func (c *refTokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.ptr(), nil }
func (c *refTokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.ptr(), nil }
func (c *refTokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.ptr(), nil }
func (c *refTokenClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *refTokenClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *refTokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

type refMember struct {
	key   []byte
	value []byte
}

func refParseClaims(data []byte, c *refTokenClaims) error {
	if !utf8.Valid(data) {
		return errClaims
	}
	members, ok := refScanObject(data, nil)
	if !ok {
		return errClaims
	}
	if len(members) > maxClaims {
		return errClaims
	}
	var custom []int
	var cnf []byte
	for i, m := range members {
		if string(m.key) == "cnf" {
			cnf = m.value
		}
		for _, prev := range members[:i] {
			if bytes.EqualFold(prev.key, m.key) {
				return errClaimsDup
			}
		}
		registered := false
		for _, r := range registeredClaims {
			if string(m.key) == r {
				registered = true
				break
			}
			if strings.EqualFold(string(m.key), r) {
				return errClaimsCase
			}
		}
		if !registered {
			custom = append(custom, i)
		}
	}
	if err := json.Unmarshal(data, c); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return errClaims
		}
		return errClaimType
	}
	if len(custom) > 0 {
		c.custom = make(map[string]any, len(custom))
		for _, i := range custom {
			v, ok := refCustomValue(members[i].value)
			if !ok {
				return errClaims
			}
			c.custom[string(members[i].key)] = v
		}
	}
	if cnf != nil {
		var err error
		if c.thumb, err = refCnf(cnf); err != nil {
			return err
		}
	}
	return nil
}

// refCnf reads a cnf claim (RFC 7800, RFC 8705 §3.1) by encoding/json: an
// object of at most maxCnfMembers distinct (case folded) members, of which
// x5t#S256, spelt exactly so and in no other case, is a string whose strict
// base64url decoding is 32 bytes; without it, the token cannot be checked.
func refCnf(raw []byte) (string, error) {
	if raw[0] != '{' {
		return "", errCnf
	}
	members, ok := refScanObject(raw, nil)
	if !ok {
		return "", errClaims
	}
	if len(members) == 0 || len(members) > maxCnfMembers {
		return "", errCnf
	}
	thumb := ""
	for i, m := range members {
		for _, prev := range members[:i] {
			if bytes.EqualFold(prev.key, m.key) {
				return "", errCnf
			}
		}
		switch {
		case string(m.key) == "x5t#S256":
			var s string
			if json.Unmarshal(m.value, &s) != nil || m.value[0] != '"' {
				return "", errCnf
			}
			b, err := base64.RawURLEncoding.Strict().DecodeString(s)
			if err != nil || len(b) != 32 || len(s) != 43 {
				return "", errCnf
			}
			thumb = s
		case strings.EqualFold(string(m.key), "x5t#S256"):
			return "", errCnf
		}
	}
	if thumb == "" {
		return "", errCnfMethod
	}
	return thumb, nil
}

func refCustomValue(raw []byte) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	switch c := raw[0]; {
	case c == '"' && len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0:
		return string(raw[1 : len(raw)-1]), true
	case string(raw) == "true":
		return true, true
	case string(raw) == "false":
		return false, true
	case string(raw) == "null":
		return nil, true
	case c == '-' || c >= '0' && c <= '9':
		if !json.Valid(raw) {
			return nil, false
		}
		return json.Number(raw), true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	return v, true
}

func refScanObject(data []byte, members []refMember) ([]refMember, bool) {
	i := refSkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = refSkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return members, refSkipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		end, escaped := refScanString(data, i)
		if end < 0 {
			return nil, false
		}
		key := data[i+1 : end-1]
		if escaped {
			var s string
			if json.Unmarshal(data[i:end], &s) != nil {
				return nil, false
			}
			key = []byte(s)
		}
		i = refSkipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		i = refSkipSpace(data, i+1)
		vend := refScanValue(data, i)
		if vend < 0 {
			return nil, false
		}
		members = append(members, refMember{key: key, value: data[i:vend]})
		i = refSkipSpace(data, vend)
		if i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i = refSkipSpace(data, i+1)
		case '}':
			return members, refSkipSpace(data, i+1) == len(data)
		default:
			return nil, false
		}
	}
}

func refSkipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func refScanString(data []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return j + 1, escaped
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return -1, false
		}
	}
	return -1, false
}

func refScanValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		end, _ := refScanString(data, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, _ := refScanString(data, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
				if depth > 32 {
					return -1
				}
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(data) {
			c := data[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// refCheckClaims is the old checkClaims: golang-jwt's Validator, then
// tollgate's own rules.
func refCheckClaims(o verifierOptions, issuer, audience string, c *refTokenClaims, now time.Time) error {
	if !c.ExpiresAt.set {
		return errNoExp
	}
	if !c.IssuedAt.set {
		return errNoIat
	}
	validator := jwt.NewValidator(
		jwt.WithLeeway(o.leeway),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	var stale error
	if err := validator.Validate(c); err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return errIatFuture
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			return errNbf
		case errors.Is(err, jwt.ErrTokenInvalidIssuer):
			return errIssuer
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return errAudience
		case !refOnlyExpired(err):
			return errClaimsInvalid
		}
		stale = errExpired
	}
	if c.Subject == "" {
		return errNoSub
	}
	if c.ID == "" || len(c.ID) > maxJTILen {
		return errJTI
	}
	if c.ExpiresAt.t.Sub(c.IssuedAt.t) > o.maxLifetime {
		return errLifetime
	}
	if c.AuthTime.set {
		if c.AuthTime.t.After(now.Add(o.leeway)) || c.AuthTime.t.After(c.IssuedAt.t.Add(o.leeway)) {
			return errAuthTime
		}
		if stale == nil && !now.Before(c.AuthTime.t.Add(o.maxSession).Add(o.leeway)) {
			stale = errSessionOver
		}
	}
	return stale
}

func refOnlyExpired(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !refOnlyExpired(e) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return errors.Is(err, jwt.ErrTokenExpired)
}

// refSession is what the old newSession made of a claim set, with the old
// grant representation (a map of exact grants and a list of prefixes).
type refSession struct {
	subject, issuer, id, sessionID, azp string
	audience, perms                     []string
	issuedAt, notBefore, expiresAt      time.Time
	authTime, validUntil                time.Time
	claims                              map[string]any
	exact                               map[string]struct{}
	wildcards                           []string
	consumerKey                         string
	certThumbprint                      string
}

func refNewSession(o verifierOptions, c *refTokenClaims) *refSession {
	perms := c.Perms
	if o.scope && c.Scope != "" {
		perms = append(append([]string(nil), perms...), strings.Fields(c.Scope)...)
	}
	s := &refSession{
		subject:   c.Subject,
		issuer:    c.Issuer,
		audience:  []string(c.Audience),
		id:        c.ID,
		sessionID: c.SID,
		azp:       c.AZP,
		issuedAt:  c.IssuedAt.t,
		notBefore: c.NotBefore.t,
		expiresAt: c.ExpiresAt.t,
		authTime:  c.AuthTime.t,
		perms:     perms,
		claims:    c.custom,

		certThumbprint: c.thumb,
	}
	s.exact = make(map[string]struct{}, len(perms))
	for _, p := range perms {
		if strings.HasSuffix(p, ".*") && len(p) > 2 {
			s.wildcards = append(s.wildcards, p[:len(p)-1])
			continue
		}
		s.exact[p] = struct{}{}
	}
	if s.azp != "" {
		s.consumerKey = "azp:" + s.azp
	} else {
		s.consumerKey = "sub:" + s.subject
	}
	s.validUntil = s.expiresAt
	if c.AuthTime.set {
		if end := s.authTime.Add(o.maxSession); end.Before(s.validUntil) {
			s.validUntil = end
		}
	}
	return s
}

// has is the old session.Session.Has.
func (s *refSession) has(p string) bool {
	if p == "" || strings.IndexByte(p, '*') >= 0 {
		return false
	}
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

// refVerifyClaims runs the old claim stage on a decoded claim set: parse,
// check, build the session.
func refVerifyClaims(v *Verifier, data []byte, now time.Time) (*refSession, error) {
	var c refTokenClaims
	if err := refParseClaims(data, &c); err != nil {
		return nil, err
	}
	if err := refCheckClaims(v.opts, v.Issuer(), v.Audience(), &c, now); err != nil {
		return nil, err
	}
	return refNewSession(v.opts, &c), nil
}

// refClaimString is the old session.Session.ClaimString, on the old map.
func refClaimString(claims map[string]any, name string) (string, bool) {
	switch v := claims[name].(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	default:
		return "", false
	}
}
