package interceptors

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The test harness: a real grpc.Server on loopback TCP with the guard's
// server options, the test services, gRPC health and reflection, and a
// verifier driven by a fake clock. Handlers count every time they are
// reached, so a test can prove a denied call never got that far.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testIss = "https://auth.tollgate.test"
	testAud = "tollgate-test"
	testKID = "k1"

	methodGet       = "/tollgate.testpb.v1.TestService/Get"
	methodPing      = "/tollgate.testpb.v1.TestService/Ping"
	methodUpdate    = "/tollgate.testpb.v1.TestService/Update"
	methodUpload    = "/tollgate.testpb.v1.TestService/Upload"
	methodChat      = "/tollgate.testpb.v1.TestService/Chat"
	methodForgotten = "/tollgate.testpb.v1.UnruledService/Forgotten"
)

// The fixed message of every refusal, pinned here so that a change of
// wording (or a leak of detail into it) breaks the tests.
const (
	wantMsgMissing  = "missing access token"
	wantMsgInvalid  = "invalid access token"
	wantMsgExpired  = "access token expired"
	wantMsgDenied   = "permission denied"
	wantMsgNotOwner = "not the owner of the resource"
)

// t0 is where every fake clock starts.
var t0 = time.Unix(1_800_000_000, 0).UTC()

type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(t0) }

// mustMemory is throttle.NewMemory for options a test knows to be valid.
func mustMemory(tb testing.TB, opts ...throttle.MemoryOption) *throttle.Memory {
	tb.Helper()
	m, err := throttle.NewMemory(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// randomSecret returns n random bytes: test secrets are never literals.
func randomSecret(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testKey is an HS256 key with its secret, so tests can also MAC forged
// tokens by hand.
type testKey struct {
	key    *token.Key
	secret []byte
	signer *token.Signer
}

func newTestKey(t testing.TB, kid string) *testKey {
	t.Helper()
	secret := randomSecret(t, 32)
	k, err := token.NewHMACKey(kid, token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{key: k, secret: secret, signer: s}
}

// claims returns the default claims at now: subject alice, valid for ten
// minutes, test.read and test.write, owner o1.
func claims(now time.Time) token.Claims {
	return token.Claims{
		Issuer:      testIss,
		Subject:     "alice",
		Audience:    []string{testAud},
		IssuedAt:    now,
		ExpiresAt:   now.Add(10 * time.Minute),
		Permissions: []string{"test.read", "test.write"},
		Extra:       map[string]any{"owner_id": "o1"},
	}
}

func (k *testKey) sign(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := k.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testServer implements TestService and UnruledService. Every handler
// counts itself in reached; streams record the messages they received.
type testServer struct {
	testpb.UnimplementedTestServiceServer
	testpb.UnimplementedUnruledServiceServer

	reached atomic.Int64
	// beforeListSend, when set before the call, runs before List sends
	// item i.
	beforeListSend func(i int32)
	// listWait, when set before the call, runs before List sends item i
	// with the stream's context, so a test can hold the stream open.
	listWait func(ctx context.Context, i int32)
	// onRecv, when set before the call, runs after Upload or Chat has
	// recorded a message; onReturn when any streaming handler returns.
	onRecv   func(method string)
	onReturn func(method string, err error)

	mu       sync.Mutex
	uploads  []*testpb.UploadRequest
	chats    []*testpb.ChatRequest
	subjects []string
}

func subjectOf(ctx context.Context) string {
	if s, ok := session.FromContext(ctx); ok {
		return s.Subject()
	}
	return ""
}

func (s *testServer) sawSubject(ctx context.Context) string {
	sub := subjectOf(ctx)
	s.mu.Lock()
	s.subjects = append(s.subjects, sub)
	s.mu.Unlock()
	return sub
}

func (s *testServer) Get(ctx context.Context, req *testpb.GetRequest) (*testpb.GetResponse, error) {
	s.reached.Add(1)
	return &testpb.GetResponse{Id: req.GetId(), Subject: s.sawSubject(ctx)}, nil
}

func (s *testServer) Ping(ctx context.Context, _ *testpb.PingRequest) (*testpb.PingResponse, error) {
	s.reached.Add(1)
	_, ok := session.FromContext(ctx)
	return &testpb.PingResponse{HadSession: ok}, nil
}

func (s *testServer) Update(_ context.Context, req *testpb.UpdateRequest) (*testpb.UpdateResponse, error) {
	s.reached.Add(1)
	return &testpb.UpdateResponse{Id: req.GetId()}, nil
}

func (s *testServer) Either(context.Context, *testpb.EitherRequest) (*testpb.EitherResponse, error) {
	s.reached.Add(1)
	return &testpb.EitherResponse{}, nil
}

func (s *testServer) GetAll(context.Context, *testpb.GetAllRequest) (*testpb.GetAllResponse, error) {
	s.reached.Add(1)
	return &testpb.GetAllResponse{}, nil
}

func (s *testServer) returned(method string, err error) error {
	if s.onReturn != nil {
		s.onReturn(method, err)
	}
	return err
}

func (s *testServer) List(req *testpb.ListRequest, stream grpc.ServerStreamingServer[testpb.ListResponse]) (err error) {
	defer func() { err = s.returned(methodList, err) }()
	s.reached.Add(1)
	sub := s.sawSubject(stream.Context())
	for i := range req.GetCount() {
		if s.beforeListSend != nil {
			s.beforeListSend(i)
		}
		if s.listWait != nil {
			s.listWait(stream.Context(), i)
		}
		if err := stream.Send(&testpb.ListResponse{Index: i, Subject: sub}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testServer) Upload(stream grpc.ClientStreamingServer[testpb.UploadRequest, testpb.UploadResponse]) (err error) {
	defer func() { err = s.returned(methodUpload, err) }()
	s.reached.Add(1)
	s.sawSubject(stream.Context())
	var n int32
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.UploadResponse{Count: n})
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.uploads = append(s.uploads, proto.Clone(m).(*testpb.UploadRequest))
		s.mu.Unlock()
		if s.onRecv != nil {
			s.onRecv(methodUpload)
		}
		n++
	}
}

func (s *testServer) Chat(stream grpc.BidiStreamingServer[testpb.ChatRequest, testpb.ChatResponse]) (err error) {
	defer func() { err = s.returned(methodChat, err) }()
	s.reached.Add(1)
	sub := s.sawSubject(stream.Context())
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.chats = append(s.chats, proto.Clone(m).(*testpb.ChatRequest))
		s.mu.Unlock()
		if s.onRecv != nil {
			s.onRecv(methodChat)
		}
		if err := stream.Send(&testpb.ChatResponse{Text: sub + ":" + m.GetText()}); err != nil {
			return err
		}
	}
}

func (s *testServer) Forgotten(context.Context, *testpb.ForgottenRequest) (*testpb.ForgottenResponse, error) {
	s.reached.Add(1)
	return &testpb.ForgottenResponse{}, nil
}

func (s *testServer) ForgottenStream(stream grpc.BidiStreamingServer[testpb.ForgottenStreamRequest, testpb.ForgottenStreamResponse]) error {
	s.reached.Add(1)
	return nil
}

func (s *testServer) recorded() (uploads []*testpb.UploadRequest, chats []*testpb.ChatRequest, subjects []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(uploads, s.uploads...), append(chats, s.chats...), append(subjects, s.subjects...)
}

// harnessConfig says how a harness is built.
type harnessConfig struct {
	guardOpts    []Option
	verifierOpts []token.VerifierOption
	keys         []*token.Key    // verifier keys; default: the harness key
	source       token.KeySource // instead of keys: the issuer's key source
	serverOpts   []grpc.ServerOption
	dialOpts     []grpc.DialOption    // the harness connection's, after insecure credentials
	profile      func(*token.Profile) // set: the verifier trusts its issuer with this edit of TollgateProfile
	// plain replaces guard.ServerOptions(): the server gets only these
	// options (plus serverOpts), built from the guard.
	plain  func(g *Guard) []grpc.ServerOption
	noInit bool
	strict bool // Init as the guard does by default: unruled methods fail it
	revs   bool // the verifier checks a revocation set on the harness clock
}

type harnessOption func(*harnessConfig)

func withGuardOptions(o ...Option) harnessOption {
	return func(c *harnessConfig) { c.guardOpts = append(c.guardOpts, o...) }
}

func withVerifierOptions(o ...token.VerifierOption) harnessOption {
	return func(c *harnessConfig) { c.verifierOpts = append(c.verifierOpts, o...) }
}

func withKeys(k ...*token.Key) harnessOption {
	return func(c *harnessConfig) { c.keys = k }
}

// withKeySource verifies with the keys of src (a JWKS) instead of a
// static key set.
func withKeySource(src token.KeySource) harnessOption {
	return func(c *harnessConfig) { c.source = src }
}

func withServerOptions(o ...grpc.ServerOption) harnessOption {
	return func(c *harnessConfig) { c.serverOpts = append(c.serverOpts, o...) }
}

// withDialOptions dials the harness connection with o too (a
// WithTransportCredentials replaces the insecure default).
func withDialOptions(o ...grpc.DialOption) harnessOption {
	return func(c *harnessConfig) { c.dialOpts = append(c.dialOpts, o...) }
}

// withProfile builds the verifier with NewVerifierFor, its issuer's
// profile TollgateProfile edited by f.
func withProfile(f func(*token.Profile)) harnessOption {
	return func(c *harnessConfig) { c.profile = f }
}

func withPlainServer(f func(g *Guard) []grpc.ServerOption) harnessOption {
	return func(c *harnessConfig) { c.plain = f }
}

func withRevocationSet() harnessOption { return func(c *harnessConfig) { c.revs = true } }

func withoutInit() harnessOption { return func(c *harnessConfig) { c.noInit = true } }

// withStrictInit leaves the guard's default strict Init: the harness
// registers UnruledService, whose methods then fail Init.
func withStrictInit() harnessOption { return func(c *harnessConfig) { c.strict = true } }

// harness is one running server and a client connection to it.
type harness struct {
	clock    *fakeClock
	key      *testKey
	verifier *token.Verifier
	guard    *Guard
	server   *testServer
	grpcSrv  *grpc.Server
	addr     string // where grpcSrv listens
	conn     *grpc.ClientConn
	client   testpb.TestServiceClient
	unruled  testpb.UnruledServiceClient
	revs     *token.Revocations // with withRevocationSet
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	var cfg harnessConfig
	for _, o := range opts {
		o(&cfg)
	}
	h := &harness{clock: newFakeClock(), key: newTestKey(t, testKID), server: &testServer{}}
	keys := cfg.keys
	if keys == nil {
		keys = []*token.Key{h.key.key}
	}
	ks, err := token.NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	vopts := append([]token.VerifierOption{token.WithClock(h.clock.Now)}, cfg.verifierOpts...)
	if cfg.revs {
		h.revs = token.NewRevocations(token.RevocationsClock(h.clock.Now, h.clock.AfterFunc))
		t.Cleanup(h.revs.Close)
		vopts = append(vopts, token.WithRevocations(h.revs))
	}
	switch {
	case cfg.source != nil:
		h.verifier, err = token.NewVerifierFor([]token.Issuer{{Name: testIss, Keys: cfg.source,
			Audiences: []string{testAud}, Profile: token.TollgateProfile()}}, vopts...)
	case cfg.profile != nil:
		p := token.TollgateProfile()
		cfg.profile(&p)
		h.verifier, err = token.NewVerifierFor([]token.Issuer{{Name: testIss, Keys: ks,
			Audiences: []string{testAud}, Profile: p}}, vopts...)
	default:
		h.verifier, err = token.NewVerifier(ks, testIss, testAud, vopts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The per-peer budget of failed authentications would refuse the many
	// forged tokens these tests send from one loopback peer; the tests of
	// that budget turn it back on with their own WithAuthFailureLimit. The
	// harness serves UnruledService, so Init is lenient unless a test asks
	// for the default. Timers run on the fake clock the verifier reads.
	gopts := []Option{WithAuthFailureLimit(throttle.Limit{}), WithAfterFunc(h.clock.AfterFunc)}
	if !cfg.strict {
		gopts = append(gopts, WithLenientInit())
	}
	gopts = append(gopts, cfg.guardOpts...)
	h.guard, err = NewGuard(h.verifier, gopts...)
	if err != nil {
		t.Fatal(err)
	}
	var sopts []grpc.ServerOption
	if cfg.plain != nil {
		sopts = cfg.plain(h.guard)
	} else {
		sopts = h.guard.ServerOptions()
	}
	sopts = append(sopts, cfg.serverOpts...)
	h.grpcSrv = grpc.NewServer(sopts...)
	testpb.RegisterTestServiceServer(h.grpcSrv, h.server)
	testpb.RegisterUnruledServiceServer(h.grpcSrv, h.server)
	healthpb.RegisterHealthServer(h.grpcSrv, health.NewServer())
	reflection.Register(h.grpcSrv)
	if !cfg.noInit {
		if err := h.guard.Init(h.grpcSrv); err != nil {
			t.Fatalf("Init: %v", err)
		}
	}
	h.addr = loopback.ServeAddr(t, h.grpcSrv)
	h.conn = loopback.Dial(t, h.addr, cfg.dialOpts...)
	h.client = testpb.NewTestServiceClient(h.conn)
	h.unruled = testpb.NewUnruledServiceClient(h.conn)
	return h
}

// token signs the default claims at the harness clock, changed by edit.
func (h *harness) token(t testing.TB, edit ...func(*token.Claims)) string {
	t.Helper()
	c := claims(h.clock.Now())
	for _, e := range edit {
		e(&c)
	}
	return h.key.sign(t, c)
}

// reached returns how many times any handler ran.
func (h *harness) reached() int64 { return h.server.reached.Load() }

// ctx returns a context with a deadline (nothing may hang) carrying the
// given outgoing metadata pairs.
func ctxWith(t testing.TB, kv ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if len(kv) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(kv...))
	}
	return ctx
}

func bearer(t testing.TB, tok string) context.Context {
	t.Helper()
	return ctxWith(t, "authorization", "Bearer "+tok)
}

// wantStatus checks err against the error contract: its code, its exact
// message and exactly one ErrorInfo in the tollgate domain with reason and
// metadata (nil metadata means none).
func wantStatus(t testing.TB, err error, code codes.Code, msg, reason string, md map[string]string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %s", code, reason)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
	var infos []*errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			infos = append(infos, ei)
		} else {
			t.Errorf("unexpected detail %T: %v", d, d)
		}
	}
	if len(infos) != 1 {
		t.Fatalf("got %d ErrorInfo details, want 1: %v", len(infos), st.Details())
	}
	ei := infos[0]
	if ei.GetReason() != reason || ei.GetDomain() != "tollgate" {
		t.Fatalf("ErrorInfo reason=%q domain=%q, want %q %q", ei.GetReason(), ei.GetDomain(), reason, "tollgate")
	}
	if diff := cmp.Diff(md, ei.GetMetadata(), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("ErrorInfo metadata (-want +got):\n%s", diff)
	}
}

func wantMissing(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, codes.Unauthenticated, wantMsgMissing, ReasonTokenMissing, nil)
}

func wantInvalid(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, codes.Unauthenticated, wantMsgInvalid, ReasonTokenInvalid, nil)
}

func wantExpired(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, codes.Unauthenticated, wantMsgExpired, ReasonTokenExpired, nil)
}

func wantNoRule(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", nil)
}

func wantNotOwner(t testing.TB, err error, field string) {
	t.Helper()
	wantStatus(t, err, codes.PermissionDenied, wantMsgNotOwner, "NOT_OWNER", map[string]string{"field": field})
}

// wantNotReached fails when any handler ran.
func (h *harness) wantNotReached(t testing.TB) {
	t.Helper()
	if n := h.reached(); n != 0 {
		t.Fatalf("a handler was reached %d times on a denied call", n)
	}
}

// Hand-built tokens, for headers and signatures the Signer never produces.

var b64url = base64.RawURLEncoding

// claimsJSON is the default claim set at now, as JSON, for forged tokens.
func claimsJSON(now time.Time) string {
	return `{"iss":"` + testIss + `","sub":"alice","aud":"` + testAud + `","iat":` +
		strconv.FormatInt(now.Unix(), 10) + `,"exp":` + strconv.FormatInt(now.Add(10*time.Minute).Unix(), 10) +
		`,"jti":"forged-jti","perms":["test.read","test.write"],"owner_id":"o1"}`
}

// segments splits a compact token.
func segments(tok string) []string { return strings.Split(tok, ".") }
