// Command benchreport turns `go test -bench` output into docs/performance.md:
// every benchmark's median over its runs, and each candidate set side by side
// with the baseline measured in the same run, as a ratio with its target.
//
// Ratios, not absolute times, are the claims: the machines are shared and
// noisy, but a candidate and its baseline measured in one run share the
// noise.
//
//	go run ./internal/benchreport -in bench.out -out docs/performance.md
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// comparison is a candidate measured against a baseline of the same run.
type comparison struct {
	section   string
	what      string
	candidate string
	baseline  string
	maxRatio  float64 // 0: reported only
}

// alternation is one benchmark that ran a candidate and its baseline in
// tight alternation (interceptors' alternate helper) and reported their
// times per unit ("cand-ns/<unit>", "base-ns/<unit>") and their "ratio".
type alternation struct {
	section string
	what    string
	name    string
	unit    string
	max     float64 // 0: reported only
}

var alternations = []alternation{
	{"Throttling (issue 3)", "memory limiter, existing key, vs x/time/rate limiters in a mutex-guarded map (batches of 1000 calls)", "BenchmarkMemory/existing-key-vs-xtimerate", "call", 0},
	{"Token verification (issue 2)", "HS256 uncached vs plain golang-jwt ParseWithClaims, each on a fresh goroutine", "BenchmarkVerify/HS256/alternating", "verify", 1.3},
	{"Token verification (issue 2)", "ES256 uncached vs plain golang-jwt ParseWithClaims, each on a fresh goroutine", "BenchmarkVerify/ES256/alternating", "verify", 0},
	{"Token verification (issue 2)", "EdDSA uncached vs plain golang-jwt ParseWithClaims, each on a fresh goroutine", "BenchmarkVerify/EdDSA/alternating", "verify", 0},
	{"Guarded unary call (issue 2)", "unary call through the guard (HS256, cache hit, ownership) vs the same call with no interceptor, bufconn", "BenchmarkUnary/alternating", "call", 1.10},
	{"Guarded unary call (issue 2)", "server stream of one message (List) through the guard vs with no interceptor, bufconn (issue 8 measures this over TCP with server CPU)", "BenchmarkServerStream/alternating", "stream", 0},
	{"Renewal (issue 4)", "HS256 unary call inside the renewal window vs outside it, steady state", "BenchmarkRenewal/HS256/alternating", "call", 1.15},
	{"Renewal (issue 4)", "EdDSA unary call inside the renewal window vs outside it, steady state", "BenchmarkRenewal/EdDSA/alternating", "call", 1.15},
	{"Hardening (issue 7)", "client stream of 1,000 messages, every message charged to a memory limiter, vs the same stream unthrottled (per message)", "BenchmarkStreamThrottle", "msg", 1.10},
	{"Hardening (issue 7)", "cache-hit unary call from a peer over its failed-authentication budget vs one that is not (the same work on both sides: the cache is asked before the budget, so 1.00 within the spread is the expected result)", "BenchmarkCacheHitOverBudget", "call", 1.05},
	{"Fast path (issue 8)", "HS256 uncached Verify vs a bare crypto/hmac check of the same token (decode the signature, hmac.New, Write, Sum, hmac.Equal), each on a fresh goroutine", "BenchmarkVerify/HS256/vs-hmac-floor", "verify", 3.0},
	{"Fast path (issue 8)", "memory limiter, 2 goroutines on 512 existing keys each vs 1 goroutine on the same 1024 keys, slices of 4096 calls (≤ 0.625 means ≥ 1.6× throughput on 2 cores)", "BenchmarkMemory/disjoint-2-vs-1", "op", 0.625},
	{"Metrics (issue 9)", "cache-hit unary call (HS256, throttled) through a guard observed by oteltollgate on the OpenTelemetry SDK with the Prometheus exporter vs the same guard with no observer, bufconn", "BenchmarkOTelObserver/unary-hit/otel-vs-off", "call", 1.05},
	{"Identity providers (issue 10)", "cache-hit unary call (ES256) through a guard whose verifier follows a JWKS on loopback HTTP vs the same key loaded statically, bufconn (the same work on both sides: one atomic load of the issuer's set, so 1.00 within the spread is the expected result)", "BenchmarkJWKSKeys/hit-call/jwks-vs-static", "call", 1.02},
	{"Identity providers (issue 10)", "p99 latency of valid cache-hit calls (2,000/s, loopback TCP) while tokens naming random kids flood the guard (1,667/s; 10,000 over the six 10 s runs) vs without the flood, in alternating 250 ms slices; JWKS defaults, failed-authentication budget off", "BenchmarkKIDFlood", "call", 1.2},
	{"Identity providers (issue 10)", "uncached Verify (ES256, cache off) with the key as a JWKS published it vs the same key loaded statically, each on a fresh goroutine (the same work on both sides: 1.00 within the spread is the expected result)", "BenchmarkJWKSKeys/uncached-verify/jwks-vs-static", "verify", 1.05},
	{"Revocation (issue 11)", "cache-hit unary call (HS256) through a guard whose verifier checks a revocation set of 100,000 entries (25,000 each of jti, sid, sub and consumer: the token is looked up in all four and found in none, the path of every allowed call) vs the same guard with no set, bufconn", "BenchmarkRevocations/hit-call/100k-vs-off", "call", 1.03},
	{"Revocation (issue 11)", "cache-hit Verify alone with the same set vs none: what the check costs by itself (four lookups in maps of 25,000 entries; reported only, the call above is the claim)", "BenchmarkRevocations/hit-verify/100k-vs-off", "verify", 0},
}

// absolute is a target on a benchmark's own numbers.
type absolute struct {
	section   string
	what      string
	name      string
	maxNs     float64 // 0: no time target
	maxAllocs float64 // <0: no allocation target
}

// metricTarget is a target on a custom metric a benchmark reports with
// b.ReportMetric (such as MB-held or roundtrips/decision).
type metricTarget struct {
	section string
	what    string
	name    string
	unit    string
	max     float64 // the metric must be at most this
}

var comparisons = []comparison{
	{"Throttling (issue 3)", "memory limiter, 2 cores in parallel, vs x/time/rate map in parallel", "BenchmarkMemory/existing-key-parallel", "BenchmarkXTimeRate/existing-key-parallel", 0},
	{"Throttling (issue 3)", "memory limiter, 2 goroutines both cycling all 1024 keys vs 1 goroutine on them (buckets' cache lines move between cores)", "BenchmarkMemory/existing-key-parallel", "BenchmarkMemory/existing-keys-cycled", 0},
	{"Throttling (issue 3)", "Redis limiter vs redis_rate v10, same redis-server, keys and concurrency (ns/op: ≤ 1.0 means ≥ as many decisions/s)", "BenchmarkRedisLimiter/tollgate", "BenchmarkRedisLimiter/redis_rate", 1.0},
}

var metricTargets = []metricTarget{
	{"Throttling (issue 3)", "1,000,000 distinct consumers: heap held", "BenchmarkMemory/million-consumers", "MB-held", 150},
	{"Throttling (issue 3)", "bounded to 100,000 keys: keys held", "BenchmarkMemory/million-consumers-bounded", "keys", 100000},
	{"Throttling (issue 3)", "Redis round trips per decision", "BenchmarkRedisLimiter/tollgate", "roundtrips/decision", 1},
	{"Revocation (issue 11)", "1,000,000 revocations (250,000 each of jti, sid, sub, consumer), loaded in one Add as a feed loads a store: heap held, values included", "BenchmarkRevocationMemory/million-entries", "MB-held", 150},
	{"Revocation (issue 11)", "the same set once every entry has expired and the sweep timer has fired, no write: heap still held", "BenchmarkRevocationMemory/million-entries", "MB-after-expiry", 1},
}

var absolutes = []absolute{
	{"Token verification (issue 2)", "HS256 cache hit", "BenchmarkVerify/HS256/cached", 300, 3},
	{"Token verification (issue 2)", "ES256 cache hit", "BenchmarkVerify/ES256/cached", 300, 3},
	{"Token verification (issue 2)", "EdDSA cache hit", "BenchmarkVerify/EdDSA/cached", 300, 3},
	{"Throttling (issue 3)", "memory limiter, existing key, single-threaded", "BenchmarkMemory/existing-key", 60, 0},
	{"Fast path (issue 8)", "HS256 uncached Verify: allocations", "BenchmarkVerify/HS256/uncached", 0, 10},
}

type sample struct {
	ns, bytes, allocs []float64
	metrics           map[string][]float64
}

type stats struct{ ns, bytes, allocs float64 }

var (
	lineRE  = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	valueRE = regexp.MustCompile(`([0-9.]+(?:e[+-]?[0-9]+)?)\s+(\S+)`)
)

func parse(r io.Reader) (map[string]*sample, []string, []string, error) {
	samples := map[string]*sample{}
	var order, env []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, p := range []string{"goos:", "goarch:", "cpu:"} {
			if strings.HasPrefix(line, p) && !slices.Contains(env, line) {
				env = append(env, line)
			}
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := samples[m[1]]
		if s == nil {
			s = &sample{metrics: map[string][]float64{}}
			samples[m[1]] = s
			order = append(order, m[1])
		}
		for _, v := range valueRE.FindAllStringSubmatch(m[2], -1) {
			f, err := strconv.ParseFloat(v[1], 64)
			if err != nil {
				continue
			}
			switch v[2] {
			case "ns/op":
				s.ns = append(s.ns, f)
			case "B/op":
				s.bytes = append(s.bytes, f)
			case "allocs/op":
				s.allocs = append(s.allocs, f)
			default:
				s.metrics[v[2]] = append(s.metrics[v[2]], f)
			}
		}
	}
	return samples, order, env, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pairedRatio is the median of the run-by-run ratios candidate[i] /
// baseline[i] when both ran the same number of times. make bench runs every
// benchmark once per round, so run i of a candidate and of its baseline sat
// side by side in time: a burst of load from another tenant of the machine
// hits both, where a ratio of medians would compare runs minutes apart.
// Otherwise it is the ratio of the medians.
func pairedRatio(candidate, baseline []float64) float64 {
	return median(pairedRatios(candidate, baseline))
}

// pairedRatios returns the run-by-run ratios, or the ratio of the medians
// alone when the runs do not pair up.
func pairedRatios(candidate, baseline []float64) []float64 {
	if len(candidate) == 0 || len(candidate) != len(baseline) {
		return []float64{median(candidate) / median(baseline)}
	}
	r := make([]float64, len(candidate))
	for i := range candidate {
		r[i] = candidate[i] / baseline[i]
	}
	return r
}

// spread renders the range of xs as "min–max".
func spread(xs []float64) string {
	if len(xs) < 2 {
		return "one run"
	}
	return fmt.Sprintf("%.2f–%.2f", slices.Min(xs), slices.Max(xs))
}

func fmtNs(ns float64) string {
	switch {
	case ns < 0:
		return "–"
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.0f ns", ns)
	}
}

func fmtNum(x float64) string {
	if x < 0 {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

func main() {
	in := flag.String("in", "bench.out", "go test -bench output")
	out := flag.String("out", "docs/performance.md", "report to write")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	defer f.Close()
	samples, order, env, err := parse(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if len(samples) == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: no benchmark lines in", *in)
		os.Exit(1)
	}
	st := map[string]stats{}
	runs := 0
	for name, s := range samples {
		st[name] = stats{median(s.ns), median(s.bytes), median(s.allocs)}
		runs = max(runs, len(s.ns))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Performance\n\n")
	fmt.Fprintf(&b, "Written by `make bench` on %s (%s, %s); do not edit by hand.\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), strings.Join(env, ", "))
	fmt.Fprintf(&b, "Each number is the median of the benchmark's runs: %d rounds, each running every benchmark\n", runs)
	fmt.Fprintf(&b, "once (the last column of the full table gives each one's count). Candidates and their baselines\n")
	fmt.Fprintf(&b, "ran in the same rounds on the same machine, so the **ratios** are the claims; absolute\n")
	fmt.Fprintf(&b, "times move with the load on these shared 2-core machines. A ratio is the median of the\n")
	fmt.Fprintf(&b, "run-by-run ratios (run i of the candidate over run i of its baseline, which ran next to it\n")
	fmt.Fprintf(&b, "in round i of `make bench`), so a burst of load from a neighbour hits both sides of a pair;\n")
	fmt.Fprintf(&b, "the spread is the lowest and highest of those per-round ratios. Tables headed \"measured in\n")
	fmt.Fprintf(&b, "tight alternation\" come from one benchmark that runs candidate and baseline in turn, one\n")
	fmt.Fprintf(&b, "call (or stream) each, timing each on its own, so both share every moment of load; their\n")
	fmt.Fprintf(&b, "ratio is the median over the rounds, the spread its range.\n\n")

	missed := 0
	sections := []string{}
	for _, c := range comparisons {
		if !slices.Contains(sections, c.section) {
			sections = append(sections, c.section)
		}
	}
	for _, a := range absolutes {
		if !slices.Contains(sections, a.section) {
			sections = append(sections, a.section)
		}
	}
	for _, m := range metricTargets {
		if !slices.Contains(sections, m.section) {
			sections = append(sections, m.section)
		}
	}
	for _, a := range alternations {
		if !slices.Contains(sections, a.section) {
			sections = append(sections, a.section)
		}
	}
	for _, sec := range sections {
		fmt.Fprintf(&b, "## %s\n\n", sec)
		header := false
		for _, c := range comparisons {
			if c.section != sec {
				continue
			}
			cs, okc := st[c.candidate]
			bs, okb := st[c.baseline]
			if !header {
				fmt.Fprintf(&b, "| comparison | candidate | baseline | ratio | spread | target | |\n|---|---|---|---|---|---|---|\n")
				header = true
			}
			if !okc || !okb || bs.ns <= 0 {
				fmt.Fprintf(&b, "| %s | not measured | | | | | |\n", c.what)
				continue
			}
			ratios := pairedRatios(samples[c.candidate].ns, samples[c.baseline].ns)
			ratio := median(ratios)
			target, verdict := "reported", ""
			if c.maxRatio > 0 {
				target = fmt.Sprintf("≤ %.2f×", c.maxRatio)
				verdict = "met"
				if ratio > c.maxRatio {
					verdict, missed = "**missed**", missed+1
				}
			}
			fmt.Fprintf(&b, "| %s | %s, %s allocs | %s, %s allocs | %.2f× | %s | %s | %s |\n",
				c.what, fmtNs(cs.ns), fmtNum(cs.allocs), fmtNs(bs.ns), fmtNum(bs.allocs), ratio, spread(ratios), target, verdict)
		}
		if header {
			b.WriteString("\n")
		}
		header = false
		for _, a := range alternations {
			if a.section != sec {
				continue
			}
			if !header {
				fmt.Fprintf(&b, "| measured in tight alternation | candidate | baseline | ratio | spread | target | |\n|---|---|---|---|---|---|---|\n")
				header = true
			}
			smp, ok := samples[a.name]
			if !ok || len(smp.metrics["ratio"]) == 0 {
				fmt.Fprintf(&b, "| %s | not measured | | | | | |\n", a.what)
				continue
			}
			ratios := smp.metrics["ratio"]
			ratio := median(ratios)
			target, verdict := "reported", ""
			if a.max > 0 {
				target = fmt.Sprintf("≤ %.2f×", a.max)
				verdict = "met"
				if ratio > a.max {
					verdict, missed = "**missed**", missed+1
				}
			}
			fmt.Fprintf(&b, "| %s | %s/%s | %s/%s | %.3f× | %s | %s | %s |\n", a.what,
				fmtNs(median(smp.metrics["cand-ns/"+a.unit])), a.unit, fmtNs(median(smp.metrics["base-ns/"+a.unit])), a.unit,
				ratio, spread(ratios), target, verdict)
		}
		if header {
			b.WriteString("\n")
		}
		header = false
		for _, a := range absolutes {
			if a.section != sec {
				continue
			}
			if !header {
				fmt.Fprintf(&b, "| target | measured | target | |\n|---|---|---|---|\n")
				header = true
			}
			s, ok := st[a.name]
			if !ok {
				fmt.Fprintf(&b, "| %s | not measured | | |\n", a.what)
				continue
			}
			var targets []string
			verdict := "met"
			if a.maxNs > 0 {
				targets = append(targets, fmt.Sprintf("≤ %s", fmtNs(a.maxNs)))
				if s.ns > a.maxNs {
					verdict = "**missed**"
				}
			}
			if a.maxAllocs >= 0 {
				targets = append(targets, fmt.Sprintf("≤ %s allocs", fmtNum(a.maxAllocs)))
				if s.allocs > a.maxAllocs {
					verdict = "**missed**"
				}
			}
			if verdict != "met" {
				missed++
			}
			fmt.Fprintf(&b, "| %s | %s, %s allocs, %s B | %s | %s |\n", a.what, fmtNs(s.ns), fmtNum(s.allocs), fmtNum(s.bytes), strings.Join(targets, ", "), verdict)
		}
		for _, m := range metricTargets {
			if m.section != sec {
				continue
			}
			if !header {
				fmt.Fprintf(&b, "| target | measured | target | |\n|---|---|---|---|\n")
				header = true
			}
			smp, ok := samples[m.name]
			if !ok || len(smp.metrics[m.unit]) == 0 {
				fmt.Fprintf(&b, "| %s | not measured | | |\n", m.what)
				continue
			}
			v := median(smp.metrics[m.unit])
			verdict := "met"
			if v > m.max {
				verdict, missed = "**missed**", missed+1
			}
			fmt.Fprintf(&b, "| %s | %s %s | ≤ %s | %s |\n", m.what, strconv.FormatFloat(v, 'f', 2, 64), m.unit, fmtNum(m.max), verdict)
		}
		if header {
			b.WriteString("\n")
		}
	}

	e2e, e2eMissed := e2eReport(samples)
	b.WriteString(e2e)
	missed += e2eMissed

	fmt.Fprintf(&b, "## Every benchmark\n\n| benchmark | time/op | B/op | allocs/op | other metrics | runs |\n|---|---|---|---|---|---|\n")
	for _, name := range order {
		s := st[name]
		var extra []string
		units := make([]string, 0, len(samples[name].metrics))
		for u := range samples[name].metrics {
			units = append(units, u)
		}
		slices.Sort(units)
		for _, u := range units {
			extra = append(extra, strconv.FormatFloat(median(samples[name].metrics[u]), 'f', 2, 64)+" "+u)
		}
		if isE2E(name) {
			extra = []string{"see " + e2eSection}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", name, fmtNs(s.ns), fmtNum(s.bytes), fmtNum(s.allocs), strings.Join(extra, ", "), len(samples[name].ns))
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	fmt.Printf("benchreport: wrote %s (%d benchmarks, %d targets missed)\n", *out, len(order), missed)
}
