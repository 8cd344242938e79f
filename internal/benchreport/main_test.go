package main

import (
	"strconv"
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
	in := "BenchmarkRedisLimiter/tollgate-2   10000   52000 ns/op   19230.5 decisions/s   1.000 roundtrips/decision   120 B/op   4 allocs/op\n" +
		"BenchmarkMemory/million-consumers-2   1   900000000 ns/op   61.52 MB-held   1e+06 keys\n"
	samples, _, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r := samples["BenchmarkRedisLimiter/tollgate"]
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

// e2eLine is one BenchmarkE2E result line as the testing package prints it
// (metrics sorted by unit), for the case name with the given ratios.
func e2eLine(name string, vsBare, vsBaseline, bareAllocs, tollgateAllocs float64) string {
	return name + "-2   1   40000000000 ns/op" +
		"   " + ftoa(bareAllocs) + " bare-allocs/call   15986 bare-calls/s   54.45 bare-cpu-us/call   1622 bare-p50-us   6511 bare-p99-us" +
		"   133.2 baseline-allocs/call   11503 baseline-calls/s   93.14 baseline-cpu-us/call   2300 baseline-p50-us   8218 baseline-p99-us" +
		"   1856 calls/slice   80.00 pairs" +
		"   " + ftoa(tollgateAllocs) + " tollgate-allocs/call   13683 tollgate-calls/s   67.67 tollgate-cpu-us/call   1905 tollgate-p50-us   6969 tollgate-p99-us" +
		"   " + ftoa(vsBare) + " tollgate/bare-cpu   1.508 tollgate/bare-cpu-hi   0.9 tollgate/bare-cpu-lo" +
		"   " + ftoa(vsBaseline) + " tollgate/baseline-cpu   0.8477 tollgate/baseline-cpu-hi   0.6629 tollgate/baseline-cpu-lo\n"
}

func ftoa(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// BenchmarkE2E's metrics (units with slashes, per server and per ratio)
// parse, and the section shows them per case with the targets judged by
// the median: hit cases on tollgate/bare CPU and extra allocations, miss
// cases on tollgate/baseline CPU.
func TestE2EReport(t *testing.T) {
	in := e2eLine("BenchmarkE2E/unary-hit", 1.04, 0.72, 59.42, 62.0) + // met, met (+2.6 allocs)
		e2eLine("BenchmarkE2E/unary-miss-HS256", 2.2, 0.71, 61, 122) + // missed (0.71 > 0.70)
		e2eLine("BenchmarkE2E/unary-miss-EdDSA", 4.1, 0.95, 61, 116) + // met (0.95 ≤ 0.95)
		e2eLine("BenchmarkE2E/stream-hit", 1.06, 0.7, 79.5, 82.0) // missed CPU, met allocs
	samples, _, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	s := samples["BenchmarkE2E/unary-hit"]
	if s == nil {
		t.Fatal("BenchmarkE2E/unary-hit not parsed")
	}
	for unit, want := range map[string]float64{
		"bare-cpu-us/call": 54.45, "tollgate-calls/s": 13683, "baseline-p99-us": 8218,
		"tollgate/bare-cpu": 1.04, "tollgate/bare-cpu-lo": 0.9, "tollgate/baseline-cpu-hi": 0.8477, "pairs": 80,
	} {
		if got := median(s.metrics[unit]); got != want {
			t.Errorf("%s = %v, want %v", unit, got, want)
		}
	}
	out, missed := e2eReport(samples)
	if missed != 2 {
		t.Errorf("%d targets missed, want 2 (unary-miss-HS256's 0.71 and stream-hit's 1.06):\n%s", missed, out)
	}
	for _, want := range []string{
		"## " + e2eSection,
		"### unary-hit: ",
		"| 80 pairs, 1856 calls per slice | bare | tollgate | baseline |",
		"| throughput | 15,986 calls/s | 13,683 calls/s | 11,503 calls/s |",
		"| p50 latency | 1.62 ms | 1.91 ms | 2.30 ms |",
		"| server CPU per call | 54.45 µs | 67.67 µs | 93.14 µs |",
		"| allocs per call | 59.4 | 62.0 | 133.2 |",
		"| tollgate/bare server CPU per call | 1.040× | 0.90–1.51 | ≤ 1.05× | met |",
		"| tollgate − bare allocs per call | +2.6 | | ≤ +3 | met |",
		"| tollgate/baseline server CPU per call | 0.710× | 0.66–0.85 | ≤ 0.70× | **missed** |",
		"| tollgate/baseline server CPU per call | 0.950× | 0.66–0.85 | ≤ 0.95× | met |",
		"| tollgate/bare server CPU per call | 1.060× | 0.90–1.51 | ≤ 1.05× | **missed** |",
		"| tollgate − bare allocs per call | +2.5 | | ≤ +3 | met |",
		"| tollgate − bare allocs per call | +61.0 | | reported |  |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}

	// A case that did not run is said so, and its targets count as missed;
	// without BenchmarkE2E at all there is no section.
	delete(samples, "BenchmarkE2E/stream-hit")
	out, missed = e2eReport(samples)
	if !strings.Contains(out, "### stream-hit: ListPrices, a server stream of 4 prices, each caller reusing its HS256 token\n\nNot measured.") || missed != 2 {
		t.Errorf("missing stream-hit: %d missed\n%s", missed, out)
	}
	if out, missed := e2eReport(map[string]*sample{}); out != "" || missed != 0 {
		t.Errorf("no BenchmarkE2E: %q, %d", out, missed)
	}
}

// The OpenTelemetry observer's pair is reported under its own name and
// unit, as BenchmarkOTelObserver prints them, with the target.
func TestOTelObserverAlternation(t *testing.T) {
	in := "BenchmarkOTelObserver/unary-hit/otel-vs-off-2   2000   345029 ns/op   18790 base-ns/call   19383 cand-ns/call   1.032 ratio   17921 B/op   308 allocs/op\n"
	samples, _, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alternations {
		if a.name != "BenchmarkOTelObserver/unary-hit/otel-vs-off" {
			continue
		}
		s := samples[a.name]
		if s == nil || median(s.metrics["cand-ns/"+a.unit]) != 19383 || median(s.metrics["ratio"]) != 1.032 || a.max != 1.05 {
			t.Fatalf("alternation %+v does not read the benchmark's line: %+v", a, s)
		}
		return
	}
	t.Fatal("no alternation for BenchmarkOTelObserver")
}
