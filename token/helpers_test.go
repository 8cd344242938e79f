package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/session"

	"github.com/golang-jwt/jwt/v5"
)

// Shared fixtures and helpers for the session tests. Tokens are built by hand
// (base64url of our own JSON, signed with golang-jwt's SigningMethod.Sign) so
// that any field can be made malformed.

const (
	testIss = "https://auth.tollgate.test"
	testAud = "pricing"
	testKID = "k1"
)

// fixedNow is the fake "now" every test starts from.
var fixedNow = time.Unix(1_800_000_000, 0).UTC()

type fakeClock = fakeclock.Clock

func newClock() *fakeClock { return fakeclock.New(fixedNow) }

// randBytes returns n random bytes (test secrets are never literals).
func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newHMAC(t testing.TB, kid, alg string) *Key {
	t.Helper()
	k, err := NewHMACKey(kid, alg, randBytes(t, MinHMACKeyLen(alg)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newES(t testing.TB, kid, alg string) *Key {
	t.Helper()
	curve := elliptic.P256()
	if alg == ES384 {
		curve = elliptic.P384()
	}
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewPrivateKey(kid, alg, priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEd(t testing.TB, kid string) *Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewPrivateKey(kid, EdDSA, priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
	rsaErr  error
)

// testRSA returns one RSA-2048 private key per test binary (generation is
// slow).
func testRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() { rsaPriv, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return rsaPriv
}

func newRSA(t testing.TB, kid, alg string) *Key {
	t.Helper()
	k, err := NewPrivateKey(kid, alg, testRSA(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newKey returns a fresh signing key for any supported algorithm.
func newKey(t testing.TB, kid, alg string) *Key {
	t.Helper()
	switch alg {
	case HS256, HS384, HS512:
		return newHMAC(t, kid, alg)
	case ES256, ES384:
		return newES(t, kid, alg)
	case EdDSA:
		return newEd(t, kid)
	case RS256, PS256:
		return newRSA(t, kid, alg)
	}
	t.Fatalf("no test key for %s", alg)
	return nil
}

func keySet(t testing.TB, keys ...*Key) *KeySet {
	t.Helper()
	ks, err := NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// newVerifier builds a verifier for testIss/testAud on clock (a fresh one at
// fixedNow when nil).
func newVerifier(t testing.TB, ks *KeySet, clock *fakeClock, opts ...VerifierOption) *Verifier {
	t.Helper()
	if clock == nil {
		clock = newClock()
	}
	v, err := NewVerifier(ks, testIss, testAud, append([]VerifierOption{WithClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fixture is one HS256 key, its single-key set, a verifier on a fake clock
// and the means to mint tokens for it.
type fixture struct {
	key   *Key
	ks    *KeySet
	clock *fakeClock
	v     *Verifier
}

func newFixture(t testing.TB, opts ...VerifierOption) *fixture {
	t.Helper()
	return newFixtureFor(t, newHMAC(t, testKID, HS256), opts...)
}

func newFixtureFor(t testing.TB, key *Key, opts ...VerifierOption) *fixture {
	t.Helper()
	f := &fixture{key: key, clock: newClock()}
	f.ks = keySet(t, key)
	f.v = newVerifier(t, f.ks, f.clock, opts...)
	return f
}

// claimsAt returns a realistic, valid claim set relative to now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss":       testIss,
		"sub":       "user-42",
		"aud":       testAud,
		"exp":       now.Add(10 * time.Minute).Unix(),
		"iat":       now.Add(-time.Minute).Unix(),
		"nbf":       now.Add(-time.Minute).Unix(),
		"jti":       "jti-0001",
		"sid":       "sid-0001",
		"azp":       "checkout",
		"auth_time": now.Add(-time.Hour).Unix(),
		"perms":     []string{"prices.read", "orders.*"},
		"seller_id": "s-77",
	}
}

// with returns a copy of m with the given members set; a nil value deletes
// the member.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hdr returns a header of the shape tollgate issues.
func hdr(alg, kid string) string {
	h := `{"alg":` + jsonQuote(alg)
	if kid != "" {
		h += `,"kid":` + jsonQuote(kid)
	}
	return h + `,"typ":"at+jwt"}`
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signRaw signs the given header and claims bytes, as written, with method
// and key material (any material: this is how confusion attacks are built).
func signRaw(t testing.TB, method jwt.SigningMethod, material any, header, claims []byte) string {
	t.Helper()
	in := enc(header) + "." + enc(claims)
	sig, err := method.Sign(in, material)
	if err != nil {
		t.Fatalf("signing with %s: %v", method.Alg(), err)
	}
	return in + "." + enc(sig)
}

// signWith signs header and claims text with k's own method and material.
func signWith(t testing.TB, k *Key, header, claims string) string {
	t.Helper()
	return signRaw(t, k.method, k.signKey, []byte(header), []byte(claims))
}

// token mints a well-formed token signed by k with the given claims.
func token(t testing.TB, k *Key, claims map[string]any) string {
	t.Helper()
	return signWith(t, k, hdr(k.alg, k.id), mustJSON(t, claims))
}

// segments returns the three segments of a compact token.
func segments(t testing.TB, tok string) [3]string {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("not a 3-segment token: %d segments", len(p))
	}
	return [3]string{p[0], p[1], p[2]}
}

// mustVerify verifies tok and fails the test on error.
func mustVerify(t testing.TB, v *Verifier, tok string) *session.Session {
	t.Helper()
	s, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("Verify: unexpected error: %v", err)
	}
	if s == nil {
		t.Fatal("Verify: nil session without error")
	}
	return s
}

// assertNoLeak fails when err's text contains tok or any of its segments
// (segments shorter than 8 bytes are too short to be meaningful).
func assertNoLeak(t testing.TB, err error, tok string) {
	t.Helper()
	msg := err.Error()
	if tok != "" && strings.Contains(msg, tok) {
		t.Fatalf("error text contains the token: %q", msg)
	}
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 8 && strings.Contains(msg, seg) {
			t.Fatalf("error text contains a token segment: %q", msg)
		}
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want *VerifyError", err)
	}
}

// assertRejected checks that Verify refused tok with an error matching want
// (ErrInvalidToken or ErrExpiredToken) and only want, returned no session,
// and leaked nothing of the token.
func assertRejected(t testing.TB, v *Verifier, tok string, want error) error {
	t.Helper()
	s, err := v.Verify(t.Context(), tok)
	if err == nil {
		t.Fatalf("Verify accepted a token that must be rejected (session %v)", s)
	}
	if s != nil {
		t.Fatalf("Verify returned a session together with error %v", err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v, want one matching %v", err, want)
	}
	other := ErrExpiredToken
	if want == ErrExpiredToken {
		other = ErrInvalidToken
	}
	if errors.Is(err, other) {
		t.Fatalf("Verify error %v matches both sentinels", err)
	}
	assertNoLeak(t, err, tok)
	return err
}

func assertInvalid(t testing.TB, v *Verifier, tok string) error {
	t.Helper()
	return assertRejected(t, v, tok, ErrInvalidToken)
}

func assertExpired(t testing.TB, v *Verifier, tok string) error {
	t.Helper()
	return assertRejected(t, v, tok, ErrExpiredToken)
}

// assertCause fails unless err is the package's fixed error want: for the
// few tests that must prove which check refused a token (such as "before
// any decoding").
func assertCause(t testing.TB, err, want error) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Cause() != want.(*VerifyError).Cause() {
		t.Fatalf("rejected for %v, want %v", err, want)
	}
}

// assertCausePhrase fails unless err is a *VerifyError whose Cause() is
// want, the fixed phrase of the one check that must have refused the token.
func assertCausePhrase(t testing.TB, err error, want string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("rejected with %v (%T), want a *VerifyError", err, err)
	}
	if got := ve.Cause(); got != want {
		t.Fatalf("rejected for %q, want %q", got, want)
	}
}

// flipTrailingBits returns seg with one of the unused low bits of its last
// character set: another spelling of the same bytes to a lax decoder. It
// reports false when seg has no unused bits (its length is a multiple of 4).
func flipTrailingBits(seg string) (string, bool) {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 || len(seg)%4 == 1 {
		return "", false
	}
	i := strings.IndexByte(alpha, seg[len(seg)-1])
	if i < 0 {
		return "", false
	}
	return seg[:len(seg)-1] + string(alpha[i^1]), true
}
