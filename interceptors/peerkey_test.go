package interceptors

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/peer"
)

func peerCtx(addr net.Addr) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: addr})
}

// The remembered keys are the keys the address would format to: an IPv4
// peer seen as an IPv4-mapped IPv6 address is the same peer, the port never
// counts, and past the bound the memory starts afresh without changing any
// key.
func TestPeerKeys(t *testing.T) {
	var k peerKeys
	cases := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}, "peer:10.1.2.3"},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3).To4(), Port: 2}, "peer:10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 3}, "peer:2001:db8::1"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "peer:/run/x.sock"},
	}
	for range 2 { // formatted, then remembered
		for _, c := range cases {
			if got := k.of(peerCtx(c.addr)); got != c.want {
				t.Fatalf("%v: %q, want %q", c.addr, got, c.want)
			}
		}
	}
	if got := k.of(context.Background()); got != "peer:unknown" {
		t.Fatalf("no peer: %q", got)
	}
	for i := range maxPeerKeys + 10 {
		ip := net.IPv4(10, 9, byte(i>>8), byte(i))
		if got, want := k.of(peerCtx(&net.TCPAddr{IP: ip})), "peer:"+ip.String(); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
	}
	if n := k.n.Load(); n > maxPeerKeys {
		t.Fatalf("%d keys remembered, bound %d", n, maxPeerKeys)
	}
}
