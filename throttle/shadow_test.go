package throttle

import (
	"context"
	"errors"
	"testing"
	"time"
)

// limiterFunc adapts a function to Limiter.
type limiterFunc func(ctx context.Context, key Key, limit Limit, cost int) (Decision, error)

func (f limiterFunc) Allow(ctx context.Context, key Key, limit Limit, cost int) (Decision, error) {
	return f(ctx, key, limit, cost)
}

func TestShadow(t *testing.T) {
	limit := PerSecond(1, 1)
	denied := Decision{Limit: limit, RetryAfter: time.Second, ResetAfter: time.Second, Source: "redis"}
	allowed := Decision{Allowed: true, Limit: limit, ResetAfter: time.Second, Source: "redis"}
	errStore := errors.New("store down")

	tests := []struct {
		name       string
		decision   Decision
		err        error
		nilReport  bool
		want       Decision
		wantReport bool
	}{
		{"denied is admitted and reported", denied, nil, false,
			Decision{Allowed: true, Shadowed: true, Limit: limit, RetryAfter: time.Second, ResetAfter: time.Second, Source: "redis"}, true},
		{"allowed passes unchanged, unreported", allowed, nil, false, allowed, false},
		{"error passes unchanged, unreported", denied, errStore, false, denied, false},
		{"nil report still admits", denied, nil, true,
			Decision{Allowed: true, Shadowed: true, Limit: limit, RetryAfter: time.Second, ResetAfter: time.Second, Source: "redis"}, false},
	}
	type ctxKey struct{}
	key := Key{Consumer: "billing", Bucket: "quotes"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.WithValue(context.Background(), ctxKey{}, "call")
			inner := limiterFunc(func(gotCtx context.Context, gotKey Key, gotLimit Limit, gotCost int) (Decision, error) {
				if gotCtx != ctx || gotKey != key || gotLimit != limit || gotCost != 3 {
					t.Errorf("inner limiter got (%v, %+v, %v, %d), want the caller's arguments", gotCtx, gotKey, gotLimit, gotCost)
				}
				return tt.decision, tt.err
			})
			var reports []Decision
			report := func(gotCtx context.Context, gotKey Key, d Decision) {
				if gotCtx != ctx || gotKey != key {
					t.Errorf("report got (%v, %+v), want the caller's context and key", gotCtx, gotKey)
				}
				reports = append(reports, d)
			}
			if tt.nilReport {
				report = nil
			}

			sl, err := Shadow(inner, report)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sl.Allow(ctx, key, limit, 3)
			if err != tt.err {
				t.Errorf("err = %v, want %v unchanged", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("decision:\n got %+v\nwant %+v", got, tt.want)
			}
			switch {
			case tt.wantReport && (len(reports) != 1 || reports[0] != tt.decision):
				t.Errorf("reports = %+v, want exactly the denying decision %+v", reports, tt.decision)
			case !tt.wantReport && len(reports) != 0:
				t.Errorf("reports = %+v, want none", reports)
			}
		})
	}
}

// Denied calls take no tokens under shadow either, so the buckets follow
// what enforcing the limit would do.
func TestShadowMemory(t *testing.T) {
	m, c := newTestMemory()
	reported := 0
	l, err := Shadow(m, func(context.Context, Key, Decision) { reported++ })
	if err != nil {
		t.Fatal(err)
	}
	limit := Limit{Rate: 1, Per: time.Second, Burst: 2}
	key := Key{Consumer: "billing", Bucket: "quotes"}

	var shadowed []bool
	for range 5 {
		d, err := l.Allow(context.Background(), key, limit, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed {
			t.Fatalf("shadow denied: %+v", d)
		}
		shadowed = append(shadowed, d.Shadowed)
	}
	want := []bool{false, false, true, true, true}
	for i := range want {
		if shadowed[i] != want[i] {
			t.Fatalf("Shadowed per call = %v, want %v", shadowed, want)
		}
	}
	if reported != 3 {
		t.Errorf("reported %d calls, want 3", reported)
	}
	// One interval later exactly one token is back: the shadowed calls took
	// none.
	c.Advance(time.Second)
	if d, _ := m.Allow(context.Background(), key, limit, 1); !d.Allowed {
		t.Error("a token did not come back after one interval")
	}
	if d, _ := m.Allow(context.Background(), key, limit, 1); d.Allowed {
		t.Error("two tokens came back after one interval")
	}

	if _, err := l.Allow(context.Background(), key, Limit{}, 1); !errors.Is(err, ErrInvalidLimit) {
		t.Errorf("invalid limit under shadow: err = %v, want ErrInvalidLimit", err)
	}
}

// A nil limiter is refused when the shadow is built, not on the request
// path.
func TestShadowNilLimiter(t *testing.T) {
	if l, err := Shadow(nil, nil); err == nil || l != nil {
		t.Fatalf("Shadow(nil) = %v, %v; want an error", l, err)
	}
}
