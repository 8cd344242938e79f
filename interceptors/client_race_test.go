package interceptors

import (
	"testing"
	"time"
)

// TestOfferLostRaceKeepsTheLaterToken makes Offer's lost race happen every
// time: an Offer of a token expiring at +20 min passes its lock-free
// pre-check against the +10 min token held, and is stopped there (the
// beforeLock hook) while another Offer swaps in a +30 min token. Released,
// it must find under the lock that it lost, and leave the +30 min token in
// place and OnRenew unaware of it. Without the recheck under the lock it
// would swap the older token back in.
func TestOfferLostRaceKeepsTheLaterToken(t *testing.T) {
	k := newTestKey(t, testKID)
	mint := func(exp time.Duration) string {
		c := claims(t0.Add(exp - 10*time.Minute))
		return k.sign(t, c)
	}
	tok10, tok20, tok30 := mint(10*time.Minute), mint(20*time.Minute), mint(30*time.Minute)

	var renewed []time.Time // appended under the source's lock, read after
	src, err := NewTokenSource(tok10,
		TokenSourceClock(func() time.Time { return t0.Add(time.Hour) }),
		OnRenew(func(_ string, exp time.Time) { renewed = append(renewed, exp) }))
	if err != nil {
		t.Fatal(err)
	}
	reached, release := make(chan struct{}), make(chan struct{})
	first := true // read and written by the hook, which only the goroutine below reaches first
	src.beforeLock = func() {
		if first {
			first = false
			close(reached)
			<-release
		}
	}

	lost := make(chan bool)
	go func() { lost <- src.Offer(tok20) }()
	select {
	case <-reached: // tok20 passed its pre-check against tok10
	case took := <-lost:
		t.Fatalf("Offer of the +20 min token returned %v before reaching the lock: it must pass its pre-check", took)
	}
	if !src.Offer(tok30) {
		t.Fatal("the +30 min token was refused")
	}
	close(release)
	if <-lost {
		t.Error("Offer of the +20 min token reported a swap after losing the race")
	}
	if src.Token() != tok30 || !src.ExpiresAt().Equal(t0.Add(30*time.Minute)) {
		t.Errorf("the source holds the token expiring %v, want the +30 min one", src.ExpiresAt())
	}
	if len(renewed) != 1 || !renewed[0].Equal(t0.Add(30*time.Minute)) {
		t.Errorf("OnRenew saw %v, want only the +30 min swap", renewed)
	}
}
