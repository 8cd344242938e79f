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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/token"
)

// All four RPC kinds pass with a good token, and each handler sees the
// session's subject in its context.
func TestAllRPCKindsAllowed(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t)

	t.Run("unary Get", func(t *testing.T) {
		resp, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "item-1"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSubject() != "alice" || resp.GetId() != "item-1" {
			t.Fatalf("handler saw subject %q id %q, want alice item-1", resp.GetSubject(), resp.GetId())
		}
	})

	t.Run("server stream List", func(t *testing.T) {
		stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.GetSubject() != "alice" {
				t.Fatalf("handler saw subject %q", m.GetSubject())
			}
			got = append(got, m.GetIndex())
		}
		if diff := cmp.Diff([]int32{0, 1, 2}, got); diff != "" {
			t.Fatalf("items (-want +got):\n%s", diff)
		}
	})

	t.Run("client stream Upload", func(t *testing.T) {
		before := len(subjects(h))
		stream, err := h.client.Upload(bearer(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b"} {
			if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, Id: id}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCount() != 2 {
			t.Fatalf("count %d, want 2", resp.GetCount())
		}
		if s := subjects(h); len(s) != before+1 || s[before] != "alice" {
			t.Fatalf("Upload handler saw subjects %q", s[before:])
		}
	})

	t.Run("bidi Chat", func(t *testing.T) {
		stream, err := h.client.Chat(bearer(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range []string{"hi", "there"} {
			if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: text}); err != nil {
				t.Fatal(err)
			}
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.GetText() != "alice:"+text {
				t.Fatalf("echo %q, want %q", m.GetText(), "alice:"+text)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of chat: %v", err)
		}
	})
}

func subjects(h *harness) []string {
	_, _, s := h.server.recorded()
	return s
}

// The error contract, reason by reason, on unary calls; the handler is
// never reached.
func TestErrorContract(t *testing.T) {
	other := newTestKey(t, testKID) // same kid, other secret
	unknownKID := newTestKey(t, "k9")

	cases := []struct {
		name string
		call func(h *harness) error
		want func(t testing.TB, err error)
	}{
		{"no token: TOKEN_MISSING", func(h *harness) error {
			_, err := h.client.Get(ctxWith(t), &testpb.GetRequest{})
			return err
		}, wantMissing},
		{"malformed: TOKEN_INVALID", func(h *harness) error {
			_, err := h.client.Get(bearer(t, "not-a-token"), &testpb.GetRequest{})
			return err
		}, wantInvalid},
		{"bad signature (case 6, 27): TOKEN_INVALID", func(h *harness) error {
			_, err := h.client.Get(bearer(t, other.sign(t, claims(h.clock.Now()))), &testpb.GetRequest{})
			return err
		}, wantInvalid},
		{"unknown kid (case 7, 27): TOKEN_INVALID", func(h *harness) error {
			_, err := h.client.Get(bearer(t, unknownKID.sign(t, claims(h.clock.Now()))), &testpb.GetRequest{})
			return err
		}, wantInvalid},
		{"wrong iss (case 18): TOKEN_INVALID", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) { c.Issuer = "https://evil.test" })
			_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
			return err
		}, wantInvalid},
		{"wrong aud (case 19, 27): TOKEN_INVALID", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) { c.Audience = []string{"another-service"} })
			_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
			return err
		}, wantInvalid},
		{"expired (case 15): TOKEN_EXPIRED", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) {
				c.IssuedAt = c.IssuedAt.Add(-20 * time.Minute)
				c.ExpiresAt = c.IssuedAt.Add(10 * time.Minute) // ten minutes ago: far past the leeway
			})
			_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
			return err
		}, wantExpired},
		{"lacks permission: PERMISSION_DENIED", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.write"} })
			_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
			return err
		}, func(t testing.TB, err error) {
			wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read"})
		}},
		{"any-of missing: PERMISSION_DENIED lists both", func(h *harness) error {
			_, err := h.client.Either(bearer(t, h.token(t)), &testpb.EitherRequest{})
			return err
		}, func(t testing.TB, err error) {
			wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED",
				map[string]string{"permission": "test.alpha,test.beta", "any_of": "true"})
		}},
		{"any-of without the all-of test.read: PERMISSION_DENIED test.read", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.alpha"} })
			_, err := h.client.Either(bearer(t, tok), &testpb.EitherRequest{})
			return err
		}, func(t testing.TB, err error) {
			wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read"})
		}},
		{"not owner: NOT_OWNER owner.id", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) { c.Extra = map[string]any{"owner_id": "o2"} })
			_, err := h.client.Update(bearer(t, tok), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "x"})
			return err
		}, func(t testing.TB, err error) { wantNotOwner(t, err, "owner.id") }},
		{"owner field unset: NOT_OWNER", func(h *harness) error {
			_, err := h.client.Update(bearer(t, h.token(t)), &testpb.UpdateRequest{Id: "x"})
			return err
		}, func(t testing.TB, err error) { wantNotOwner(t, err, "owner.id") }},
		{"no owner_id claim: NOT_OWNER", func(h *harness) error {
			tok := h.token(t, func(c *token.Claims) { c.Extra = nil })
			_, err := h.client.Update(bearer(t, tok), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "x"})
			return err
		}, func(t testing.TB, err error) { wantNotOwner(t, err, "owner.id") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.want(t, tc.call(h))
			h.wantNotReached(t)
		})
	}
}

// Case 27: bad signature, unknown kid and bad aud are indistinguishable to
// the caller: the whole status, details included, is identical.
func TestCase27Opacity(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	badSig := newTestKey(t, testKID).sign(t, claims(now))
	unknownKID := newTestKey(t, "k-unknown").sign(t, claims(now))
	badAud := h.token(t, func(c *token.Claims) { c.Audience = []string{"other"} })
	var sts []*status.Status
	for _, tok := range []string{badSig, unknownKID, badAud} {
		_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
		wantInvalid(t, err)
		sts = append(sts, status.Convert(err))
	}
	for i := 1; i < len(sts); i++ {
		if diff := cmp.Diff(sts[0].Proto(), sts[i].Proto(), protocmp.Transform()); diff != "" {
			t.Fatalf("status %d differs from status 0 (-0 +%d):\n%s", i, i, diff)
		}
	}
	h.wantNotReached(t)
}

// Any-of: test.read plus one of test.alpha/test.beta lets the call through.
func TestAnyOfAllowed(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"test.alpha", "test.beta"} {
		tok := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.read", p} })
		if _, err := h.client.Either(bearer(t, tok), &testpb.EitherRequest{}); err != nil {
			t.Fatalf("with %s: %v", p, err)
		}
	}
	if h.reached() != 2 {
		t.Fatalf("reached %d, want 2", h.reached())
	}
}

// Ownership: the owner may Update, a non-owner may not, unless holding the
// bypass permission test.admin.
func TestOwnershipAndBypass(t *testing.T) {
	h := newHarness(t)
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "x"}
	if _, err := h.client.Update(bearer(t, h.token(t)), req); err != nil {
		t.Fatalf("owner: %v", err)
	}
	stranger := h.token(t, func(c *token.Claims) { c.Extra = map[string]any{"owner_id": "o2"} })
	_, err := h.client.Update(bearer(t, stranger), req)
	wantNotOwner(t, err, "owner.id")
	admin := h.token(t, func(c *token.Claims) {
		c.Extra = map[string]any{"owner_id": "o2"}
		c.Permissions = append(c.Permissions, "test.admin")
	})
	if _, err := h.client.Update(bearer(t, admin), req); err != nil {
		t.Fatalf("bypass: %v", err)
	}
	// test.admin bypasses ownership, not the permission test.write.
	adminOnly := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.admin"} })
	_, err = h.client.Update(bearer(t, adminOnly), req)
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.write"})
	if h.reached() != 2 {
		t.Fatalf("reached %d, want 2 (owner and bypass)", h.reached())
	}
}

// Case 26: a service without any rule is denied, unary and bidi, even with
// a good token; the handler never runs.
func TestCase26NoRuleDenied(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t)
	_, err := h.unruled.Forgotten(bearer(t, tok), &testpb.ForgottenRequest{})
	wantNoRule(t, err)

	stream, err := h.unruled.ForgottenStream(bearer(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantNoRule(t, err)
	h.wantNotReached(t)
}

// Case 26: a grant for Get (test.read) does not reach GetAll
// (test.read_all).
func TestCase26GrantDoesNotReachSibling(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t, func(c *token.Claims) { c.Permissions = []string{"test.read"} })
	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{}); err != nil {
		t.Fatalf("Get: %v", err)
	}
	_, err := h.client.GetAll(bearer(t, tok), &testpb.GetAllRequest{})
	wantStatus(t, err, codes.PermissionDenied, wantMsgDenied, "PERMISSION_DENIED", map[string]string{"permission": "test.read_all"})
	if h.reached() != 1 {
		t.Fatalf("reached %d, want 1 (Get only)", h.reached())
	}
}

// Case 26: an unknown service or method reaching an UnknownServiceHandler is
// denied by the guard; the unknown handler never runs. Public matching is
// exact: a public method's name in another case is unknown, not public.
func TestCase26UnknownServiceHandlerDenied(t *testing.T) {
	var unknownRan atomic.Int64
	unknown := func(srv any, stream grpc.ServerStream) error {
		unknownRan.Add(1)
		return nil // would be OK if ever reached
	}
	h := newHarness(t, withServerOptions(grpc.UnknownServiceHandler(unknown)))
	tok := h.token(t)
	for _, method := range []string{
		"/tollgate.testpb.v1.Nope/Get",
		"/tollgate.testpb.v1.TestService/Nope",
		"/tollgate.testpb.v1.TestService/ping",  // Ping is public; ping is not
		"/tollgate.testpb.v1.TestService/PING",  // nor PING
		"/tollgate.testpb.v1.testservice/Ping",  // nor another service's case
		"/grpc.health.v1.health/Check",          // health is public; this is not health
		"/grpc.health.v1.Health/CheckSomething", // no prefix matching
	} {
		for _, ctx := range []context.Context{ctxWith(t), bearer(t, tok)} {
			// An unknown method of a known service goes to the unknown
			// handler too, through the stream interceptor.
			err := h.conn.Invoke(ctx, method, &testpb.GetRequest{}, &testpb.GetResponse{})
			wantNoRule(t, err)
		}
	}
	if n := unknownRan.Load(); n != 0 {
		t.Fatalf("unknown service handler ran %d times", n)
	}
	h.wantNotReached(t)
}

// Without an UnknownServiceHandler, a public method's name in another case
// is simply unimplemented: never public.
func TestCase26PublicMatchingExact(t *testing.T) {
	h := newHarness(t)
	for _, method := range []string{
		"/tollgate.testpb.v1.TestService/ping",
		"/tollgate.testpb.v1.TestService/Ping/",
		"/grpc.health.v1.health/Check",
	} {
		err := h.conn.Invoke(ctxWith(t), method, &testpb.PingRequest{}, &testpb.PingResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: got %v, want Unimplemented", method, err)
		}
	}
	h.wantNotReached(t)
	tbl := h.guard.Table()
	if r, ok := tbl.Rule(methodPing); !ok || !r.Public() {
		t.Fatalf("Ping is not public in the table")
	}
	for _, m := range []string{"/tollgate.testpb.v1.TestService/ping", "/tollgate.testpb.v1.TestService/Pin", "tollgate.testpb.v1.TestService/Ping"} {
		if _, ok := tbl.Rule(m); ok {
			t.Errorf("%s has a rule; matching must be exact", m)
		}
	}
}

// WithPublicMethods matches exactly: a wrong-case name leaves the method
// denied; the exact name makes it public.
func TestWithPublicMethodsExact(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithPublicMethods(
		"/tollgate.testpb.v1.UnruledService/forgotten",
		"/tollgate.testpb.v1.UnruledService/",
		"/tollgate.testpb.v1.UnruledService/Forgotten ",
	)))
	_, err := h.unruled.Forgotten(ctxWith(t), &testpb.ForgottenRequest{})
	wantNoRule(t, err)
	h.wantNotReached(t)

	h2 := newHarness(t, withGuardOptions(WithPublicMethods(methodForgotten)))
	if _, err := h2.unruled.Forgotten(ctxWith(t), &testpb.ForgottenRequest{}); err != nil {
		t.Fatalf("exactly named public method: %v", err)
	}
	// Only that method: the stream next to it stays denied.
	stream, err := h2.unruled.ForgottenStream(ctxWith(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantNoRule(t, err)
	if h2.reached() != 1 {
		t.Fatalf("reached %d, want 1", h2.reached())
	}
}

// reflectList lists the services through reflection with the given context
// and returns the names, or the error of the stream.
func reflectList(t *testing.T, conn *grpc.ClientConn, ctx context.Context) ([]string, error) {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// A refused stream may end before the request is sent (io.EOF); its
	// status comes from Recv.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	r, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("end of reflection stream: %w", err)
	}
	return names, nil
}

// Health checks work without a token by default. Reflection needs a valid
// token (any permission): an anonymous caller would otherwise read every
// rule, including which permission bypasses ownership.
func TestHealthPublicReflectionAuthenticatedByDefault(t *testing.T) {
	h := newHarness(t)
	resp, err := healthpb.NewHealthClient(h.conn).Check(ctxWith(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health status %v", resp.GetStatus())
	}

	_, err = reflectList(t, h.conn, ctxWith(t))
	wantMissing(t, err)
	noPerms := h.token(t, func(c *token.Claims) { c.Permissions = nil })
	names, err := reflectList(t, h.conn, bearer(t, noPerms))
	if err != nil {
		t.Fatalf("reflection with a token: %v", err)
	}
	if !strings.Contains(strings.Join(names, " "), "tollgate.testpb.v1.TestService") {
		t.Fatalf("reflection listed %v", names)
	}
}

// Reflection is public only when the user says so.
func TestReflectionPublicWhenNamed(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithPublicServices("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection")))
	if _, err := reflectList(t, h.conn, ctxWith(t)); err != nil {
		t.Fatalf("reflection named public: %v", err)
	}
}

// WithPublicServices() (none): health needs a rule like everything else,
// and has none, so it is denied.
func TestWithPublicServicesNone(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithPublicServices()))
	_, err := healthpb.NewHealthClient(h.conn).Check(ctxWith(t), &healthpb.HealthCheckRequest{})
	wantNoRule(t, err)
	// Even with a good token: no rule means no access.
	_, err = healthpb.NewHealthClient(h.conn).Check(bearer(t, h.token(t)), &healthpb.HealthCheckRequest{})
	wantNoRule(t, err)
}

// A public method needs no token, and its handler gets no session.
func TestPublicPing(t *testing.T) {
	h := newHarness(t)
	resp, err := h.client.Ping(ctxWith(t), &testpb.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHadSession() {
		t.Fatal("public handler saw a session")
	}
	if h.reached() != 1 {
		t.Fatalf("reached %d", h.reached())
	}
}

// By default Init fails and names every method without a rule (and only
// those: ruled, public and authenticated-by-default ones are fine).
func TestInitStrictByDefault(t *testing.T) {
	h := newHarness(t, withStrictInit(), withoutInit())
	err := h.guard.Init(h.grpcSrv)
	if err == nil {
		t.Fatal("Init succeeded with unruled methods")
	}
	if !errors.Is(err, permissions.ErrCompile) {
		t.Errorf("error %v does not wrap permissions.ErrCompile", err)
	}
	for _, m := range []string{methodForgotten, "/tollgate.testpb.v1.UnruledService/ForgottenStream", "WithLenientInit"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error does not name %s: %v", m, err)
		}
	}
	if strings.Contains(err.Error(), "TestService") || strings.Contains(err.Error(), "grpc.health") || strings.Contains(err.Error(), "reflection") {
		t.Errorf("error names methods that have rules or defaults: %v", err)
	}
	if h.guard.Table() != nil {
		t.Fatal("a failed Init installed a table")
	}
	// Still not initialized: every call fails closed.
	_, err = h.client.Get(bearer(t, h.token(t)), &testpb.GetRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("after failed Init: %v", err)
	}
	h.wantNotReached(t)
}

// A server built without the guard's interceptors would serve every call
// unchecked: Init refuses it and says how to fix it, for each kind missing.
func TestInitRefusesServerWithoutInterceptors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		plain   func(g *Guard) []grpc.ServerOption
		missing []string
	}{
		{"no ServerOptions", func(*Guard) []grpc.ServerOption { return nil }, []string{"unary interceptor", "stream interceptor"}},
		{"unary only", func(g *Guard) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor())}
		}, []string{"stream interceptor"}},
		{"stream only", func(g *Guard) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.ChainStreamInterceptor(g.StreamServerInterceptor())}
		}, []string{"unary interceptor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withPlainServer(tc.plain), withoutInit())
			err := h.guard.Init(h.grpcSrv)
			if err == nil {
				t.Fatal("Init succeeded")
			}
			for _, want := range append(tc.missing, "guard.ServerOptions()") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
			if len(tc.missing) == 1 && strings.Contains(err.Error(), "unary interceptor and") {
				t.Errorf("error names an installed interceptor: %v", err)
			}
			// Without the interceptors grpc-go serves the call itself: the
			// test can only show that Init refused, which a server's
			// start-up code turns into not serving.
			if h.guard.Table() != nil {
				t.Fatal("a refused Init installed a table")
			}
		})
	}
}

// Calls before Init fail with Internal, unary and streaming, public or not;
// nothing is let through by default.
func TestCallsBeforeInit(t *testing.T) {
	h := newHarness(t, withoutInit())
	tok := h.token(t)
	check := func(err error) {
		t.Helper()
		wantStatus(t, err, codes.Internal, "tollgate guard not initialized", "NOT_INITIALIZED", nil)
	}
	_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{})
	check(err)
	_, err = h.client.Ping(ctxWith(t), &testpb.PingRequest{})
	check(err)
	_, err = healthpb.NewHealthClient(h.conn).Check(ctxWith(t), &healthpb.HealthCheckRequest{})
	check(err)
	stream, err := h.client.Chat(bearer(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	check(err)
	h.wantNotReached(t)

	if err := h.guard.Init(h.grpcSrv); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{}); err != nil {
		t.Fatalf("after Init: %v", err)
	}
}
