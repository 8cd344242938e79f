package e2ebench

import (
	"math"
	"slices"
	"time"
)

// Summary is one server's totals over a case's measured slices.
type Summary struct {
	Calls         int
	Wall          time.Duration
	CPUPerCall    time.Duration // server CPU per call
	AllocsPerCall float64
	CallsPerSec   float64       // while its slices ran
	P50, P99      time.Duration // client-side latency
}

// Summary returns the totals of server kind.
func (r *Result) Summary(kind string) Summary {
	var s Summary
	var cpu time.Duration
	var allocs uint64
	for _, sl := range r.Slices {
		if sl.Server != kind {
			continue
		}
		s.Calls += sl.Calls
		s.Wall += sl.Wall
		cpu += sl.CPU
		allocs += sl.Allocs
	}
	if s.Calls == 0 {
		return s
	}
	s.CPUPerCall = cpu / time.Duration(s.Calls)
	s.AllocsPerCall = float64(allocs) / float64(s.Calls)
	if s.Wall > 0 {
		s.CallsPerSec = float64(s.Calls) / s.Wall.Seconds()
	}
	lat := r.latencies[kind]
	slices.Sort(lat)
	s.P50, s.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return s
}

// quantile returns the q-quantile of sorted xs by nearest rank, or the
// zero value of none.
func quantile[T int64 | float64 | time.Duration](xs []T, q float64) T {
	if len(xs) == 0 {
		var zero T
		return zero
	}
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// Ratios returns the per-pair ratios of server CPU per call, cand over
// base: one pair per half-round, the two slices of that half, which ran next
// to each other (or with one slice between them) in time.
func (r *Result) Ratios(cand, base string) []float64 {
	var out []float64
	for h := 0; h+3 <= len(r.Slices); h += 3 {
		var c, b *SliceResult
		for i := h; i < h+3; i++ {
			switch r.Slices[i].Server {
			case cand:
				c = &r.Slices[i]
			case base:
				b = &r.Slices[i]
			}
		}
		if c == nil || b == nil || c.Calls == 0 || b.Calls == 0 || b.CPU <= 0 {
			continue
		}
		out = append(out, (float64(c.CPU)/float64(c.Calls))/(float64(b.CPU)/float64(b.Calls)))
	}
	return out
}

// Spread is the median of a list of ratios and its 10th and 90th
// percentiles.
type Spread struct{ Median, Lo, Hi float64 }

// SpreadOf returns the spread of xs (all zero for none).
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Lo: quantile(s, 0.10), Hi: quantile(s, 0.90)}
}

// Metric is one value for testing.B.ReportMetric.
type Metric struct {
	Value float64
	Unit  string
}

// Metrics returns what BenchmarkE2E reports for the case, as
// internal/benchreport reads it: per server (bare, tollgate, baseline)
// "<server>-cpu-us/call", "<server>-allocs/call", "<server>-calls/s",
// "<server>-p50-us", "<server>-p99-us"; per ratio (tollgate/bare,
// tollgate/baseline) "<ratio>-cpu" (median of the per-pair ratios) with
// "<ratio>-cpu-lo" and "<ratio>-cpu-hi" (their 10th and 90th percentiles);
// and "pairs" (pairs per ratio) and "calls/slice".
func (r *Result) Metrics() []Metric {
	var ms []Metric
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	for _, kind := range []string{Bare, Tollgate, Baseline} {
		s := r.Summary(kind)
		ms = append(ms,
			Metric{us(s.CPUPerCall), kind + "-cpu-us/call"},
			Metric{s.AllocsPerCall, kind + "-allocs/call"},
			Metric{s.CallsPerSec, kind + "-calls/s"},
			Metric{us(s.P50), kind + "-p50-us"},
			Metric{us(s.P99), kind + "-p99-us"},
		)
	}
	pairs := 0
	for _, base := range []string{Bare, Baseline} {
		xs := r.Ratios(Tollgate, base)
		pairs = len(xs)
		sp := SpreadOf(xs)
		name := Tollgate + "/" + base + "-cpu"
		ms = append(ms, Metric{sp.Median, name}, Metric{sp.Lo, name + "-lo"}, Metric{sp.Hi, name + "-hi"})
	}
	perSlice := 0
	if len(r.Slices) > 0 {
		perSlice = r.Slices[0].Calls
	}
	return append(ms, Metric{float64(pairs), "pairs"}, Metric{float64(perSlice), "calls/slice"})
}
