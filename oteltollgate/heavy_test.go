package oteltollgate

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// snapshot returns the table's kept keys with their guaranteed counts and
// the rest.
func snapshot(s *spaceSaving) (map[string]int64, int64) {
	kept := map[string]int64{}
	other := s.each(func(key string, n int64) { kept[key] = n })
	return kept, other
}

// With no more distinct keys than K the counts are exact and nothing is
// "_other".
func TestSpaceSavingExactUpToK(t *testing.T) {
	s := newSpaceSaving(3)
	for i, k := range []string{"a", "b", "a", "c", "a", "b"} {
		_ = i
		s.add(k)
	}
	kept, other := snapshot(s)
	if fmt.Sprint(kept) != "map[a:3 b:2 c:1]" || other != 0 {
		t.Fatalf("kept %v other %d, want a:3 b:2 c:1 and 0", kept, other)
	}
}

// The table never holds more than K keys, however many distinct ones
// come; what it does not keep is counted in "_other", so the kept counts
// and "_other" always add up to every refusal seen.
func TestSpaceSavingBoundedAndConserved(t *testing.T) {
	const k = 10
	s := newSpaceSaving(k)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= 20000; i++ {
		s.add(fmt.Sprintf("c%d", r.IntN(5000)))
		if i%997 == 0 || i == 20000 {
			kept, other := snapshot(s)
			if len(kept) > k {
				t.Fatalf("after %d adds the table holds %d keys, more than K=%d", i, len(kept), k)
			}
			sum := other
			for _, n := range kept {
				if n < 1 {
					t.Fatalf("a kept key with guaranteed count %d", n)
				}
				sum += n
			}
			if sum != int64(i) {
				t.Fatalf("after %d adds kept + _other = %d: totals not conserved", i, sum)
			}
		}
	}
}

// Every key seen more than N/K times is kept (Space-Saving's guarantee),
// with a guaranteed count that never exceeds its true count; "_other" and
// each kept key's count only grow.
func TestSpaceSavingKeepsHeavyHitters(t *testing.T) {
	const k, n = 10, 30000
	s := newSpaceSaving(k)
	r := rand.New(rand.NewPCG(3, 4))
	truth := map[string]int64{}
	lastOther := int64(0)
	lastKept := map[string]int64{}
	for i := range n {
		var key string
		switch x := r.IntN(100); {
		case x < 20:
			key = "heavy-a" // 20 %
		case x < 32:
			key = "heavy-b" // 12 %
		default:
			key = fmt.Sprintf("tail-%d", r.IntN(100000)) // almost all distinct
		}
		s.add(key)
		truth[key]++
		if i%101 == 0 {
			kept, other := snapshot(s)
			if other < lastOther {
				t.Fatalf("_other went down from %d to %d", lastOther, other)
			}
			for key, c := range kept {
				if prev, ok := lastKept[key]; ok && c < prev {
					t.Fatalf("kept %s went down from %d to %d while kept", key, prev, c)
				}
			}
			lastOther, lastKept = other, kept
		}
	}
	kept, _ := snapshot(s)
	for key, c := range truth {
		if c > n/k {
			g, ok := kept[key]
			if !ok {
				t.Fatalf("%s seen %d times (> N/K = %d) was not kept", key, c, n/k)
			}
			if g > c {
				t.Fatalf("%s: guaranteed %d above its true count %d", key, g, c)
			}
		}
	}
	for key, g := range kept {
		if g > truth[key] {
			t.Fatalf("%s: guaranteed %d above its true count %d", key, g, truth[key])
		}
	}
	if _, ok := kept["heavy-a"]; !ok {
		t.Fatal("heavy-a missing")
	}
}
