package token

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
	"github.com/tollgate/tollgate/session"
)

// Revocations is a set of revoked tokens, sessions, and subjects and
// consumers before a time, held in memory and checked on every
// verification, cache hits included ([WithRevocations]). It is safe for
// concurrent use.
//
// Fed directly ([Revocations.Revoke], [Revocations.Add]) it serves a single
// instance and tests; fed from a shared store (package redisstore follows
// Redis) every replica holds the same set.
//
// A check is an atomic load and one map lookup per kind the set holds
// entries of: nothing is locked, nothing allocated (except for entries of
// kind [RevokeRef], whose check computes the token's reference). Writers
// build a new snapshot: a small delta copied on every write over a large
// base that is rebuilt only when the delta grows past the square root of
// the set, so one write costs O(√n), not O(n), at a million entries.
//
// Entries leave the set on their own once they expire: a sweep runs on the
// set's clock every sweep interval while the set holds entries, and on any
// write after an interval has passed.
type Revocations struct {
	snap atomic.Pointer[revSnap]

	now        func() time.Time
	afterFunc  func(time.Duration, func()) func() bool
	sweepEvery time.Duration

	mu        sync.Mutex // serializes writers
	lastSweep time.Time
	stopSweep func() bool // the armed sweep timer, nil when none
	closed    bool

	notify    sync.Mutex // held while watchers run: never concurrently with themselves
	watchers  []func()
	observers []func(RevocationEvent)
	stale     atomic.Bool
}

// revSnap is one immutable state of the set.
type revSnap struct {
	base, delta [numRevocationKinds]map[string]revEntry
	n           int // distinct entries (an entry of the delta may shadow one of the base)
}

// holds reports whether the snapshot has entries of kind k.
func (s *revSnap) holds(k int) bool { return len(s.delta[k])+len(s.base[k]) > 0 }

func (s *revSnap) deltaLen() int {
	n := 0
	for _, m := range s.delta {
		n += len(m)
	}
	return n
}

func (s *revSnap) lookup(k int, v string) (revEntry, bool) {
	if e, ok := s.delta[k][v]; ok {
		return e, true
	}
	e, ok := s.base[k][v]
	return e, ok
}

// RevocationsOption configures [NewRevocations].
type RevocationsOption func(*Revocations)

// RevocationsClock sets the set's clock and timer, for tests (a fake
// clock's Now and AfterFunc). The defaults are time.Now and time.AfterFunc.
func RevocationsClock(now func() time.Time, afterFunc func(time.Duration, func()) (stop func() bool)) RevocationsOption {
	return func(r *Revocations) { r.now, r.afterFunc = now, afterFunc }
}

// RevocationsSweepEvery sets how often expired entries are dropped
// (default 1 min).
func RevocationsSweepEvery(d time.Duration) RevocationsOption {
	return func(r *Revocations) {
		if d > 0 {
			r.sweepEvery = d
		}
	}
}

// NewRevocations returns an empty set.
func NewRevocations(opts ...RevocationsOption) *Revocations {
	r := &Revocations{
		now:        time.Now,
		sweepEvery: time.Minute,
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
	}
	for _, o := range opts {
		o(r)
	}
	r.lastSweep = r.now()
	r.snap.Store(&revSnap{})
	return r
}

// Len returns the number of entries in the set.
func (r *Revocations) Len() int { return r.snap.Load().n }

// Revoke validates rev and adds it: the [RevocationWriter] of a single
// instance. An entry that has already expired is refused: it would cover
// nothing.
func (r *Revocations) Revoke(_ context.Context, rev Revocation) error {
	if err := rev.Validate(); err != nil {
		return err
	}
	if !rev.Expires.After(r.now()) {
		return errRevocationExpired
	}
	r.Add(rev)
	return nil
}

// Add merges revs into the set and returns how many changed it (new
// entries, or a later Before or Expires for an entry it held). Invalid and
// expired entries are skipped: a feed hands over what it reads, and one
// bad entry must not stop the others. Watchers run after the set has
// changed, before Add returns.
func (r *Revocations) Add(revs ...Revocation) int {
	now := r.now().UnixNano()
	r.mu.Lock()
	old := r.snap.Load()
	next := &revSnap{base: old.base, n: old.n}
	bulk := len(revs) > max(256, isqrt(old.n))
	if bulk {
		// A large batch (a snapshot load) goes straight into a new base.
		next.base = cloneMaps(old.base, old.n+len(revs))
		mergeInto(&next.base, old.delta)
	} else {
		next.delta = cloneMaps(old.delta, old.deltaLen()+len(revs))
	}
	changed := 0
	for _, rev := range revs {
		if rev.Validate() != nil {
			continue
		}
		e := entryOf(rev)
		if e.expires <= now {
			continue
		}
		k := rev.Kind.index()
		prev, had := next.lookup(k, rev.Value)
		if had {
			m := prev.merge(e)
			if m == prev {
				continue
			}
			e = m
		} else {
			next.n++
		}
		if bulk {
			next.base[k][rev.Value] = e
		} else {
			next.delta[k][rev.Value] = e
		}
		changed++
	}
	if changed == 0 {
		r.mu.Unlock()
		return 0
	}
	if !bulk && next.deltaLen() > max(256, isqrt(next.n)) {
		base := cloneMaps(next.base, next.n)
		mergeInto(&base, next.delta)
		next = &revSnap{base: base, n: next.n}
	}
	r.snap.Store(next)
	r.sweepLocked(false)
	r.armLocked()
	r.mu.Unlock()
	r.changed()
	return changed
}

// Sweep drops every expired entry now and returns how many it dropped.
func (r *Revocations) Sweep() int {
	r.mu.Lock()
	n := r.sweepLocked(true)
	r.mu.Unlock()
	return n
}

// sweepLocked drops expired entries when forced or when a sweep interval
// has passed since the last one. r.mu must be held.
func (r *Revocations) sweepLocked(force bool) int {
	now := r.now()
	if !force && now.Sub(r.lastSweep) < r.sweepEvery {
		return 0
	}
	r.lastSweep = now
	old := r.snap.Load()
	cut := now.UnixNano()
	expired := 0
	var live [numRevocationKinds]int
	for k := range numRevocationKinds {
		for _, m := range [2]map[string]revEntry{old.base[k], old.delta[k]} {
			for _, e := range m {
				if e.expires <= cut {
					expired++
				} else {
					live[k]++
				}
			}
		}
	}
	if expired == 0 {
		return 0
	}
	next := &revSnap{}
	for k := range numRevocationKinds {
		// Sized for what is left: a map never shrinks, so one sized for
		// the old set would keep its memory.
		m := make(map[string]revEntry, live[k])
		for _, src := range [2]map[string]revEntry{old.base[k], old.delta[k]} {
			for v, e := range src {
				if e.expires > cut {
					m[v] = e
				}
			}
		}
		next.base[k] = m
		next.n += len(m)
	}
	r.snap.Store(next)
	return old.n - next.n
}

// armLocked arms the sweep timer while the set holds entries. r.mu must be
// held.
func (r *Revocations) armLocked() {
	if r.stopSweep != nil || r.closed || r.snap.Load().n == 0 {
		return
	}
	r.stopSweep = r.afterFunc(r.sweepEvery, r.timedSweep)
}

func (r *Revocations) timedSweep() {
	r.mu.Lock()
	r.stopSweep = nil
	r.sweepLocked(true)
	r.armLocked()
	r.mu.Unlock()
}

// Close stops the sweep timer; the set keeps working, and expired entries
// are then dropped only on writes and [Revocations.Sweep].
func (r *Revocations) Close() {
	r.mu.Lock()
	r.closed = true
	stop := r.stopSweep
	r.stopSweep = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Watch registers f, called after every change of the set (from the
// writer's goroutine, never concurrently with another watcher call). The
// guard uses it to end the open streams a revocation covers.
func (r *Revocations) Watch(f func()) {
	r.notify.Lock()
	r.watchers = append(r.watchers, f)
	r.notify.Unlock()
}

func (r *Revocations) changed() {
	r.notify.Lock()
	defer r.notify.Unlock()
	for _, f := range r.watchers {
		f()
	}
}

// Covers reports whether the set covers sess, and the entry that does (its
// Before and Expires as the set holds them, merged).
func (r *Revocations) Covers(sess *session.Session) (Revocation, bool) {
	if sess == nil {
		return Revocation{}, false
	}
	return r.snap.Load().covers(sessionmint.Of(sess))
}

// covered is the hot-path form of Covers.
func (r *Revocations) covered(d *sessionmint.Data) bool {
	s := r.snap.Load()
	if s.n == 0 {
		return false
	}
	_, ok := s.covers(d)
	return ok
}

func (s *revSnap) covers(d *sessionmint.Data) (Revocation, bool) {
	if s.n == 0 {
		return Revocation{}, false
	}
	issued := int64(math.MinInt64)
	switch {
	case !d.IssuedAt.IsZero():
		issued = d.IssuedAt.UnixNano()
	case !d.NotBefore.IsZero():
		issued = d.NotBefore.UnixNano()
	}
	check := func(k int, v string) (Revocation, bool) {
		if v == "" {
			return Revocation{}, false
		}
		e, ok := s.lookup(k, v)
		if !ok || !e.covers(issued) {
			return Revocation{}, false
		}
		return revocationOf(revocationKinds[k], v, e), true
	}
	if s.holds(kindJTI) {
		if r, ok := check(kindJTI, d.ID); ok {
			return r, true
		}
	}
	if s.holds(kindSID) {
		if r, ok := check(kindSID, d.SessionID); ok {
			return r, true
		}
	}
	if s.holds(kindSub) {
		if r, ok := check(kindSub, d.Subject); ok {
			return r, true
		}
	}
	if s.holds(kindConsumer) {
		if r, ok := check(kindConsumer, d.Consumer()); ok {
			return r, true
		}
	}
	if s.holds(kindRef) {
		if r, ok := check(kindRef, session.Fingerprint(d.RefSource())); ok {
			return r, true
		}
	}
	return Revocation{}, false
}

// All returns every entry of the set, in no particular order (for tests
// and for exporting a set).
func (r *Revocations) All() []Revocation {
	s := r.snap.Load()
	out := make([]Revocation, 0, s.n)
	kinds := revocationKinds
	for k := range numRevocationKinds {
		for v, e := range s.base[k] {
			if _, shadowed := s.delta[k][v]; shadowed {
				continue
			}
			out = append(out, revocationOf(kinds[k], v, e))
		}
		for v, e := range s.delta[k] {
			out = append(out, revocationOf(kinds[k], v, e))
		}
	}
	return out
}

func revocationOf(k RevocationKind, v string, e revEntry) Revocation {
	r := Revocation{Kind: k, Value: v, Expires: time.Unix(0, e.expires)}
	if e.before != math.MaxInt64 {
		r.Before = time.Unix(0, e.before)
	}
	return r
}

func cloneMaps(src [numRevocationKinds]map[string]revEntry, hint int) [numRevocationKinds]map[string]revEntry {
	var out [numRevocationKinds]map[string]revEntry
	for k := range numRevocationKinds {
		n := len(src[k])
		if hint > n && n > 0 {
			n += (hint - n) / numRevocationKinds
		}
		m := make(map[string]revEntry, n)
		for v, e := range src[k] {
			m[v] = e
		}
		out[k] = m
	}
	return out
}

func mergeInto(dst *[numRevocationKinds]map[string]revEntry, src [numRevocationKinds]map[string]revEntry) {
	for k := range numRevocationKinds {
		for v, e := range src[k] {
			dst[k][v] = e
		}
	}
}

func isqrt(n int) int {
	if n <= 0 {
		return 0
	}
	return int(math.Sqrt(float64(n)))
}

// RevocationEventKind says what happened to the feed of a revocation set.
type RevocationEventKind string

// What a feed reports.
const (
	// RevocationsLoaded: the feed loaded the store's whole set (at start,
	// or after a reconnect); Entries is the set's size after it.
	RevocationsLoaded RevocationEventKind = "loaded"
	// RevocationsStale: the feed lost its store (Err says why). The set
	// keeps enforcing every entry it has, but may be missing newer ones
	// until the feed catches up.
	RevocationsStale RevocationEventKind = "stale"
	// RevocationsCaughtUp: the feed is reading its store again after being
	// stale, and has applied what it missed.
	RevocationsCaughtUp RevocationEventKind = "caught_up"
)

// RevocationEvent is one report of a revocation feed. Err's text is safe
// to log: it never holds a revoked value.
type RevocationEvent struct {
	// Source names the feed (such as "redis 10.0.0.7:6379").
	Source string
	Kind   RevocationEventKind
	// Entries is the set's size when the event is reported (Report sets
	// it).
	Entries int
	Err     error
}

// Report records ev: a feed calls it. [RevocationsStale] marks the set
// stale ([Revocations.Stale]) until a [RevocationsLoaded] or
// [RevocationsCaughtUp]; each event goes to every observer.
func (r *Revocations) Report(ev RevocationEvent) {
	switch ev.Kind {
	case RevocationsStale:
		r.stale.Store(true)
	case RevocationsLoaded, RevocationsCaughtUp:
		r.stale.Store(false)
	}
	ev.Entries = r.Len()
	r.notify.Lock()
	obs := r.observers
	r.notify.Unlock()
	for _, f := range obs {
		f(ev)
	}
}

// Observe registers f for every [RevocationEvent] reported after it
// returns. The guard registers one when it has an observer or a logger.
func (r *Revocations) Observe(f func(RevocationEvent)) {
	r.notify.Lock()
	r.observers = append(r.observers[:len(r.observers):len(r.observers)], f)
	r.notify.Unlock()
}

// Stale reports whether the set's feed has lost its store and not yet
// caught up: the set may lack revocations made meanwhile.
func (r *Revocations) Stale() bool { return r.stale.Load() }
