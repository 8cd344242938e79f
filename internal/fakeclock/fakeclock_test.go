package fakeclock

import (
	"sync"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := New(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %v, want %v", c.Now(), t0)
	}
	c.Advance(90 * time.Second)
	c.Advance(-30 * time.Second)
	if got := c.Now().Sub(t0); got != time.Minute {
		t.Fatalf("after +90s -30s: %v", got)
	}
	c.Set(t0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Advance(time.Nanosecond)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got := c.Now().Sub(t0); got != 8000*time.Nanosecond {
		t.Fatalf("8 goroutines x 1000 ns: %v (lost updates)", got)
	}
}

func TestAfterFunc(t *testing.T) {
	c := New(time.Unix(1_800_000_000, 0))
	var fired []string
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "2s") })
	stop := c.AfterFunc(3*time.Second, func() { fired = append(fired, "3s") })
	c.AfterFunc(0, func() { fired = append(fired, "now") })
	if len(fired) != 1 || fired[0] != "now" || c.Timers() != 2 {
		t.Fatalf("after scheduling: fired %v, %d waiting", fired, c.Timers())
	}
	c.Advance(time.Second)
	if len(fired) != 1 {
		t.Fatalf("fired early: %v", fired)
	}
	c.Advance(time.Second)
	if len(fired) != 2 || fired[1] != "2s" {
		t.Fatalf("at 2s: %v", fired)
	}
	if !stop() || stop() {
		t.Fatal("stop must report true once, for a timer not yet run")
	}
	c.Advance(time.Hour)
	if len(fired) != 2 || c.Timers() != 0 {
		t.Fatalf("a stopped timer ran: %v", fired)
	}
}
