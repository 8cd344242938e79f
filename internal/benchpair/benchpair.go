// Package benchpair measures a candidate against its baseline in tight
// alternation inside one benchmark, so that both sides of a ratio share
// every burst of load a shared machine sees: a pair measured seconds apart
// is not a pair. internal/benchreport reads what it reports.
package benchpair

import (
	"testing"
	"time"
)

// Alternate runs candidate and baseline once each per iteration, in an
// order that flips every iteration, timing each run on its own. Each run
// does units of work. It reports cand-ns/<unit> and base-ns/<unit>, the
// time per unit of each, and ratio, candidate over baseline.
func Alternate(b *testing.B, units float64, unit string, candidate, baseline func()) {
	b.Helper()
	AlternateTimed(b, units, unit, timed(candidate), timed(baseline))
}

// AlternateTimed is Alternate for sides that time themselves: each returns
// how long its units of work took, leaving out what it does to get ready
// (such as waking the goroutines the work runs on).
func AlternateTimed(b *testing.B, units float64, unit string, candidate, baseline func() time.Duration) {
	b.Helper()
	var tc, tb time.Duration
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n%2 == 0 {
			tc += candidate()
			tb += baseline()
		} else {
			tb += baseline()
			tc += candidate()
		}
		n++
	}
	per := float64(n) * units
	b.ReportMetric(float64(tc.Nanoseconds())/per, "cand-ns/"+unit)
	b.ReportMetric(float64(tb.Nanoseconds())/per, "base-ns/"+unit)
	b.ReportMetric(float64(tc)/float64(tb), "ratio")
}

// timed returns f timed by the wall clock.
func timed(f func()) func() time.Duration {
	return func() time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
}

// OnFreshGoroutine returns f run on a goroutine of its own, waited for: a
// request handler's goroutine starts with a small stack, and code with deep
// frames pays for growing it, which a benchmark loop on one long-lived
// goroutine never sees.
func OnFreshGoroutine(f func()) func() {
	return func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		<-done
	}
}
