package interceptors

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/throttle"
)

// A consumer stuck in a loop or a flood of forged tokens must not flood the
// log: each reason has its own budget, and what was suppressed is counted on
// the next line of that reason.
func TestDenialLogIsLimitedPerReason(t *testing.T) {
	var buf bytes.Buffer
	g, _, _ := initGuard(t, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))),
		WithLogLimit(throttle.Limit{Rate: 1, Per: time.Minute, Burst: 3}))
	now := time.Unix(1_800_000_000, 0)
	g.logBudget = mustMemory(t, throttle.WithMemoryClock(func() time.Time { return now }))

	ctx := context.Background()
	for i := 0; i < 10; i++ {
		g.log(ctx, "/m", ReasonRateLimited, nil, "bucket empty")
	}
	g.log(ctx, "/m", ReasonTokenInvalid, nil, "signature invalid")
	lines := logLines(t, &buf)
	if got := count(lines, ReasonRateLimited); got != 3 {
		t.Fatalf("%d RATE_LIMITED lines, want the burst of 3", got)
	}
	if got := count(lines, ReasonTokenInvalid); got != 1 {
		t.Fatalf("another reason has its own budget: %d lines", got)
	}

	buf.Reset()
	now = now.Add(time.Minute)
	g.log(ctx, "/m", ReasonRateLimited, nil, "bucket empty")
	lines = logLines(t, &buf)
	if len(lines) != 1 || lines[0]["suppressed"] != float64(7) {
		t.Fatalf("after a refill the next line must report the 7 suppressed: %v", lines)
	}

	// A zero limit logs everything.
	buf.Reset()
	g2, _, _ := initGuard(t, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))), WithLogLimit(throttle.Limit{}))
	for i := 0; i < 100; i++ {
		g2.log(ctx, "/m", ReasonRateLimited, nil, "bucket empty")
	}
	if got := strings.Count(buf.String(), "\n"); got != 100 {
		t.Fatalf("WithLogLimit(zero): %d lines, want 100", got)
	}
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func count(lines []map[string]any, reason string) int {
	n := 0
	for _, l := range lines {
		if l["reason"] == reason {
			n++
		}
	}
	return n
}
