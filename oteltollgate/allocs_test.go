package oteltollgate

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/interceptors"
)

// Recording an admitted cache-hit call (its decision and its verification
// time) allocates nothing, on the SDK with the Prometheus exporter as a
// user runs it: the attribute sets were built at Init.
func TestAllowedHitAllocatesNothing(t *testing.T) {
	mp, _ := promProvider(t)
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unregister()
	const full = "/" + methodGet
	m.ObserveInit(interceptors.GuardInfo{Methods: []interceptors.MethodInfo{{FullMethod: full, Throttled: true, Bucket: "reads"}}})
	hit := interceptors.Event{Method: full, Decision: interceptors.DecisionAllowed, Stage: interceptors.StageCall,
		Bucket: "reads", Consumer: "azp:web", Cache: interceptors.CacheHit, VerifyDuration: 180 * time.Nanosecond}
	msg := interceptors.Event{Method: full, Decision: interceptors.DecisionAllowed, Stage: interceptors.StageMessage,
		Bucket: "reads", Consumer: "azp:web"}
	m.Observe(hit) // the first Add of a series creates it
	m.Observe(msg)
	if n := testing.AllocsPerRun(1000, func() { m.Observe(hit) }); n != 0 {
		t.Fatalf("an admitted cache-hit call allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.Observe(msg) }); n != 0 {
		t.Fatalf("an admitted stream message allocates %v times", n)
	}
}
