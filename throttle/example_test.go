package throttle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/throttle"
)

// A consumer calling every 100ms against 5 calls a second with a burst of 3:
// the burst goes first, then one call in two passes. The clock is driven by
// hand so that the output is exact; a service leaves it to time.Now.
func ExampleMemory() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := throttle.NewMemory(throttle.WithMemoryClock(func() time.Time { return now }))
	if err != nil {
		fmt.Println(err)
		return
	}
	limit := throttle.PerSecond(5, 3)
	key := throttle.Key{Consumer: "billing", Bucket: "quotes"}

	for i := range 8 {
		d, err := l.Allow(context.Background(), key, limit, 1)
		if err != nil {
			fmt.Println(err)
			return
		}
		if d.Allowed {
			fmt.Printf("t=%v allowed, %d left\n", time.Duration(i)*100*time.Millisecond, d.Remaining)
		} else {
			fmt.Printf("t=%v denied, retry after %v\n", time.Duration(i)*100*time.Millisecond, d.RetryAfter)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// Output:
	// t=0s allowed, 2 left
	// t=100ms allowed, 1 left
	// t=200ms allowed, 1 left
	// t=300ms allowed, 0 left
	// t=400ms allowed, 0 left
	// t=500ms denied, retry after 100ms
	// t=600ms allowed, 0 left
	// t=700ms denied, retry after 100ms
}

// Shadow watches a new limit on live traffic: every call passes, and the
// ones the limit would reject are reported.
func ExampleShadow() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mem, err := throttle.NewMemory(throttle.WithMemoryClock(func() time.Time { return now }))
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := throttle.Shadow(mem, func(_ context.Context, key throttle.Key, d throttle.Decision) {
		fmt.Printf("would deny %s/%s, retry after %v\n", key.Consumer, key.Bucket, d.RetryAfter)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	limit := throttle.Limit{Rate: 2, Per: time.Minute, Burst: 2}
	key := throttle.Key{Consumer: "search", Bucket: "export"}

	for range 3 {
		d, _ := l.Allow(context.Background(), key, limit, 1)
		fmt.Printf("allowed=%v shadowed=%v\n", d.Allowed, d.Shadowed)
	}
	// Output:
	// allowed=true shadowed=false
	// allowed=true shadowed=false
	// would deny search/export, retry after 30s
	// allowed=true shadowed=true
}
