package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// b64 is the only encoding tokens may use: base64url without padding, with
// the unused trailing bits required to be zero (so no two spellings of the
// same bytes both verify).
var b64 = base64.RawURLEncoding.Strict()

// tokenClass[c] is 0 for the base64url characters, 1 for the dot and 2 for
// every other byte.
var tokenClass = func() (t [256]uint8) {
	for i := range t {
		t[i] = 2
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 0
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 0
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 0
	}
	t['-'], t['_'], t['.'] = 0, 0, 1
	return t
}()

// splitCompact checks the token's shape before anything is decoded: only
// base64url characters and exactly two dots, three non-empty segments. It
// stops at the third dot, so a token of many dots costs next to nothing.
func splitCompact(tok string) (dot1, dot2 int, err error) {
	dot1, dot2 = -1, -1
	i := 0
	for ; i <= len(tok)-8; i += 8 {
		// Eight base64url characters at a time, without a branch each.
		c := tok[i : i+8]
		if tokenClass[c[0]]|tokenClass[c[1]]|tokenClass[c[2]]|tokenClass[c[3]]|
			tokenClass[c[4]]|tokenClass[c[5]]|tokenClass[c[6]]|tokenClass[c[7]] == 0 {
			continue
		}
		for j := i; j < i+8; j++ {
			if !splitAt(tok, j, &dot1, &dot2) {
				return 0, 0, errShape
			}
		}
	}
	for ; i < len(tok); i++ {
		if !splitAt(tok, i, &dot1, &dot2) {
			return 0, 0, errShape
		}
	}
	if dot1 <= 0 || dot2 < 0 || dot2 == dot1+1 || dot2 == len(tok)-1 {
		return 0, 0, errShape
	}
	return dot1, dot2, nil
}

// splitAt checks tok[i] for splitCompact: false for a byte outside the
// alphabet or a third dot.
func splitAt(tok string, i int, dot1, dot2 *int) bool {
	switch tokenClass[tok[i]] {
	case 0:
		return true
	case 1:
		switch {
		case *dot1 < 0:
			*dot1 = i
		case *dot2 < 0:
			*dot2 = i
		default:
			return false
		}
		return true
	}
	return false
}

// decodeInto decodes one base64url segment into *buf, growing it when the
// segment does not fit (a pooled scratch keeps what it grew to).
func decodeInto(buf *[]byte, seg []byte) ([]byte, bool) {
	n := b64.DecodedLen(len(seg))
	if cap(*buf) < n {
		*buf = make([]byte, n, max(n, 512))
	}
	m, err := b64.Decode((*buf)[:n], seg)
	if err != nil {
		return nil, false
	}
	return (*buf)[:m], true
}

// header holds the three members a tollgate token's header may have.
type header struct {
	alg, kid []byte
	hasKID   bool
}

// parseHeader checks the decoded header: valid UTF-8, a JSON object whose
// only members are alg, kid and typ, each once and each a string; typ is
// at+jwt (RFC 9068; case-insensitive, with or without the application/
// prefix). Anything else (crit, jku, x5u, jwk, x5c, zip, enc, ...) is
// rejected.
//
// p is the issuer's profile's policy: which typ values it accepts (and
// whether none), and whether x5t and x5t#S256 are tolerated (read through,
// never used).
func parseHeader(data []byte, p *headerPolicy) (header, error) {
	var h header
	if !utf8.Valid(data) || !validJSON(data) {
		return h, errHeader
	}
	// The grammar is checked: the walk below only finds the members.
	i := skipWS(data, 0)
	if data[i] != '{' {
		return h, errHeader
	}
	var seenAlg, seenKID, seenTyp, seenX5t, seenX5tS bool
	for i = skipWS(data, i+1); data[i] != '}'; {
		kend, escaped := scanString(data, i)
		key := data[i+1 : kend-1]
		if escaped {
			var s string
			if json.Unmarshal(data[i:kend], &s) != nil {
				return h, errHeader
			}
			key = []byte(s)
		}
		i = skipWS(data, skipWS(data, kend)+1)
		vend := scanValue(data, i, 0)
		value := data[i:vend]
		if i = skipWS(data, vend); data[i] == ',' {
			i = skipWS(data, i+1)
		}

		var seen *bool
		switch string(key) {
		case "alg":
			seen = &seenAlg
		case "kid":
			seen = &seenKID
		case "typ":
			seen = &seenTyp
		case "x5t":
			if !p.x5t {
				return h, errHeaderMember
			}
			seen = &seenX5t
		case "x5t#S256":
			if !p.x5ts {
				return h, errHeaderMember
			}
			seen = &seenX5tS
		default:
			return h, errHeaderMember
		}
		if *seen {
			return h, errHeaderDup
		}
		*seen = true
		v, ok := jsonString(value)
		if !ok {
			if string(key) == "alg" {
				return h, errNoAlg
			}
			return h, errHeader
		}
		switch string(key) {
		case "alg":
			h.alg = v
		case "kid":
			h.kid, h.hasKID = v, true
		case "typ":
			if !p.typeOK(v) {
				return h, p.errTyp
			}
		}
	}
	if !seenTyp && !p.noTyp {
		return h, p.errTyp
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
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "azp", "auth_time", "perms", "scope", "cnf",
}

var registeredClaimBytes = func() (b [len(registeredClaims)][]byte) {
	for i, r := range registeredClaims {
		b[i] = []byte(r)
	}
	return b
}()

// maxClaims bounds the members of a claim set, keeping the duplicate check's
// quadratic cost small.
const maxClaims = 128

// maxNumericDate bounds dates to the year 9999, keeping time arithmetic far
// from overflow.
const maxNumericDate = 253402300799

// claimSet is a decoded claim set, read in one pass over its JSON text
// (the bytes it was parsed from, held by the caller). Strings are where
// they lie in that text, so that one string conversion of the text later
// yields every claim string (see strVal); only strings with escapes are
// decoded on their own. A claimSet lives in a pooled scratch and is reused:
// its slices keep their capacity.
type claimSet struct {
	iss, sub, jti, sid, azp, scope strVal
	aud                            []strVal
	perms                          []strVal
	permsSet                       bool // perms was an array (possibly empty), not absent or null
	exp, nbf, iat, authTime        date
	custom                         []customRef
	names                          []claimName // every member's name, for the duplicate check
	nameErr, typeErr               error       // the first refused name; a claim of the wrong type
	// x5t is cnf's x5t#S256 (RFC 8705 §3.1): the thumbprint of the client
	// certificate the token is bound to; empty for a token without cnf.
	x5t      strVal
	cnfErr   error    // a cnf refused (malformed, or no method tollgate checks)
	cnfNames [][]byte // cnf's member names, for its duplicate check
}

// strVal is a string claim: its contents (quotes excluded) at text[off:end],
// or, when it holds escapes, decoded into dec. The zero strVal is the empty
// string.
type strVal struct {
	off, end int
	dec      string
	esc      bool
}

func (s *strVal) len() int {
	if s.esc {
		return len(s.dec)
	}
	return s.end - s.off
}

// is reports whether the string equals want; text is the claim set.
func (s *strVal) is(text []byte, want string) bool {
	if s.esc {
		return s.dec == want
	}
	return string(text[s.off:s.end]) == want
}

// in returns the string as a part of text, the claim set as a string.
func (s *strVal) in(text string) string {
	if s.esc {
		return s.dec
	}
	return text[s.off:s.end]
}

// date is a NumericDate (RFC 7519 §2): a JSON number and nothing else, not
// even null; a string "9999999999" is not a date.
type date struct {
	t   time.Time
	set bool
}

// customRef is a custom claim: its name (an index in names), and its value
// at text[off:end].
type customRef struct {
	name     int
	off, end int
	plain    bool // a string without escapes
}

// claimName is a member's name, unescaped: a part of the claim set at
// text[off:off+len(b)], or its own bytes when it held escapes.
type claimName struct {
	b     []byte
	off   int
	esc   bool
	ascii bool
}

// in returns the name as a part of text, the claim set as a string.
func (n *claimName) in(text string) string {
	if n.esc {
		return string(n.b)
	}
	return text[n.off : n.off+len(n.b)]
}

// reset empties c for reuse, dropping what it referred to.
func (c *claimSet) reset() {
	clear(c.aud)
	clear(c.perms)
	clear(c.custom)
	clear(c.names)
	clear(c.cnfNames)
	aud, perms, custom, names, cnfNames := c.aud[:0], c.perms[:0], c.custom[:0], c.names[:0], c.cnfNames[:0]
	*c = claimSet{}
	c.aud, c.perms, c.custom, c.names, c.cnfNames = aud, perms, custom, names, cnfNames
}

// parseClaims decodes the claim set data into c (reset): valid UTF-8, one
// JSON object, valid JSON throughout (custom claim values included), at
// most maxClaims members, without duplicate members (compared the way
// encoding/json matches names: case folded), no custom claim named like a
// registered claim but for case, and registered claims of the right type.
// A syntax error anywhere is errClaims, whatever else is wrong; then a
// duplicate or case-variant name (the first, in order); then a claim of
// the wrong type; then a refused cnf.
func parseClaims(data []byte, c *claimSet) error {
	if !utf8.Valid(data) {
		return errClaims
	}
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errClaims
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		if skipWS(data, i+1) != len(data) {
			return errClaims
		}
		return nil
	}
	for n := 1; ; n++ {
		if n > maxClaims {
			return errClaims
		}
		if i = c.readMember(data, i); i < 0 {
			return errClaims
		}
		if i = skipWS(data, i); i >= len(data) {
			return errClaims
		}
		if data[i] == '}' {
			if skipWS(data, i+1) != len(data) {
				return errClaims
			}
			break
		}
		if data[i] != ',' {
			return errClaims
		}
		i = skipWS(data, i+1)
	}
	if c.nameErr != nil {
		return c.nameErr
	}
	if c.typeErr != nil {
		return c.typeErr
	}
	return c.cnfErr
}

// readMember reads the member at data[i], name and value, into c. It
// returns the index just past the value, or -1 on a syntax error; a
// refused name or a value of the wrong type is noted in c.
func (c *claimSet) readMember(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return -1
	}
	kend, escaped := scanString(data, i)
	if kend < 0 {
		return -1
	}
	key := data[i+1 : kend-1]
	if escaped {
		if key = unquoteBytes(data[i:kend]); key == nil {
			return -1
		}
	}
	colon := skipWS(data, kend)
	if colon >= len(data) || data[colon] != ':' {
		return -1
	}
	if err := c.addName(key, i+1, escaped); err != nil && c.nameErr == nil {
		c.nameErr = err
	}
	end, wrongType := c.member(key, data, skipWS(data, colon+1))
	if wrongType {
		c.typeErr = errClaimType
	}
	return end
}

// addName records a member's name (at data[off:] unless it held escapes)
// and refuses a duplicate of an earlier one (case folded, as encoding/json
// matches names: bytes.EqualFold) and a name that is a registered claim's
// in another case.
func (c *claimSet) addName(key []byte, off int, escaped bool) error {
	ascii := isASCII(key)
	var err error
	for k := range c.names {
		prev := &c.names[k]
		// Two ASCII names fold together only when of one length and
		// first byte alike but for case: most pairs end here.
		if ascii && prev.ascii && (len(prev.b) != len(key) || len(key) > 0 && prev.b[0]|0x20 != key[0]|0x20) {
			continue
		}
		if bytes.EqualFold(prev.b, key) {
			err = errClaimsDup
			break
		}
	}
	c.names = append(c.names, claimName{b: key, off: off, esc: escaped, ascii: ascii})
	if err != nil || registered(key) {
		return err
	}
	for _, r := range registeredClaimBytes[:] {
		if ascii && len(r) != len(key) {
			continue
		}
		if bytes.EqualFold(key, r) {
			return errClaimsCase
		}
	}
	return nil
}

func registered(key []byte) bool {
	switch string(key) {
	case "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "azp", "auth_time", "perms", "scope", "cnf":
		return true
	}
	return false
}

// unquote decodes the JSON string raw, escapes and all, as encoding/json
// does (a lone surrogate becomes U+FFFD). Strings with escapes are rare
// in tokens: they keep going through encoding/json (and its deep frames),
// as complex custom claim values do (customValue).
//
//go:noinline
func unquote(raw []byte) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// unquoteBytes is unquote into a new, non-nil slice; nil on error.
//
//go:noinline
func unquoteBytes(raw []byte) []byte {
	s, ok := unquote(raw)
	if !ok {
		return nil
	}
	return append(make([]byte, 0, len(s)), s...)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// member reads the value at data[i] of the member named key (the last name
// in c.names) into c. It returns the index just past the value, or -1 on a
// syntax error, and whether the value is of the wrong type for its claim
// (which is still read through, for syntax).
func (c *claimSet) member(key []byte, data []byte, i int) (int, bool) {
	switch string(key) {
	case "iss":
		return c.iss.read(data, i)
	case "sub":
		return c.sub.read(data, i)
	case "jti":
		return c.jti.read(data, i)
	case "sid":
		return c.sid.read(data, i)
	case "azp":
		return c.azp.read(data, i)
	case "scope":
		return c.scope.read(data, i)
	case "exp":
		return c.exp.read(data, i)
	case "nbf":
		return c.nbf.read(data, i)
	case "iat":
		return c.iat.read(data, i)
	case "auth_time":
		return c.authTime.read(data, i)
	case "aud":
		// A string or an array of strings (golang-jwt's ClaimStrings);
		// null is absent, and so is an empty array.
		c.aud = c.aud[:0]
		if i < len(data) && data[i] == '"' {
			c.aud = append(c.aud, strVal{})
			return c.aud[0].read(data, i)
		}
		return readStrings(&c.aud, data, i, false)
	case "perms":
		// An array of strings, in which null is the empty string (as
		// encoding/json decodes a []string); null is absent.
		c.perms = c.perms[:0]
		c.permsSet = i < len(data) && data[i] == '['
		return readStrings(&c.perms, data, i, true)
	case "cnf":
		return c.readCnf(data, i), false
	}
	return c.addCustom(data, i), false
}

// maxCnfMembers bounds the members of a cnf object, keeping its duplicate
// check's quadratic cost small: RFC 7800 defines four, RFC 8705 and
// RFC 9449 one each.
const maxCnfMembers = 16

// thumbprintLen is the length of a SHA-256 thumbprint in unpadded
// base64url: 32 bytes.
const thumbprintLen = 43

// readCnf reads the cnf claim (RFC 7800) at data[i]: an object of
// confirmation methods, of which tollgate checks x5t#S256 (RFC 8705 §3.1,
// the SHA-256 thumbprint of the client certificate, in unpadded base64url).
// It returns the index just past the value, or -1 on a syntax error; a cnf
// refused is noted in c.cnfErr:
//
//   - malformed: not an object (null included), no member at all, more
//     than maxCnfMembers, a member twice (case folded), a member named
//     x5t#S256 in another case, or an x5t#S256 that is not a string of 43
//     base64url characters (strict: the unused bits zero);
//   - unsupported: members, but no x5t#S256. A token to be confirmed in a
//     way tollgate cannot check must not pass as a plain bearer token.
//
// Other members next to x5t#S256 are ignored, as RFC 7800 §3 says of the
// members an implementation does not understand: the certificate binding
// alone is checked.
func (c *claimSet) readCnf(data []byte, i int) int {
	end := scanValue(data, i, 0)
	if end < 0 {
		return -1
	}
	if data[i] != '{' {
		c.cnfErr = errCnf
		return end
	}
	// The syntax is checked: the walk below only finds the members.
	n := 0
	for j := skipWS(data, i+1); data[j] != '}'; n++ {
		kend, escaped := scanString(data, j)
		key := data[j+1 : kend-1]
		if escaped {
			if key = unquoteBytes(data[j:kend]); key == nil {
				return -1
			}
		}
		v := skipWS(data, skipWS(data, kend)+1)
		vend := scanValue(data, v, 1)
		if j = skipWS(data, vend); data[j] == ',' {
			j = skipWS(data, j+1)
		}
		if c.cnfErr != nil {
			continue
		}
		if n >= maxCnfMembers {
			c.cnfErr = errCnf
			continue
		}
		for _, prev := range c.cnfNames {
			if bytes.EqualFold(prev, key) {
				c.cnfErr = errCnf
			}
		}
		c.cnfNames = append(c.cnfNames, key)
		switch {
		case c.cnfErr != nil:
		case string(key) == "x5t#S256":
			if !c.x5t.readThumbprint(data, v) {
				c.cnfErr = errCnf
			}
		case bytes.EqualFold(key, x5tS256):
			c.cnfErr = errCnf
		}
	}
	switch {
	case c.cnfErr != nil:
	case n == 0:
		c.cnfErr = errCnf
	case c.x5t.len() == 0:
		c.cnfErr = errCnfMethod
	}
	return end
}

var x5tS256 = []byte("x5t#S256")

// readThumbprint reads a SHA-256 thumbprint, the JSON value at data[i]
// (valid JSON): a string of 43 base64url characters (escapes decoded) that
// decodes, strictly, to 32 bytes. It reports false for anything else.
func (s *strVal) readThumbprint(data []byte, i int) bool {
	// read takes null for the empty string and anything but a string for
	// the wrong type: neither has 43 characters.
	if _, wrongType := s.read(data, i); wrongType || s.len() != thumbprintLen {
		*s = strVal{}
		return false
	}
	raw := data[s.off:s.end]
	if s.esc {
		raw = []byte(s.dec)
	}
	var sum [33]byte
	if n, err := b64.Decode(sum[:], raw); err != nil || n != 32 {
		*s = strVal{}
		return false
	}
	return true
}

// addCustom reads a custom claim's value at data[i]; its name is the last
// in c.names.
func (c *claimSet) addCustom(data []byte, i int) int {
	r := customRef{name: len(c.names) - 1, off: i}
	if i < len(data) && data[i] == '"' {
		var escaped bool
		r.end, escaped = scanString(data, i)
		r.plain = !escaped
	} else {
		r.end = scanValue(data, i, 0)
	}
	c.custom = append(c.custom, r)
	return r.end
}

// read reads a string claim at data[i]: a string, or null for absent.
func (s *strVal) read(data []byte, i int) (int, bool) {
	if i < len(data) {
		switch data[i] {
		case '"':
			end, escaped := scanString(data, i)
			if end < 0 {
				return -1, false
			}
			s.off, s.end, s.dec, s.esc = i+1, end-1, "", false
			if escaped {
				// Rare: encoding/json unescapes, as it always did.
				var ok bool
				if s.dec, ok = unquote(data[i:end]); !ok {
					return -1, false
				}
				s.esc = true
			}
			return end, false
		case 'n':
			return scanLiteral(data, i, "null"), false
		}
	}
	return scanValue(data, i, 0), true
}

// readStrings reads an array of strings at data[i] into *list; null (the
// whole value) is absent. A null element is the empty string when
// nullIsEmpty, else of the wrong type.
func readStrings(list *[]strVal, data []byte, i int, nullIsEmpty bool) (int, bool) {
	if i >= len(data) || data[i] != '[' {
		if i < len(data) && data[i] == 'n' {
			return scanLiteral(data, i, "null"), false
		}
		return scanValue(data, i, 0), true
	}
	wrongType := false
	if i = skipWS(data, i+1); i < len(data) && data[i] == ']' {
		return i + 1, false
	}
	for {
		var end int
		switch {
		case i < len(data) && data[i] == '"':
			*list = append(*list, strVal{})
			end, _ = (*list)[len(*list)-1].read(data, i)
		case i < len(data) && data[i] == 'n' && nullIsEmpty:
			*list = append(*list, strVal{})
			end = scanLiteral(data, i, "null")
		default:
			wrongType = true
			end = scanValue(data, i, 1)
		}
		if end < 0 {
			return -1, false
		}
		if i = skipWS(data, end); i >= len(data) {
			return -1, false
		}
		switch data[i] {
		case ']':
			return i + 1, wrongType
		case ',':
			i = skipWS(data, i+1)
		default:
			return -1, false
		}
	}
}

// read reads a NumericDate at data[i]: a JSON number within ±year 9999.
// Anything else, null included, is of the wrong type.
func (t *date) read(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '-' && !isDigit(data[i]) {
		return scanValue(data, i, 0), true
	}
	end, integer := scanNumber(data, i)
	if end < 0 {
		return -1, false
	}
	return end, !t.parse(data[i:end], integer)
}

// parse sets t from a JSON number: an integer of up to 12 digits exactly,
// anything else the way encoding/json would have handed it to strconv.
func (t *date) parse(num []byte, integer bool) bool {
	if integer {
		digits := num
		if num[0] == '-' {
			digits = num[1:]
		}
		// JSON integers have no leading zeros: 13 digits or more are
		// past the bound.
		if len(digits) > 12 {
			return false
		}
		var n int64
		for _, d := range digits {
			n = n*10 + int64(d-'0')
		}
		if n > maxNumericDate {
			return false
		}
		if num[0] == '-' {
			n = -n
		}
		t.t, t.set = time.Unix(n, 0), true
		return true
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > maxNumericDate || f < -maxNumericDate {
		return false
	}
	sec, frac := math.Modf(f)
	t.t, t.set = time.Unix(int64(sec), int64(frac*1e9)), true
	return true
}

// customValue decodes a custom claim's value as encoding/json decodes into
// an any, with numbers kept as json.Number; text is the claim set as a
// string (data as bytes), which strings and numbers without escapes are
// parts of. Arrays, objects and strings with escapes go through
// encoding/json. parseClaims has validated the value.
func customValue(text string, data []byte, r *customRef) (any, bool) {
	switch data[r.off] {
	case '"':
		if r.plain {
			return text[r.off+1 : r.end-1], true
		}
	case 't':
		return true, true
	case 'f':
		return false, true
	case 'n':
		return nil, true
	case '{', '[':
	default:
		return json.Number(text[r.off:r.end]), true
	}
	dec := json.NewDecoder(bytes.NewReader(data[r.off:r.end]))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	return v, true
}
