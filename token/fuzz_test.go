package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
)

// fixedErrors are every error Verify may return: fixed phrases, never built
// from the token.
var fixedErrors = []error{
	errTooLarge, errEmpty, errShape, errHeader, errHeaderMember, errHeaderDup, errTyp, errNoAlg,
	errAlgMismatch, errNoKID, errUnknownKID, errSignatureEnc, errSignature, errClaims, errClaimsDup,
	errClaimsCase, errClaimType, errNoExp, errNoIat, errIatFuture, errNbf, errIssuer, errAudience,
	errNoSub, errJTI, errLifetime, errAuthTime, errExpired, errSessionOver, errClaimsInvalid,
}

// fixedVocabulary is the text of every fixed phrase.
var fixedVocabulary = func() string {
	var b strings.Builder
	for _, e := range fixedErrors {
		b.WriteString(e.Error())
		b.WriteByte('\n')
	}
	return b.String()
}()

// checkVerifyError asserts the error contract for input tok: a
// *VerifyError matching exactly one sentinel, whose text is one of the fixed
// phrases and does not contain the input.
func checkVerifyError(t *testing.T, tok string, s *session.Session, err error) {
	t.Helper()
	if s != nil {
		t.Fatalf("session returned with error %v", err)
	}
	inv, exp := errors.Is(err, ErrInvalidToken), errors.Is(err, ErrExpiredToken)
	if inv == exp {
		t.Fatalf("error %v matches ErrInvalidToken=%v ErrExpiredToken=%v; want exactly one", err, inv, exp)
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *VerifyError", err)
	}
	msg := err.Error()
	fixed := false
	for _, e := range fixedErrors {
		if msg == e.Error() {
			fixed = true
			break
		}
	}
	if !fixed {
		t.Fatalf("error text %q is not one of the fixed phrases", msg)
	}
	// The text never contains the input. (Being a fixed phrase, it cannot
	// carry token material at all; an input that is itself a fragment of a
	// fixed phrase, such as "base64url segments", is the one way to
	// "appear" in it, and that is the input's doing, not a leak.)
	if len(tok) > 8 && strings.Contains(msg, tok) && !strings.Contains(fixedVocabulary, tok) {
		t.Fatalf("error text %q contains the input", msg)
	}
}

// FuzzVerify: Verify never panics; when it accepts a token, a fresh
// verifier without a cache accepts it too with the same claims (the cache
// is never more lenient), and a second call is a hit returning the same
// session; when it rejects, the fresh verifier rejects too, and the error is
// a fixed phrase that does not contain the input.
func FuzzVerify(f *testing.F) {
	key := newHMAC(f, testKID, HS256)
	ks := keySet(f, key)
	clock := newClock()
	cached := newVerifier(f, ks, clock)
	fresh := newVerifier(f, ks, clock, WithCache(0, 0))

	valid := token(f, key, claimsAt(fixedNow))
	seg := segments(f, valid)
	f.Add(valid)
	f.Add(token(f, key, with(claimsAt(fixedNow), "perms", []string{"a.*", "*"}, "scope", "x y", "seller_id", 7)))
	f.Add(signWith(f, key, `{"alg":"HS256","typ":"at+jwt"}`, mustJSON(f, claimsAt(fixedNow))))
	for i := range 3 {
		if v, ok := flipTrailingBits(seg[i]); ok {
			s := seg
			s[i] = v
			f.Add(s[0] + "." + s[1] + "." + s[2])
		}
	}
	f.Add(seg[0] + "." + seg[1])
	f.Add(seg[0] + "." + seg[1] + ".")
	f.Add(valid + ".")
	f.Add(valid + "=")
	f.Add(" " + valid)
	f.Add(strings.ReplaceAll(valid, "-", "+"))
	f.Add(enc([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + seg[1] + ".")
	f.Add(enc([]byte(`{"alg":"none","alg":"HS256","kid":"k1","typ":"at+jwt"}`)) + "." + seg[1] + "." + seg[2])
	f.Add(signWith(f, key, `{"alg":"HS256","kid":"k1","typ":"at+jwt","jku":"http://127.0.0.1/"}`, mustJSON(f, claimsAt(fixedNow))))
	f.Add(signWith(f, key, hdr(HS256, testKID), `{"sub":"a","SUB":"b"}`))
	f.Add(signWith(f, key, hdr(HS256, testKID), `{"sub":"a","\u0073ub":"b"}`))
	f.Add(signWith(f, key, hdr(HS256, testKID), `{"a":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`))
	f.Add(signWith(f, key, hdr(HS256, testKID), `{"exp":1e400}`))
	f.Add(signWith(f, key, hdr(HS256, testKID), "\xef\xbb\xbf{}"))
	f.Add(token(f, key, with(claimsAt(fixedNow), "exp", fixedNow.Add(-time.Hour).Unix())))
	f.Add(token(f, newHMAC(f, testKID, HS256), claimsAt(fixedNow)))
	f.Add("")
	f.Add("..")
	f.Add(strings.Repeat(".", 100))
	f.Add("base64url")
	f.Add("a.b.c")

	f.Fuzz(func(t *testing.T, tok string) {
		ctx := t.Context()
		s, err := cached.Verify(ctx, tok)
		fs, ferr := fresh.Verify(ctx, tok)
		if err != nil {
			checkVerifyError(t, tok, s, err)
			if ferr == nil {
				t.Fatalf("cached verifier rejects (%v) what a fresh one accepts", err)
			}
			if ferr.Error() != err.Error() {
				t.Fatalf("cached verifier says %q, fresh one %q", err, ferr)
			}
			return
		}
		if s == nil {
			t.Fatal("nil session without error")
		}
		if ferr != nil {
			t.Fatalf("cached verifier accepted a token a fresh one rejects: %v", ferr)
		}
		if fs.Subject() != s.Subject() || fs.ID() != s.ID() || fs.KeyID() != s.KeyID() ||
			!fs.ValidUntil().Equal(s.ValidUntil()) || mustJSON(t, fs.Permissions()) != mustJSON(t, s.Permissions()) {
			t.Fatal("cached and fresh sessions differ")
		}
		if again, err := cached.Verify(ctx, tok); err != nil || again != s {
			t.Fatalf("second Verify of an accepted token: %v (hit=%v)", err, again == s)
		}
	})
}

// FuzzSignedParts fuzzes the header and claims of validly signed tokens, so
// the parsers behind the signature check are reached. Whatever Verify
// accepts must satisfy the documented rules when read back with
// encoding/json, independently of the package's own scanner.
func FuzzSignedParts(f *testing.F) {
	key := newHMAC(f, testKID, HS256)
	clock := newClock()
	v := newVerifier(f, keySet(f, key), clock, WithCache(0, 0))
	claims := mustJSON(f, claimsAt(fixedNow))
	f.Add([]byte(hdr(HS256, testKID)), []byte(claims))
	f.Add([]byte(`{"alg":"HS256","typ":"AT+JWT"}`), []byte(claims))
	f.Add([]byte(`{"alg":"HS256","kid":"k1","typ":"at+jwt","alg":"HS256"}`), []byte(claims))
	f.Add([]byte(`{"\u0061lg":"HS256","kid":"k1","typ":"application/at+jwt"}`), []byte(claims))
	f.Add([]byte(hdr(HS256, testKID)), []byte(`{"sub":"a","\u0073ub":"b",`+claims[1:]))
	f.Add([]byte(hdr(HS256, testKID)), []byte(`{"Exp":1,`+claims[1:]))
	f.Add([]byte(hdr(HS256, testKID)), []byte(`{"exp":"9999999999",`+claims[1:]))
	f.Add([]byte(hdr(HS256, testKID)), []byte(`null`))
	f.Add([]byte(hdr(HS256, testKID)), []byte(`{"n":1.5e3,"b":true,"z":null,"arr":[1,"a"],"o":{"a":1},"esc":"\u00e9\"",`+claims[1:]))

	f.Fuzz(func(t *testing.T, header, claimsJSON []byte) {
		tok := signRaw(t, key.method, key.signKey, header, claimsJSON)
		s, err := v.Verify(t.Context(), tok)
		if err != nil {
			checkVerifyError(t, tok, s, err)
			return
		}
		// The header is a JSON object of alg, kid and typ only.
		var h map[string]any
		if json.Unmarshal(header, &h) != nil {
			t.Fatalf("accepted a header encoding/json rejects: %q", header)
		}
		for name := range h {
			if name != "alg" && name != "kid" && name != "typ" {
				t.Fatalf("accepted header member %q", name)
			}
		}
		if h["alg"] != HS256 {
			t.Fatalf("accepted alg %v", h["alg"])
		}
		if typ, _ := h["typ"].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			t.Fatalf("accepted typ %v", h["typ"])
		}
		if kid, ok := h["kid"]; ok && kid != testKID {
			t.Fatalf("accepted kid %v", kid)
		}
		// The claims are a JSON object meeting every rule.
		dec := json.NewDecoder(bytes.NewReader(claimsJSON))
		dec.UseNumber()
		var c map[string]any
		if dec.Decode(&c) != nil {
			t.Fatalf("accepted claims encoding/json rejects: %q", claimsJSON)
		}
		num := func(name string) (float64, bool) {
			n, ok := c[name].(json.Number)
			if !ok {
				return 0, false
			}
			x, err := n.Float64()
			return x, err == nil
		}
		now := float64(fixedNow.Unix())
		exp, okExp := num("exp")
		iat, okIat := num("iat")
		switch {
		case !okExp || !okIat:
			t.Fatalf("accepted without numeric exp and iat: %s", claimsJSON)
		case exp+DefaultLeeway.Seconds() <= now:
			t.Fatalf("accepted an expired token: %s", claimsJSON)
		case iat > now+DefaultLeeway.Seconds():
			t.Fatalf("accepted a future iat: %s", claimsJSON)
		case exp-iat > DefaultMaxLifetime.Seconds():
			t.Fatalf("accepted a lifetime over the maximum: %s", claimsJSON)
		case c["iss"] != testIss:
			t.Fatalf("accepted iss %v", c["iss"])
		case c["sub"] == nil || c["sub"] == "" || c["sub"] != s.Subject():
			t.Fatalf("accepted sub %v (session %q)", c["sub"], s.Subject())
		}
		if jti, _ := c["jti"].(string); jti == "" || len(jti) > maxJTILen {
			t.Fatalf("accepted jti %v", c["jti"])
		}
		if nbf, ok := num("nbf"); c["nbf"] != nil && (!ok || nbf > now+DefaultLeeway.Seconds()) {
			t.Fatalf("accepted nbf %v", c["nbf"])
		}
		hasAud := false
		switch aud := c["aud"].(type) {
		case string:
			hasAud = aud == testAud
		case []any:
			for _, a := range aud {
				hasAud = hasAud || a == testAud
			}
		}
		if !hasAud {
			t.Fatalf("accepted aud %v", c["aud"])
		}
		for name, want := range c {
			if !slices.Contains(registeredClaims[:], name) {
				// Custom claims read back as encoding/json decodes them.
				got, ok := s.Claim(name)
				if !ok || mustJSON(t, got) != mustJSON(t, want) {
					t.Fatalf("custom claim %q = %#v, encoding/json says %#v", name, got, want)
				}
			}
			for _, r := range registeredClaims {
				if name != r && strings.EqualFold(name, r) {
					t.Fatalf("accepted claim %q, a case variant of %q", name, r)
				}
			}
		}
	})
}
