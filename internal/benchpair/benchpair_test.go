package benchpair

import (
	"crypto/sha256"
	"testing"
	"time"
)

// work hashes a buffer n times: CPU work whose cost grows with n.
func work(n int) func() {
	buf := make([]byte, 4096)
	return func() {
		for range n {
			sum := sha256.Sum256(buf)
			buf[0] = sum[0]
		}
	}
}

// Alternate reports both sides and their ratio: a candidate doing four times
// its baseline's work reads well above 1.
func TestAlternate(t *testing.T) {
	r := testing.Benchmark(func(b *testing.B) { Alternate(b, 1, "op", work(40), work(10)) })
	if r.Extra["ratio"] < 1.5 || r.Extra["cand-ns/op"] <= r.Extra["base-ns/op"] {
		t.Fatalf("extra %v: want a ratio near 4", r.Extra)
	}
}

// AlternateTimed reports the times the sides return, not the time they
// took: the setup a side leaves out of its time is left out of the ratio.
func TestAlternateTimed(t *testing.T) {
	setup := work(40)
	r := testing.Benchmark(func(b *testing.B) {
		AlternateTimed(b, 2, "op", func() time.Duration {
			setup()
			return 3 * time.Millisecond
		}, func() time.Duration { return time.Millisecond })
	})
	if r.Extra["ratio"] != 3 || r.Extra["cand-ns/op"] != 1.5e6 || r.Extra["base-ns/op"] != 0.5e6 {
		t.Fatalf("extra %v: want ratio 3, cand-ns/op 1.5e6, base-ns/op 0.5e6", r.Extra)
	}
}

func TestOnFreshGoroutine(t *testing.T) {
	ran := false
	OnFreshGoroutine(func() { ran = true })()
	if !ran {
		t.Fatal("f did not run before the call returned")
	}
}
