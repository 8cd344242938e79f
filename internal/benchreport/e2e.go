package main

import (
	"fmt"
	"strconv"
	"strings"
)

// The end-to-end section reads BenchmarkE2E's sub-benchmarks
// (examples/pricing/internal/e2ebench). Each reports, for its three servers
// (bare, tollgate, baseline), "<server>-calls/s", "<server>-p50-us",
// "<server>-p99-us", "<server>-cpu-us/call" and "<server>-allocs/call", and
// for the ratios of server CPU per call "tollgate/bare-cpu" and
// "tollgate/baseline-cpu", each the median of its per-pair ratios, with
// "-lo" and "-hi" their 10th and 90th percentiles; besides "pairs" and
// "calls/slice".

const e2eSection = "End to end over loopback TCP (issue 8)"

// e2eCase is one case of BenchmarkE2E and its targets. A target is judged
// by the median alone; the spread is shown beside it.
type e2eCase struct {
	name           string
	what           string
	maxVsBare      float64 // tollgate/bare server CPU per call; 0: reported only
	maxExtraAllocs float64 // tollgate − bare allocations per call; < 0: reported only
	maxVsBaseline  float64 // tollgate/baseline server CPU per call; 0: reported only
}

var e2eCases = []e2eCase{
	{"BenchmarkE2E/unary-hit", "SetPrice, each caller reusing its HS256 token (the guard's verified-token cache hits)", 1.05, 3, 0},
	{"BenchmarkE2E/unary-miss-HS256", "SetPrice with a new HS256 token on every call (no cache hit)", 0, -1, 0.70},
	{"BenchmarkE2E/unary-miss-EdDSA", "SetPrice with a new Ed25519 token on every call (no cache hit)", 0, -1, 0.95},
	{"BenchmarkE2E/stream-hit", "ListPrices, a server stream of 4 prices, each caller reusing its HS256 token", 1.05, 3, 0},
}

var e2eServers = []string{"bare", "tollgate", "baseline"}

// isE2E reports whether a benchmark belongs to the end-to-end section, whose
// many metrics stay out of the table of every benchmark.
func isE2E(name string) bool { return strings.HasPrefix(name, "BenchmarkE2E/") }

// e2eReport renders the end-to-end section and counts the targets it
// missed. It is empty when BenchmarkE2E did not run.
func e2eReport(samples map[string]*sample) (string, int) {
	ran := false
	for _, c := range e2eCases {
		if _, ok := samples[c.name]; ok {
			ran = true
		}
	}
	if !ran {
		return "", 0
	}
	var b strings.Builder
	missed := 0
	fmt.Fprintf(&b, "## %s\n\n", e2eSection)
	b.WriteString("The pricing service over loopback TCP, served three ways by one separate process: **bare**\n")
	b.WriteString("(no interceptor), **tollgate** (the guard as pricing-server builds it, its throttle\n")
	b.WriteString("`throttle.Memory` asked with every limit scaled up so that nothing is refused) and\n")
	b.WriteString("**baseline** (go-grpc-middleware auth + golang-jwt `ParseWithClaims`, a hand-written\n")
	b.WriteString("permission and seller_id ownership check, go-grpc-middleware ratelimit over x/time/rate\n")
	b.WriteString("limiters per consumer, same scaled limits). One Go client, 32 callers on 4 connections,\n")
	b.WriteString("loads them in turn in slices of a fixed number of calls, in the order bare, tollgate,\n")
	b.WriteString("baseline, baseline, tollgate, bare, and again. Server CPU (getrusage of the server\n")
	b.WriteString("process, user + system) and allocations (runtime/metrics) are read around every slice;\n")
	b.WriteString("latencies are the client's. A ratio is the median of the per-pair ratios of server CPU\n")
	b.WriteString("per call, a pair being the tollgate slice and its neighbour in the same half-round; the\n")
	b.WriteString("spread is the 10th–90th percentile of those pairs. Targets are judged by the median.\n\n")
	for _, c := range e2eCases {
		s, ok := samples[c.name]
		fmt.Fprintf(&b, "### %s: %s\n\n", strings.TrimPrefix(c.name, "BenchmarkE2E/"), c.what)
		if !ok {
			b.WriteString("Not measured.\n\n")
			if c.maxVsBare > 0 || c.maxExtraAllocs >= 0 || c.maxVsBaseline > 0 {
				missed++
			}
			continue
		}
		m := func(unit string) float64 { return median(s.metrics[unit]) }
		row := func(label string, f func(server string) string) {
			fmt.Fprintf(&b, "| %s |", label)
			for _, srv := range e2eServers {
				fmt.Fprintf(&b, " %s |", f(srv))
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "| %d pairs, %s calls per slice | bare | tollgate | baseline |\n|---|---|---|---|\n",
			int(m("pairs")), fmtNum(m("calls/slice")))
		row("throughput", func(srv string) string { return fmtRate(m(srv + "-calls/s")) })
		row("p50 latency", func(srv string) string { return fmtNs(us(m(srv + "-p50-us"))) })
		row("p99 latency", func(srv string) string { return fmtNs(us(m(srv + "-p99-us"))) })
		row("server CPU per call", func(srv string) string { return fmtNs(us(m(srv + "-cpu-us/call"))) })
		row("allocs per call", func(srv string) string { return fmtFixed(m(srv+"-allocs/call"), 1) })
		b.WriteString("\n| ratio | median | spread | target | |\n|---|---|---|---|---|\n")
		for _, r := range []struct {
			base string
			max  float64
		}{{"bare", c.maxVsBare}, {"baseline", c.maxVsBaseline}} {
			name := "tollgate/" + r.base + "-cpu"
			ratio := m(name)
			target, verdict := "reported", ""
			if r.max > 0 {
				target, verdict = fmt.Sprintf("≤ %.2f×", r.max), "met"
				if ratio < 0 || ratio > r.max {
					verdict, missed = "**missed**", missed+1
				}
			}
			value, spread := "not measured", ""
			if ratio >= 0 {
				value = fmt.Sprintf("%.3f×", ratio)
				spread = fmt.Sprintf("%.2f–%.2f", m(name+"-lo"), m(name+"-hi"))
			}
			fmt.Fprintf(&b, "| tollgate/%s server CPU per call | %s | %s | %s | %s |\n", r.base, value, spread, target, verdict)
		}
		tg, bare := m("tollgate-allocs/call"), m("bare-allocs/call")
		measured := tg >= 0 && bare >= 0
		target, verdict, value := "reported", "", "not measured"
		if measured {
			value = fmt.Sprintf("%+.1f", tg-bare)
		}
		if c.maxExtraAllocs >= 0 {
			target, verdict = fmt.Sprintf("≤ +%s", fmtNum(c.maxExtraAllocs)), "met"
			if !measured || tg-bare > c.maxExtraAllocs {
				verdict, missed = "**missed**", missed+1
			}
		}
		fmt.Fprintf(&b, "| tollgate − bare allocs per call | %s | | %s | %s |\n\n", value, target, verdict)
	}
	return b.String(), missed
}

// us converts microseconds (the e2e metrics' unit) to nanoseconds, keeping
// the -1 of a missing metric.
func us(x float64) float64 {
	if x < 0 {
		return -1
	}
	return x * 1e3
}

// fmtRate renders calls per second with thousands separated.
func fmtRate(x float64) string {
	if x < 0 {
		return "–"
	}
	s := strconv.FormatInt(int64(x+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s + " calls/s"
}

func fmtFixed(x float64, prec int) string {
	if x < 0 {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}
