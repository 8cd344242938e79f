package interceptors

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	mw "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// The guard's interceptors are plain gRPC interceptors: chained through
// go-grpc-middleware's selector on a server built without
// guard.ServerOptions, the skipped method reaches its handler with no token
// while every selected method is still enforced.
func TestSelectorComposition(t *testing.T) {
	skip := map[string]bool{methodGet: true, "/tollgate.testpb.v1.TestService/List": true}
	match := selector.MatchFunc(func(_ context.Context, c mw.CallMeta) bool {
		return !skip[c.FullMethod()]
	})
	h := newHarness(t, withPlainServer(func(g *Guard) []grpc.ServerOption {
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(selector.UnaryServerInterceptor(g.UnaryServerInterceptor(), match)),
			grpc.ChainStreamInterceptor(selector.StreamServerInterceptor(g.StreamServerInterceptor(), match)),
		}
	}))

	// Skipped: reached without a token, and without a session.
	resp, err := h.client.Get(ctxWith(t), &testpb.GetRequest{Id: "x"})
	if err != nil {
		t.Fatalf("skipped Get: %v", err)
	}
	if resp.GetSubject() != "" {
		t.Fatalf("skipped Get saw subject %q", resp.GetSubject())
	}
	list, err := h.client.List(ctxWith(t), &testpb.ListRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := list.Recv(); err != nil {
		t.Fatalf("skipped List: %v", err)
	}
	if h.reached() != 2 {
		t.Fatalf("reached %d, want 2", h.reached())
	}

	// Selected: enforced exactly as without the selector.
	_, err = h.client.GetAll(ctxWith(t), &testpb.GetAllRequest{})
	wantMissing(t, err)
	_, err = h.client.GetAll(bearer(t, h.token(t)), &testpb.GetAllRequest{})
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
	_, err = h.unruled.Forgotten(bearer(t, h.token(t)), &testpb.ForgottenRequest{})
	wantNoRule(t, err)
	chat, err := h.client.Chat(ctxWith(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.Send(&testpb.ChatRequest{OwnerId: "o1"}); err != nil {
		t.Fatal(err)
	}
	_, err = chat.Recv()
	wantMissing(t, err)
	if h.reached() != 2 {
		t.Fatalf("reached %d after enforced calls, want 2", h.reached())
	}

	// And a selected method with a good token passes, session included.
	chat, err = h.client.Chat(bearer(t, h.token(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if r, err := chat.Recv(); err != nil || r.GetText() != "alice:x" {
		t.Fatalf("selected Chat: %v %v", r, err)
	}
	if err := chat.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := chat.Recv(); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
}

// 50 goroutines × 20 calls, valid and invalid tokens mixed (run under
// -race): a valid token is always let through with its own subject, an
// invalid one always refused.
func TestConcurrentCalls(t *testing.T) {
	h := newHarness(t)
	const goroutines, calls = 50, 20
	valid := make([]string, 5)
	for i := range valid {
		sub := string(rune('a' + i))
		valid[i] = h.token(t, func(c *token.Claims) { c.Subject = sub })
	}
	other := newTestKey(t, testKID)
	invalid := []string{
		other.sign(t, claims(h.clock.Now())),
		h.token(t, func(c *token.Claims) { c.Audience = []string{"elsewhere"} }),
		flipBit(t, valid[0], 2),
		"garbage",
	}
	// call runs one Get or Update with tok, with its own deadline.
	call := func(tok string, update bool) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		if update {
			_, err := h.client.Update(ctx, &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}})
			return "", err
		}
		resp, err := h.client.Get(ctx, &testpb.GetRequest{})
		return resp.GetSubject(), err
	}
	var (
		wg       sync.WaitGroup
		accepted = make(chan int, goroutines)
		want     int
	)
	for g := range goroutines {
		for i := range calls {
			if (g+i)%3 != 0 {
				want++
			}
		}
	}
	for g := range goroutines {
		wg.Go(func() {
			ok := 0
			for i := range calls {
				if (g+i)%3 == 0 {
					_, err := call(invalid[(g+i)%len(invalid)], i%2 == 1)
					if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != wantMsgInvalid {
						t.Errorf("invalid token: %v", err)
					}
					continue
				}
				n := (g + i) % len(valid)
				sub, err := call(valid[n], i%2 == 1)
				if err != nil {
					t.Errorf("valid token: %v", err)
					continue
				}
				if i%2 == 0 && sub != string(rune('a'+n)) {
					t.Errorf("subject %q, want %q", sub, string(rune('a'+n)))
				}
				ok++
			}
			accepted <- ok
		})
	}
	wg.Wait()
	close(accepted)
	total := 0
	for n := range accepted {
		total += n
	}
	if total != want || h.reached() != int64(want) {
		t.Fatalf("%d calls accepted, handlers reached %d times, want %d", total, h.reached(), want)
	}
}
