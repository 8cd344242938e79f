package interceptors

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakeclock"
)

// expiryHarness is an expiries on a fake clock and streams that record
// when they were expired.
type expiryHarness struct {
	clock *fakeclock.Clock
	e     *expiries
	g     *Guard
}

func newExpiryHarness() *expiryHarness {
	c := fakeclock.New(t0)
	return &expiryHarness{clock: c, e: &expiries{afterFunc: c.AfterFunc, now: c.Now}, g: &Guard{}}
}

func (h *expiryHarness) stream(in time.Duration) *guardedStream {
	return &guardedStream{guard: h.g, plan: &plan{}, deadline: h.clock.Now().Add(in), heapIdx: -1}
}

func expired(s *guardedStream) bool { return s.denial() == errTokenExpired }

// Streams expire in deadline order, each exactly when the clock reaches its
// deadline, under one timer at a time; the last one leaves no timer.
func TestExpiriesInDeadlineOrder(t *testing.T) {
	h := newExpiryHarness()
	a, b, c := h.stream(3*time.Second), h.stream(time.Second), h.stream(2*time.Second)
	for _, s := range []*guardedStream{a, b, c} {
		h.e.add(s)
	}
	if n := h.clock.Timers(); n != 1 {
		t.Fatalf("%d timers for three streams, want 1", n)
	}
	steps := []struct {
		want [3]bool // a, b, c expired
	}{{[3]bool{false, true, false}}, {[3]bool{false, true, true}}, {[3]bool{true, true, true}}}
	h.clock.Advance(time.Second - time.Nanosecond)
	if expired(a) || expired(b) || expired(c) {
		t.Fatal("a stream expired before its deadline")
	}
	h.clock.Advance(time.Nanosecond)
	for i, st := range steps {
		if i > 0 {
			h.clock.Advance(time.Second)
		}
		if got := [3]bool{expired(a), expired(b), expired(c)}; got != st.want {
			t.Fatalf("after %ds: expired a,b,c = %v, want %v", i+1, got, st.want)
		}
	}
	if n := h.clock.Timers(); n != 0 {
		t.Fatalf("%d timers left with no stream", n)
	}
}

// A stream with an earlier deadline than the armed one re-arms the timer; a
// stream that leaves is never expired; an early firing (its stream left)
// re-arms for the next one, or, with none left, for nothing; close stops
// the timer.
func TestExpiriesRearmAndRemove(t *testing.T) {
	h := newExpiryHarness()
	late := h.stream(time.Minute)
	h.e.add(late)
	early := h.stream(time.Second)
	h.e.add(early)
	if n := h.clock.Timers(); n != 1 {
		t.Fatalf("%d timers, want 1 (the old one replaced)", n)
	}
	h.clock.Advance(time.Second)
	if !expired(early) || expired(late) {
		t.Fatalf("after 1s: early %v late %v, want only early", expired(early), expired(late))
	}

	gone := h.stream(time.Second) // earlier than late: the timer is re-armed for it
	h.e.add(gone)
	h.e.remove(gone)
	if n := h.clock.Timers(); n != 1 {
		t.Fatalf("%d timers while late is open, want 1", n)
	}
	h.clock.Advance(time.Second) // fires for gone, which left: re-arms for late
	if expired(gone) || expired(late) {
		t.Fatal("a stream that left, or one not due, was expired")
	}
	if n := h.clock.Timers(); n != 1 {
		t.Fatalf("%d timers after an early firing, want late's 1", n)
	}
	h.e.remove(late)
	h.e.remove(late) // twice: nothing happens
	if n := h.clock.Timers(); n != 1 {
		t.Fatalf("%d timers after the last stream left, want the armed 1 (it is not re-armed for the next stream)", n)
	}
	h.clock.Advance(time.Hour)
	if expired(late) {
		t.Fatal("a stream that left was expired")
	}
	if n := h.clock.Timers(); n != 0 {
		t.Fatalf("%d timers after firing with no stream: it re-armed for nothing", n)
	}

	// close stops an armed timer.
	h.e.add(h.stream(time.Second))
	h.e.close()
	if n := h.clock.Timers(); n != 0 {
		t.Fatalf("%d timers after close", n)
	}
}

// A deadline already past is expired at once (the fake clock runs such a
// timer on the arming goroutine: no lock may be held then).
func TestExpiriesPastDeadline(t *testing.T) {
	h := newExpiryHarness()
	s := h.stream(-time.Second)
	h.e.add(s)
	if !expired(s) {
		t.Fatal("a stream past its deadline was not expired at once")
	}
	if n := h.clock.Timers(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
	h.e.remove(s)
}

// Streams come and go from many goroutines while the clock moves: none is
// expired before its deadline, every one still open at its deadline is, and
// no timer outlives them.
func TestExpiriesConcurrent(t *testing.T) {
	h := newExpiryHarness()
	const workers, each = 4, 200
	var early []time.Duration
	streams := make([][]*guardedStream, workers)
	kept := make([][]bool, workers)
	var wg sync.WaitGroup
	for w := range workers {
		r := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Go(func() {
			for range each {
				s := h.stream(time.Duration(r.IntN(50)+1) * time.Millisecond)
				h.e.add(s)
				keep := r.IntN(2) == 0
				if !keep {
					h.e.remove(s)
				}
				streams[w] = append(streams[w], s)
				kept[w] = append(kept[w], keep)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			h.clock.Advance(time.Millisecond)
		}
	})
	wg.Wait()
	// Expired so far: each must have been due when it was.
	now := h.clock.Now()
	for w := range workers {
		for _, s := range streams[w] {
			if expired(s) && now.Before(s.deadline) {
				early = append(early, s.deadline.Sub(now))
			}
		}
	}
	if len(early) > 0 {
		t.Fatalf("%d streams expired before their deadline (by %v, ...)", len(early), early[0])
	}
	h.clock.Advance(time.Minute)
	for w := range workers {
		for i, s := range streams[w] {
			// A stream that left may have expired first, if the clock
			// passed its deadline before it left; one still open must
			// have expired.
			if kept[w][i] && !expired(s) {
				t.Fatalf("a stream open past its deadline was not expired")
			}
		}
	}
	if n := h.clock.Timers(); n != 0 {
		t.Fatalf("%d timers left after every stream expired", n)
	}
}

// Removals from the middle of the heap keep it ordered: stepping the clock
// a millisecond at a time, exactly the streams still open whose deadline
// has come are expired, each at its deadline, never later.
func TestExpiriesOnTimeAfterRemovals(t *testing.T) {
	h := newExpiryHarness()
	r := rand.New(rand.NewPCG(7, 7))
	const n = 64
	streams := make([]*guardedStream, n)
	for i, d := range r.Perm(n) {
		streams[i] = h.stream(time.Duration(d+1) * time.Millisecond)
		h.e.add(streams[i])
	}
	open := make([]bool, n)
	for i := range streams {
		if open[i] = r.IntN(2) == 0; !open[i] {
			h.e.remove(streams[i])
		}
	}
	for step := 1; step <= n; step++ {
		h.clock.Advance(time.Millisecond)
		now := h.clock.Now()
		for i, s := range streams {
			if want := open[i] && !now.Before(s.deadline); expired(s) != want {
				t.Fatalf("at %dms: stream due at %v (open %v) expired=%v", step, s.deadline.Sub(t0), open[i], expired(s))
			}
		}
	}
}
