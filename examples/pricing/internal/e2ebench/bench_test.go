package e2ebench

import (
	"flag"
	"os"
	"testing"
)

var (
	rounds = flag.Int("e2e.rounds", DefaultConfig().Rounds, "rounds of six slices per case")
	slice  = flag.Duration("e2e.slice", DefaultConfig().Slice, "target wall time of the slowest server's slices")
)

// BenchmarkE2E runs every case once, whatever b.N: each is its own
// alternation of many slices (run it with -benchtime=1x). See the package
// documentation for what it reports.
//
//	go test -run='^$' -bench=E2E -benchtime=1x ./examples/pricing/internal/e2ebench
func BenchmarkE2E(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Rounds, cfg.Slice = *rounds, *slice
	s := startServers(b, cfg.Callers, os.Stderr)
	for _, c := range Cases {
		b.Run(c.Name, func(b *testing.B) {
			res, err := Run(b.Context(), s, c, cfg)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range res.Metrics() {
				b.ReportMetric(m.Value, m.Unit)
			}
		})
	}
}
