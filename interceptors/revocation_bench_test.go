package interceptors

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/benchpair"
	"github.com/tollgate/tollgate/token"
)

// benchRevocations returns a set of n entries spread over the four kinds a
// token is checked against (jti, sid, sub, consumer), none covering the
// benchmark's token: every check looks in all four maps and finds nothing,
// the path of every allowed call.
func benchRevocations(b *testing.B, n int, now time.Time) *token.Revocations {
	b.Helper()
	revs := token.NewRevocations(token.RevocationsClock(func() time.Time { return now },
		func(time.Duration, func()) func() bool { return func() bool { return true } }))
	kinds := []token.RevocationKind{token.RevokeToken, token.RevokeSession, token.RevokeSubject, token.RevokeConsumer}
	all := make([]token.Revocation, 0, n)
	for i := range n {
		r := token.Revocation{Kind: kinds[i%len(kinds)], Value: "revoked-" + strconv.Itoa(i), Expires: now.Add(time.Hour)}
		if r.Kind == token.RevokeSubject || r.Kind == token.RevokeConsumer {
			r.Before = now
		}
		all = append(all, r)
	}
	if got := revs.Add(all...); got != n {
		b.Fatalf("added %d of %d", got, n)
	}
	return revs
}

// BenchmarkRevocations measures a cache-hit unary call (TestService.Get,
// HS256) through a guard whose verifier checks a revocation set of 100,000
// entries against the same call through a guard without one, in tight
// alternation over bufconn: the target is ≤ 1.03×. Then the cache-hit
// Verify alone, with the set and without, which shows what the check itself
// costs (reported only).
//
//	go test -run=^$ -bench=BenchmarkRevocations -benchmem ./interceptors
func BenchmarkRevocations(b *testing.B) {
	const entries = 100_000
	now := func() time.Time { return t0 }
	key := newTestKey(b, testKID)
	ks, err := token.NewKeySet(key.key)
	if err != nil {
		b.Fatal(err)
	}
	revs := benchRevocations(b, entries, t0)
	on, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(now), token.WithRevocations(revs))
	if err != nil {
		b.Fatal(err)
	}
	off, err := token.NewVerifier(ks, testIss, testAud, token.WithClock(now))
	if err != nil {
		b.Fatal(err)
	}
	_, srvOn := guardOn(b, on)
	_, srvOff := guardOn(b, off)
	cOn, stopOn := serveBufconn(b, srvOn)
	defer stopOn()
	cOff, stopOff := serveBufconn(b, srvOff)
	defer stopOff()
	c := claims(t0)
	c.ID, c.SessionID, c.AuthorizedParty = "jti-bench", "sid-bench", "web"
	tok := key.sign(b, c)
	call := getCall(b, tok)
	call(cOn)()
	call(cOff)()
	b.Run("hit-call/100k-vs-off", func(b *testing.B) { benchpair.Alternate(b, 1, "call", call(cOn), call(cOff)) })

	const batch = 1000
	verify := func(v *token.Verifier) func() {
		return func() {
			for range batch {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("hit-verify/100k-vs-off", func(b *testing.B) { benchpair.Alternate(b, batch, "verify", verify(on), verify(off)) })
}
