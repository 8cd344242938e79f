package interceptors_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// Tests of the client side: TokenSource, the unary and stream client
// interceptors and PerRPCCredentials, against a real gRPC server on loopback
// TCP whose handlers hand out renewed tokens in headers and trailers, as the
// guard does (security.md cases 35 and 36, and the pitfall "never swap back
// to an older token"). No guard here: the server only records what it
// received.

// clT0 anchors the expiries of the tokens these tests mint. The client never
// checks an expiry against a clock; it only orders them (and checks a
// successor's iat against clNow).
var clT0 = time.Unix(1_800_000_000, 0).UTC()

// clMinter signs tokens whose only interesting claim is exp.
type clMinter struct{ signer *token.Signer }

func newClMinter(t testing.TB) *clMinter {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	k, err := token.NewHMACKey("k1", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return &clMinter{signer: s}
}

// at returns a token expiring at clT0 + d.
func (m *clMinter) at(t testing.TB, d time.Duration) string {
	t.Helper()
	exp := clT0.Add(d)
	tok, err := m.signer.Sign(token.Claims{
		Issuer:    "https://auth.tollgate.test",
		Subject:   "alice",
		Audience:  []string{"pricing"},
		IssuedAt:  exp.Add(-10 * time.Minute),
		ExpiresAt: exp,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// plan is what the next calls' handlers do: the renewed token they set in
// the header and in the trailer (none when empty), and the status they end
// with (nil for OK).
type plan struct {
	header  string
	trailer string
	fail    error
	// sendHeaderFirst makes List send its header alone, then wait for
	// release before its first message.
	sendHeaderFirst bool
	release         chan struct{}
}

// renewServer implements TestService; every handler records the
// authorization values it received and follows the current plan.
type renewServer struct {
	testpb.UnimplementedTestServiceServer
	mu   sync.Mutex
	p    plan
	auth [][]string
}

func (s *renewServer) set(p plan) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

// begin records the call's authorization values and returns the plan.
func (s *renewServer) begin(ctx context.Context) plan {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, slices.Clone(md.Get("authorization")))
	return s.p
}

// lastAuth returns the authorization values of the last call.
func (s *renewServer) lastAuth(t testing.TB) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.auth) == 0 {
		t.Fatal("the server received no call")
	}
	return s.auth[len(s.auth)-1]
}

func renewedMD(tok string) metadata.MD { return metadata.Pairs(interceptors.RenewedTokenKey, tok) }

func (s *renewServer) Get(ctx context.Context, req *testpb.GetRequest) (*testpb.GetResponse, error) {
	p := s.begin(ctx)
	if p.header != "" {
		if err := grpc.SetHeader(ctx, renewedMD(p.header)); err != nil {
			return nil, err
		}
	}
	if p.trailer != "" {
		if err := grpc.SetTrailer(ctx, renewedMD(p.trailer)); err != nil {
			return nil, err
		}
	}
	if p.fail != nil {
		return nil, p.fail
	}
	return &testpb.GetResponse{Id: req.GetId()}, nil
}

// streamPlan applies the header, trailer of p on ss.
func streamPlan(ss grpc.ServerStream, p plan) error {
	if p.header != "" {
		if err := ss.SetHeader(renewedMD(p.header)); err != nil {
			return err
		}
	}
	if p.trailer != "" {
		ss.SetTrailer(renewedMD(p.trailer))
	}
	return nil
}

func (s *renewServer) List(req *testpb.ListRequest, stream grpc.ServerStreamingServer[testpb.ListResponse]) error {
	p := s.begin(stream.Context())
	if err := streamPlan(stream, p); err != nil {
		return err
	}
	if p.sendHeaderFirst {
		if err := stream.SendHeader(nil); err != nil {
			return err
		}
		select {
		case <-p.release:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	for i := range req.GetCount() {
		if err := stream.Send(&testpb.ListResponse{Index: i}); err != nil {
			return err
		}
	}
	return p.fail
}

func (s *renewServer) Upload(stream grpc.ClientStreamingServer[testpb.UploadRequest, testpb.UploadResponse]) error {
	p := s.begin(stream.Context())
	var n int32
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if err := streamPlan(stream, p); err != nil {
		return err
	}
	if p.fail != nil {
		return p.fail
	}
	return stream.SendAndClose(&testpb.UploadResponse{Count: n})
}

func (s *renewServer) Chat(stream grpc.BidiStreamingServer[testpb.ChatRequest, testpb.ChatResponse]) error {
	p := s.begin(stream.Context())
	if err := streamPlan(stream, p); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return p.fail
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.ChatResponse{Text: m.GetText()}); err != nil {
			return err
		}
	}
}

// clRig is a renewServer on loopback TCP and a client connection.
type clRig struct {
	srv    *renewServer
	client testpb.TestServiceClient
	conn   *grpc.ClientConn
	stop   func()
}

// newClRig serves a renewServer (with serverOpts) and dials it with
// dialOpts (plaintext unless they set transport credentials). Call stop,
// deferred, before any leak check.
func newClRig(t *testing.T, serverOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) *clRig {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &clRig{srv: &renewServer{}}
	gs := grpc.NewServer(serverOpts...)
	testpb.RegisterTestServiceServer(gs, r.srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dialOpts...)
	r.conn, err = grpc.NewClient("passthrough:///"+lis.Addr().String(), opts...)
	if err != nil {
		gs.Stop()
		<-done
		t.Fatal(err)
	}
	r.client = testpb.NewTestServiceClient(r.conn)
	r.stop = func() {
		r.conn.Close()
		gs.Stop()
		<-done
	}
	return r
}

// withInterceptors are the dial options of a client using src.
func withInterceptors(src *interceptors.TokenSource, opts ...interceptors.ClientOption) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(interceptors.UnaryClientInterceptor(src, opts...)),
		grpc.WithChainStreamInterceptor(interceptors.StreamClientInterceptor(src, opts...)),
	}
}

// clNow is the clock of every source newSource returns: a day after clT0,
// so that the successors these tests mint are not issued in the future.
var clNow = clT0.Add(24 * time.Hour)

// newSource returns a source holding tok, on the clock clNow, then opts.
func newSource(t testing.TB, tok string, opts ...interceptors.TokenSourceOption) *interceptors.TokenSource {
	t.Helper()
	opts = append([]interceptors.TokenSourceOption{interceptors.TokenSourceClock(func() time.Time { return clNow })}, opts...)
	src, err := interceptors.NewTokenSource(tok, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func wantAuth(t testing.TB, got []string, tok string) {
	t.Helper()
	if len(got) != 1 || got[0] != "Bearer "+tok {
		// Never the values themselves: they are tokens.
		t.Errorf("server received %d authorization values, want exactly one, Bearer <the expected token> (first matches: %v)",
			len(got), len(got) > 0 && got[0] == "Bearer "+tok)
	}
}

func wantToken(t testing.TB, src *interceptors.TokenSource, tok string, exp time.Time, what string) {
	t.Helper()
	if src.Token() != tok {
		t.Errorf("%s: the source holds another token", what)
	}
	if !src.ExpiresAt().Equal(exp) {
		t.Errorf("%s: ExpiresAt = %v, want %v", what, src.ExpiresAt(), exp)
	}
}

func TestNewTokenSourceNeedsReadableExp(t *testing.T) {
	for _, tok := range []string{"", "not-a-token", "a.b.c", strings.Repeat("A", 10)} {
		if src, err := interceptors.NewTokenSource(tok); err == nil || src != nil {
			t.Errorf("NewTokenSource(%.10q) = %v, %v; want an error", tok, src, err)
		} else if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("the error repeats the token: %v", err)
		}
	}
	m := newClMinter(t)
	src := newSource(t, m.at(t, 10*time.Minute))
	if !src.ExpiresAt().Equal(clT0.Add(10 * time.Minute)) {
		t.Errorf("ExpiresAt = %v", src.ExpiresAt())
	}
}

// TestUnaryAttachesBearer: the interceptors attach "Bearer <current>", and
// never a second value when the caller set authorization itself (two values
// are refused by the guard) nor over per-call credentials of the caller's.
func TestUnaryAttachesBearer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok := m.at(t, 10*time.Minute)
	src := newSource(t, tok)
	r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer r.stop()
	ctx := context.Background()

	if _, err := r.client.Get(ctx, &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok)

	for _, key := range []string{"authorization", "Authorization"} {
		own := metadata.AppendToOutgoingContext(ctx, key, "Bearer caller-own")
		if _, err := r.client.Get(own, &testpb.GetRequest{Id: "2"}); err != nil {
			t.Fatal(err)
		}
		if got := r.srv.lastAuth(t); len(got) != 1 || got[0] != "Bearer caller-own" {
			t.Errorf("caller set %s: server received %q, want only the caller's value", key, got)
		}
		own = metadata.NewOutgoingContext(ctx, metadata.Pairs(key, "Bearer caller-md"))
		if _, err := r.client.Get(own, &testpb.GetRequest{Id: "3"}); err != nil {
			t.Fatal(err)
		}
		if got := r.srv.lastAuth(t); len(got) != 1 || got[0] != "Bearer caller-md" {
			t.Errorf("caller's metadata has %s: server received %q, want only the caller's value", key, got)
		}
	}

	// Credentials the caller gives for the call replace the source's.
	other := m.at(t, 5*time.Minute)
	own := grpc.PerRPCCredentials(interceptors.PerRPCCredentials(newSource(t, other), interceptors.AllowInsecureTransport()))
	if _, err := r.client.Get(ctx, &testpb.GetRequest{Id: "4"}, own); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), other)

	// Streams attach it too, under the same rules.
	st, err := r.client.List(ctx, &testpb.ListRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, st.Recv)
	wantAuth(t, r.srv.lastAuth(t), tok)
	st, err = r.client.List(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer caller-own"), &testpb.ListRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, st.Recv)
	if got := r.srv.lastAuth(t); len(got) != 1 || got[0] != "Bearer caller-own" {
		t.Errorf("stream, caller set authorization: server received %d values, want only the caller's", len(got))
	}
	st, err = r.client.List(ctx, &testpb.ListRequest{Count: 1}, own)
	if err != nil {
		t.Fatal(err)
	}
	drain(t, st.Recv)
	wantAuth(t, r.srv.lastAuth(t), other)
}

// drain receives until io.EOF, failing on any other error.
func drain[T any](t testing.TB, recv func() (*T, error)) int {
	t.Helper()
	n := 0
	for {
		_, err := recv()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("stream ended with %v", err)
		}
		n++
	}
}

// TestUnaryPicksRenewedTokenFromTrailer: the renewed token in the trailer
// replaces the current one, on success and on an error status (trailers
// travel with any status), and the next call carries it.
func TestUnaryPicksRenewedTokenFromTrailer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok0 := m.at(t, 10*time.Minute)
	src := newSource(t, tok0)
	r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer r.stop()
	ctx := context.Background()

	tok1 := m.at(t, 20*time.Minute)
	r.srv.set(plan{trailer: tok1})
	if _, err := r.client.Get(ctx, &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok0)
	wantToken(t, src, tok1, clT0.Add(20*time.Minute), "after an OK call")

	tok2 := m.at(t, 30*time.Minute)
	r.srv.set(plan{trailer: tok2, fail: status.Error(codes.NotFound, "no such item")})
	_, err := r.client.Get(ctx, &testpb.GetRequest{Id: "2"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok1)
	wantToken(t, src, tok2, clT0.Add(30*time.Minute), "after a NotFound call")

	r.srv.set(plan{})
	if _, err := r.client.Get(ctx, &testpb.GetRequest{Id: "3"}); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok2)
}

// TestUnaryPicksRenewedTokenFromHeader: a renewed token may also come in the
// response header.
func TestUnaryPicksRenewedTokenFromHeader(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	src := newSource(t, m.at(t, 10*time.Minute))
	r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer r.stop()

	tok1 := m.at(t, 20*time.Minute)
	r.srv.set(plan{header: tok1})
	if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	wantToken(t, src, tok1, clT0.Add(20*time.Minute), "renewed in the header")
}

// TestUnaryIgnoresUnusableRenewals: a renewed token expiring earlier than the
// current one, at the same time, or whose expiry cannot be read, never
// replaces it; the caller's own Header and Trailer call options still work.
func TestUnaryIgnoresUnusableRenewals(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok0 := m.at(t, 20*time.Minute)
	var renewals atomic.Int64
	src := newSource(t, tok0, interceptors.OnRenew(func(string, time.Time) { renewals.Add(1) }))
	r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer r.stop()

	for name, tok := range map[string]string{
		"earlier":         m.at(t, 10*time.Minute),
		"same expiry":     m.at(t, 20*time.Minute),
		"unreadable":      "garbage-not-a-jwt",
		"three junk segs": "a.b.c",
		"exp as a string": strings.Join([]string{"eyJhbGciOiJIUzI1NiJ9", "eyJleHAiOiI5OTk5OTk5OTk5In0", "c2ln"}, "."),
	} {
		for _, where := range []string{"trailer", "header"} {
			p := plan{trailer: tok}
			if where == "header" {
				p = plan{header: tok}
			}
			r.srv.set(p)
			var hdr, trl metadata.MD
			if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
				t.Fatal(err)
			}
			wantToken(t, src, tok0, clT0.Add(20*time.Minute), name+" in the "+where)
			got := trl.Get(interceptors.RenewedTokenKey)
			if where == "header" {
				got = hdr.Get(interceptors.RenewedTokenKey)
			}
			if len(got) != 1 || got[0] != tok {
				t.Errorf("%s: the caller's own grpc.%s option saw %d values", name, where, len(got))
			}
		}
	}
	if n := renewals.Load(); n != 0 {
		t.Errorf("OnRenew called %d times for tokens that were not taken", n)
	}
}

// TestOnRenewOncePerSwap: the callback runs once per swap with the new token
// and its expiry, and not for offers that are refused.
func TestOnRenewOncePerSwap(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	type call struct {
		tok string
		exp time.Time
	}
	var mu sync.Mutex
	var calls []call
	src := newSource(t, m.at(t, 10*time.Minute), interceptors.OnRenew(func(tok string, exp time.Time) {
		mu.Lock()
		calls = append(calls, call{tok, exp})
		mu.Unlock()
	}))
	r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer r.stop()

	tok20, tok30 := m.at(t, 20*time.Minute), m.at(t, 30*time.Minute)
	steps := []plan{
		{trailer: tok20},
		{trailer: tok20},                        // the same token again: no swap
		{header: tok20, trailer: tok20},         // in both: one swap at most
		{header: m.at(t, 15*time.Minute)},       // earlier: no swap
		{header: tok30, trailer: tok30},         // both, new: exactly one swap
		{trailer: tok30, fail: errors.New("x")}, // error, already held: no swap
	}
	for _, p := range steps {
		r.srv.set(p)
		_, _ = r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"})
	}
	mu.Lock()
	defer mu.Unlock()
	want := []call{{tok20, clT0.Add(20 * time.Minute)}, {tok30, clT0.Add(30 * time.Minute)}}
	if len(calls) != len(want) {
		t.Fatalf("OnRenew called %d times, want %d", len(calls), len(want))
	}
	for i := range want {
		if calls[i].tok != want[i].tok || !calls[i].exp.Equal(want[i].exp) {
			t.Errorf("call %d: exp %v, want %v (or another token)", i, calls[i].exp, want[i].exp)
		}
	}
}

// streamCase runs one kind of stream to its end; it returns the final error
// (nil for a clean end).
type streamCase struct {
	name string
	run  func(t *testing.T, c testpb.TestServiceClient) error
}

var streamCases = []streamCase{
	{"server stream List", func(t *testing.T, c testpb.TestServiceClient) error {
		st, err := c.List(context.Background(), &testpb.ListRequest{Count: 3})
		if err != nil {
			return err
		}
		for {
			if _, err := st.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}},
	{"client stream Upload", func(t *testing.T, c testpb.TestServiceClient) error {
		st, err := c.Upload(context.Background())
		if err != nil {
			return err
		}
		for i := range 3 {
			if err := st.Send(&testpb.UploadRequest{Id: string(rune('a' + i))}); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		_, err = st.CloseAndRecv()
		return err
	}},
	{"bidi stream Chat", func(t *testing.T, c testpb.TestServiceClient) error {
		st, err := c.Chat(context.Background())
		if err != nil {
			return err
		}
		for i := range 3 {
			if err := st.Send(&testpb.ChatRequest{Text: string(rune('a' + i))}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if _, err := st.Recv(); err != nil {
				return err
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := st.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}},
}

// TestStreamsPickRenewedTokenFromTrailer is case 35: for every stream kind
// the renewed token is taken from the trailer once the stream ends, with OK
// (io.EOF, or CloseAndRecv's answer) and with an error status.
func TestStreamsPickRenewedTokenFromTrailer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	for _, sc := range streamCases {
		for _, fail := range []error{nil, status.Error(codes.Aborted, "conflict")} {
			name := sc.name + " ending OK"
			if fail != nil {
				name = sc.name + " ending Aborted"
			}
			t.Run(name, func(t *testing.T) {
				tok0 := m.at(t, 10*time.Minute)
				var swaps atomic.Int64
				src := newSource(t, tok0, interceptors.OnRenew(func(string, time.Time) { swaps.Add(1) }))
				r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
				defer r.stop()

				tok1 := m.at(t, 20*time.Minute)
				r.srv.set(plan{trailer: tok1, fail: fail})
				err := sc.run(t, r.client)
				if status.Code(err) != status.Code(fail) {
					t.Fatalf("stream ended with %v, want %v", err, fail)
				}
				wantAuth(t, r.srv.lastAuth(t), tok0)
				wantToken(t, src, tok1, clT0.Add(20*time.Minute), name)
				if n := swaps.Load(); n != 1 {
					t.Errorf("OnRenew called %d times, want 1", n)
				}
				// An earlier one in the trailer is ignored.
				r.srv.set(plan{trailer: m.at(t, 15*time.Minute), fail: fail})
				_ = sc.run(t, r.client)
				wantAuth(t, r.srv.lastAuth(t), tok1)
				wantToken(t, src, tok1, clT0.Add(20*time.Minute), name+", earlier token offered")
			})
		}
	}
}

// TestStreamsPickRenewedTokenFromHeader: the header-based variant, for every
// stream kind.
func TestStreamsPickRenewedTokenFromHeader(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	for _, sc := range streamCases {
		t.Run(sc.name, func(t *testing.T) {
			src := newSource(t, m.at(t, 10*time.Minute))
			r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
			defer r.stop()
			tok1 := m.at(t, 20*time.Minute)
			r.srv.set(plan{header: tok1})
			if err := sc.run(t, r.client); err != nil {
				t.Fatal(err)
			}
			wantToken(t, src, tok1, clT0.Add(20*time.Minute), sc.name)
		})
	}
}

// TestServerStreamHeaderBeforeFirstMessage: a renewed token sent in the
// header reaches the source before the first message: through Header(), and
// through the first RecvMsg without any call to Header().
func TestServerStreamHeaderBeforeFirstMessage(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok0 := m.at(t, 10*time.Minute)

	t.Run("Header", func(t *testing.T) {
		src := newSource(t, tok0)
		r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
		defer r.stop()
		tok1 := m.at(t, 20*time.Minute)
		release := make(chan struct{})
		r.srv.set(plan{header: tok1, sendHeaderFirst: true, release: release})
		st, err := r.client.List(context.Background(), &testpb.ListRequest{Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		md, err := st.Header()
		close(release) // the server sends no message before this point
		if err != nil {
			t.Fatal(err)
		}
		if got := md.Get(interceptors.RenewedTokenKey); len(got) != 1 {
			t.Fatalf("header holds %d renewed tokens", len(got))
		}
		wantToken(t, src, tok1, clT0.Add(20*time.Minute), "after Header, before any message")
		if n := drain(t, st.Recv); n != 2 {
			t.Errorf("received %d messages, want 2", n)
		}
	})

	t.Run("first RecvMsg", func(t *testing.T) {
		src := newSource(t, tok0)
		r := newClRig(t, nil, withInterceptors(src, interceptors.AllowInsecureTransport())...)
		defer r.stop()
		tok1 := m.at(t, 20*time.Minute)
		r.srv.set(plan{header: tok1})
		st, err := r.client.List(context.Background(), &testpb.ListRequest{Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		wantToken(t, src, tok1, clT0.Add(20*time.Minute), "after the first message, before the end")
		drain(t, st.Recv)
	})
}

// TestOfferConcurrent: 100 goroutines offer tokens with random expiries in a
// random order; the source ends with the latest, a concurrent reader never
// sees the expiry go down, and OnRenew sees the swaps in increasing order
// (an application persisting them must end with the latest).
func TestOfferConcurrent(t *testing.T) {
	m := newClMinter(t)
	rnd := mrand.New(mrand.NewPCG(35, 35))
	const n = 100
	toks := make([]string, n)
	exps := make([]time.Time, n)
	maxI := 0
	for i := range n {
		d := time.Duration(11+rnd.IntN(50_000)) * time.Second
		toks[i], exps[i] = m.at(t, d), clT0.Add(d)
		if exps[i].After(exps[maxI]) {
			maxI = i
		}
	}
	for round := range 20 {
		var mu sync.Mutex
		var seen []time.Time
		src := newSource(t, m.at(t, 10*time.Second), interceptors.OnRenew(func(_ string, exp time.Time) {
			mu.Lock()
			seen = append(seen, exp)
			mu.Unlock()
		}))
		stop := make(chan struct{})
		readerErr := make(chan error, 1)
		go func() {
			last := src.ExpiresAt()
			for {
				select {
				case <-stop:
					readerErr <- nil
					return
				default:
				}
				tok, exp := src.Token(), src.ExpiresAt()
				if exp.Before(last) {
					readerErr <- errors.New("ExpiresAt went down from " + last.String() + " to " + exp.String())
					return
				}
				if c, err := token.UnverifiedClaims(tok); err != nil || c.ExpiresAt.Before(last) {
					readerErr <- errors.New("Token() went back to an older token")
					return
				}
				last = exp
			}
		}()
		order := rnd.Perm(n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, i := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				src.Offer(toks[i])
			}()
		}
		close(start)
		wg.Wait()
		close(stop)
		if err := <-readerErr; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		wantToken(t, src, toks[maxI], exps[maxI], "after 100 concurrent offers")
		mu.Lock()
		if len(seen) == 0 || !seen[len(seen)-1].Equal(exps[maxI]) {
			t.Fatalf("round %d: the last OnRenew was not for the latest token", round)
		}
		for i := 1; i < len(seen); i++ {
			if !seen[i].After(seen[i-1]) {
				t.Fatalf("round %d: OnRenew saw %v after %v", round, seen[i], seen[i-1])
			}
		}
		mu.Unlock()
	}
}

// TestPerRPCCredentialsRefuseInsecureTransport is case 36: bearer
// credentials are never sent in plaintext unless the test-only opt-in is set.
func TestPerRPCCredentialsRefuseInsecureTransport(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok := m.at(t, 10*time.Minute)
	src := newSource(t, tok)
	creds := interceptors.PerRPCCredentials(src)
	if !creds.RequireTransportSecurity() {
		t.Fatal("PerRPCCredentials does not require transport security by default")
	}
	if interceptors.PerRPCCredentials(src, interceptors.AllowInsecureTransport()).RequireTransportSecurity() {
		t.Fatal("AllowInsecureTransport still requires transport security")
	}

	// As a dial option, grpc-go refuses the connection outright.
	if conn, err := grpc.NewClient("passthrough:///127.0.0.1:1",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds)); err == nil {
		conn.Close()
		t.Error("NewClient accepted secure-only credentials on an insecure connection")
	} else if !strings.Contains(err.Error(), "transport level security") {
		t.Errorf("NewClient error = %v", err)
	}

	// As a call option, the call fails before anything is sent.
	r := newClRig(t, nil)
	defer r.stop()
	_, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}, grpc.PerRPCCredentials(creds))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("call with secure-only credentials on plaintext: %v, want Unauthenticated", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "secure") || strings.Contains(msg, tok) {
		t.Errorf("message %q: want it to mention secure, and no token", msg)
	}
	r.srv.mu.Lock()
	calls := len(r.srv.auth)
	r.srv.mu.Unlock()
	if calls != 0 {
		t.Errorf("the server received %d calls", calls)
	}

	// With the explicit opt-in, the call goes through and carries the token.
	_, err = r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"},
		grpc.PerRPCCredentials(interceptors.PerRPCCredentials(src, interceptors.AllowInsecureTransport())))
	if err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok)
}

// TestPerRPCCredentialsOverTLS: without the opt-in the credentials work on a
// connection with transport security.
func TestPerRPCCredentialsOverTLS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	serverTLS, clientTLS := selfSignedTLS(t)
	m := newClMinter(t)
	tok := m.at(t, 10*time.Minute)
	src := newSource(t, tok)
	r := newClRig(t, []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS))},
		grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)),
		grpc.WithPerRPCCredentials(interceptors.PerRPCCredentials(src)))
	defer r.stop()
	if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok)
}

// selfSignedTLS returns a server config with a fresh certificate for
// 127.0.0.1 and a client config trusting only it.
func selfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tollgate-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, MinVersion: tls.VersionTLS13},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

// TestPickUpOnlyWithCredentials: credentials attach the token, the
// PickUpOnly interceptors only collect renewals: one authorization value,
// and the next call's credentials carry the renewed token.
func TestPickUpOnlyWithCredentials(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok0 := m.at(t, 10*time.Minute)
	src := newSource(t, tok0)
	dial := append(withInterceptors(src, interceptors.PickUpOnly()),
		grpc.WithPerRPCCredentials(interceptors.PerRPCCredentials(src, interceptors.AllowInsecureTransport())))
	r := newClRig(t, nil, dial...)
	defer r.stop()

	tok1 := m.at(t, 20*time.Minute)
	r.srv.set(plan{trailer: tok1})
	if _, err := r.client.Get(context.Background(), &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r.srv.lastAuth(t), tok0)
	wantToken(t, src, tok1, clT0.Add(20*time.Minute), "picked up")

	r.srv.set(plan{})
	st, err := r.client.List(context.Background(), &testpb.ListRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, st.Recv)
	wantAuth(t, r.srv.lastAuth(t), tok1)
}
