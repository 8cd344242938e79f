package interceptors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate/tollgate/internal/testpb"
	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Tests of the guard's hold on streams (the hardening issue, items 1 and 2):
// an open stream ends when its token does even if no message comes, streams
// are bounded per consumer and per peer, public streams are charged per
// message, and the rule's message_cost and max_streams apply.

// wantTooManyStreams checks the refusal of a stream past its bound.
func wantTooManyStreams(t testing.TB, err error, who, method string, limit int) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.ResourceExhausted || st.Message() != "too many concurrent streams" {
		t.Fatalf("got %v, want ResourceExhausted %q", err, "too many concurrent streams")
	}
	want := []proto.Message{
		&errdetails.ErrorInfo{Reason: ReasonTooManyStreams, Domain: "tollgate", Metadata: map[string]string{"max_streams": fmt.Sprint(limit)}},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     who,
			Description: fmt.Sprintf("at most %d concurrent streams of %s", limit, method),
		}}},
	}
	var got []proto.Message
	for _, d := range st.Details() {
		got = append(got, d.(proto.Message))
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("details (-want +got):\n%s", diff)
	}
}

// returns collects the streaming handlers' returns of one harness.
func returns(h *harness) <-chan string {
	ch := make(chan string, 16)
	h.server.onReturn = func(method string, err error) { ch <- method + ": " + status.Code(err).String() }
	return ch
}

// An open stream whose token expires is ended with TOKEN_EXPIRED at that
// instant, while the client sends nothing and the handler waits: in
// RecvMsg (client and bidi streams) or on its context (a server stream
// between two sends). The handler returns, and the client sees the whole
// contract. Before exp+leeway nothing happens.
func TestIdleStreamEndsWhenItsTokenExpires(t *testing.T) {
	waitTimer := func(t *testing.T, h *harness) {
		t.Helper()
		if n := h.clock.Timers(); n != 1 {
			t.Fatalf("%d timers scheduled, want the stream's 1", n)
		}
	}
	expire := func(t *testing.T, h *harness) {
		t.Helper()
		// One second short of exp + leeway: still open.
		h.clock.Advance(10*time.Minute + token.DefaultLeeway - time.Second)
		waitTimer(t, h)
		h.clock.Advance(time.Second)
	}

	t.Run("server stream List waiting on its context", func(t *testing.T) {
		h := newHarness(t)
		done := returns(h)
		h.server.listWait = func(ctx context.Context, i int32) {
			if i == 1 {
				<-ctx.Done()
			}
		}
		stream, err := h.client.List(bearer(t, h.token(t)), &testpb.ListRequest{Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		expire(t, h)
		_, err = stream.Recv()
		wantExpired(t, err)
		if got := <-done; !strings.HasPrefix(got, methodList) {
			t.Fatalf("returned: %s", got)
		}
	})
	t.Run("client stream Upload waiting in RecvMsg", func(t *testing.T) {
		h := newHarness(t)
		done := returns(h)
		got := make(chan struct{}, 1)
		h.server.onRecv = func(string) { got <- struct{}{} }
		stream, err := h.client.Upload(bearer(t, h.token(t)))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}}); err != nil {
			t.Fatal(err)
		}
		<-got
		expire(t, h)
		// The handler returns before the client does anything more.
		if r := <-done; r != methodUpload+": Unauthenticated" {
			t.Fatalf("returned: %s", r)
		}
		_, err = stream.CloseAndRecv()
		wantExpired(t, err)
	})
	t.Run("bidi Chat waiting in RecvMsg", func(t *testing.T) {
		h := newHarness(t)
		done := returns(h)
		stream, err := h.client.Chat(bearer(t, h.token(t)))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		expire(t, h)
		_, err = stream.Recv() // the client never sent again
		wantExpired(t, err)
		if r := <-done; r != methodChat+": Unauthenticated" {
			t.Fatalf("returned: %s", r)
		}
		// The timer fired for the only stream: it is not re-armed.
		if n := h.clock.Timers(); n != 0 {
			t.Fatalf("%d timers left", n)
		}
	})
}

// The expiry timer is shared by the guard's streams and stays armed when the
// last one ends (so the next stream arms none), and Guard.Close stops it: no
// timer outlives the guard.
func TestStreamTimerStopped(t *testing.T) {
	h := newHarness(t)
	stream, err := h.client.Chat(bearer(t, h.token(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	h.grpcSrv.GracefulStop() // the handler and the interceptor have returned
	if n := h.clock.Timers(); n != 1 {
		t.Fatalf("%d timers after the stream ended, want the shared 1", n)
	}
	h.guard.Close()
	if n := h.clock.Timers(); n != 0 {
		t.Fatalf("%d timers left after Guard.Close", n)
	}
}

// releases returns a channel told of every stream of method that who
// releases.
func releases(h *harness, who, method string) <-chan struct{} {
	ch := make(chan struct{}, 16)
	h.guard.streams.released = func(w, m string) {
		if w == who && m == method {
			ch <- struct{}{}
		}
	}
	return ch
}

// openChat opens a Chat stream with tok and completes one exchange, so the
// stream is surely counted; it returns the stream.
func openChat(t *testing.T, h *harness, tok string) (grpc.BidiStreamingClient[testpb.ChatRequest, testpb.ChatResponse], error) {
	t.Helper()
	stream, err := h.client.Chat(bearer(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1"}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	return stream, err
}

func closeChat(t *testing.T, stream grpc.BidiStreamingClient[testpb.ChatRequest, testpb.ChatResponse]) {
	t.Helper()
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("closing: %v", err)
	}
}

// A consumer holds at most the bound of streams of one method open at once;
// the next one is refused before its handler runs, another consumer and
// another method are unaffected, and closing a stream frees its place.
func TestStreamsBoundedPerConsumer(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithMaxStreamsPerConsumer(2)))
	released := releases(h, "azp:a", methodChat)
	a := h.token(t, azp("a"))
	var open []grpc.BidiStreamingClient[testpb.ChatRequest, testpb.ChatResponse]
	for i := range 2 {
		s, err := openChat(t, h, a)
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		open = append(open, s)
	}
	reachedBefore := h.reached()
	_, err := openChat(t, h, a)
	wantTooManyStreams(t, err, "azp:a", methodChat, 2)
	if h.reached() != reachedBefore {
		t.Fatal("the refused stream reached its handler")
	}
	// Another consumer, and another method of the same consumer.
	if _, err := openChat(t, h, h.token(t, azp("b"))); err != nil {
		t.Fatalf("consumer b: %v", err)
	}
	list, err := h.client.List(bearer(t, a), &testpb.ListRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := list.Recv(); err != nil {
		t.Fatalf("List while Chat is full: %v", err)
	}
	closeChat(t, open[0])
	// The release happens when the interceptor returns, after the client
	// has its status.
	<-released
	if n := h.guard.streams.held("azp:a", methodChat); n != 1 {
		t.Fatalf("%d streams held after one of 2 closed", n)
	}
	if _, err := openChat(t, h, a); err != nil {
		t.Fatalf("after one closed: %v", err)
	}
}

// Item 2: one peer without a token cannot hold unbounded health watches.
func TestPublicStreamsBoundedPerPeer(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithMaxStreamsPerPeer(3)))
	released := releases(h, peerLoopback, "/grpc.health.v1.Health/Watch")
	hc := healthpb.NewHealthClient(h.conn)
	var cancels []context.CancelFunc
	for i := range 3 {
		ctx, cancel := context.WithCancel(ctxWith(t))
		cancels = append(cancels, cancel)
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch %d: %v", i+1, err)
		}
	}
	// A second connection from the same address shares the bound.
	conn2, err := grpc.NewClient(h.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn2.Close() })
	w, err := healthpb.NewHealthClient(conn2).Watch(ctxWith(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Recv()
	wantTooManyStreams(t, err, peerLoopback, "/grpc.health.v1.Health/Watch", 3)
	cancels[0]()
	<-released
	if n := h.guard.streams.held(peerLoopback, "/grpc.health.v1.Health/Watch"); n != 2 {
		t.Fatalf("%d watches held after one of 3 ended", n)
	}
	w, err = healthpb.NewHealthClient(conn2).Watch(ctxWith(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("after one watch ended: %v", err)
	}
	for _, c := range cancels {
		c()
	}
}

// ServerOptions bounds the calls in flight on one connection: with 2, a
// third stream waits until one of the two ends.
func TestServerOptionsMaxConcurrentStreams(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithMaxConcurrentStreams(2)))
	tok := h.token(t)
	s1, err := openChat(t, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openChat(t, h, tok); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bearer(t, tok), 100*time.Millisecond)
	defer cancel()
	third, err := h.client.Chat(ctx)
	if err == nil {
		_, err = third.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third stream on a connection allowing 2: %v, want it held until its deadline", err)
	}
	closeChat(t, s1)
	if _, err := openChat(t, h, tok); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
}

// Item 2: a public stream is throttled like a public unary call, per peer,
// and its messages are charged like any client stream's: reflection made
// public, with a burst of 3, answers three requests and then ends.
func TestPublicStreamChargedPerMessage(t *testing.T) {
	lim := throttle.Limit{Rate: 1, Per: time.Hour, Burst: 3}
	h := newThrottleHarness(t, lim, WithPublicServices("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"))
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctxWith(t))
	if err != nil {
		t.Fatal(err)
	}
	req := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
	for i := range 3 {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantRateLimited(t, err, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", peerLoopback, lim, time.Hour)
}

// streamService is a service declared here with rules the test .proto does
// not have: bidi methods over testpb's Chat messages.
const streamService = "tollgate.streamtest.v1.StreamService"

func streamFiles(t *testing.T, rules map[string]*tollgatev1.Rule) *protoregistry.Files {
	t.Helper()
	svc := &descriptorpb.ServiceDescriptorProto{Name: proto.String("StreamService")}
	for name, r := range rules {
		o := &descriptorpb.MethodOptions{}
		proto.SetExtension(o, tollgatev1.E_Method, r)
		svc.Method = append(svc.Method, &descriptorpb.MethodDescriptorProto{
			Name:            proto.String(name),
			InputType:       proto.String(".tollgate.testpb.v1.ChatRequest"),
			OutputType:      proto.String(".tollgate.testpb.v1.ChatResponse"),
			ClientStreaming: proto.Bool(true),
			ServerStreaming: proto.Bool(true),
			Options:         o,
		})
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("tollgate/streamtest/v1/stream.proto"),
		Package:    proto.String("tollgate.streamtest.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"tollgate/v1/options.proto", "tollgate/testpb/v1/test.proto"},
		Service:    []*descriptorpb.ServiceDescriptorProto{svc},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

// registerEcho registers StreamService: every method echoes each message
// and counts it in got.
func registerEcho(s *grpc.Server, names []string, got *atomic.Int64) {
	desc := grpc.ServiceDesc{ServiceName: streamService, HandlerType: (*any)(nil)}
	for _, name := range names {
		desc.Streams = append(desc.Streams, grpc.StreamDesc{
			StreamName:    name,
			ServerStreams: true,
			ClientStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				for {
					var m testpb.ChatRequest
					if err := ss.RecvMsg(&m); errors.Is(err, io.EOF) {
						return nil
					} else if err != nil {
						return err
					}
					got.Add(1)
					if err := ss.SendMsg(&testpb.ChatResponse{Text: m.GetText()}); err != nil {
						return err
					}
				}
			},
		})
	}
	s.RegisterService(&desc, struct{}{})
}

// The rule's message_cost and max_streams: a stream opening at cost 3 with
// messages at 1 gets 3 messages from a burst of 5; message_cost 0 makes
// messages free; max_streams 1 refuses a second stream of that method.
func TestRuleMessageCostAndMaxStreams(t *testing.T) {
	hour := durationpb.New(time.Hour)
	rules := map[string]*tollgatev1.Rule{
		"Cheap":   {Throttle: &tollgatev1.Throttle{Rate: 1, Per: hour, Burst: 5, Cost: 3, MessageCost: proto.Uint32(1)}},
		"Free":    {Throttle: &tollgatev1.Throttle{Rate: 1, Per: hour, Burst: 1, MessageCost: proto.Uint32(0)}},
		"Bounded": {MaxStreams: proto.Uint32(1)},
	}
	files := streamFiles(t, rules)
	var got atomic.Int64
	lc := &lateClock{}
	gs := newGuardedServer(t, func(*token.Verifier) []Option {
		return []Option{WithRegistry(files, protoregistry.GlobalTypes), WithLimiter(mustMemory(t, throttle.WithMemoryClock(lc.Now)))}
	}, func(s *grpc.Server) { registerEcho(s, []string{"Cheap", "Free", "Bounded"}, &got) })
	lc.c.Store(gs.clock)
	tok := gs.key.sign(t, func() token.Claims { c := claims(gs.clock.Now()); c.AuthorizedParty = "a"; return c }())
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	open := func(method string) grpc.ClientStream {
		t.Helper()
		cs, err := gs.conn.NewStream(bearer(t, tok), desc, "/"+streamService+"/"+method)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	exchange := func(cs grpc.ClientStream) error {
		if err := cs.SendMsg(&testpb.ChatRequest{Text: "x"}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		return cs.RecvMsg(&testpb.ChatResponse{})
	}

	cheap := open("Cheap")
	for i := range 3 {
		if err := exchange(cheap); err != nil {
			t.Fatalf("Cheap message %d: %v", i+1, err)
		}
	}
	wantRateLimited(t, exchange(cheap), "/"+streamService+"/Cheap", "azp:a",
		throttle.Limit{Rate: 1, Per: time.Hour, Burst: 5}, time.Hour)

	free := open("Free")
	for i := range 100 {
		if err := exchange(free); err != nil {
			t.Fatalf("Free message %d: %v", i+1, err)
		}
	}

	bounded := open("Bounded")
	if err := exchange(bounded); err != nil {
		t.Fatal(err)
	}
	wantTooManyStreams(t, exchange(open("Bounded")), "azp:a", "/"+streamService+"/Bounded", 1)
	if n := got.Load(); n != 3+100+1 {
		t.Fatalf("handlers got %d messages, want 104", n)
	}
}

// A limit the limiter cannot hold fails Init, naming the method, with an
// error that still matches throttle.ErrInvalidLimit.
func TestInitWrapsInvalidLimit(t *testing.T) {
	century := durationpb.New(100 * 365 * 24 * time.Hour)
	files := streamFiles(t, map[string]*tollgatev1.Rule{
		"Slow": {Throttle: &tollgatev1.Throttle{Rate: 1, Per: century, Burst: 1}},
	})
	ks, err := token.NewKeySet(newTestKey(t, testKID).key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, testIss, testAud)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(v, WithRegistry(files, protoregistry.GlobalTypes))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	var got atomic.Int64
	registerEcho(srv, []string{"Slow"}, &got)
	err = g.Init(srv)
	if !errors.Is(err, throttle.ErrInvalidLimit) || !strings.Contains(err.Error(), "/"+streamService+"/Slow") {
		t.Fatalf("Init = %v, want an error naming the method and matching ErrInvalidLimit", err)
	}
}
