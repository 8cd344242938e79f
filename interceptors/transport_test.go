package interceptors_test

import (
	"context"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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

// Case 36, server side: with WithRequireTransportSecurity a token arriving
// on plaintext is refused before it is read, while public methods still
// answer; over TLS the same token passes the guard.
func TestRequireTransportSecurity(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	key, err := token.NewHMACKey("k1", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := token.NewKeySet(key)
	signer, _ := token.NewSigner(key)
	verifier, err := token.NewVerifier(keys, "iss", "aud", token.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Sign(token.Claims{Issuer: "iss", Subject: "alice", Audience: []string{"aud"},
		IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), Permissions: []string{"test.read"}})
	if err != nil {
		t.Fatal(err)
	}

	serve := func(t *testing.T, creds credentials.TransportCredentials) string {
		guard, err := interceptors.NewGuard(verifier, interceptors.WithRequireTransportSecurity())
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(append(guard.ServerOptions(), grpc.Creds(creds))...)
		// The unimplemented handlers answer Unimplemented: a call that gets
		// that far passed the guard.
		testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
		if err := guard.Init(srv); err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		return lis.Addr().String()
	}
	call := func(t *testing.T, addr string, creds credentials.TransportCredentials) (getErr, pingErr error) {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := testpb.NewTestServiceClient(conn)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		_, getErr = c.Get(ctx, &testpb.GetRequest{Id: "1"})
		_, pingErr = c.Ping(context.Background(), &testpb.PingRequest{})
		return getErr, pingErr
	}

	t.Run("plaintext", func(t *testing.T) {
		getErr, pingErr := call(t, serve(t, insecure.NewCredentials()), insecure.NewCredentials())
		st := status.Convert(getErr)
		if st.Code() != codes.Unauthenticated || st.Message() != "transport security required" {
			t.Fatalf("token over plaintext: %v", getErr)
		}
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.GetReason()
			}
		}
		if reason != interceptors.ReasonTransportInsecure {
			t.Errorf("reason %q, want %s", reason, interceptors.ReasonTransportInsecure)
		}
		if status.Code(pingErr) != codes.Unimplemented {
			t.Errorf("a public method needs no token, so no transport check: %v", pingErr)
		}
	})
	t.Run("tls", func(t *testing.T) {
		serverTLS, clientTLS := selfSignedTLS(t)
		getErr, _ := call(t, serve(t, credentials.NewTLS(serverTLS)), credentials.NewTLS(clientTLS))
		if status.Code(getErr) != codes.Unimplemented {
			t.Fatalf("over TLS the token must pass the guard: %v", getErr)
		}
	})
}
