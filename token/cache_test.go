package token

import (
	"fmt"
	"hash/maphash"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
)

// The verified-token cache: a hit skips verification, but is never more
// lenient than verification would be, and the cache stays bounded.

// A second Verify of the same token is served from the cache (the very same
// *session.Session comes back, without a signature check: proven by swapping in a
// set of the same material, which keeps the entry, while the clock shows
// that an entry is never served at or past ValidUntil).
func TestCacheHitAndExpiry(t *testing.T) {
	secret := randBytes(t, 32)
	k, err := NewHMACKey(testKID, HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureFor(t, k)
	tok := token(t, k, claimsAt(fixedNow))
	s1 := mustVerify(t, f.v, tok)
	if n, _ := f.v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries after one Verify, want 1", n)
	}
	if s2 := mustVerify(t, f.v, tok); s2 != s1 {
		t.Fatal("second Verify did not come from the cache")
	}
	// An uncached verifier builds a new session every time.
	nc := newFixtureFor(t, k, WithCache(0, 0))
	if nc.v.cache != nil {
		t.Fatal("WithCache(0, 0) kept a cache")
	}
	if first, second := mustVerify(t, nc.v, tok), mustVerify(t, nc.v, tok); first == second {
		t.Fatal("uncached verifier returned the same session twice")
	}

	same, err := NewHMACKey(testKID, HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetKeys(keySet(t, same)); err != nil {
		t.Fatal(err)
	}
	if s := mustVerify(t, f.v, tok); s != s1 {
		t.Fatal("SetKeys with the same material dropped the cached entry")
	}

	// One nanosecond before ValidUntil: still a hit.
	f.clock.Set(s1.ValidUntil().Add(-time.Nanosecond))
	if s := mustVerify(t, f.v, tok); s != s1 {
		t.Fatal("entry not served just before ValidUntil")
	}
	// At ValidUntil the entry is not served. The token is still within the
	// leeway, so a full verification accepts it and yields a new session.
	f.clock.Set(s1.ValidUntil())
	if s := mustVerify(t, f.v, tok); s == s1 {
		t.Fatal("cached entry served at ValidUntil")
	}
	// Past exp + leeway: expired, cached or not.
	f.clock.Set(s1.ValidUntil().Add(f.v.Leeway()))
	assertExpired(t, f.v, tok)
	f.clock.Set(s1.ValidUntil().Add(time.Hour))
	assertExpired(t, f.v, tok)
	if n, _ := f.v.cache.len(); n != 0 {
		t.Fatalf("expired entry still held (%d entries)", n)
	}
}

// ValidUntil from auth_time + max session also bounds the cache.
func TestCacheHonoursMaxSession(t *testing.T) {
	f := newFixture(t, WithLeeway(0))
	c := with(claimsAt(fixedNow), "auth_time", fixedNow.Add(-8*time.Hour+2*time.Minute).Unix())
	tok := token(t, f.key, c)
	s := mustVerify(t, f.v, tok)
	if !s.ValidUntil().Before(s.ExpiresAt()) {
		t.Fatal("test setup: ValidUntil should come from auth_time")
	}
	f.clock.Set(s.ValidUntil())
	assertExpired(t, f.v, tok)
}

// Bounded by entries: 1000 distinct tokens into WithCache(32, 1 MiB).
func TestCacheBoundedByEntries(t *testing.T) {
	f := newFixture(t, WithCache(32, 1<<20))
	c := claimsAt(fixedNow)
	var toks []string
	for i := range 1000 {
		tok := token(t, f.key, with(c, "jti", fmt.Sprintf("jti-%04d", i)))
		toks = append(toks, tok)
		mustVerify(t, f.v, tok)
		if n, _ := f.v.cache.len(); n > 32 {
			t.Fatalf("after %d tokens the cache holds %d entries, bound is 32", i+1, n)
		}
	}
	n, _ := f.v.cache.len()
	if n == 0 {
		t.Fatal("cache holds nothing: the bound test tested an empty cache")
	}
	// Evicted tokens still verify (a miss is a full verification).
	for _, tok := range toks[:10] {
		mustVerify(t, f.v, tok)
	}
}

// Bounded by bytes: the byte total never exceeds the budget, and a token
// larger than a shard's share is not cached at all.
func TestCacheBoundedByBytes(t *testing.T) {
	const budget = 32 << 10 // 2 KiB per shard: one realistic entry each
	f := newFixture(t, WithCache(10000, budget))
	c := claimsAt(fixedNow)
	for i := range 500 {
		mustVerify(t, f.v, token(t, f.key, with(c, "jti", fmt.Sprintf("jti-%04d", i))))
		if n, b := f.v.cache.len(); b > budget || n > 32 {
			t.Fatalf("after %d tokens: %d entries, %d bytes; budget %d bytes", i+1, n, b, budget)
		}
	}
	if n, b := f.v.cache.len(); n == 0 || b == 0 {
		t.Fatal("cache holds nothing")
	}
	for i := range f.v.cache.shards {
		sh := &f.v.cache.shards[i]
		sum := 0
		for e := sh.head; e != nil; e = e.next {
			sum += e.size
		}
		if sum != sh.bytes || sh.bytes > sh.maxBytes || len(sh.entries) > sh.maxEntries {
			t.Fatalf("shard %d: bytes %d (sum %d, max %d), entries %d (max %d)", i, sh.bytes, sum, sh.maxBytes, len(sh.entries), sh.maxEntries)
		}
	}

	// A 4 KiB token does not fit a 2 KiB share: verified, never cached.
	big := token(t, f.key, with(c, "seller_id", strings.Repeat("s", 3<<10)))
	before, _ := f.v.cache.len()
	s := mustVerify(t, f.v, big)
	if s2 := mustVerify(t, f.v, big); s2 == s {
		t.Fatal("oversized entry was cached")
	}
	if after, _ := f.v.cache.len(); after > before {
		t.Fatalf("cache grew from %d to %d entries with an oversized token", before, after)
	}
}

// SetKeys purges the entries of keys that left the set, and they are not
// served.
func TestCachePurgedOnSetKeys(t *testing.T) {
	k1 := newHMAC(t, "k1", HS256)
	k2 := newHMAC(t, "k2", HS256)
	f := newFixtureFor(t, k1)
	if err := f.v.SetKeys(keySet(t, k1, k2)); err != nil {
		t.Fatal(err)
	}
	c := claimsAt(fixedNow)
	var t1, t2 []string
	cached := map[string]*session.Session{}
	for i := range 10 {
		a := token(t, k1, with(c, "jti", fmt.Sprintf("a-%d", i)))
		b := token(t, k2, with(c, "jti", fmt.Sprintf("b-%d", i)))
		t1, t2 = append(t1, a), append(t2, b)
		cached[a] = mustVerify(t, f.v, a)
		cached[b] = mustVerify(t, f.v, b)
	}
	if n, _ := f.v.cache.len(); n != 20 {
		t.Fatalf("cache holds %d entries, want 20", n)
	}
	if err := f.v.SetKeys(keySet(t, k2)); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.v.cache.len(); n != 10 {
		t.Fatalf("after removing k1 the cache holds %d entries, want 10", n)
	}
	for _, tok := range t1 {
		assertInvalid(t, f.v, tok)
	}
	for _, tok := range t2 {
		if s := mustVerify(t, f.v, tok); s != cached[tok] {
			t.Fatal("entry of a kept key was dropped")
		}
	}
	// Every hit also rechecks its key against the current set, so an entry
	// that escaped the purge (put by a call that began before SetKeys) is
	// not served either.
	if s := getAgainst(f.v, t2[0], keySet(t, k1)); s != nil {
		t.Fatal("cache served an entry whose key is not in the given set")
	}
	if s := getAgainst(f.v, t2[2], keySet(t, newHMAC(t, "k2", HS256))); s != nil {
		t.Fatal("cache served an entry whose kid is in the set with other material")
	}
	if s := getAgainst(f.v, t2[1], keySet(t, k2)); s != cached[t2[1]] {
		t.Fatal("cache did not serve an entry whose key is in the set")
	}
}

// A token that differs from a cached one only in its spelling (set
// trailing bits of the signature, claims or header) is a miss and is
// rejected by full verification.
func TestCacheVariantOfCachedTokenRejected(t *testing.T) {
	f := newFixture(t)
	var tok string
	for i := 0; ; i++ {
		tok = token(t, f.key, with(claimsAt(fixedNow), "jti", fmt.Sprintf("jti-%d", i)))
		s := segments(t, tok)
		if len(s[0])%4 >= 2 && len(s[1])%4 >= 2 && len(s[2])%4 >= 2 {
			break
		}
	}
	s := mustVerify(t, f.v, tok)
	if mustVerify(t, f.v, tok) != s {
		t.Fatal("original not cached")
	}
	seg := segments(t, tok)
	for i := range 3 {
		flipped, ok := flipTrailingBits(seg[i])
		if !ok {
			t.Fatalf("segment %d has no trailing bits", i)
		}
		v := seg
		v[i] = flipped
		assertInvalid(t, f.v, v[0]+"."+v[1]+"."+v[2])
	}
	// Prefixes, suffixes and the token with one character dropped are all
	// misses too.
	for _, bad := range []string{tok[:len(tok)-1], tok + "A", "A" + tok, tok[1:]} {
		assertInvalid(t, f.v, bad)
	}
}

// A hash collision never serves another token's session: an entry is
// matched on the full token text, not on its hash alone.
func TestCacheCollisionNotServed(t *testing.T) {
	f := newFixture(t)
	tokA := token(t, f.key, with(claimsAt(fixedNow), "sub", "alice"))
	tokB := token(t, f.key, with(claimsAt(fixedNow), "sub", "mallory"))
	sB := mustVerify(t, f.v, tokB)

	// Plant B's session under A's hash, as a collision would.
	c := f.v.cache
	h := maphash.String(c.seed, tokA)
	sh := c.shard(h)
	sh.mu.Lock()
	e := &cacheEntry{hash: h, token: tokB, sess: sB, iss: f.v.issuers[0], key: f.key, size: 1}
	sh.entries[h] = e
	sh.bytes += e.size
	sh.pushFront(e)
	sh.mu.Unlock()

	if got := c.get(tokA, fixedNow); got != nil {
		t.Fatalf("cache served %q's session for another token", got.Subject())
	}
	if s := mustVerify(t, f.v, tokA); s.Subject() != "alice" {
		t.Fatalf("Verify(tokA).Subject() = %q", s.Subject())
	}
}

// The hit path allocates (nearly) nothing.
func TestCacheHitAllocations(t *testing.T) {
	f := newFixture(t)
	tok := token(t, f.key, claimsAt(fixedNow))
	s := mustVerify(t, f.v, tok)
	ctx := t.Context()
	allocs := testing.AllocsPerRun(100, func() {
		if got, err := f.v.Verify(ctx, tok); err != nil || got != s {
			panic("cache miss")
		}
	})
	if allocs > 3 {
		t.Fatalf("cache hit costs %v allocations, want <= 3", allocs)
	}
}

// The byte bound sees what a session really holds: an array claim of many
// small numbers decodes to far more memory than its token text, and is
// accounted as such.
func TestCacheAccountsCompositeClaims(t *testing.T) {
	f := newFixture(t)
	const n = 1500
	nums := make([]int, n)
	obj := make(map[string]int, 100)
	for i := range 100 {
		obj[fmt.Sprintf("k%d", i)] = i
	}
	tok := token(t, f.key, with(claimsAt(fixedNow), "nums", nums, "obj", obj))
	s := mustVerify(t, f.v, tok)
	// Each element is at least an interface (16 bytes) holding a
	// json.Number (a 16-byte string header and its byte); each object
	// member at least a key and a value in a map.
	if floor := n*(16+16+1) + 100*(16+16+16+1); sessionSize(s) < floor {
		t.Fatalf("sessionSize = %d, below the %d bytes the claims hold at least", sessionSize(s), floor)
	}
	if _, b := f.v.cache.len(); b < len(tok)+sessionSize(s) {
		t.Fatalf("cache accounts %d bytes for an entry of %d", b, len(tok)+sessionSize(s))
	}
}

// A token in use stays cached however many others come and go: hits keep
// it among the most recently used (moved to the front once it has drifted
// an eighth of the shard back), so eviction takes the tokens nobody uses.
func TestCacheKeepsTokensInUse(t *testing.T) {
	f := newFixture(t, WithCache(16*64, 1<<30))
	c := claimsAt(fixedNow)
	hot := token(t, f.key, with(c, "jti", "hot"))
	mustVerify(t, f.v, hot)
	for i := range 5000 {
		mustVerify(t, f.v, token(t, f.key, with(c, "jti", fmt.Sprintf("cold-%05d", i))))
		if i%4 == 3 {
			if _, ok := f.v.Cached(hot); !ok {
				t.Fatalf("the token in use was evicted after %d others", i+1)
			}
		}
	}
	if n, _ := f.v.cache.len(); n > 16*64 {
		t.Fatalf("%d entries, bound %d", n, 16*64)
	}
}

// getAgainst looks tok up in v's cache as if ks were its issuer's current
// set, then restores the set.
func getAgainst(v *Verifier, tok string, ks *KeySet) *session.Session {
	is := v.issuers[0]
	old := is.keys.Swap(ks)
	defer is.keys.Store(old)
	return v.cache.get(tok, fixedNow)
}
