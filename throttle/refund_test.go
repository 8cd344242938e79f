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

// Reserve-then-refund under concurrency: 100 goroutines each reserve one
// token of a burst of 5 and refund it only when they were told to succeed;
// exactly 5 reservations are ever granted while none is refunded, so no
// more than the burst can be spent on failures at once.
func TestRefundReservationsExact(t *testing.T) {
	m, _ := newTestMemory()
	ctx := context.Background()
	k := Key{Consumer: "peer:10.0.0.2", Bucket: "auth-failures"}
	l := Limit{Rate: 1, Per: time.Hour, Burst: 5}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted int
	)
	for range 100 {
		wg.Go(func() {
			if d, _ := m.Allow(ctx, k, l, 1); d.Allowed {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 5 {
		t.Fatalf("%d reservations granted, want the burst of 5", granted)
	}
}
