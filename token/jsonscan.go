package token

// A validating JSON scanner for the header and claim set: every function
// here checks the full grammar of RFC 8259 (what encoding/json's Valid
// accepts), so that decoding a claim set once, by hand, is as strict as the
// encoding/json round it replaces. Input is assumed to be valid UTF-8
// (callers check that first); bytes of 0x80 and above are accepted inside
// strings only.
//
// The functions work on indexes and return the index just past what they
// read, or -1 on a syntax error. None recurses: nesting is tracked in a
// bitmask, so a hostile claim set costs no stack.

// maxDepth bounds how deeply arrays and objects may nest inside one member
// value of the header or claim set.
const maxDepth = 32

// strPlain[c] is true for the bytes a string may hold as they are: not the
// quote, not the backslash, not a control character.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipWS returns the index of the first byte at or after i that is not
// JSON white space.
func skipWS(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString reads the string starting at d[i] (a quote). It returns the
// index just past the closing quote and whether the string holds escapes,
// or -1 for a control character, a bad escape or a missing quote.
func scanString(d []byte, i int) (int, bool) {
	escaped := false
	j := i + 1
	for {
		for j < len(d) && strPlain[d[j]] {
			j++
		}
		if j >= len(d) {
			return -1, false
		}
		switch d[j] {
		case '"':
			return j + 1, escaped
		case '\\':
			escaped = true
			if j+1 >= len(d) {
				return -1, false
			}
			switch d[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+5 >= len(d) || !isHex(d[j+2]) || !isHex(d[j+3]) || !isHex(d[j+4]) || !isHex(d[j+5]) {
					return -1, false
				}
				j += 6
			default:
				return -1, false
			}
		default: // a control character
			return -1, false
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber reads the number starting at d[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. It also reports whether
// the number is an integer (no fraction, no exponent). Whatever follows the
// number is the caller's to check: "01" reads as 0 followed by a stray 1.
func scanNumber(d []byte, i int) (int, bool) {
	j := i
	if j < len(d) && d[j] == '-' {
		j++
	}
	switch {
	case j >= len(d):
		return -1, false
	case d[j] == '0':
		j++
	case d[j] >= '1' && d[j] <= '9':
		j++
		for j < len(d) && isDigit(d[j]) {
			j++
		}
	default:
		return -1, false
	}
	integer := true
	if j < len(d) && d[j] == '.' {
		integer = false
		j++
		start := j
		for j < len(d) && isDigit(d[j]) {
			j++
		}
		if j == start {
			return -1, false
		}
	}
	if j < len(d) && (d[j] == 'e' || d[j] == 'E') {
		integer = false
		j++
		if j < len(d) && (d[j] == '+' || d[j] == '-') {
			j++
		}
		start := j
		for j < len(d) && isDigit(d[j]) {
			j++
		}
		if j == start {
			return -1, false
		}
	}
	return j, integer
}

// scanLiteral reads lit (true, false or null) at d[i].
func scanLiteral(d []byte, i int, lit string) int {
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanScalar reads a string, number or literal at d[i]; -1 for anything
// else, including an array or an object.
func scanScalar(d []byte, i int) int {
	if i >= len(d) {
		return -1
	}
	switch d[i] {
	case '"':
		end, _ := scanString(d, i)
		return end
	case 't':
		return scanLiteral(d, i, "true")
	case 'f':
		return scanLiteral(d, i, "false")
	case 'n':
		return scanLiteral(d, i, "null")
	}
	end, _ := scanNumber(d, i)
	return end
}

// scanValue reads any JSON value at d[i] that sits depth containers deep
// within a member value (0 for the member value itself): arrays and objects
// may open at most maxDepth - depth more levels.
func scanValue(d []byte, i, depth int) int {
	if i >= len(d) || (d[i] != '{' && d[i] != '[') {
		return scanScalar(d, i)
	}
	var objects uint64 // bit k: level k is an object (else an array)
	level := 0
	for {
		// A value starts at d[i].
		if i >= len(d) {
			return -1
		}
		if c := d[i]; c == '{' || c == '[' {
			if depth+level >= maxDepth {
				return -1
			}
			i = skipWS(d, i+1)
			if i >= len(d) {
				return -1
			}
			switch {
			case c == '{' && d[i] == '}', c == '[' && d[i] == ']':
				i++ // empty: a value like any other
			case c == '{':
				if i = scanKey(d, i); i < 0 {
					return -1
				}
				objects |= 1 << level
				level++
				continue // the first member's value
			default:
				objects &^= 1 << level
				level++
				continue // the first element
			}
		} else if i = scanScalar(d, i); i < 0 {
			return -1
		}
		// A value ended at i: close containers, or go on to the next
		// element or member.
		for {
			if level == 0 {
				return i
			}
			i = skipWS(d, i)
			if i >= len(d) {
				return -1
			}
			object := objects&(1<<(level-1)) != 0
			if d[i] == ',' {
				i = skipWS(d, i+1)
				if object {
					if i = scanKey(d, i); i < 0 {
						return -1
					}
				}
				break
			}
			if object && d[i] == '}' || !object && d[i] == ']' {
				i++
				level--
				continue
			}
			return -1
		}
	}
}

// scanKey reads `"name" :` at d[i] and returns the index of the value that
// follows, white space skipped.
func scanKey(d []byte, i int) int {
	if i >= len(d) || d[i] != '"' {
		return -1
	}
	end, _ := scanString(d, i)
	if end < 0 {
		return -1
	}
	i = skipWS(d, end)
	if i >= len(d) || d[i] != ':' {
		return -1
	}
	return skipWS(d, i+1)
}

// validJSON reports whether d is one JSON value, white space around it
// allowed, nesting at most maxDepth + 1 levels deep (a top-level object and
// its member values, the shape of a header or claim set).
func validJSON(d []byte) bool {
	i := skipWS(d, 0)
	if i < len(d) && d[i] == '{' {
		// The object itself is level 0 of the bound.
		return endsAt(d, scanValue(d, i, -1))
	}
	return endsAt(d, scanValue(d, i, 0))
}

func endsAt(d []byte, end int) bool { return end >= 0 && skipWS(d, end) == len(d) }
