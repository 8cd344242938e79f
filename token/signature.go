package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"sync"
)

// How a key verifies: set once, when the key is made.
const (
	verifyOther   uint8 = iota // through the golang-jwt SigningMethod (RSA)
	verifyHMAC                 // a pooled, prepared HMAC
	verifyEd25519              // ed25519.Verify
	verifyECDSA                // ecdsa.VerifyASN1 of the re-encoded signature
)

// newMACPool returns a pool of HMAC hashers keyed with secret, for alg.
// An HMAC keyed once and Reset between uses skips hashing the key pads on
// every call.
func newMACPool(alg string, secret []byte) *sync.Pool {
	h := sha256.New
	switch alg {
	case HS384:
		h = sha512.New384
	case HS512:
		h = sha512.New
	}
	return &sync.Pool{New: func() any { return hmac.New(h, secret) }}
}

// verifySignature reports whether sig is k's signature of the signing
// input: in, the token's first two segments, also copied into sc.tok. It
// checks every algorithm but HMAC, which checkSignature checks itself.
// Each branch refuses exactly what the golang-jwt SigningMethod of its
// algorithm refuses.
func (k *Key) verifySignature(sc *scratch, in string, sig []byte) bool {
	input := sc.tok[:len(in)]
	switch k.verify {
	case verifyEd25519:
		// The key's length was checked when the key was made.
		return ed25519.Verify(k.verifyKey.(ed25519.PublicKey), input, sig)
	case verifyECDSA:
		return verifyES(k.verifyKey.(*ecdsa.PublicKey), k.alg, sc, input, sig)
	}
	return k.method.Verify(in, sig, k.verifyKey) == nil
}

// verifyES checks a JWS ECDSA signature (R and S, big-endian, each of the
// curve's size) by handing its ASN.1 form to ecdsa.VerifyASN1, as
// ecdsa.Verify does with the big.Ints golang-jwt would build: a signature
// of the wrong length, or with R or S zero, is refused.
func verifyES(pub *ecdsa.PublicKey, alg string, sc *scratch, input, sig []byte) bool {
	size := 32
	var digest []byte
	if alg == ES384 {
		size = 48
	}
	if len(sig) != 2*size {
		return false
	}
	if alg == ES384 {
		d := sha512.Sum384(input)
		digest = sc.digest[:copy(sc.digest[:], d[:])]
	} else {
		d := sha256.Sum256(input)
		digest = sc.digest[:copy(sc.digest[:], d[:])]
	}
	der, ok := appendSignatureDER(sc.der[:0], sig[:size], sig[size:])
	return ok && ecdsa.VerifyASN1(pub, digest, der)
}

// appendSignatureDER appends SEQUENCE { INTEGER r, INTEGER s } of the
// unsigned big-endian r and s; false when either is zero. Both are at most
// 48 bytes, so every length fits the one-byte short form.
func appendSignatureDER(b, r, s []byte) ([]byte, bool) {
	r, s = trimZeros(r), trimZeros(s)
	if len(r) == 0 || len(s) == 0 {
		return nil, false
	}
	lr, ls := len(r)+int(r[0]>>7), len(s)+int(s[0]>>7)
	b = append(b, 0x30, byte(2+lr+2+ls))
	b = appendDERInt(b, r, lr)
	return appendDERInt(b, s, ls), true
}

func appendDERInt(b, v []byte, n int) []byte {
	b = append(b, 0x02, byte(n))
	if n > len(v) {
		b = append(b, 0) // keep the integer positive
	}
	return append(b, v...)
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}
