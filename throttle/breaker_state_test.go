package throttle

import (
	"testing"
	"time"
)

// BreakerOpen reads the breaker's state at every step of its life, agreeing
// with what WithFailoverStateChange reports; decisions taken while it is
// open carry a fallback Source, so an observer counts them as the store's.
func TestFailoverBreakerOpen(t *testing.T) {
	const cooldown = 10 * time.Second
	f, p, clock, log := newTestFailover(t, FailLocal, WithFailoverBreaker(2, cooldown))
	step := func(err error, wantOpen bool, wantSource string) {
		t.Helper()
		p.set(err)
		d, aerr := f.Allow(t.Context(), Key{"c", "b"}, failoverLimit, 1)
		if aerr != nil {
			t.Fatal(aerr)
		}
		if got := f.BreakerOpen(); got != wantOpen {
			t.Fatalf("BreakerOpen() = %v, want %v (transitions %v)", got, wantOpen, log)
		}
		if d.Source != wantSource {
			t.Fatalf("Source %q, want %q", d.Source, wantSource)
		}
	}
	if f.BreakerOpen() {
		t.Fatal("a new Failover's breaker is open")
	}
	step(nil, false, "primary")
	step(errStoreDown, false, SourceLocal)
	step(errStoreDown, true, SourceLocal) // the second failure opens it
	step(nil, true, SourceLocal)          // within the cooldown the primary is not asked
	clock.Advance(cooldown)
	step(errStoreDown, true, SourceLocal) // a failed probe leaves it open
	clock.Advance(cooldown)
	step(nil, false, "primary") // a good probe closes it
	if log.String() != "[true false]" {
		t.Fatalf("transitions %v", log)
	}
}
