package main

import (
	"strings"
	"testing"
)

func TestParseMedians(t *testing.T) {
	in := `goos: linux
cpu: Some CPU
BenchmarkVerify/HS256/cached-2   	 5000000	       200.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkVerify/HS256/cached-2   	 5000000	       100.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkVerify/HS256/cached-2   	 5000000	       900.0 ns/op	       8 B/op	       1 allocs/op
BenchmarkUnary/bare              	  60000	     18000 ns/op
PASS
`
	samples, order, env, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != "BenchmarkVerify/HS256/cached" || order[1] != "BenchmarkUnary/bare" {
		t.Fatalf("order %v: the -N suffix must be stripped and names kept in order", order)
	}
	s := samples["BenchmarkVerify/HS256/cached"]
	if got := median(s.ns); got != 200 {
		t.Errorf("median ns = %v, want 200", got)
	}
	if got := median(s.allocs); got != 0 {
		t.Errorf("median allocs = %v, want 0", got)
	}
	if got := median(samples["BenchmarkUnary/bare"].ns); got != 18000 {
		t.Errorf("bare = %v", got)
	}
	if len(env) != 2 {
		t.Errorf("env lines %v", env)
	}
	if median([]float64{1, 3}) != 2 || median(nil) != -1 {
		t.Error("median of an even count is the mean of the middle two; of none, -1")
	}
}

func TestParseCustomMetrics(t *testing.T) {
	in := "BenchmarkRedis/tollgate-2   10000   52000 ns/op   19230.5 decisions/s   1.000 roundtrips/decision   120 B/op   4 allocs/op\n" +
		"BenchmarkMemory/million-consumers-2   1   900000000 ns/op   61.52 MB-held   1e+06 keys\n"
	samples, _, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r := samples["BenchmarkRedis/tollgate"]
	if median(r.metrics["roundtrips/decision"]) != 1 || median(r.metrics["decisions/s"]) != 19230.5 || median(r.allocs) != 4 {
		t.Errorf("redis metrics %+v", r)
	}
	m := samples["BenchmarkMemory/million-consumers"]
	if median(m.metrics["MB-held"]) != 61.52 || median(m.metrics["keys"]) != 1e6 {
		t.Errorf("memory metrics %+v", m.metrics)
	}
}

func TestPairedRatio(t *testing.T) {
	// Round 2 ran under load on both sides: the pairs still say 1.1.
	c := []float64{110, 220, 110}
	b := []float64{100, 200, 100}
	if got := pairedRatio(c, b); got < 1.0999 || got > 1.1001 {
		t.Errorf("paired ratio %v, want 1.1", got)
	}
	// A ratio of medians would pair 110 with 100 here too, but unequal
	// counts fall back to it.
	if got := pairedRatio([]float64{110, 120}, []float64{100}); got != 115.0/100 {
		t.Errorf("fallback %v", got)
	}
}

// An alternating benchmark's cand-ns/<unit>, base-ns/<unit> and ratio
// metrics parse per round; the spread is their range.
func TestAlternationMetrics(t *testing.T) {
	in := "BenchmarkStreamThrottle-2   100   8000000 ns/op   4100 base-ns/msg   4300 cand-ns/msg   1.049 ratio\n" +
		"BenchmarkStreamThrottle-2   100   8000000 ns/op   4000 base-ns/msg   4500 cand-ns/msg   1.125 ratio\n" +
		"BenchmarkStreamThrottle-2   100   8000000 ns/op   4200 base-ns/msg   4300 cand-ns/msg   1.024 ratio\n"
	samples, _, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	s := samples["BenchmarkStreamThrottle"]
	if got := median(s.metrics["ratio"]); got != 1.049 {
		t.Errorf("median ratio %v, want 1.049", got)
	}
	if got := spread(s.metrics["ratio"]); got != "1.02–1.12" {
		t.Errorf("spread %q", got)
	}
	if got := median(s.metrics["cand-ns/msg"]); got != 4300 {
		t.Errorf("candidate %v", got)
	}
}
