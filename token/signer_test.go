package token

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func testClaims(now time.Time) Claims {
	return Claims{
		Issuer:          testIss,
		Subject:         "user-42",
		Audience:        []string{testAud},
		IssuedAt:        now.Add(-time.Minute),
		NotBefore:       now.Add(-time.Minute),
		ExpiresAt:       now.Add(10 * time.Minute),
		AuthTime:        now.Add(-time.Hour),
		ID:              "jti-0001",
		SessionID:       "sid-0001",
		AuthorizedParty: "checkout",
		Permissions:     []string{"prices.read", "prices.write", "orders.*"},
		Extra:           map[string]any{"seller_id": "s-77", "tier": 3, "vip": true},
	}
}

// Every supported algorithm signs a token its own key set verifies, and
// the session carries exactly what was signed; the verify-only public half
// verifies it too, and the header is the one tollgate documents.
func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(alg, func(t *testing.T) {
			key := newKey(t, "kid-"+strings.ToLower(alg), alg)
			signer, err := NewSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			if signer.Key() != key {
				t.Fatal("Signer.Key is not the key given")
			}
			c := testClaims(fixedNow)
			tok, err := signer.Sign(c)
			if err != nil {
				t.Fatal(err)
			}

			verifyKeys := []*Key{key}
			if pub, err := key.Public(); err == nil {
				verifyKeys = append(verifyKeys, pub)
			} else if !isHMAC(alg) {
				t.Fatalf("Public: %v", err)
			}
			for _, vk := range verifyKeys {
				v := newVerifier(t, keySet(t, vk), nil)
				s := mustVerify(t, v, tok)
				if s.Subject() != c.Subject || s.ID() != c.ID || s.SessionID() != c.SessionID ||
					s.AuthorizedParty() != c.AuthorizedParty || s.KeyID() != key.ID() || s.Algorithm() != alg ||
					!s.ExpiresAt().Equal(c.ExpiresAt) || !s.IssuedAt().Equal(c.IssuedAt) ||
					!s.NotBefore().Equal(c.NotBefore) || !s.AuthTime().Equal(c.AuthTime) ||
					!slices.Equal(s.Permissions(), c.Permissions) || !slices.Equal(s.Audience(), c.Audience) {
					t.Fatalf("session %v does not carry the signed claims", s)
				}
				if v, _ := s.ClaimString("seller_id"); v != "s-77" {
					t.Fatalf("seller_id = %q", v)
				}
				if v, _ := s.ClaimString("tier"); v != "3" {
					t.Fatalf("tier = %q", v)
				}
				if v, _ := s.ClaimString("vip"); v != "true" {
					t.Fatalf("vip = %q", v)
				}
			}

			// The header is exactly {"alg","kid","typ":"at+jwt"}.
			hb, err := b64.DecodeString(segments(t, tok)[0])
			if err != nil {
				t.Fatal(err)
			}
			var h map[string]any
			if err := json.Unmarshal(hb, &h); err != nil {
				t.Fatal(err)
			}
			if len(h) != 3 || h["alg"] != alg || h["kid"] != key.ID() || h["typ"] != "at+jwt" {
				t.Fatalf("header = %s", hb)
			}

			// Another key of the same algorithm does not verify it.
			var otherKey *Key
			if alg == RS256 || alg == PS256 {
				// newRSA shares one RSA key per test binary; make another.
				priv, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					t.Fatal(err)
				}
				if otherKey, err = NewPrivateKey(key.ID(), alg, priv); err != nil {
					t.Fatal(err)
				}
			} else {
				otherKey = newKey(t, key.ID(), alg)
			}
			assertInvalid(t, newVerifier(t, keySet(t, otherKey), nil), tok)
		})
	}
}

func TestSignerRefusesBadClaims(t *testing.T) {
	signer, err := NewSigner(newHMAC(t, testKID, HS256))
	if err != nil {
		t.Fatal(err)
	}
	base := testClaims(fixedNow)
	mod := func(f func(*Claims)) Claims {
		c := base
		c.Extra = map[string]any{}
		f(&c)
		return c
	}
	for name, c := range map[string]Claims{
		"no issuer":        mod(func(c *Claims) { c.Issuer = "" }),
		"no subject":       mod(func(c *Claims) { c.Subject = "" }),
		"no audience":      mod(func(c *Claims) { c.Audience = nil }),
		"empty audience":   mod(func(c *Claims) { c.Audience = []string{testAud, ""} }),
		"no iat":           mod(func(c *Claims) { c.IssuedAt = time.Time{} }),
		"no exp":           mod(func(c *Claims) { c.ExpiresAt = time.Time{} }),
		"exp == iat":       mod(func(c *Claims) { c.ExpiresAt = c.IssuedAt }),
		"exp before iat":   mod(func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }),
		"jti 129":          mod(func(c *Claims) { c.ID = strings.Repeat("j", 129) }),
		"extra exp":        mod(func(c *Claims) { c.Extra["exp"] = 1 }),
		"extra Exp":        mod(func(c *Claims) { c.Extra["Exp"] = 1 }),
		"extra SUB":        mod(func(c *Claims) { c.Extra["SUB"] = "root" }),
		"extra scope":      mod(func(c *Claims) { c.Extra["Scope"] = "admin" }),
		"extra auth_time":  mod(func(c *Claims) { c.Extra["AUTH_TIME"] = 1 }),
		"extra empty name": mod(func(c *Claims) { c.Extra[""] = 1 }),
		"extra perms":      mod(func(c *Claims) { c.Extra["perms"] = []string{"admin.*"} }),
		"extra long-s sub": mod(func(c *Claims) { c.Extra["ſub"] = "root" }),
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := signer.Sign(c)
			if !errors.Is(err, ErrClaims) || tok != "" {
				t.Fatalf("Sign = %q, %v; want ErrClaims", tok, err)
			}
		})
	}

	// An empty ID gets a fresh random jti each time.
	c := base
	c.ID = ""
	v := newVerifier(t, keySet(t, signer.Key()), nil)
	seen := map[string]bool{}
	for range 50 {
		tok, err := signer.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		id := mustVerify(t, v, tok).ID()
		if len(id) != 22 || seen[id] {
			t.Fatalf("jti %q: not a fresh 128-bit id", id)
		}
		seen[id] = true
	}
}
