package token

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkRevocationMemory/million-entries loads 1,000,000 revocations
// (250,000 each of jti, sid, sub and consumer, values the length of a
// tollgate jti) in one Add, as a feed loads a store's set, and reports the
// heap they hold (MB-held, B-per-entry) and the load time; then it lets
// them expire on the set's clock and reports the heap held after the sweep
// (MB-after-expiry): expired entries leave memory on their own.
//
//	go test -run=^$ -bench='RevocationMemory/million' -benchtime=1x ./token
func BenchmarkRevocationMemory(b *testing.B) {
	b.Run("million-entries", func(b *testing.B) {
		const n = 1_000_000
		kinds := []RevocationKind{RevokeToken, RevokeSession, RevokeSubject, RevokeConsumer}
		for b.Loop() {
			clock := newClock()
			runtime.GC()
			var before, after, swept runtime.MemStats
			runtime.ReadMemStats(&before)
			all := make([]Revocation, n)
			for i := range all {
				r := Revocation{Kind: kinds[i%4], Value: "rv" + strconv.FormatInt(3_333_333_333_333_333_333+int64(i), 36) + "abcdefghij", Expires: fixedNow.Add(time.Hour)}
				if r.Kind == RevokeSubject || r.Kind == RevokeConsumer {
					r.Before = fixedNow
				}
				all[i] = r
			}
			start := time.Now()
			revs := NewRevocations(RevocationsClock(clock.Now, clock.AfterFunc))
			if got := revs.Add(all...); got != n {
				b.Fatalf("added %d", got)
			}
			load := time.Since(start)
			all = nil
			runtime.GC()
			runtime.ReadMemStats(&after)
			if revs.Len() != n {
				b.Fatalf("Len = %d", revs.Len())
			}
			// Measured from before the values were made: their strings
			// belong to the set now, and the slice that listed them is
			// gone, so the heap held is the set's, strings included.
			held := float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
			clock.Advance(2 * time.Hour) // the sweep timer fires: every entry has expired
			runtime.GC()
			runtime.ReadMemStats(&swept)
			if revs.Len() != 0 {
				b.Fatalf("after expiry Len = %d", revs.Len())
			}
			b.ReportMetric(held/(1<<20), "MB-held")
			b.ReportMetric(held/n, "B-per-entry")
			b.ReportMetric(float64(load.Milliseconds()), "load-ms")
			b.ReportMetric(float64(int64(swept.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MB-after-expiry")
			runtime.KeepAlive(revs)
			revs.Close()
		}
	})
}
