package interceptors

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/benchpair"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/throttle"
)

// BenchmarkStreamThrottle measures what per-message throttling costs a
// client stream: one Upload stream of 1,000 messages through a guard whose
// memory limiter charges every message (a bucket too large to refuse any)
// against the same stream through a guard that throttles nothing, run in
// alternation. Both check ownership on every message.
//
//	go test -run=^$ -bench=BenchmarkStreamThrottle -benchmem ./interceptors
func BenchmarkStreamThrottle(b *testing.B) {
	const messages = 1000
	key := newTestKey(b, testKID)
	mem, err := throttle.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	huge := throttle.Limit{Rate: 1_000_000_000, Per: time.Second, Burst: 1_000_000_000}
	throttled, stopT := benchGuardServer(b, key, WithLimiter(mem), WithDefaultThrottle(huge))
	defer stopT()
	plain, stopP := benchGuardServer(b, key)
	defer stopP()
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key.sign(b, claims(t0))))
	msg := &testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "item"}
	upload := func(c testpb.TestServiceClient) func() {
		return func() {
			stream, err := c.Upload(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for range messages {
				if err := stream.Send(msg); err != nil {
					b.Fatal(err)
				}
			}
			resp, err := stream.CloseAndRecv()
			if err != nil || resp.GetCount() != messages {
				b.Fatalf("upload: %d messages, %v", resp.GetCount(), err)
			}
		}
	}
	upload(throttled)() // warm up: connect, verify and cache the token
	upload(plain)()
	benchpair.Alternate(b, messages, "msg", upload(throttled), upload(plain))
}

// BenchmarkCacheHitOverBudget measures a cache-hit unary call (Get, HS256)
// from a peer that has spent its budget of failed authentications against
// the same call from a peer that has not, on two guards in alternation: a
// verified token costs the same whatever its neighbours did.
//
//	go test -run=^$ -bench=BenchmarkCacheHitOverBudget -benchmem ./interceptors
func BenchmarkCacheHitOverBudget(b *testing.B) {
	key := newTestKey(b, testKID)
	budget := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 5}
	over, stopO := benchGuardServer(b, key, WithAuthFailureLimit(budget))
	defer stopO()
	fresh, stopF := benchGuardServer(b, key, WithAuthFailureLimit(budget))
	defer stopF()
	bg := context.Background()
	valid := metadata.NewOutgoingContext(bg, metadata.Pairs("authorization", "Bearer "+key.sign(b, claims(t0))))
	forged := metadata.NewOutgoingContext(bg, metadata.Pairs("authorization", "Bearer "+newTestKey(b, testKID).sign(b, claims(t0))))
	req := &testpb.GetRequest{Id: "item-1"}
	for _, c := range []testpb.TestServiceClient{over, fresh} {
		if _, err := c.Get(valid, req); err != nil { // verified and cached
			b.Fatal(err)
		}
	}
	// Spend the peer's budget on the first guard; its clock stands still,
	// so nothing refills.
	for {
		_, err := over.Get(forged, req)
		if status.Code(err) == codes.ResourceExhausted {
			break
		}
		if status.Code(err) != codes.Unauthenticated {
			b.Fatal(err)
		}
	}
	call := func(c testpb.TestServiceClient) func() {
		return func() {
			if _, err := c.Get(valid, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	benchpair.Alternate(b, 1, "call", call(over), call(fresh))
}
