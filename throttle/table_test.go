package throttle

import (
	"context"
	"testing"
	"time"
)

// hourLimit refills a token an hour: on a fake clock moved by nanoseconds,
// or not at all, nothing refills during a test.
func hourLimit(burst int) Limit { return Limit{Rate: 1, Per: time.Hour, Burst: burst} }

// A call for a bucket already held takes no lock: it completes while the
// test holds every shard's lock. (Were it to take one, it would block for
// good, and the test binary's timeout would report where.)
func TestMemoryExistingKeyTakesNoLock(t *testing.T) {
	m, _ := newTestMemory()
	ctx := context.Background()
	key := Key{Consumer: "c", Bucket: "b"}
	limit := hourLimit(3)
	if d, _ := m.Allow(ctx, key, limit, 1); !d.Allowed {
		t.Fatal("first call denied")
	}
	for i := range m.shards {
		m.shards[i].mu.Lock()
	}
	d1, _ := m.Allow(ctx, key, limit, 1)
	d2, _ := m.Allow(ctx, key, limit, 1)
	d3, _ := m.Allow(ctx, key, limit, 1)
	for i := range m.shards {
		m.shards[i].mu.Unlock()
	}
	if !d1.Allowed || d1.Remaining != 1 || !d2.Allowed || d2.Remaining != 0 || d3.Allowed {
		t.Fatalf("without the lock: %+v, %+v, %+v; want 2 admitted, then denied", d1, d2, d3)
	}
}

// The ABA case: a caller that found key h at a slot, then was slow, must not
// charge that slot once h was removed and another key, with the same tat (a
// frozen clock makes equal tats likely) and the same home slot, inserted.
// With tombstones the slot is dead, not reused, and its CAS fails.
func TestChargeRemovedSlotFails(t *testing.T) {
	var tab bucketTable
	const a, b = 1, 1 + 8<<20 // the same home slot in any array of up to 2^23 slots
	tab.insert(a, 100)
	sl, tat := tab.find(a)
	if !tab.remove(sl, tat) {
		t.Fatal("remove failed with no update in between")
	}
	tab.insert(b, 100)
	var d Decision
	if charge(&d, sl, tat, 0, hourLimit(10), 1) {
		t.Fatalf("charged a removed slot: %+v", d)
	}
	if _, got := tab.find(b); got != 100 {
		t.Errorf("key b: tat %d, want 100 untouched", got)
	}
	if sl, _ := tab.find(a); sl != nil {
		t.Error("key a found after its removal")
	}
}

// A removal judged on a value an update changed since fails, and the caller
// judges again; the update is kept.
func TestRemoveLosesToUpdate(t *testing.T) {
	var tab bucketTable
	tab.insert(5, 100)
	sl, judged := tab.find(5)
	var d Decision
	if !charge(&d, sl, judged, 0, hourLimit(10), 1) || !d.Allowed {
		t.Fatalf("charge: %+v", d)
	}
	if tab.remove(sl, judged) {
		t.Fatal("removed a bucket from a value an update had changed")
	}
	if _, tat := tab.find(5); tat != 100+int64(time.Hour) {
		t.Fatalf("tat %d, want the update's %d", tat, 100+int64(time.Hour))
	}
	if tab.n != 1 || tab.dead != 0 {
		t.Errorf("n %d, dead %d after a failed removal", tab.n, tab.dead)
	}
}

// A rebuild freezes the old array's slots: a caller still holding one cannot
// charge it, a probe of the old array sends it to the lock, and the new
// array holds what was charged before the freeze.
func TestRebuildFreezesOldSlots(t *testing.T) {
	var tab bucketTable
	tab.insert(5, 100)
	tab.insert(6, 200)
	old := tab.current()
	sl5, tat5 := tab.find(5)
	sl6, tat6 := tab.find(6)
	var d Decision
	if !charge(&d, sl6, tat6, 0, hourLimit(10), 1) { // before the freeze: carried over
		t.Fatal("charge before the rebuild failed")
	}
	tab.rebuild(len(old))
	if charge(&d, sl5, tat5, 0, hourLimit(10), 1) {
		t.Fatal("charged a frozen slot")
	}
	if sl, _ := lookup(old, 5); sl != nil {
		t.Fatal("lookup in the old array found a live slot")
	}
	if _, tat := tab.find(5); tat != 100 {
		t.Errorf("key 5: tat %d after the rebuild, want 100", tat)
	}
	if _, tat := tab.find(6); tat != 200+int64(time.Hour) {
		t.Errorf("key 6: tat %d after the rebuild, want the charge before it, %d", tat, 200+int64(time.Hour))
	}
}
