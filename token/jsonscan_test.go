package token

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzScanJSON: validJSON accepts exactly what encoding/json's Valid does,
// within its nesting bound (33 levels under a top-level object, whose
// member values may nest 32; 32 otherwise).
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-0.5e+3,true,false,null,"\u00e9\n"],"b":{}}`, `[[[]]]`, ` {} `, `{"a":1}{}`, `"\x"`, "\"\t\"", `0`, `-0`, `01`, `1.`, `.5`, `+1`, `1e`, `1e+`, `1E-2`, `0x10`, `"\u12"`, `"\u12G4"`, `"\/"`, `[1 2]`, `{"a":}`, `{,}`, `[,1]`, `nul`, `truex`, "\"\x7f\"", `""`, ` `, ``, strings.Repeat("[", 32) + strings.Repeat("]", 32), strings.Repeat("[", 33) + strings.Repeat("]", 33), `{"a":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`, `{"a":` + strings.Repeat("[", 33) + strings.Repeat("]", 33) + `}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		if !utf8.Valid(d) {
			return // callers check UTF-8 first; encoding/json lets bad bytes into strings
		}
		got := validJSON(d)
		want := json.Valid(d)
		if want {
			limit := 32
			if t := bytes.TrimLeft(d, " \t\r\n"); len(t) > 0 && t[0] == '{' {
				limit = 33
			}
			want = jsonDepth(d) <= limit
		}
		if got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json (within the bound) says %v", d, got, want)
		}
	})
}

// jsonDepth returns how deeply the valid JSON d nests, read with
// encoding/json's tokenizer.
func jsonDepth(d []byte) int {
	dec := json.NewDecoder(bytes.NewReader(d))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// splitCompact reads eight bytes at a time: every byte position of a
// chunk, and the tail, refuses a bad byte and a third dot, and finds the
// dots, as a byte-by-byte reading does.
func TestSplitCompact(t *testing.T) {
	ref := func(tok string) (int, int, bool) {
		if strings.Count(tok, ".") != 2 || strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
			return 0, 0, false
		}
		d1 := strings.IndexByte(tok, '.')
		d2 := d1 + 1 + strings.IndexByte(tok[d1+1:], '.')
		if d1 == 0 || d2 == d1+1 || d2 == len(tok)-1 {
			return 0, 0, false
		}
		return d1, d2, true
	}
	check := func(tok string) {
		t.Helper()
		d1, d2, err := splitCompact(tok)
		w1, w2, ok := ref(tok)
		if ok != (err == nil) || ok && (d1 != w1 || d2 != w2) {
			t.Fatalf("splitCompact(%q) = %d, %d, %v; want %d, %d, ok=%v", tok, d1, d2, err, w1, w2, ok)
		}
	}
	base := strings.Repeat("aZ09-_xY", 4) // 32 bytes
	for n := 3; n <= len(base); n++ {
		for i := 0; i < n; i++ {
			for j := i; j < n; j++ {
				b := []byte(base[:n])
				b[i], b[j] = '.', '.'
				check(string(b))
				for k := 0; k < n; k++ {
					for _, bad := range []byte{'.', '+', '/', '=', ' ', 0, 0x80, 0xff} {
						c := append([]byte(nil), b...)
						c[k] = bad
						check(string(c))
					}
				}
			}
		}
	}
}
