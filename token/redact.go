package token

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// Redact returns text with everything cut out that could be key material or
// a token, each cut replaced by "[redacted]". It is the last line of defence
// of the one place where a program prints its errors: tollgate's own errors
// never hold a key, a token or the path or value a key came from, but the
// flag package quotes bad values, os errors quote paths, and a user may
// paste a secret anywhere.
//
// Two rules cut, and a false positive (such as a long path without a dot,
// which may decode as base64) only hides part of a message:
//
//   - Shape. Any part of text shaped like a compact token (base64url
//     segments around exactly two dots, the first decoding to a JSON
//     object), a PEM block, or a run of base64 long enough to hold a 32-byte
//     key (43 characters or more, with letters of both cases or letters and
//     digits, that decodes strictly) is cut.
//   - Shared with a suspect. Every run of 16 bytes or more that text shares
//     with one of suspects, or with another base64 spelling of its bytes or
//     its Go-quoted form, is cut, provided the suspect itself looks like a
//     token or key material by the rule above. Pass a command line's
//     arguments and the values of the environment variables that carry keys
//     or tokens: an argument "-flag=value" is examined whole, without its
//     leading dashes, and on each side of "=". Suspects that look like
//     neither (paths, numbers, flag names) cut nothing.
//
// Redact is not a licence to put secrets in errors: it cannot know a secret
// of an unusual shape that nobody passed as a suspect.
func Redact(text string, suspects ...string) string {
	var secrets []string
	for _, s := range suspects {
		for _, p := range suspectParts(s) {
			if looksSecret(p) {
				secrets = append(secrets, spellings(p)...)
			}
		}
	}
	cut := make([]bool, len(text))
	markShared(text, secrets, cut)
	markShaped(text, cut)
	return cutOut(text, cut)
}

const (
	redacted = "[redacted]"
	// minShared is the shortest run shared with a suspect that is cut: a
	// quarter of the shortest key, and shorter than any token.
	minShared = 16
	// minKeyChars is the length of the shortest HMAC secret (32 bytes) in
	// unpadded base64.
	minKeyChars = 43
)

// suspectParts returns s and the pieces a flag package would quote of it:
// without leading dashes, and each side of the first "=".
func suspectParts(s string) []string {
	parts := []string{s}
	trimmed := strings.TrimLeft(s, "-")
	if trimmed != s {
		parts = append(parts, trimmed)
	}
	if name, value, ok := strings.Cut(trimmed, "="); ok {
		parts = append(parts, name, value)
	}
	return parts
}

// looksSecret reports whether s, as a whole, could be a token or key
// material.
func looksSecret(s string) bool {
	if strings.Contains(s, "-----BEGIN") || strings.Contains(s, "PRIVATE KEY") {
		return true
	}
	s = strings.TrimSpace(s)
	return isToken(s) || isKeyRun(s)
}

// spellings returns the forms in which s could appear in a message: as
// given, trimmed, Go-quoted (as %q prints it), and, when it is base64, every
// base64 spelling of its bytes.
func spellings(s string) []string {
	t := strings.TrimSpace(s)
	q := strconv.Quote(s)
	out := []string{s, t, q[1 : len(q)-1]}
	for _, enc := range base64Encodings {
		b, err := enc.DecodeString(t)
		if err != nil || len(b) == 0 {
			continue
		}
		for _, re := range base64Encodings {
			out = append(out, re.EncodeToString(b))
		}
		break
	}
	return out
}

var base64Encodings = []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}

// markShared marks in cut every byte of text inside a run of minShared
// bytes or more that also occurs in one of secrets.
func markShared(text string, secrets []string, cut []bool) {
	for i := 0; i+minShared <= len(text); i++ {
		w := text[i : i+minShared]
		for _, s := range secrets {
			if strings.Contains(s, w) {
				for j := i; j < i+minShared; j++ {
					cut[j] = true
				}
				break
			}
		}
	}
}

// markShaped marks in cut every PEM block of text (to its END line, or to
// the end of text) and every run shaped like a token or a key.
func markShaped(text string, cut []bool) {
	for off := 0; ; {
		i := strings.Index(text[off:], "-----BEGIN")
		if i < 0 {
			break
		}
		start := off + i
		end := len(text)
		if j := strings.Index(text[start:], "-----END"); j >= 0 {
			end = start + j + len("-----END")
			if k := strings.Index(text[end:], "-----"); k >= 0 {
				end += k + len("-----")
			} else {
				end = len(text)
			}
		}
		mark(cut, start, end)
		off = end
	}
	// Runs of base64 (either alphabet), padding and dots; within one, every
	// "="-separated part (a flag's -name=value) and every dot-separated
	// piece of a part that is no token is tried as a key.
	for i := 0; i < len(text); {
		if !isRunByte(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isRunByte(text[j]) {
			j++
		}
		markRun(text, i, j, cut)
		i = j
	}
}

func markRun(text string, start, end int, cut []bool) {
	for p := start; p < end; {
		q := p
		for q < end && text[q] != '=' {
			q++
		}
		pad := q
		for pad < end && text[pad] == '=' {
			pad++
		}
		part := text[p:q]
		lead := len(part) - len(strings.TrimLeft(part, "-"))
		switch {
		case isToken(part):
			mark(cut, p, pad)
		case isToken(part[lead:]):
			mark(cut, p+lead, pad)
		default:
			for a := p; a < q; {
				b := a
				for b < q && text[b] != '.' {
					b++
				}
				e := b
				if b == q {
					e = pad // the padding belongs to the last piece
				}
				if piece := text[a:b]; isKeyRun(piece) || keyAfterDashes(piece) {
					mark(cut, a, e)
				} else {
					markKeyBetweenSlashes(text, a, b, e, cut)
				}
				a = b + 1
			}
			markTokensBetweenSlashes(text, p, q, cut)
		}
		p = pad
		if p == q { // no padding: skip the separator
			p++
		}
	}
}

// maxSlashes bounds the slashes of one piece that are tried as the edges
// of a key (the spans tried grow with their square).
const maxSlashes = 16

// markKeyBetweenSlashes marks a key inside the piece text[a:b] (whose
// padding, if any, runs to pad) that a path's slashes, or a "+", join to
// other text: "open /etc/tollgate/<key>: no such file". Both are base64
// bytes, so the piece as a whole may decode as nothing; every span from the
// piece's start or just after a slash to the piece's end or just before a
// slash is tried.
func markKeyBetweenSlashes(text string, a, b, pad int, cut []bool) {
	starts, ends := []int{a}, []int{b}
	for i := a; i < b && len(starts) <= maxSlashes; i++ {
		if c := text[i]; c == '/' || c == '+' {
			starts = append(starts, i+1)
			ends = append(ends, i)
		}
	}
	if len(starts) == 1 {
		return
	}
	for _, s := range starts {
		for _, e := range ends {
			if e-s < minKeyChars || !isKeyRun(text[s:e]) {
				continue
			}
			if e == b {
				e = pad
			}
			mark(cut, s, e)
		}
	}
}

// markTokensBetweenSlashes marks a token inside text[p:q] that slashes or a
// "+" join to other text, such as a method path "/pkg.Svc/<token>". Neither
// byte occurs in a token, so each stretch between them is tried whole.
func markTokensBetweenSlashes(text string, p, q int, cut []bool) {
	for a := p; a < q; {
		b := a
		for b < q && text[b] != '/' && text[b] != '+' {
			b++
		}
		if b-a < q-p { // a stretch of a longer run: the run itself was tried
			seg := text[a:b]
			lead := len(seg) - len(strings.TrimLeft(seg, "-"))
			if isToken(seg) {
				mark(cut, a, b)
			} else if isToken(seg[lead:]) {
				mark(cut, a+lead, b)
			}
		}
		a = b + 1
	}
}

// keyAfterDashes reports whether piece is a key run behind the dashes of a
// flag ("-" or "--"). A URL-safe spelling can itself begin with "-", so
// every count of leading dashes is tried, not only all of them: "--" in
// front of "-k3y..." leaves the key's own dash.
func keyAfterDashes(piece string) bool {
	for k := 0; k < len(piece) && piece[k] == '-'; k++ {
		if isKeyRun(piece[k+1:]) {
			return true
		}
	}
	return false
}

func mark(cut []bool, start, end int) {
	for i := start; i < end; i++ {
		cut[i] = true
	}
}

func isRunByte(c byte) bool {
	return isB64URLByte(c) || c == '+' || c == '/' || c == '=' || c == '.'
}

func isB64URLByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// isToken reports whether s is shaped like a compact JWS: base64url
// segments around exactly two dots, the first two non-empty and the first
// decoding to a JSON object.
func isToken(s string) bool {
	if strings.Count(s, ".") != 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && !isB64URLByte(c) {
			return false
		}
	}
	segs := strings.SplitN(s, ".", 3)
	if segs[0] == "" || segs[1] == "" {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(segs[0])
	return err == nil && strings.HasPrefix(strings.TrimLeft(string(h), " \t\r\n"), "{")
}

// isKeyRun reports whether s could be a secret in base64: at least
// minKeyChars long, letters of both cases or letters and digits (not a
// long word), and strictly decodable in one of the four spellings.
func isKeyRun(s string) bool {
	if len(s) < minKeyChars {
		return false
	}
	var upper, lower, digit bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z':
			upper = true
		case 'a' <= c && c <= 'z':
			lower = true
		case '0' <= c && c <= '9':
			digit = true
		}
	}
	if !(upper && lower) && !((upper || lower) && digit) {
		return false
	}
	for _, enc := range base64Encodings {
		if _, err := enc.Strict().DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// cutOut returns text with each maximal run of marked bytes replaced by
// "[redacted]".
func cutOut(text string, cut []bool) string {
	var b strings.Builder
	for i := 0; i < len(text); {
		if !cut[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		for i < len(text) && cut[i] {
			i++
		}
		b.WriteString(redacted)
	}
	return b.String()
}
