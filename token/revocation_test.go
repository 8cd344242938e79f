package token

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
)

// revFixture is a fixture whose verifier checks a revocation set on the
// same fake clock.
type revFixture struct {
	*fixture
	revs *Revocations
}

func newRevFixture(t testing.TB) *revFixture {
	t.Helper()
	clock := newClock()
	revs := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc))
	t.Cleanup(revs.Close)
	key := newHMAC(t, testKID, HS256)
	f := &fixture{key: key, clock: clock, ks: keySet(t, key)}
	f.v = newVerifier(t, f.ks, clock, WithRevocations(revs))
	return &revFixture{fixture: f, revs: revs}
}

func (f *revFixture) revoke(t testing.TB, kind RevocationKind, value string, before time.Time) {
	t.Helper()
	r, err := NewRevocation(kind, value, before, f.clock.Now(), DefaultRevocationLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.revs.Revoke(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

func assertRevoked(t testing.TB, v *Verifier, tok string) {
	t.Helper()
	s, err := v.Verify(t.Context(), tok)
	if err == nil || s != nil {
		t.Fatalf("Verify accepted a revoked token")
	}
	var ve *VerifyError
	if !errors.As(err, &ve) || !ve.Revoked() || !errors.Is(err, ErrRevokedToken) {
		t.Fatalf("Verify error = %v, want one matching ErrRevokedToken", err)
	}
	if errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrExpiredToken) {
		t.Fatalf("revoked error %v matches another sentinel", err)
	}
	assertNoLeak(t, err, tok)
	if _, ok := v.Cached(tok); ok {
		t.Fatal("Cached serves a revoked token")
	}
}

// TestRevocationKinds: each kind covers exactly the tokens it names, on a
// cache hit as much as on a miss.
func TestRevocationKinds(t *testing.T) {
	now := fixedNow
	base := claimsAt(now) // iat = now - 1 min
	cases := []struct {
		name   string
		kind   RevocationKind
		value  string
		before time.Time
		// hit and miss are claim sets the revocation must cover and must
		// not cover.
		hit, miss map[string]any
	}{
		{"jti", RevokeToken, "jti-0001", time.Time{}, base, with(base, "jti", "jti-0002")},
		{"sid covers every token of the session", RevokeSession, "sid-0001", time.Time{},
			with(base, "jti", "renewed", "iat", now.Unix()), with(base, "sid", "sid-0002")},
		{"sid before", RevokeSession, "sid-0001", now.Add(-30 * time.Second),
			base, with(base, "iat", now.Unix())},
		{"sub before", RevokeSubject, "user-42", now.Add(-30 * time.Second),
			base, with(base, "iat", now.Unix())},
		{"sub of another subject", RevokeSubject, "user-42", now,
			base, with(base, "sub", "user-43")},
		{"consumer is the azp", RevokeConsumer, "checkout", now,
			base, with(base, "azp", "billing")},
		{"consumer falls back to the sub", RevokeConsumer, "user-42", now,
			with(base, "azp", nil), base},
		{"ref of a jti", RevokeRef, session.Fingerprint("jti-0001"), time.Time{}, base, with(base, "jti", "jti-0002")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newRevFixture(t)
			hit, miss := token(t, f.key, c.hit), token(t, f.key, c.miss)
			// Both verified (and cached) before the revocation.
			mustVerify(t, f.v, hit)
			mustVerify(t, f.v, miss)
			f.revoke(t, c.kind, c.value, c.before)
			assertRevoked(t, f.v, hit)
			mustVerify(t, f.v, miss)
			// A fresh verifier (a miss, nothing cached) sees the same.
			g := newVerifier(t, f.ks, f.clock, WithRevocations(f.revs))
			assertRevoked(t, g, hit)
			mustVerify(t, g, miss)
			// Cached all the same: the next call with it is refused by a
			// hit, not by another signature check.
			if g.cache.get(hit, f.clock.Now()) == nil {
				t.Error("a revoked token was not cached")
			}
		})
	}
}

// TestRevocationOfTokenWithoutJTI: a token without jti is revoked by its
// log reference; without iat its nbf tells its age, and a token without
// either is covered by a subject's not-before whatever it is: its age
// cannot be told.
func TestRevocationOfTokenWithoutJTI(t *testing.T) {
	clock := newClock()
	revs := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc))
	defer revs.Close()
	key := newHMAC(t, testKID, HS256)
	p := OIDCProfile()
	p.OptionalIAT = true
	v, err := NewVerifierFor([]Issuer{{Name: testIss, Keys: keySet(t, key), Audiences: []string{testAud}, Profile: p}},
		WithClock(clock.Now), WithRevocations(revs))
	if err != nil {
		t.Fatal(err)
	}
	c := with(claimsAt(fixedNow), "jti", nil, "typ", nil)
	tok := signWith(t, key, hdrTyp(HS256, testKID, "at+jwt"), mustJSON(t, c))
	other := signWith(t, key, hdrTyp(HS256, testKID, "at+jwt"), mustJSON(t, with(c, "exp", fixedNow.Add(9*time.Minute).Unix())))
	s := mustVerify(t, v, tok)
	mustVerify(t, v, other)
	r, err := NewRevocation(RevokeRef, s.LogRef(), time.Time{}, clock.Now(), DefaultRevocationLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := revs.Revoke(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	assertRevoked(t, v, tok)
	mustVerify(t, v, other)

	young := signWith(t, key, hdrTyp(HS256, testKID, "at+jwt"), mustJSON(t, with(c, "iat", nil, "nbf", fixedNow.Unix(), "sub", "svc-8")))
	old := signWith(t, key, hdrTyp(HS256, testKID, "at+jwt"), mustJSON(t, with(c, "iat", nil, "sub", "svc-8")))
	mustVerify(t, v, young)
	mustVerify(t, v, old)
	r, _ = NewRevocation(RevokeSubject, "svc-8", fixedNow.Add(-30*time.Second), clock.Now(), DefaultRevocationLimits())
	if err := revs.Revoke(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	assertRevoked(t, v, old)
	mustVerify(t, v, young)

	noAge := signWith(t, key, hdrTyp(HS256, testKID, "at+jwt"), mustJSON(t, with(c, "iat", nil, "nbf", nil, "sub", "svc-9")))
	mustVerify(t, v, noAge)
	r, _ = NewRevocation(RevokeSubject, "svc-9", fixedNow.Add(-time.Hour), clock.Now(), DefaultRevocationLimits())
	if err := revs.Revoke(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	assertRevoked(t, v, noAge)
}

func hdrTyp(alg, kid, typ string) string {
	return mustJSONString(map[string]string{"alg": alg, "kid": kid, "typ": typ})
}

func mustJSONString(m map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for _, k := range []string{"alg", "kid", "typ"} {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:%q", k, m[k])
	}
	b.WriteByte('}')
	return b.String()
}

// TestRevocationValidate: entries that would mean nothing, or too much,
// are refused with errors that never hold the value.
func TestRevocationValidate(t *testing.T) {
	exp := fixedNow.Add(time.Hour)
	secret := "jti-do-not-print-" + strings.Repeat("x", MaxRevocationValue)
	bad := []Revocation{
		{Kind: "session", Value: "VAL-1", Expires: exp},
		{Kind: RevokeToken, Expires: exp},
		{Kind: RevokeToken, Value: secret, Expires: exp},
		{Kind: RevokeToken, Value: "\xff\xfe", Expires: exp},
		{Kind: RevokeToken, Value: "VAL-2"},
		{Kind: RevokeToken, Value: "VAL-3", Before: fixedNow, Expires: exp},
		{Kind: RevokeRef, Value: "VAL-4", Before: fixedNow, Expires: exp},
		{Kind: RevokeSubject, Value: "VAL-5", Expires: exp},
		{Kind: RevokeConsumer, Value: "VAL-6", Expires: exp},
	}
	for i, r := range bad {
		err := r.Validate()
		if err == nil {
			t.Errorf("%d: Validate accepted %+v", i, r)
			continue
		}
		if r.Value != "" && strings.Contains(err.Error(), r.Value) {
			t.Errorf("%d: error %q holds the value", i, err)
		}
	}
	good := []Revocation{
		{Kind: RevokeToken, Value: "j", Expires: exp},
		{Kind: RevokeSession, Value: "s", Expires: exp},
		{Kind: RevokeSession, Value: "s", Before: fixedNow, Expires: exp},
		{Kind: RevokeSubject, Value: "u", Before: fixedNow, Expires: exp},
	}
	for i, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%d: Validate refused %+v: %v", i, r, err)
		}
	}
	// String fingerprints the identifiers a token carries.
	s := Revocation{Kind: RevokeToken, Value: "jti-secret", Expires: exp}.String()
	if strings.Contains(s, "jti-secret") || !strings.Contains(s, session.Fingerprint("jti-secret")) {
		t.Errorf("String() = %q", s)
	}
	revs := NewRevocations()
	defer revs.Close()
	if err := revs.Revoke(t.Context(), Revocation{Kind: RevokeToken, Value: "j", Expires: time.Now().Add(-time.Second)}); err == nil {
		t.Error("Revoke accepted an entry that has already expired")
	}
}

// TestNewRevocationExpiry: an entry lives as long as a token it covers
// could, and no longer.
func TestNewRevocationExpiry(t *testing.T) {
	lim := RevocationLimits{MaxLifetime: time.Hour, MaxSession: 8 * time.Hour, Leeway: 30 * time.Second}
	now := fixedNow
	cases := []struct {
		kind   RevocationKind
		before time.Time
		want   time.Time
		wantB  time.Time
	}{
		{RevokeToken, time.Time{}, now.Add(time.Hour + 30*time.Second), time.Time{}},
		{RevokeSession, time.Time{}, now.Add(8*time.Hour + 30*time.Second), time.Time{}},
		{RevokeSubject, time.Time{}, now.Add(time.Hour + 30*time.Second), now},
		{RevokeConsumer, now.Add(-time.Hour), now.Add(time.Hour + 30*time.Second), now.Add(-time.Hour)},
		{RevokeSubject, now.Add(2 * time.Hour), now.Add(3*time.Hour + 30*time.Second), now.Add(2 * time.Hour)},
	}
	for _, c := range cases {
		r, err := NewRevocation(c.kind, "v", c.before, now, lim)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Expires.Equal(c.want) || !r.Before.Equal(c.wantB) {
			t.Errorf("%s before %v: expires %v before %v, want %v and %v", c.kind, c.before, r.Expires, r.Before, c.want, c.wantB)
		}
	}
	if _, err := NewRevocation("nope", "v", time.Time{}, now, lim); err == nil {
		t.Error("NewRevocation accepted an unknown kind")
	}
}

// TestRevocationsMerge: entries merge to the later before and expiry,
// applying them twice or out of order gives the same set, and only real
// changes count (and wake watchers).
func TestRevocationsMerge(t *testing.T) {
	clock := newClock()
	revs := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc))
	defer revs.Close()
	woken := 0
	revs.Watch(func() { woken++ })
	a := Revocation{Kind: RevokeSubject, Value: "u", Before: fixedNow, Expires: fixedNow.Add(time.Hour)}
	b := Revocation{Kind: RevokeSubject, Value: "u", Before: fixedNow.Add(time.Minute), Expires: fixedNow.Add(30 * time.Minute)}
	if n := revs.Add(a); n != 1 {
		t.Fatalf("Add = %d", n)
	}
	if n := revs.Add(a); n != 0 || woken != 1 {
		t.Fatalf("re-adding changed %d entries, woke %d times", n, woken)
	}
	if n := revs.Add(b); n != 1 {
		t.Fatalf("a later before changed nothing")
	}
	all := revs.All()
	if len(all) != 1 || !all[0].Before.Equal(b.Before) || !all[0].Expires.Equal(a.Expires) {
		t.Fatalf("merged entry = %+v", all)
	}
	other := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc))
	defer other.Close()
	other.Add(b, a, b)
	if got := other.All(); len(got) != 1 || got[0] != all[0] {
		t.Fatalf("out-of-order merge = %+v, want %+v", got, all)
	}
	// Invalid and expired entries are skipped, the others kept.
	n := revs.Add(Revocation{Kind: "x", Value: "v", Expires: fixedNow.Add(time.Hour)},
		Revocation{Kind: RevokeToken, Value: "old", Expires: fixedNow.Add(-time.Second)},
		Revocation{Kind: RevokeToken, Value: "new", Expires: fixedNow.Add(time.Second)})
	if n != 1 || revs.Len() != 2 {
		t.Fatalf("Add of one good entry among bad ones = %d, Len %d", n, revs.Len())
	}
}

// TestRevocationsManyWrites: entries written one at a time (through the
// delta, merged into the base when it grows) and in one batch (straight into
// the base) are all held, and later writes of the same value merge.
func TestRevocationsManyWrites(t *testing.T) {
	clock := newClock()
	revs := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc))
	defer revs.Close()
	exp := fixedNow.Add(time.Hour)
	const n = 5000
	for i := range n {
		revs.Add(Revocation{Kind: RevokeToken, Value: fmt.Sprintf("j%d", i), Expires: exp})
	}
	batch := make([]Revocation, n)
	for i := range batch {
		batch[i] = Revocation{Kind: RevokeSession, Value: fmt.Sprintf("s%d", i), Expires: exp}
	}
	revs.Add(batch...)
	if revs.Len() != 2*n {
		t.Fatalf("Len = %d, want %d", revs.Len(), 2*n)
	}
	// Every entry is found, in the base or the delta.
	snap := revs.snap.Load()
	for i := range n {
		if _, ok := snap.lookup(RevokeToken.index(), fmt.Sprintf("j%d", i)); !ok {
			t.Fatalf("j%d lost", i)
		}
		if _, ok := snap.lookup(RevokeSession.index(), fmt.Sprintf("s%d", i)); !ok {
			t.Fatalf("s%d lost", i)
		}
	}
	if snap.deltaLen() > 256+isqrt(snap.n) {
		t.Fatalf("delta holds %d entries of %d: never merged", snap.deltaLen(), snap.n)
	}
	// A later expiry of an entry in the base lands in the delta and wins.
	later := exp.Add(time.Hour)
	revs.Add(Revocation{Kind: RevokeToken, Value: "j0", Expires: later})
	if e, _ := revs.snap.Load().lookup(0, "j0"); e.expires != later.UnixNano() || revs.Len() != 2*n {
		t.Fatalf("re-revoked entry expires %v (want %v), Len %d", time.Unix(0, e.expires), later, revs.Len())
	}
	if got := len(revs.All()); got != 2*n {
		t.Fatalf("All returned %d entries", got)
	}
}

// TestRevocationsExpireOnTheirOwn: entries leave the set when they expire,
// by the sweep timer alone, with no write.
func TestRevocationsExpireOnTheirOwn(t *testing.T) {
	clock := newClock()
	revs := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc), RevocationsSweepEvery(time.Minute))
	defer revs.Close()
	if clock.Timers() != 0 {
		t.Fatal("an empty set armed a timer")
	}
	for i := range 1000 {
		exp := fixedNow.Add(30 * time.Second)
		if i%2 == 1 {
			exp = fixedNow.Add(time.Hour)
		}
		revs.Add(Revocation{Kind: RevokeToken, Value: fmt.Sprint(i), Expires: exp})
	}
	if clock.Timers() != 1 {
		t.Fatalf("%d sweep timers armed, want 1", clock.Timers())
	}
	clock.Advance(time.Minute)
	if revs.Len() != 500 {
		t.Fatalf("after the first sweep Len = %d, want 500", revs.Len())
	}
	clock.Advance(time.Hour)
	if revs.Len() != 0 {
		t.Fatalf("after every entry expired Len = %d", revs.Len())
	}
	if clock.Timers() != 0 {
		t.Fatal("an emptied set kept its timer armed")
	}
}

// TestRenewalOfRevokedSession: the local renewer refuses a revoked session.
func TestRenewalOfRevokedSession(t *testing.T) {
	f := newRevFixture(t)
	lr, err := NewLocalRenewer(f.v, DefaultRenewalPolicy())
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, f.key, claimsAt(fixedNow))
	s := mustVerify(t, f.v, tok)
	f.revoke(t, RevokeSession, "sid-0001", time.Time{})
	if _, err := lr.Renew(t.Context(), tok, s); !errors.Is(err, ErrRevokedToken) {
		t.Fatalf("Renew of a revoked session = %v", err)
	}
}

// TestRevocationsConcurrent: checks run while writers add entries; run
// under -race.
func TestRevocationsConcurrent(t *testing.T) {
	f := newRevFixture(t)
	toks := make([]string, 8)
	for i := range toks {
		toks[i] = token(t, f.key, with(claimsAt(fixedNow), "jti", fmt.Sprintf("jti-%d", i)))
		mustVerify(t, f.v, toks[i])
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = f.v.Verify(t.Context(), toks[(i+j)%len(toks)])
			}
		}()
	}
	for i := range 2000 {
		f.revs.Add(Revocation{Kind: RevokeToken, Value: fmt.Sprintf("other-%d", i), Expires: fixedNow.Add(time.Hour)})
	}
	f.revoke(t, RevokeToken, "jti-3", time.Time{})
	close(stop)
	wg.Wait()
	assertRevoked(t, f.v, toks[3])
	mustVerify(t, f.v, toks[4])
}
