package token

import (
	"bytes"
	"crypto/rand"
	"encoding/asn1"
	"math/big"
	"testing"
)

// appendSignatureDER builds the ASN.1 form ecdsa.Verify would build from
// the big.Ints golang-jwt made of R and S.
func TestAppendSignatureDER(t *testing.T) {
	type sig struct{ R, S *big.Int }
	cases := [][2][]byte{
		{bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0x01}, 32)},
		{append(make([]byte, 31), 1), append([]byte{0x80}, make([]byte, 31)...)},
		{append([]byte{0, 0, 0x7f}, bytes.Repeat([]byte{0xaa}, 45)...), bytes.Repeat([]byte{0x80}, 48)},
	}
	for i := range 300 {
		r, s := make([]byte, 32), make([]byte, 32)
		rand.Read(r)
		rand.Read(s)
		if i%3 == 0 {
			r[0] = 0 // a leading zero byte
		}
		if i%5 == 0 {
			s[0], s[1] = 0, s[1]|0x80 // and one before a high bit
		}
		cases = append(cases, [2][]byte{r, s})
	}
	for _, tc := range cases {
		want, err := asn1.Marshal(sig{new(big.Int).SetBytes(tc[0]), new(big.Int).SetBytes(tc[1])})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendSignatureDER(nil, tc[0], tc[1])
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("R %x, S %x: DER %x, want %x", tc[0], tc[1], got, want)
		}
	}
	// R or S zero: ecdsa.Verify refuses it before any encoding.
	for _, tc := range [][2][]byte{{make([]byte, 32), bytes.Repeat([]byte{1}, 32)}, {bytes.Repeat([]byte{1}, 32), make([]byte, 32)}} {
		if _, ok := appendSignatureDER(nil, tc[0], tc[1]); ok {
			t.Fatalf("R %x, S %x: encoded", tc[0], tc[1])
		}
	}
}

// An ES256 signature of the wrong length or with R or S zero is refused;
// the same token with its own signature verifies.
func TestVerifyECDSASignatureForms(t *testing.T) {
	for _, alg := range []string{ES256, ES384} {
		t.Run(alg, func(t *testing.T) {
			f := newFixtureFor(t, newES(t, testKID, alg))
			tok := token(t, f.key, claimsAt(fixedNow))
			mustVerify(t, f.v, tok)
			seg := segments(t, tok)
			sig, err := b64.DecodeString(seg[2])
			if err != nil {
				t.Fatal(err)
			}
			size := len(sig) / 2
			zeroR := append(make([]byte, size), sig[size:]...)
			zeroS := append(append([]byte(nil), sig[:size]...), make([]byte, size)...)
			// The same integers, S one byte longer: only the length check
			// refuses it.
			paddedS := append(append(append([]byte(nil), sig[:size]...), 0), sig[size:]...)
			for name, bad := range map[string][]byte{
				"R zero":    zeroR,
				"S zero":    zeroS,
				"short":     sig[:len(sig)-1],
				"long":      append(append([]byte(nil), sig...), 0),
				"S padded":  paddedS,
				"R, S only": sig[:size],
				"as DER":    must(appendSignatureDER(nil, sig[:size], sig[size:])),
			} {
				t.Run(name, func(t *testing.T) {
					assertCause(t, assertInvalid(t, f.v, seg[0]+"."+seg[1]+"."+enc(bad)), errSignature)
				})
			}
		})
	}
}

func must(b []byte, ok bool) []byte {
	if !ok {
		panic("not encoded")
	}
	return b
}
