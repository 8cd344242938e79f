package e2ebench

import (
	"math"
	"regexp"
	"testing"
)

// tinyConfig is the harness at its smallest: one round of slices of two
// calls per caller, no calibration.
var tinyConfig = Config{Callers: 8, Conns: 2, Rounds: 1, WarmCalls: 2}

// TestHarness runs every case of the benchmark in a tiny configuration,
// against all three servers in their own process, and checks what it
// measured and reports.
func TestHarness(t *testing.T) {
	s, _ := testServers(t, tinyConfig.Callers)
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) {
			res, err := Run(t.Context(), s, c, tinyConfig)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Slices) != len(roundOrder) {
				t.Fatalf("%d slices, want %d", len(res.Slices), len(roundOrder))
			}
			for i, sl := range res.Slices {
				if sl.Server != roundOrder[i] || sl.Calls != 16 || sl.Wall <= 0 || sl.CPU < 0 {
					t.Errorf("slice %d: %+v, want server %s, 16 calls", i, sl, roundOrder[i])
				}
			}
			for _, kind := range []string{Bare, Tollgate, Baseline} {
				sm := res.Summary(kind)
				if sm.Calls != 32 || sm.P50 <= 0 || sm.P99 < sm.P50 || sm.CallsPerSec <= 0 {
					t.Errorf("%s: %+v", kind, sm)
				}
			}
			for _, base := range []string{Bare, Baseline} {
				if n := len(res.Ratios(Tollgate, base)); n != 2 {
					t.Errorf("%d tollgate/%s pairs, want 2 (one per half-round)", n, base)
				}
			}
			units := map[string]bool{}
			unitRE := regexp.MustCompile(`^\S+$`)
			for _, m := range res.Metrics() {
				if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) || m.Value < 0 || !unitRE.MatchString(m.Unit) {
					t.Errorf("metric %v %q", m.Value, m.Unit)
				}
				units[m.Unit] = true
			}
			for _, u := range []string{"tollgate-cpu-us/call", "bare-allocs/call", "baseline-p99-us", "tollgate/bare-cpu", "tollgate/baseline-cpu-lo", "tollgate/baseline-cpu-hi", "pairs"} {
				if !units[u] {
					t.Errorf("no metric %q", u)
				}
			}
		})
	}
}
