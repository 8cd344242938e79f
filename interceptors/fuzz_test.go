package interceptors

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/token"
)

// FuzzMetadataToken feeds arbitrary authorization and x-prc-token values to
// the guard's metadata extraction (case 24). Properties: it never panics; a
// token it returns is never longer than the cap and never starts with a
// space; a token taken from authorization is exactly what follows a
// case-insensitive "bearer " prefix; sources that are both present agree;
// two values of one key are always refused.
//
//	go test -run=^$ -fuzz=FuzzMetadataToken -fuzztime=10s ./interceptors
func FuzzMetadataToken(f *testing.F) {
	key := newTestKey(f, testKID)
	ks, err := token.NewKeySet(key.key)
	if err != nil {
		f.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud)
	if err != nil {
		f.Fatal(err)
	}
	const smallCap = 16
	guards := map[int]*Guard{}
	for _, c := range []int{DefaultMaxMetadataTokenSize, smallCap} {
		g, err := NewGuard(v, WithTokenHeader("x-prc-token"), WithMaxMetadataTokenSize(c))
		if err != nil {
			f.Fatal(err)
		}
		guards[c] = g
	}

	tok := key.sign(f, claims(t0))
	for _, s := range []struct {
		n          uint8
		a1, a2     string
		prcSet     bool
		prc        string
		smallGuard bool
	}{
		{1, "Bearer " + tok, "", false, "", false},
		{1, "bearer " + tok, "", true, tok, false},
		{1, "Bearer " + tok, "", true, "other", false},
		{2, "Bearer a", "Bearer a", false, "", false},
		{1, "Bearer  tok", "", false, "", false},
		{1, "Bearertok", "", false, "", false},
		{1, "Bearer", "", false, "", false},
		{1, "Bearer ", "", false, "", false},
		{1, "Basic xxx", "", false, "", false},
		{0, "", "", true, " tok", false},
		{0, "", "", true, "", false},
		{1, "BEARER 0123456789abcdef", "", false, "", true},
		{1, "BEARER 0123456789abcdefg", "", false, "", true},
		{0, "", "", true, "0123456789abcdefg", true},
		{1, "bearer\x00tok", "", false, "", false},
		{1, "Bearer \u00a0tok", "", false, "", false},
	} {
		f.Add(s.n, s.a1, s.a2, s.prcSet, s.prc, s.smallGuard)
	}

	f.Fuzz(func(t *testing.T, n uint8, a1, a2 string, prcSet bool, prc string, smallGuard bool) {
		limit := DefaultMaxMetadataTokenSize
		if smallGuard {
			limit = smallCap
		}
		g := guards[limit]
		md := metadata.MD{}
		var auth []string
		switch n % 3 {
		case 1:
			auth = []string{a1}
		case 2:
			auth = []string{a1, a2}
		}
		if auth != nil {
			md["authorization"] = auth
		}
		if prcSet {
			md["x-prc-token"] = []string{prc}
		}
		got, p := g.metadataToken(metadata.NewIncomingContext(context.Background(), md))
		if p != nil {
			if got != "" {
				t.Fatalf("a problem (%s) and a token %q", p.cause, got)
			}
			return
		}
		if len(auth) > 1 {
			t.Fatalf("two authorization values accepted: %q", auth)
		}
		if got == "" {
			if len(auth) > 0 {
				t.Fatalf("authorization %q gave neither a token nor a problem", auth[0])
			}
			if prcSet && prc != "" {
				t.Fatalf("x-prc-token %q gave neither a token nor a problem", prc)
			}
			return
		}
		if len(got) > limit {
			t.Fatalf("token of %d bytes returned, cap %d", len(got), limit)
		}
		if got[0] == ' ' {
			t.Fatalf("token %q starts with a space", got)
		}
		if len(auth) == 1 {
			v := auth[0]
			if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") || v[7:] != got {
				t.Fatalf("authorization %q yielded token %q", v, got)
			}
		}
		if prcSet && got != prc {
			t.Fatalf("x-prc-token %q yielded token %q", prc, got)
		}
		if len(auth) == 0 && !prcSet {
			t.Fatalf("token %q out of nowhere", got)
		}
	})
}
