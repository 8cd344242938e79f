// Package testpki makes the certificates of tests over real TLS: a CA, a
// server certificate for 127.0.0.1, two client certificates, and one of
// client A's name and key issued by another CA.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// PKI is a CA and the certificates it issued.
type PKI struct {
	Pool             *x509.CertPool
	Server           tls.Certificate // for 127.0.0.1
	ClientA, ClientB tls.Certificate
	// RogueA is a certificate of client A's subject and key issued by
	// another CA: the same name, not the same certificate.
	RogueA  tls.Certificate
	RogueCA *x509.Certificate
}

// New makes a CA and its certificates, valid for an hour either side of
// now.
func New(t testing.TB) *PKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		key := newKey()
		serial++
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: name},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return ca, key
	}
	issue := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, key *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) tls.Certificate {
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	}
	ca, caKey := newCA("tollgate test CA")
	rogue, rogueKey := newCA("another CA")
	p := &PKI{Pool: x509.NewCertPool(), RogueCA: rogue}
	p.Pool.AddCert(ca)
	p.Server = issue(ca, caKey, newKey(), "127.0.0.1", x509.ExtKeyUsageServerAuth)
	keyA := newKey()
	p.ClientA = issue(ca, caKey, keyA, "client-a", x509.ExtKeyUsageClientAuth)
	p.ClientB = issue(ca, caKey, newKey(), "client-b", x509.ExtKeyUsageClientAuth)
	p.RogueA = issue(rogue, rogueKey, keyA, "client-a", x509.ExtKeyUsageClientAuth)
	return p
}

// ServerCreds are the server's TLS credentials, asking for client
// certificates as auth says, verified against the test CA (and, with
// rogue, the other CA too).
func (p *PKI) ServerCreds(auth tls.ClientAuthType, rogue bool) credentials.TransportCredentials {
	pool := p.Pool
	if rogue {
		pool = p.Pool.Clone()
		pool.AddCert(p.RogueCA)
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{p.Server}, ClientAuth: auth, ClientCAs: pool, MinVersion: tls.VersionTLS13})
}

// ClientCreds are a client's TLS credentials presenting cert (none when
// nil).
func (p *PKI) ClientCreds(cert *tls.Certificate) grpc.DialOption {
	cfg := &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}
