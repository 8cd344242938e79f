package session

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

// b64 is the only encoding tokens may use: base64url without padding, with
// the unused trailing bits required to be zero (so no two spellings of the
// same bytes both verify).
var b64 = base64.RawURLEncoding.Strict()

// alphabet[c] is true for the base64url characters.
var alphabet = func() (a [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		a[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		a[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		a[c] = true
	}
	a['-'], a['_'] = true, true
	return a
}()

// splitCompact checks the token's shape before anything is decoded: only
// base64url characters and exactly two dots, three non-empty segments. It
// stops at the third dot, so a token of many dots costs next to nothing.
func splitCompact(tok string) (dot1, dot2 int, err error) {
	dot1, dot2 = -1, -1
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if alphabet[c] {
			continue
		}
		if c != '.' {
			return 0, 0, errShape
		}
		switch {
		case dot1 < 0:
			dot1 = i
		case dot2 < 0:
			dot2 = i
		default:
			return 0, 0, errShape
		}
	}
	if dot1 <= 0 || dot2 < 0 || dot2 == dot1+1 || dot2 == len(tok)-1 {
		return 0, 0, errShape
	}
	return dot1, dot2, nil
}

// decodeSegment decodes one base64url segment into buf when it fits.
func decodeSegment(seg string, buf []byte) ([]byte, bool) {
	n := b64.DecodedLen(len(seg))
	if n > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	m, err := b64.Decode(buf, []byte(seg))
	if err != nil {
		return nil, false
	}
	return buf[:m], true
}

// member is one top-level member of a JSON object: its key (unescaped) and
// its raw value.
type member struct {
	key   []byte
	value []byte
}

// scanObject walks the top-level members of the JSON object in data, which
// must be valid UTF-8. It accepts only an object (no BOM, no other value),
// unescapes keys that need it, and returns the members in order. It does not
// validate number and literal syntax: callers either decode the values with
// encoding/json, which does, or check them with json.Valid.
func scanObject(data []byte, members []member) ([]member, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return members, skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		end, escaped := scanString(data, i)
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
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		i = skipSpace(data, i+1)
		vend := scanValue(data, i)
		if vend < 0 {
			return nil, false
		}
		members = append(members, member{key: key, value: data[i:vend]})
		i = skipSpace(data, vend)
		if i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return members, skipSpace(data, i+1) == len(data)
		default:
			return nil, false
		}
	}
}

func skipSpace(data []byte, i int) int {
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

// scanString returns the index just past the string starting at data[i]
// (a quote), and whether it holds escapes; -1 when unterminated or holding a
// control character.
func scanString(data []byte, i int) (int, bool) {
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

// scanValue returns the index just past the value starting at data[i], or
// -1. Nested objects and arrays are skipped by depth; depth is bounded so a
// hostile claim set cannot recurse.
func scanValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		end, _ := scanString(data, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, _ := scanString(data, j)
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

// header holds the three members a tollgate token's header may have.
type header struct {
	alg, kid []byte
	hasKID   bool
}

var (
	typAtJWT    = []byte("at+jwt")
	typAppAtJWT = []byte("application/at+jwt")
)

// parseHeader checks the decoded header: valid UTF-8, a JSON object whose
// only members are alg, kid and typ, each once and each a string; typ is
// at+jwt (RFC 9068; case-insensitive, with or without the application/
// prefix). Anything else (crit, jku, x5u, jwk, x5c, zip, enc, ...) is
// rejected.
func parseHeader(data []byte) (header, error) {
	var h header
	if !utf8.Valid(data) || !json.Valid(data) {
		return h, errHeader
	}
	var arr [4]member
	members, ok := scanObject(data, arr[:0])
	if !ok {
		return h, errHeader
	}
	var seenAlg, seenKID, seenTyp bool
	for _, m := range members {
		var seen *bool
		switch string(m.key) {
		case "alg":
			seen = &seenAlg
		case "kid":
			seen = &seenKID
		case "typ":
			seen = &seenTyp
		default:
			return h, errHeaderMember
		}
		if *seen {
			return h, errHeaderDup
		}
		*seen = true
		v, ok := jsonString(m.value)
		if !ok {
			if string(m.key) == "alg" {
				return h, errNoAlg
			}
			return h, errHeader
		}
		switch string(m.key) {
		case "alg":
			h.alg = v
		case "kid":
			h.kid, h.hasKID = v, true
		case "typ":
			if !bytes.EqualFold(v, typAtJWT) && !bytes.EqualFold(v, typAppAtJWT) {
				return h, errTyp
			}
		}
	}
	if !seenTyp {
		return h, errTyp
	}
	if len(h.alg) == 0 {
		return h, errNoAlg
	}
	if h.hasKID && len(h.kid) == 0 {
		return h, errNoKID
	}
	return h, nil
}

// jsonString returns the contents of a JSON string value, unescaped; false
// for any other value.
func jsonString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return nil, false
	}
	return []byte(s), true
}

// registeredClaims are the claim names tollgate reads itself. A custom claim
// whose name differs from one of these only in case is rejected: JSON
// decoders disagree on whether "SUB" sets sub.
var registeredClaims = [...]string{
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "azp", "auth_time", "perms", "scope",
}

// maxClaims bounds the members of a claim set, keeping the duplicate check's
// quadratic cost small.
const maxClaims = 128

// tokenClaims is the decoded claim set. The time claims accept JSON numbers
// only: a string "9999999999" is not a date.
type tokenClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt numericDate      `json:"exp"`
	NotBefore numericDate      `json:"nbf"`
	IssuedAt  numericDate      `json:"iat"`
	ID        string           `json:"jti"`
	SID       string           `json:"sid"`
	AZP       string           `json:"azp"`
	AuthTime  numericDate      `json:"auth_time"`
	Perms     []string         `json:"perms"`
	Scope     string           `json:"scope"`

	custom map[string]any
}

// numericDate is a JWT NumericDate (RFC 7519 §2) that accepts a JSON number
// and nothing else, not even null.
type numericDate struct {
	t   time.Time
	set bool
}

var errNotNumber = errors.New("numeric date must be a JSON number")

// maxNumericDate bounds dates to the year 9999, keeping time arithmetic far
// from overflow.
const maxNumericDate = 253402300799

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errNotNumber
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > maxNumericDate || f < -maxNumericDate {
		return errNotNumber
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9))
	d.set = true
	return nil
}

func (d numericDate) ptr() *jwt.NumericDate {
	if !d.set {
		return nil
	}
	return &jwt.NumericDate{Time: d.t}
}

// The jwt.Claims methods let golang-jwt's Validator check the claims.
func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.ptr(), nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.ptr(), nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.ptr(), nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// parseClaims decodes the claim set: valid UTF-8, a JSON object without
// duplicate members (compared the way encoding/json matches names, case
// folded), registered claims of the right type, and every other member kept
// as a custom claim.
func parseClaims(data []byte, c *tokenClaims) error {
	if !utf8.Valid(data) {
		return errClaims
	}
	var arr [16]member
	members, ok := scanObject(data, arr[:0])
	if !ok {
		return errClaims
	}
	if len(members) > maxClaims {
		return errClaims
	}
	var customIdx [16]int
	custom := customIdx[:0]
	for i, m := range members {
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
			v, ok := customValue(members[i].value)
			if !ok {
				return errClaims
			}
			c.custom[string(members[i].key)] = v
		}
	}
	return nil
}

// customValue decodes the value of one custom claim, with numbers kept as
// json.Number. json.Unmarshal has already validated the whole claim set, so
// scalars are taken as written (a json.Decoder costs a 512-byte buffer per
// call); arrays, objects and strings with escapes go through encoding/json.
func customValue(raw []byte) (any, bool) {
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
