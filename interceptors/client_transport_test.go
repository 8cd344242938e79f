package interceptors_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/testpb"
)

// Tests of the one transport rule of the client side: a bearer token is
// sent only over transport security, unless the caller says
// AllowInsecureTransport, for the interceptors as for PerRPCCredentials.

// authRecorder is a server interceptor pair recording, for every call that
// reaches the server at all, the authorization values it carried.
type authRecorder struct {
	mu    sync.Mutex
	calls [][]string
}

func (a *authRecorder) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.calls = append(a.calls, md.Get("authorization"))
	a.mu.Unlock()
}

func (a *authRecorder) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			a.record(ctx)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			a.record(ss.Context())
			return h(srv, ss)
		}),
	}
}

// seen returns how many calls reached the server, and how many of them
// carried an authorization value.
func (a *authRecorder) seen() (calls, withAuth int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.calls {
		if len(v) > 0 {
			withAuth++
		}
	}
	return len(a.calls), withAuth
}

// clientCalls are a unary call and every stream kind, each run to its end.
var clientCalls = append([]streamCase{{"unary Get", func(t *testing.T, c testpb.TestServiceClient) error {
	_, err := c.Get(context.Background(), &testpb.GetRequest{Id: "1"})
	return err
}}}, streamCases...)

// TestInterceptorsRefuseInsecureTransport: on a plaintext connection the
// interceptors' calls fail with Unauthenticated before anything is sent:
// the server sees no call, so no token, and the message holds no token.
// With AllowInsecureTransport the same calls carry the token.
func TestInterceptorsRefuseInsecureTransport(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := newClMinter(t)
	tok := m.at(t, 10*time.Minute)
	src := newSource(t, tok)

	var rec authRecorder
	r := newClRig(t, rec.serverOptions(), withInterceptors(src)...)
	defer r.stop()
	for _, c := range clientCalls {
		err := c.run(t, r.client)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s on plaintext: %v, want Unauthenticated", c.name, err)
		}
		if msg := status.Convert(err).Message(); strings.Contains(msg, tok) {
			t.Errorf("%s: the message holds the token", c.name)
		}
	}
	if calls, withAuth := rec.seen(); calls != 0 || withAuth != 0 {
		t.Errorf("the server saw %d calls, %d with authorization; want none", calls, withAuth)
	}

	var recAllowed authRecorder
	allowed := newClRig(t, recAllowed.serverOptions(), withInterceptors(src, interceptors.AllowInsecureTransport())...)
	defer allowed.stop()
	for _, c := range clientCalls {
		if err := c.run(t, allowed.client); err != nil {
			t.Fatalf("%s with AllowInsecureTransport: %v", c.name, err)
		}
		wantAuth(t, allowed.srv.lastAuth(t), tok)
	}
	if calls, withAuth := recAllowed.seen(); calls != len(clientCalls) || withAuth != calls {
		t.Errorf("with AllowInsecureTransport the server saw %d calls, %d with authorization; want %d and %d",
			calls, withAuth, len(clientCalls), len(clientCalls))
	}
}

// TestInterceptorsOverTLS: over TLS the interceptors attach the token
// without AllowInsecureTransport, on every kind of call.
func TestInterceptorsOverTLS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	serverTLS, clientTLS := selfSignedTLS(t)
	m := newClMinter(t)
	tok := m.at(t, 10*time.Minute)
	src := newSource(t, tok)
	r := newClRig(t, []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS))},
		append(withInterceptors(src), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))...)
	defer r.stop()
	for _, c := range clientCalls {
		if err := c.run(t, r.client); err != nil {
			t.Fatalf("%s over TLS: %v", c.name, err)
		}
		wantAuth(t, r.srv.lastAuth(t), tok)
	}
}
