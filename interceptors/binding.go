package interceptors

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/tollgate/tollgate/session"
)

// Certificate-bound tokens (RFC 8705 §3): a token whose cnf claim holds
// x5t#S256 is proof of its caller only on a mutual-TLS connection whose
// client certificate has that thumbprint. The guard checks it on every call
// (cache hits included: a verified token is cached, its binding never is,
// since the same token may arrive on another connection), after the token
// is verified and before anything else, so a stolen bound token gets
// nowhere on any other connection.

// thumbprintLen is the length of a SHA-256 thumbprint in unpadded
// base64url.
const thumbprintLen = 43

// thumbprint is a client certificate's thumbprint, as the token carries it.
type thumbprint [thumbprintLen]byte

// thumbprints are the thumbprints of the client certificates of the guard's
// connections, each computed once per connection rather than on every call.
//
// A connection's peer certificate is one *x509.Certificate for the
// connection's whole life (grpc-go keeps the TLS state of its handshake in
// the peer it hands every call), so the pointer is the key. It is held
// weakly: an entry keeps nothing alive, and a cleanup drops it once the
// certificate, and with it its last connection, is gone. The map is thus
// never larger than the set of certificates still referenced (by open
// connections, or by garbage not yet collected), however many connections
// come and go: no bound to tune, no eviction that would make a server of
// many connections hash on every call, no certificate pinned in memory
// after its connection closed. A weak pointer never compares equal to one
// made from another object, even one allocated at the same address later,
// so an entry whose cleanup has not run yet is never mistaken for a new
// certificate's.
type thumbprints struct {
	m        sync.Map     // weak.Pointer[x509.Certificate] -> *thumbprint
	computed atomic.Int64 // thumbprints hashed so far (tests read it)
	// dropped, when set (by tests, before any connection), is told of
	// every entry a cleanup removes.
	dropped chan<- struct{}
}

// of returns cert's thumbprint, from the cache when it has it.
func (t *thumbprints) of(cert *x509.Certificate) *thumbprint {
	wp := weak.Make(cert)
	if v, ok := t.m.Load(wp); ok {
		return v.(*thumbprint)
	}
	t.computed.Add(1)
	sum := sha256.Sum256(cert.Raw)
	tp := new(thumbprint)
	base64.RawURLEncoding.Encode(tp[:], sum[:])
	if v, loaded := t.m.LoadOrStore(wp, tp); loaded {
		return v.(*thumbprint)
	}
	// The cleanup gets the weak pointer, not the certificate: it must not
	// keep alive what it waits for.
	runtime.AddCleanup(cert, func(wp weak.Pointer[x509.Certificate]) {
		t.m.Delete(wp)
		if t.dropped != nil {
			t.dropped <- struct{}{}
		}
	}, wp)
	return tp
}

// equal reports, in constant time, whether t is the thumbprint s: how much
// of it matched is nobody's business. (The verifier accepts thumbprints of
// 43 characters only; a string is compared without a conversion that
// would allocate.)
func (t *thumbprint) equal(s string) bool {
	if len(s) != thumbprintLen {
		return false
	}
	var diff byte
	for i := range t {
		diff |= t[i] ^ s[i]
	}
	return subtle.ConstantTimeByteEq(diff, 0) == 1
}

// len returns the number of certificates cached, for tests.
func (t *thumbprints) len() int {
	n := 0
	t.m.Range(func(any, any) bool { n++; return true })
	return n
}

// verifiedClientCert returns the client certificate of the call's
// connection when the connection is mutual TLS and the TLS stack verified
// that certificate (the server's tls.Config has ClientAuth
// tls.RequireAndVerifyClientCert, or VerifyClientCertIfGiven and the client
// sent one): the leaf of a verified chain. Otherwise nil: plaintext, other
// transport security, server-only TLS, or a client certificate nobody
// verified (tls.RequireAnyClientCert), which proves nothing.
func verifiedClientCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	st := &ti.State
	if len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 || st.PeerCertificates[0] == nil {
		return nil
	}
	return st.PeerCertificates[0]
}

// checkBinding refuses sess, whose token is bound to a client certificate
// (sess.CertThumbprint() is not empty), unless the call's connection is
// mutual TLS with that certificate. Callers test the thumbprint first, so a
// bearer token's call pays for one comparison and nothing else.
func (g *Guard) checkBinding(ctx context.Context, method string, sess *session.Session) error {
	if g.opts.bindingExempt[method] {
		return nil
	}
	want := sess.CertThumbprint()
	cert := verifiedClientCert(ctx)
	if cert == nil {
		g.log(ctx, method, ReasonTokenBindingMismatch, sess, "certificate-bound token on a connection without a verified client certificate")
		return errTokenBinding
	}
	if !g.thumbs.of(cert).equal(want) {
		g.log(ctx, method, ReasonTokenBindingMismatch, sess, "certificate-bound token presented with another client certificate")
		return errTokenBinding
	}
	return nil
}
