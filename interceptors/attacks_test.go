package interceptors

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"hash"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// The security cases 1–14 of research/security.md, through the wire. The
// token package tests every variant against the verifier; these prove
// that the guard hands the verifier exactly what arrived and maps every
// refusal to TOKEN_INVALID without reaching the handler.

// forge builds header.claims, MACed with HMAC over h under secret.
func forge(h func() hash.Hash, header, claims string, secret []byte) string {
	in := b64url.EncodeToString([]byte(header)) + "." + b64url.EncodeToString([]byte(claims))
	m := hmac.New(h, secret)
	m.Write([]byte(in))
	return in + "." + b64url.EncodeToString(m.Sum(nil))
}

const goodHeader = `{"alg":"HS256","kid":"k1","typ":"at+jwt"}`

// flipBit flips the lowest bit of the first decoded byte of segment i.
func flipBit(t testing.TB, tok string, i int) string {
	t.Helper()
	seg := segments(tok)
	b, err := b64url.DecodeString(seg[i])
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	seg[i] = b64url.EncodeToString(b)
	return strings.Join(seg, ".")
}

// flipTrailingBits re-spells the signature's last character with one of
// its unused low bits set: the same bytes to a lax base64 decoder, a
// different token to a strict one.
func flipTrailingBits(t testing.TB, tok string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sig := segments(tok)[2]
	if len(sig)%4 != 3 { // 32-byte HMAC: 43 characters, 2 unused bits
		t.Fatalf("signature of %d characters", len(sig))
	}
	i := strings.IndexByte(alphabet, sig[len(sig)-1])
	flipped := tok[:len(tok)-1] + string(alphabet[i^1])
	lax, err := base64.RawURLEncoding.DecodeString(segments(flipped)[2])
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := base64.RawURLEncoding.DecodeString(sig)
	if string(lax) != string(orig) {
		t.Fatal("flipTrailingBits changed the decoded signature")
	}
	return flipped
}

func TestCases1to13ForgedTokens(t *testing.T) {
	h := newHarness(t)
	secret := h.key.secret
	cl := claimsJSON(h.clock.Now())

	var jkuRequests atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		jkuRequests.Add(1)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(jwks.Close)

	// The hand-built token with a correct header verifies: the forgeries
	// below differ from an accepted token only in what they test.
	good := forge(sha256.New, goodHeader, cl, secret)
	if resp, err := h.client.Get(bearer(t, good), &testpb.GetRequest{}); err != nil || resp.GetSubject() != "alice" {
		t.Fatalf("control token refused: %v", err)
	}
	for _, typ := range []string{"AT+JWT", "application/at+jwt"} { // case 10, accepted spellings
		tok := forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"`+typ+`"}`, cl, secret)
		if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{}); err != nil {
			t.Fatalf("typ %s refused: %v", typ, err)
		}
	}
	accepted := h.reached()

	noneHeader := func(alg string) string { return `{"alg":"` + alg + `","kid":"k1","typ":"at+jwt"}` }
	unsigned := func(header string) string {
		return b64url.EncodeToString([]byte(header)) + "." + b64url.EncodeToString([]byte(cl)) + "."
	}
	cases := []struct {
		name string
		tok  string
	}{
		{"case 1: alg none, no signature", unsigned(noneHeader("none"))},
		{"case 1: alg None, no signature", unsigned(noneHeader("None"))},
		{"case 1: alg NONE, MACed", forge(sha256.New, noneHeader("NONE"), cl, secret)},
		{"case 1: alg nOnE, MACed", forge(sha256.New, noneHeader("nOnE"), cl, secret)},
		{"case 2: alg missing", forge(sha256.New, `{"kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 2: alg null", forge(sha256.New, `{"alg":null,"kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 2: alg empty", forge(sha256.New, `{"alg":"","kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 3: alg mismatch HS512 vs an HS256 key", forge(sha512.New, `{"alg":"HS512","kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 3: alg mismatch HS384 vs an HS256 key", forge(sha512.New384, `{"alg":"HS384","kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 5: alg hs256 (wrong case)", forge(sha256.New, `{"alg":"hs256","kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 6: flipped header bit", flipBit(t, good, 0)},
		{"case 6: flipped payload bit", flipBit(t, good, 1)},
		{"case 6: flipped signature bit", flipBit(t, good, 2)},
		{"case 6: two segments", strings.Join(segments(good)[:2], ".")},
		{"case 6: empty signature", strings.Join(segments(good)[:2], ".") + "."},
		{"case 6: foreign key", forge(sha256.New, goodHeader, cl, randomSecret(t, 32))},
		{"case 7: empty kid", forge(sha256.New, `{"alg":"HS256","typ":"at+jwt","kid":""}`, cl, secret)},
		{"case 7: unknown kid", forge(sha256.New, `{"alg":"HS256","kid":"k2","typ":"at+jwt"}`, cl, secret)},
		{"case 7: path traversal kid", forge(sha256.New, `{"alg":"HS256","kid":"../../etc/passwd","typ":"at+jwt"}`, cl, secret)},
		{"case 7: non-string kid", forge(sha256.New, `{"alg":"HS256","kid":1,"typ":"at+jwt"}`, cl, secret)},
		{"case 8: jku", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"at+jwt","jku":"`+jwks.URL+`/jwks"}`, cl, secret)},
		{"case 8: x5u", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"at+jwt","x5u":"`+jwks.URL+`/cert"}`, cl, secret)},
		{"case 8: jwk", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"at+jwt","jwk":{"kty":"oct","k":"AAAA"}}`, cl, secret)},
		{"case 8: x5c", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"at+jwt","x5c":["MIIB"]}`, cl, secret)},
		{"case 9: crit", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"at+jwt","crit":["exp"]}`, cl, secret)},
		{"case 9: zip", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"at+jwt","zip":"DEF"}`, cl, secret)},
		{"case 9: five segments (JWE)", good + ".AAAA.BBBB"},
		{"case 10: typ JWT", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"JWT"}`, cl, secret)},
		{"case 10: typ missing", forge(sha256.New, `{"alg":"HS256","kid":"k1"}`, cl, secret)},
		{"case 10: typ refresh+jwt", forge(sha256.New, `{"alg":"HS256","kid":"k1","typ":"refresh+jwt"}`, cl, secret)},
		{"case 11: duplicate alg (none then HS256)", forge(sha256.New, `{"alg":"none","alg":"HS256","kid":"k1","typ":"at+jwt"}`, cl, secret)},
		{"case 11: duplicate exp claim", forge(sha256.New, goodHeader, strings.Replace(cl, `"exp":`, `"exp":1,"exp":`, 1), secret)},
		{"case 12: claims null", forge(sha256.New, goodHeader, `null`, secret)},
		{"case 12: claims array", forge(sha256.New, goodHeader, `[]`, secret)},
		{"case 12: BOM in header", forge(sha256.New, "\ufeff"+goodHeader, cl, secret)},
		{"case 13: padding", segments(good)[0] + "=." + segments(good)[1] + "." + segments(good)[2]},
		{"case 13: + and /", strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/"},
		{"case 13: flipped unused trailing bits of the signature", flipTrailingBits(t, good)},
		{"case 13: embedded space", segments(good)[0] + ". " + segments(good)[1] + "." + segments(good)[2]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.Get(bearer(t, tc.tok), &testpb.GetRequest{})
			wantInvalid(t, err)
		})
	}
	if h.reached() != accepted {
		t.Fatalf("a forged token reached the handler (%d calls)", h.reached()-accepted)
	}
	if n := jkuRequests.Load(); n != 0 {
		t.Fatalf("case 8: the verifier fetched the jku/x5u URL %d times", n)
	}
}

// Case 4: RS→HS confusion. The verifier holds only an RS256 public key; an
// HS256 token MACed with that public key (PEM or DER) is refused, while a
// real RS256 token passes.
func TestCase4AlgorithmConfusion(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signKey, err := token.NewPrivateKey("rsa1", token.RS256, priv)
	if err != nil {
		t.Fatal(err)
	}
	pubKey, err := signKey.Public()
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withKeys(pubKey))
	signer, err := token.NewSigner(signKey)
	if err != nil {
		t.Fatal(err)
	}
	real, err := signer.Sign(claims(h.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Get(bearer(t, real), &testpb.GetRequest{}); err != nil {
		t.Fatalf("real RS256 token: %v", err)
	}

	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	cl := claimsJSON(h.clock.Now())
	for name, secret := range map[string][]byte{
		"PEM":   pemBytes,
		"DER":   der,
		"PKCS1": x509.MarshalPKCS1PublicKey(&priv.PublicKey),
	} {
		for _, hdr := range []string{
			`{"alg":"HS256","kid":"rsa1","typ":"at+jwt"}`,
			`{"alg":"HS256","typ":"at+jwt"}`,
		} {
			tok := forge(sha256.New, hdr, cl, secret)
			_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
			t.Run(name, func(t *testing.T) { wantInvalid(t, err) })
		}
	}
	if h.reached() != 1 {
		t.Fatalf("reached %d, want 1 (the real token)", h.reached())
	}
}

// Case 14 through the wire: oversized tokens.
func TestCase14OversizedTokens(t *testing.T) {
	// A validly signed token of about 9 KiB: over the 8 KiB metadata cap,
	// under the 64 KiB body cap.
	bigClaim := func(c *token.Claims) {
		c.Extra = map[string]any{"owner_id": "o1", "padding": strings.Repeat("p", 9<<10)}
	}

	t.Run("9 KiB in metadata: TOKEN_INVALID; in the body: accepted", func(t *testing.T) {
		h := newHarness(t, withVerifierOptions(token.WithMaxTokenSize(token.MaxTokenSizeLimit)))
		big := h.token(t, bigClaim)
		if len(big) <= 9<<10 {
			t.Fatalf("token is only %d bytes", len(big))
		}
		_, err := h.client.Get(bearer(t, big), &testpb.GetRequest{})
		wantInvalid(t, err)
		h.wantNotReached(t)
		resp, err := h.client.Get(ctxWith(t), &testpb.GetRequest{AccessToken: big})
		if err != nil || resp.GetSubject() != "alice" {
			t.Fatalf("the same token in the body: %v", err)
		}
	})

	t.Run("9 KiB in the body with the verifier's default 8 KiB cap: TOKEN_INVALID", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{AccessToken: h.token(t, bigClaim)})
		wantInvalid(t, err)
		h.wantNotReached(t)
	})

	t.Run("1 MiB in metadata with the 64 KiB header cap: refused, nothing hangs", func(t *testing.T) {
		h := newHarness(t)
		// A first call settles the connection, so the client knows the
		// server's header list limit.
		if _, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{}); err != nil {
			t.Fatal(err)
		}
		before := h.reached()
		huge := strings.Repeat("a", 1<<20)
		ctx, cancel := context.WithTimeout(bearer(t, huge), 5*time.Second)
		defer cancel()
		_, err := h.client.Get(ctx, &testpb.GetRequest{})
		if status.Code(err) == codes.OK || status.Code(err) == codes.DeadlineExceeded {
			t.Fatalf("got %v, want a prompt refusal", err)
		}
		if h.reached() != before {
			t.Fatal("handler reached")
		}
		// The connection survives for the next caller.
		if _, err := h.client.Get(bearer(t, h.token(t)), &testpb.GetRequest{}); err != nil {
			t.Fatalf("after the refusal: %v", err)
		}
	})

	t.Run("1 MiB and 100k dots with grpc-go's default header cap: the guard says TOKEN_INVALID", func(t *testing.T) {
		h := newHarness(t, withGuardOptions(WithMaxHeaderListSize(0)))
		for name, tok := range map[string]string{
			"1 MiB":     strings.Repeat("a", 1<<20),
			"100k dots": strings.Repeat(".", 100_000),
			"1 MiB JWS": strings.Repeat("a", 1<<19) + "." + strings.Repeat("b", 1<<19-2) + ".c",
		} {
			ctx, cancel := context.WithTimeout(bearer(t, tok), 5*time.Second)
			_, err := h.client.Get(ctx, &testpb.GetRequest{})
			cancel()
			t.Run(name, func(t *testing.T) { wantInvalid(t, err) })
		}
		h.wantNotReached(t)
	})

	t.Run("100k dots in the body: TOKEN_INVALID", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{AccessToken: strings.Repeat(".", 100_000)})
		wantInvalid(t, err)
		_, err = h.client.Get(ctxWith(t), &testpb.GetRequest{AccessToken: strings.Repeat(".", 1000)})
		wantInvalid(t, err)
		h.wantNotReached(t)
	})
}

// initGuard returns a guard initialized from a server that is never served,
// for calling the interceptors directly.
func initGuard(t testing.TB, opts ...Option) (*Guard, *fakeClock, *testKey) {
	t.Helper()
	clock := newFakeClock()
	key := newTestKey(t, testKID)
	ks, err := token.NewKeySet(key.key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(v, append([]Option{WithAuthFailureLimit(throttle.Limit{}), WithLenientInit(), WithAfterFunc(clock.AfterFunc)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	testpb.RegisterTestServiceServer(srv, &testServer{})
	testpb.RegisterUnruledServiceServer(srv, &testServer{})
	if err := g.Init(srv); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	return g, clock, key
}

// Case 14: an oversized token is refused before any decoding, with a small
// constant number of allocations, by the unary interceptor itself.
func TestCase14RejectedBeforeDecoding(t *testing.T) {
	g, _, _ := initGuard(t)
	ui := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: methodGet}
	handler := func(context.Context, any) (any, error) {
		t.Error("handler reached")
		return nil, nil
	}
	req := &testpb.GetRequest{Id: "x"}
	for name, tok := range map[string]string{
		"1 MiB":         strings.Repeat("a", 1<<20),
		"1 MiB JWS":     strings.Repeat("a", 1<<19) + "." + strings.Repeat("b", 1<<19-2) + ".c",
		"100k dots":     strings.Repeat(".", 100_000),
		"8 KiB + 1":     strings.Repeat("a", 8<<10+1),
		"8 KiB + 1 JWS": strings.Repeat("a", 4<<10) + "." + strings.Repeat("b", 4<<10-1) + ".c",
	} {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
			var err error
			allocs := testing.AllocsPerRun(50, func() {
				_, err = ui(ctx, req, info, handler)
			})
			wantInvalid(t, err)
			t.Logf("%v allocations", allocs)
			if allocs > 8 {
				t.Fatalf("%v allocations per rejected call, want ≤ 8", allocs)
			}
		})
	}
}

// Case 31: key rotation through the wire. A token of the previous key is
// accepted during the overlap and refused once the key is removed, even
// though it was cached as verified.
func TestCase31KeyRotation(t *testing.T) {
	h := newHarness(t)
	oldTok := h.token(t)
	if _, err := h.client.Get(bearer(t, oldTok), &testpb.GetRequest{}); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}
	next := newTestKey(t, "k2")
	newTok := next.sign(t, claims(h.clock.Now()))
	_, err := h.client.Get(bearer(t, newTok), &testpb.GetRequest{})
	wantInvalid(t, err) // not yet trusted

	overlap, err := token.NewKeySet(next.key, h.key.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.verifier.SetKeys(overlap); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{}); err != nil {
			t.Fatalf("%s key during the overlap: %v", name, err)
		}
	}

	only, err := token.NewKeySet(next.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.verifier.SetKeys(only); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.Get(bearer(t, oldTok), &testpb.GetRequest{})
	wantInvalid(t, err)
	if _, err := h.client.Get(bearer(t, newTok), &testpb.GetRequest{}); err != nil {
		t.Fatalf("new key after removal of the old: %v", err)
	}
	if h.reached() != 4 {
		t.Fatalf("reached %d, want 4", h.reached())
	}
}
