package throttle

import (
	"context"
	"testing"
	"time"
)

func TestPeekTakesNothing(t *testing.T) {
	now := time.Unix(1000, 0)
	m := mustMemory(t, WithMemoryClock(func() time.Time { return now }))
	k := Key{Consumer: "peer:10.0.0.1", Bucket: "auth-failures"}
	l := Limit{Rate: 1, Per: time.Minute, Burst: 2}
	for i := 0; i < 10; i++ {
		if d, err := m.Peek(k, l, 1); err != nil || !d.Allowed || d.Remaining != 1 {
			t.Fatalf("peek %d on a full bucket: %+v %v", i, d, err)
		}
	}
	for i := 0; i < 2; i++ {
		if d, _ := m.Allow(context.Background(), k, l, 1); !d.Allowed {
			t.Fatalf("allow %d: %+v", i, d)
		}
	}
	d, _ := m.Peek(k, l, 1)
	if d.Allowed || d.RetryAfter != time.Minute {
		t.Fatalf("peek on an empty bucket must say denied with the wait: %+v", d)
	}
	now = now.Add(time.Minute)
	if d, _ := m.Peek(k, l, 1); !d.Allowed {
		t.Fatalf("after a refill: %+v", d)
	}
	if _, err := m.Peek(k, Limit{}, 1); err == nil {
		t.Fatal("invalid limit must be an error")
	}
}
