package interceptors

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// BenchmarkGuardOnlyUnaryBound is BenchmarkGuardOnlyUnary for a token
// bound to the connection's client certificate, on a peer whose TLS state
// holds it: the cost of the binding check per cache-hit call (the
// certificate hashed once, then a weak-pointer lookup and a 43-byte
// compare), to set beside BenchmarkGuardOnlyUnary. /hash-every-call is
// what hashing the certificate on every call would cost instead.
//
//	go test -run=^$ -bench='GuardOnlyUnary' ./interceptors
func BenchmarkGuardOnlyUnaryBound(b *testing.B) {
	pki := newTestPKI(b)
	key := newTestKey(b, testKID)
	g, _ := benchGuard(b, key)
	intercept := g.UnaryServerInterceptor()
	c := claims(t0)
	c.CertThumbprint = token.CertThumbprint(pki.ClientA.Leaf.Raw)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key.sign(b, c)))
	leaf := pki.ClientA.Leaf
	ctx = peer.NewContext(ctx, &peer.Peer{
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000},
		AuthInfo: credentials.TLSInfo{
			State:          tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}},
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		},
	})
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "item-1"}
	info := &grpc.UnaryServerInfo{FullMethod: testpb.TestService_Update_FullMethodName}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.Run("cached-thumbprint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := intercept(ctx, req, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hash-every-call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = token.CertThumbprint(leaf.Raw)
			if _, err := intercept(ctx, req, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
}
