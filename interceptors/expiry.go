package interceptors

import (
	"sync"
	"time"
)

// expiries ends open streams whose token runs out, even when no message
// comes. It keeps the streams in a min-heap by deadline under one timer,
// armed for the earliest: a stream costs a push and a remove under a mutex,
// where a timer of its own would cost three allocations (the timer, its
// function and its stop function) on every stream.
//
// The timer is re-armed only when a stream with an earlier deadline than the
// armed one arrives, and when it fires with streams left. A stream that
// leaves leaves the timer as it is: it may fire before anything is due, and
// then re-arms for the earliest stream left, or for nothing. So in steady
// state, streams of tokens that expire in order (later streams, later
// tokens) arm no timer at all.
//
// Timers come from the guard's afterFunc, so tests drive them with a fake
// clock; deadlines are read on the verifier's clock, the same one the
// guard's other time checks use. A timer function may run on the goroutine
// that arms it (a fake clock runs one due at once): afterFunc is never
// called with the mutex held.
type expiries struct {
	afterFunc func(time.Duration, func()) func() bool
	now       func() time.Time

	mu       sync.Mutex
	heap     []*guardedStream
	armedFor time.Time   // the deadline the live timer is armed for; zero: none
	stop     func() bool // stops the live timer; nil while it is being armed
	gen      uint64      // counts armings; a timer of an older one is stale
}

// add schedules s to be expired at s.deadline.
func (e *expiries) add(s *guardedStream) {
	e.mu.Lock()
	s.heapIdx = len(e.heap)
	e.heap = append(e.heap, s)
	e.up(s.heapIdx)
	var (
		gen  uint64
		old  func() bool
		arm  = e.armedFor.IsZero() || s.deadline.Before(e.armedFor)
		when = s.deadline
	)
	if arm {
		gen, old = e.rearmLocked(when)
	}
	e.mu.Unlock()
	if arm {
		e.arm(gen, when, old)
	}
}

// remove unschedules s, which is ending; it does nothing when s has expired
// (or was never added). The timer stays armed even when s was the last
// stream: re-arming it for the next stream would cost that stream the
// allocations the shared timer exists to save. It fires at its deadline,
// finds nothing due, and is not re-armed; [expiries.close] stops it sooner.
func (e *expiries) remove(s *guardedStream) {
	e.mu.Lock()
	if s.heapIdx >= 0 {
		e.removeAt(s.heapIdx)
	}
	e.mu.Unlock()
}

// close stops the timer. Streams added later arm a new one.
func (e *expiries) close() {
	e.mu.Lock()
	e.gen++
	old := e.stop
	e.stop, e.armedFor = nil, time.Time{}
	e.mu.Unlock()
	if old != nil {
		old()
	}
}

// rearmLocked starts a new arming for when and returns its generation and
// the stop function of the timer it replaces. e.mu must be held.
func (e *expiries) rearmLocked(when time.Time) (uint64, func() bool) {
	e.gen++
	old := e.stop
	e.stop, e.armedFor = nil, when
	return e.gen, old
}

// arm stops the replaced timer and arms one for when, outside the mutex.
// If another arming (or the timer itself) has happened meanwhile, the new
// timer is stale and is stopped again.
func (e *expiries) arm(gen uint64, when time.Time, old func() bool) {
	if old != nil {
		old()
	}
	stop := e.afterFunc(when.Sub(e.now()), func() { e.fire(gen) })
	e.mu.Lock()
	current := e.gen == gen && e.stop == nil && !e.armedFor.IsZero()
	if current {
		e.stop = stop
	}
	e.mu.Unlock()
	if !current {
		stop()
	}
}

// fire expires every stream that is due and, when its timer is the live
// one, re-arms for the earliest stream left. A stale timer only expires
// what is due, which is never wrong.
func (e *expiries) fire(gen uint64) {
	now := e.now()
	e.mu.Lock()
	var due []*guardedStream
	for len(e.heap) > 0 && !now.Before(e.heap[0].deadline) {
		s := e.heap[0]
		e.removeAt(0)
		due = append(due, s)
	}
	var (
		next time.Time
		old  func() bool
		arm  bool
	)
	if gen == e.gen {
		e.stop, e.armedFor = nil, time.Time{}
		if len(e.heap) > 0 {
			next = e.heap[0].deadline
			gen, old = e.rearmLocked(next)
			arm = true
		}
	}
	e.mu.Unlock()
	for _, s := range due {
		s.expire()
	}
	if arm {
		e.arm(gen, next, old)
	}
}

// matching returns the open streams for which f is true (f runs with e.mu
// held, so it must not block).
func (e *expiries) matching(f func(*guardedStream) bool) []*guardedStream {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*guardedStream
	for _, s := range e.heap {
		if f(s) {
			out = append(out, s)
		}
	}
	return out
}

// removeAt takes the stream at index i out of the heap. e.mu must be held.
func (e *expiries) removeAt(i int) {
	last := len(e.heap) - 1
	s := e.heap[i]
	if i != last {
		e.heap[i] = e.heap[last]
		e.heap[i].heapIdx = i
	}
	e.heap[last] = nil
	e.heap = e.heap[:last]
	if i != last {
		e.down(i)
		e.up(i)
	}
	s.heapIdx = -1
}

func (e *expiries) less(i, j int) bool { return e.heap[i].deadline.Before(e.heap[j].deadline) }

func (e *expiries) swap(i, j int) {
	e.heap[i], e.heap[j] = e.heap[j], e.heap[i]
	e.heap[i].heapIdx, e.heap[j].heapIdx = i, j
}

func (e *expiries) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !e.less(i, p) {
			return
		}
		e.swap(i, p)
		i = p
	}
}

func (e *expiries) down(i int) {
	n := len(e.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && e.less(r, l) {
			m = r
		}
		if !e.less(m, i) {
			return
		}
		e.swap(i, m)
		i = m
	}
}

// expire ends the stream with TOKEN_EXPIRED: the refusal every later
// RecvMsg and SendMsg returns, and the status the transport writes at once,
// which ends a handler waiting in RecvMsg or SendMsg or on its context.
func (s *guardedStream) expire() {
	if s.deny(errTokenExpired, StageStream) == errTokenExpired {
		s.guard.log(s.ctx, s.plan.method, ReasonTokenExpired, s.sess, "token expired during the stream")
	}
	endStream(s.end, errTokenExpired, s.cancel)
}

// revoke ends the stream with TOKEN_REVOKED, as expire does with
// TOKEN_EXPIRED.
func (s *guardedStream) revoke() {
	if s.deny(errTokenRevoked, StageStream) == errTokenRevoked {
		s.guard.log(s.ctx, s.plan.method, ReasonTokenRevoked, s.sess, "token revoked during the stream")
	}
	endStream(s.end, errTokenRevoked, s.cancel)
}

// endRevokedStreams ends every open stream whose session the verifier's
// revocation set now covers. The set calls it after every change.
func (g *Guard) endRevokedStreams() {
	for _, s := range g.expiries.matching(func(s *guardedStream) bool { return g.verifier.Revoked(s.sess) }) {
		s.revoke()
	}
}
