package token_test

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/token"
)

// TestUnverifiedClaims: a signed token's registered claims come back as
// signed, custom claims do not, and an absent time claim is the zero time.
func TestUnverifiedClaims(t *testing.T) {
	r := newRenRig(t)
	want := token.Claims{
		Issuer:          renIss,
		Subject:         "alice",
		Audience:        []string{renAud, "billing"},
		IssuedAt:        renT0,
		NotBefore:       renT0.Add(time.Second),
		ExpiresAt:       renT0.Add(15 * time.Minute),
		AuthTime:        renT0.Add(-time.Hour),
		ID:              "jti-1",
		SessionID:       "sid-1",
		AuthorizedParty: "web",
		Permissions:     []string{"prices.read", "prices.write"},
	}
	signed := want
	signed.Extra = map[string]any{"seller_id": "s-1"}
	got, err := token.UnverifiedClaims(r.mint(t, signed))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case got.Issuer != want.Issuer || got.Subject != want.Subject || !slices.Equal(got.Audience, want.Audience):
		t.Errorf("iss/sub/aud = %q %q %q", got.Issuer, got.Subject, got.Audience)
	case !got.IssuedAt.Equal(want.IssuedAt) || !got.NotBefore.Equal(want.NotBefore) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.AuthTime.Equal(want.AuthTime):
		t.Errorf("times iat %v nbf %v exp %v auth_time %v", got.IssuedAt, got.NotBefore, got.ExpiresAt, got.AuthTime)
	case got.ID != want.ID || got.SessionID != want.SessionID || got.AuthorizedParty != want.AuthorizedParty:
		t.Errorf("jti/sid/azp = %q %q %q", got.ID, got.SessionID, got.AuthorizedParty)
	case !slices.Equal(got.Permissions, want.Permissions):
		t.Errorf("perms = %q", got.Permissions)
	case got.Extra != nil:
		t.Errorf("Extra = %v, want nil: only registered claims", got.Extra)
	}

	const hdr = `{"alg":"HS256","typ":"at+jwt"}`
	got, err = token.UnverifiedClaims(rawToken(hdr, `{"exp":1800000900,"aud":"pricing"}`))
	if err != nil || !got.IssuedAt.IsZero() || !got.NotBefore.IsZero() || !got.AuthTime.IsZero() || !slices.Equal(got.Audience, []string{"pricing"}) {
		t.Errorf("minimal claims: %+v, %v; want zero times and aud [pricing]", got, err)
	}
}

// TestUnverifiedClaimsStrict: the claim set is read with the verifier's
// strict rules, so a client and a server can never read one token two
// ways; and a token's size and shape are checked as UnverifiedClaims checks
// them.
func TestUnverifiedClaimsStrict(t *testing.T) {
	const hdr = `{"alg":"HS256","typ":"at+jwt"}`
	base := rawToken(hdr, `{"exp":1800000900}`)
	atCap := base + strings.Repeat("A", token.MaxTokenSizeLimit-len(base))
	enc := base64.RawURLEncoding
	stdPayload := base64.RawStdEncoding.EncodeToString([]byte(`{"exp":1800000900,"x":"???>>>~~~"}`))
	if !strings.ContainsAny(stdPayload, "+/") {
		t.Fatalf("fixture: %s has no + or /", stdPayload)
	}
	bad := map[string]string{
		"exp missing":          rawToken(hdr, `{"sub":"a","iat":1800000000}`),
		"exp as a string":      rawToken(hdr, `{"exp":"1800000900"}`),
		"iat as a string":      rawToken(hdr, `{"exp":1800000900,"iat":"1800000000"}`),
		"iat null":             rawToken(hdr, `{"exp":1800000900,"iat":null}`),
		"exp beyond year 9999": rawToken(hdr, `{"exp":1e300}`),
		"sub twice":            rawToken(hdr, `{"exp":1800000900,"sub":"a","sub":"root"}`),
		"sub twice, escaped":   rawToken(hdr, `{"exp":1800000900,"sub":"a","s\u0075b":"root"}`),
		"sub and SUB":          rawToken(hdr, `{"exp":1800000900,"sub":"a","SUB":"root"}`),
		"Sid instead of sid":   rawToken(hdr, `{"exp":1800000900,"Sid":"s"}`),
		"exp twice":            rawToken(hdr, `{"exp":1800000900,"exp":9999999999}`),
		"sub a number":         rawToken(hdr, `{"exp":1800000900,"sub":7}`),
		"aud a number":         rawToken(hdr, `{"exp":1800000900,"aud":7}`),
		"perms a string":       rawToken(hdr, `{"exp":1800000900,"perms":"all"}`),
		"claims an array":      rawToken(hdr, `[{"exp":1800000900}]`),
		"claims truncated":     rawToken(hdr, `{"exp":1800000900`),
		"trailing garbage":     rawToken(hdr, `{"exp":1800000900}x`),
		"empty":                "",
		"two segments":         strings.TrimSuffix(base, ".c2lnbmF0dXJl"),
		"four segments":        base + ".eA",
		"embedded space":       strings.Replace(base, ".", ". ", 1),
		"one byte over 64 KiB": atCap + "A",
		"claims invalid UTF-8": enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte("{\"exp\":1800000900,\"n\":\"\xff\"}")) + ".c2ln",
		"claims, std alphabet": enc.EncodeToString([]byte(hdr)) + "." + stdPayload + ".c2ln",
	}
	for name, tok := range bad {
		if got, err := token.UnverifiedClaims(tok); !errors.Is(err, token.ErrUnreadable) {
			t.Errorf("%s: UnverifiedClaims = %+v, %v; want ErrUnreadable", name, got, err)
		}
	}
	if _, err := token.UnverifiedClaims(atCap); err != nil {
		t.Errorf("a 64 KiB token: %v", err)
	}
}

// TestUnverifiedClaimsIgnoresSignature pins that UnverifiedClaims verifies
// nothing: a token signed with alg none reads as well as any other, so no
// caller may take a readable claim set for an authentic one.
func TestUnverifiedClaimsIgnoresSignature(t *testing.T) {
	forged := rawToken(`{"alg":"none"}`, `{"exp":4102444800,"sub":"root","iss":"`+renIss+`"}`)
	c, err := token.UnverifiedClaims(forged)
	if err != nil || c.Subject != "root" || c.ExpiresAt.Unix() != 4102444800 {
		t.Fatalf("UnverifiedClaims(forged) = %+v, %v", c, err)
	}
}
