// Package fakeclock is the one hand-driven clock tollgate's tests inject
// wherever a package takes a `now func() time.Time`, or a timer function.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a clock that moves only when told. It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	t      time.Time
	timers map[*timer]struct{}
}

type timer struct {
	at time.Time
	f  func()
}

// New returns a clock reading t.
func New(t time.Time) *Clock { return &Clock{t: t, timers: make(map[*timer]struct{})} }

// Now returns the clock's reading; pass the method value as a clock option.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t, forwards or backwards, and runs the timers that
// are due at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	due := c.dueLocked()
	c.mu.Unlock()
	run(due)
}

// Advance moves the clock by d (backwards when d is negative) and runs the
// timers that are due then.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	due := c.dueLocked()
	c.mu.Unlock()
	run(due)
}

// AfterFunc runs f once the clock reads d past now, on the goroutine that
// moves it there (at once, on the caller's goroutine, when d <= 0), like
// time.AfterFunc does on the real clock. stop cancels it and reports whether
// it had not run yet.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	tm := &timer{f: f}
	c.mu.Lock()
	tm.at = c.t.Add(d)
	if d <= 0 {
		c.mu.Unlock()
		f()
		return func() bool { return false }
	}
	c.timers[tm] = struct{}{}
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, pending := c.timers[tm]
		delete(c.timers, tm)
		return pending
	}
}

// Timers returns how many timers are waiting: tests use it to wait until a
// component has scheduled its timer before they move the clock.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// dueLocked removes and returns the timers due at c.t. c.mu must be held.
func (c *Clock) dueLocked() []*timer {
	var due []*timer
	for tm := range c.timers {
		if !c.t.Before(tm.at) {
			due = append(due, tm)
			delete(c.timers, tm)
		}
	}
	return due
}

// run calls the timers' functions outside the clock's lock, so that they may
// read the clock.
func run(due []*timer) {
	for _, tm := range due {
		tm.f()
	}
}
