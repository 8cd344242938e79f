package token

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// security.md case 31: key rotation. A token of the previous key verifies
// while both keys are in the set and stops verifying the moment the key
// leaves it, cached or not; a set of several keys needs a kid.
func TestRotation(t *testing.T) {
	oldKey := newHMAC(t, "2025-01", HS256)
	newKey := newES(t, "2025-02", ES256)
	f := newFixtureFor(t, oldKey)
	c := claimsAt(fixedNow)
	oldTok := token(t, oldKey, with(c, "sub", "old"))
	newTok := token(t, newKey, with(c, "sub", "new"))

	mustVerify(t, f.v, oldTok)
	assertInvalid(t, f.v, newTok) // the new key is not trusted yet

	// Overlap: the new key signs, the old one still verifies.
	overlap := keySet(t, newKey, oldKey)
	if err := f.v.SetKeys(overlap); err != nil {
		t.Fatal(err)
	}
	if k, ok := overlap.SigningKey(); !ok || k != newKey {
		t.Fatalf("SigningKey = %v, want the new key", k)
	}
	cached := mustVerify(t, f.v, oldTok)
	if again := mustVerify(t, f.v, oldTok); again != cached {
		t.Fatal("old token not cached during the overlap")
	}
	mustVerify(t, f.v, newTok)

	// A 2-key set and a token without kid: rejected, even though the key
	// that signed it is in the set.
	noKID := signWith(t, oldKey, `{"alg":"HS256","typ":"at+jwt"}`, mustJSON(t, c))
	assertInvalid(t, f.v, noKID)
	if k := overlap.lookup(nil); k != nil {
		t.Fatalf("a 2-key set resolves an empty kid to %v", k)
	}

	// Removal (or emergency revocation): the old token, cached a moment
	// ago, is refused at once.
	before, _ := f.v.cache.len()
	if err := f.v.SetKeys(keySet(t, newKey)); err != nil {
		t.Fatal(err)
	}
	after, _ := f.v.cache.len()
	if after >= before {
		t.Fatalf("cache entries %d -> %d: the removed key's entries were not purged", before, after)
	}
	assertInvalid(t, f.v, oldTok)
	mustVerify(t, f.v, newTok)
	// With one key again, a missing kid resolves to it.
	mustVerify(t, f.v, signWith(t, newKey, `{"alg":"ES256","typ":"at+jwt"}`, mustJSON(t, c)))

	// A fresh verifier agrees.
	fresh := newVerifier(t, keySet(t, newKey), f.clock)
	assertInvalid(t, fresh, oldTok)
}

// Replacing a key by one with the same kid but other material revokes the
// old material's tokens, cached ones included; replacing it by the same
// material keeps them.
func TestRotationSameKID(t *testing.T) {
	secret := randBytes(t, 32)
	k1, err := NewHMACKey(testKID, HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureFor(t, k1)
	tok := token(t, k1, claimsAt(fixedNow))
	s := mustVerify(t, f.v, tok)

	// Same kid, same material, new *Key: the cached session is still served.
	same, err := NewHMACKey(testKID, HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetKeys(keySet(t, same)); err != nil {
		t.Fatal(err)
	}
	if got := mustVerify(t, f.v, tok); got != s {
		t.Fatal("same key material: cached session not served")
	}

	// Same kid, other material: refused although cached.
	if err := f.v.SetKeys(keySet(t, newHMAC(t, testKID, HS256))); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries of replaced material", n)
	}
	assertInvalid(t, f.v, tok)

	// Same kid and secret bytes but another algorithm is other material.
	long := randBytes(t, 64)
	k512, err := NewHMACKey(testKID, HS512, long)
	if err != nil {
		t.Fatal(err)
	}
	k256, err := NewHMACKey(testKID, HS256, long)
	if err != nil {
		t.Fatal(err)
	}
	if keySet(t, k256).holds(k512) {
		t.Fatal("a set holding the HS256 key claims to hold the HS512 key of the same bytes")
	}
}

// security.md case 31 (-race): Verify calls run while another goroutine
// swaps key sets. Every result is a session for the right subject or
// ErrInvalidToken, never a panic or another token's session; and whenever
// no swap overlapped a call, its outcome is exactly what that key set
// dictates (so the cache never serves a token of a key that is not in it).
func TestRotationRace(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) { rotationRace(t, cached) })
	}
}

func rotationRace(t *testing.T, cached bool) {
	kA := newHMAC(t, "a", HS256)
	kB := newHMAC(t, "b", HS256)
	kA2 := newHMAC(t, "a", HS256) // kid "a" again, other material
	c := claimsAt(fixedNow)
	type tokenCase struct {
		tok, sub string
		key      *Key
	}
	var toks []tokenCase
	for i := range 4 {
		for _, k := range []*Key{kA, kB, kA2} {
			sub := fmt.Sprintf("%s-%p-%d", k.ID(), k, i)
			toks = append(toks, tokenCase{token(t, k, with(c, "sub", sub, "jti", sub)), sub, k})
		}
	}
	sets := []*KeySet{
		keySet(t, kA),
		keySet(t, kB),
		keySet(t, kA, kB),
		keySet(t, kB, kA),
		keySet(t, kA2),
		keySet(t, kA2, kB),
	}
	var opts []VerifierOption
	if !cached {
		opts = append(opts, WithCache(0, 0))
	}
	v := newVerifier(t, sets[0], nil, opts...)

	// seq is a seqlock over the current set: odd while a swap is under
	// way; set index = seq/2 % len(sets) when even.
	var seq atomic.Uint64
	stop := make(chan struct{})
	var swapper sync.WaitGroup
	swapper.Add(1)
	go func() {
		defer swapper.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			seq.Add(1) // odd: swapping
			if err := v.SetKeys(sets[i%len(sets)]); err != nil {
				panic(err)
			}
			seq.Add(1) // even: stable at sets[i%len(sets)]
			// Let workers run a little against a stable set too, so that
			// both overlapping and non-overlapping calls happen.
			for range 4 {
				runtime.Gosched()
			}
		}
	}()

	const workers, rounds = 8, 1500
	var exact, calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least rounds calls each, and on until the set has been
			// swapped 10 times: a fast Verify could otherwise finish
			// its rounds before the swapper got going (within a bound).
			for r := 0; r < rounds || seq.Load() < 20 && r < 50*rounds; r++ {
				calls.Add(1)
				tc := toks[(w*7+r)%len(toks)]
				before := seq.Load()
				s, err := v.Verify(t.Context(), tc.tok)
				after := seq.Load()
				switch {
				case err == nil && s == nil:
					errs <- errors.New("nil session without error")
					return
				case err == nil && (s.Subject() != tc.sub || s.KeyID() != tc.key.ID()):
					errs <- fmt.Errorf("token of %q returned the session of %q", tc.sub, s.Subject())
					return
				case err != nil && (!errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrExpiredToken)):
					errs <- fmt.Errorf("unexpected error %v", err)
					return
				}
				if before == after && before%2 == 0 {
					// No swap overlapped this call: the outcome is exact.
					set := sets[(before/2)%uint64(len(sets))]
					want := set.holds(tc.key)
					if got := err == nil; got != want {
						errs <- fmt.Errorf("set %d, token %q: accepted=%v, want %v (err %v)", (before/2)%uint64(len(sets)), tc.sub, got, want, err)
						return
					}
					exact.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	swapper.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A final, settled state: only kB.
	if err := v.SetKeys(sets[1]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range toks {
		s, err := v.Verify(t.Context(), tc.tok)
		if tc.key == kB {
			if err != nil || s.Subject() != tc.sub {
				t.Errorf("settled on kB: token %q: %v", tc.sub, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("settled on kB: token %q of a removed key accepted", tc.sub)
		}
	}
	t.Logf("%d of %d calls ran against a stable key set, over %d swaps", exact.Load(), calls.Load(), seq.Load()/2)
	if exact.Load() == 0 {
		t.Error("no call ran against a stable key set: the exact-outcome check never ran")
	}
	if seq.Load() < 10 {
		t.Error("the key set was hardly swapped: the race test raced nothing")
	}
}
