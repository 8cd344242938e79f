package session

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
