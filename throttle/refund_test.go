package throttle

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Refund gives back what Allow took, exactly, and never makes a bucket
// fuller than full.
func TestRefund(t *testing.T) {
	m, c := newTestMemory()
	ctx := context.Background()
	k := Key{Consumer: "peer:10.0.0.1", Bucket: "auth-failures"}
	l := Limit{Rate: 1, Per: time.Minute, Burst: 2}

	// Take both tokens, give one back: one call passes, the next does not.
	for i := range 2 {
		if d, _ := m.Allow(ctx, k, l, 1); !d.Allowed {
			t.Fatalf("allow %d: %+v", i, d)
		}
	}
	if err := m.Refund(k, l, 1); err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Allow(ctx, k, l, 1); !d.Allowed {
		t.Fatalf("after a refund: %+v", d)
	}
	if d, _ := m.Allow(ctx, k, l, 1); d.Allowed || d.RetryAfter != time.Minute {
		t.Fatalf("the refund gave back more than one token: %+v", d)
	}

	// A refund on a full bucket (or one never touched) changes nothing.
	c.Advance(time.Hour)
	for range 5 {
		if err := m.Refund(k, l, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Refund(Key{Consumer: "never", Bucket: "seen"}, l, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if d, _ := m.Allow(ctx, k, l, 1); !d.Allowed {
			t.Fatalf("allow %d after refunds on a full bucket: %+v", i, d)
		}
	}
	if d, _ := m.Allow(ctx, k, l, 1); d.Allowed {
		t.Fatalf("refunds on a full bucket made it hold more than its burst: %+v", d)
	}
	if err := m.Refund(k, Limit{}, 1); err == nil {
		t.Fatal("invalid limit must be an error")
	}
}

// Reserve-then-refund under concurrency, as the guard charges failed
// authentications: 200 goroutines each reserve a token of a burst of 5 and
// refund it when their check "succeeds" (every other one). Refunds hand the
// tokens on, but those kept, the failures, can never exceed the burst, and
// what is left after is exactly the burst minus the failures.
func TestRefundReservationsExact(t *testing.T) {
	m, _ := newTestMemory() // the clock stands still: nothing refills
	ctx := context.Background()
	k := Key{Consumer: "peer:10.0.0.2", Bucket: "auth-failures"}
	l := Limit{Rate: 1, Per: time.Hour, Burst: 5}
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		kept, refunded int
	)
	for i := range 200 {
		wg.Go(func() {
			d, err := m.Allow(ctx, k, l, 1)
			if err != nil || !d.Allowed {
				return
			}
			if i%2 == 0 {
				if err := m.Refund(k, l, 1); err != nil {
					t.Error(err)
				}
				mu.Lock()
				refunded++
				mu.Unlock()
				return
			}
			mu.Lock()
			kept++
			mu.Unlock()
		})
	}
	wg.Wait()
	if kept > 5 {
		t.Fatalf("%d failures charged, more than the burst of 5", kept)
	}
	if refunded == 0 {
		t.Fatal("no reservation was refunded: the test exercised nothing")
	}
	left := 0
	for {
		if d, _ := m.Allow(ctx, k, l, 1); !d.Allowed {
			break
		}
		left++
	}
	if left != 5-kept {
		t.Fatalf("%d tokens left after %d kept reservations, want %d", left, kept, 5-kept)
	}
}
