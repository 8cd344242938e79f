package interceptors

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/internal/testpki"
	"github.com/tollgate/tollgate/token"
)

// Certificate-bound tokens (RFC 8705) over real gRPC on loopback TCP with
// real TLS: a CA, a server certificate and two client certificates made
// here; tokens bound to client A's certificate.

const wantMsgBinding = "access token not bound to this connection's client certificate"

func wantBindingMismatch(t testing.TB, err error) {
	t.Helper()
	wantStatus(t, err, codes.Unauthenticated, wantMsgBinding, ReasonTokenBindingMismatch, nil)
}

// newTestPKI is a CA, a server certificate for 127.0.0.1 and two client
// certificates (internal/testpki).
func newTestPKI(t testing.TB) *testpki.PKI { return testpki.New(t) }

// boundTo edits claims into a token bound to cert.
func boundTo(cert tls.Certificate) func(*token.Claims) {
	return func(c *token.Claims) { c.CertThumbprint = token.CertThumbprint(cert.Leaf.Raw) }
}

// rpcKind makes one call of its kind with tok, in metadata or, with body,
// in the request's token field (the first message's, on streams), and
// returns its error.
type rpcKind struct {
	name string
	call func(ctx context.Context, c testpb.TestServiceClient, tok string, body bool) error
}

var rpcKinds = []rpcKind{
	{"unary", func(ctx context.Context, c testpb.TestServiceClient, tok string, body bool) error {
		req := &testpb.GetRequest{Id: "1"}
		ctx = withToken(ctx, tok, body, func() { req.AccessToken = tok })
		_, err := c.Get(ctx, req)
		return err
	}},
	{"server stream", func(ctx context.Context, c testpb.TestServiceClient, tok string, body bool) error {
		req := &testpb.ListRequest{Count: 2}
		ctx = withToken(ctx, tok, body, func() { req.AccessToken = tok })
		st, err := c.List(ctx, req)
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
	{"client stream", func(ctx context.Context, c testpb.TestServiceClient, tok string, body bool) error {
		first := &testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, Id: "a"}
		ctx = withToken(ctx, tok, body, func() { first.AccessToken = tok })
		st, err := c.Upload(ctx)
		if err != nil {
			return err
		}
		for _, m := range []*testpb.UploadRequest{first, {Owner: &testpb.Owner{Id: "o1"}, Id: "b"}} {
			if err := st.Send(m); err != nil {
				break // the server ended the stream: CloseAndRecv says why
			}
		}
		_, err = st.CloseAndRecv()
		return err
	}},
	{"bidi stream", func(ctx context.Context, c testpb.TestServiceClient, tok string, body bool) error {
		first := &testpb.ChatRequest{OwnerId: "o1", Text: "a"}
		ctx = withToken(ctx, tok, body, func() { first.AccessToken = tok })
		st, err := c.Chat(ctx)
		if err != nil {
			return err
		}
		for _, m := range []*testpb.ChatRequest{first, {OwnerId: "o1", Text: "b"}} {
			if err := st.Send(m); err != nil {
				break
			}
			if _, err := st.Recv(); err != nil {
				return err
			}
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}},
}

// withToken puts tok in ctx's metadata, or, with body, calls setBody.
func withToken(ctx context.Context, tok string, body bool, setBody func()) context.Context {
	if body {
		setBody()
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// eachKind runs f for every RPC kind, with the token in metadata and in
// the body.
func eachKind(t *testing.T, f func(t *testing.T, k rpcKind, body bool)) {
	t.Helper()
	for _, k := range rpcKinds {
		for _, body := range []bool{false, true} {
			name := k.name + "/metadata"
			if body {
				name = k.name + "/body"
			}
			t.Run(name, func(t *testing.T) { f(t, k, body) })
		}
	}
}

// TestBoundTokenOverMutualTLS: a token bound to client A's certificate
// passes on A's mutual-TLS connection, every RPC kind, its token in
// metadata or in the body; on B's connection (another certificate of the
// same CA) and on a connection with a certificate of A's name and key from
// another CA the server also trusts, it is refused with
// TOKEN_BINDING_MISMATCH, whether the token was verified before (a cache
// hit) or not. Bearer tokens pass on every connection.
func TestBoundTokenOverMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	var logged lockedBuffer
	rec := newRecorder()
	h := newHarness(t,
		withServerOptions(grpc.Creds(pki.ServerCreds(tls.RequireAndVerifyClientCert, true))),
		withDialOptions(pki.ClientCreds(&pki.ClientA)),
		withGuardOptions(WithObserver(rec), WithLogger(slog.New(slog.NewJSONHandler(&logged, nil)))))
	connB := testpb.NewTestServiceClient(loopback.Dial(t, h.addr, pki.ClientCreds(&pki.ClientB)))
	connRogue := testpb.NewTestServiceClient(loopback.Dial(t, h.addr, pki.ClientCreds(&pki.RogueA)))
	ctx := ctxWith(t)
	var toks []string
	eachKind(t, func(t *testing.T, k rpcKind, body bool) {
		// Fresh tokens: the first call of each is a cache miss.
		missB := h.token(t, boundTo(pki.ClientA), func(c *token.Claims) { c.ID = "miss-b-" + t.Name() })
		missRogue := h.token(t, boundTo(pki.ClientA), func(c *token.Claims) { c.ID = "miss-r-" + t.Name() })
		wantBindingMismatch(t, k.call(ctx, connB, missB, body))
		wantBindingMismatch(t, k.call(ctx, connRogue, missRogue, body))
		before := h.reached()
		// On A: passes, the first one a cache hit now (the refusals
		// above verified it), the second a miss.
		if err := k.call(ctx, h.client, missB, body); err != nil {
			t.Fatalf("bound token on A's connection: %v", err)
		}
		fresh := h.token(t, boundTo(pki.ClientA), func(c *token.Claims) { c.ID = "fresh-" + t.Name() })
		if err := k.call(ctx, h.client, fresh, body); err != nil {
			t.Fatalf("bound token on A's connection (miss): %v", err)
		}
		if h.reached() != before+2 {
			t.Fatalf("handlers reached %d times, want 2", h.reached()-before)
		}
		// Cache hits on B's connection are refused too.
		before = h.reached()
		wantBindingMismatch(t, k.call(ctx, connB, fresh, body))
		wantBindingMismatch(t, k.call(ctx, connRogue, fresh, body))
		if h.reached() != before {
			t.Fatal("a refused bound token reached a handler")
		}
		// A bearer token passes on each.
		bearerTok := h.token(t)
		for _, c := range []testpb.TestServiceClient{h.client, connB, connRogue} {
			if err := k.call(ctx, c, bearerTok, body); err != nil {
				t.Fatalf("bearer token: %v", err)
			}
		}
		toks = append(toks, missB, fresh)
	})
	var refused int
	for _, e := range rec.take() {
		if e.Reason == ReasonTokenBindingMismatch {
			if e.Decision != DecisionUnauthenticated {
				t.Fatalf("binding refusal observed as %v", e.Decision)
			}
			refused++
		}
	}
	if want := 4 * len(rpcKinds) * 2; refused != want {
		t.Errorf("observer saw %d binding refusals, want %d", refused, want)
	}
	out := logged.String()
	if n := strings.Count(out, `"reason":"TOKEN_BINDING_MISMATCH"`); n != 4*len(rpcKinds)*2 {
		t.Errorf("%d binding refusals logged, want %d:\n%s", n, 4*len(rpcKinds)*2, out)
	}
	if !strings.Contains(out, "another client certificate") {
		t.Errorf("the log does not say why:\n%s", out)
	}
	for _, secret := range append(toks, token.CertThumbprint(pki.ClientA.Leaf.Raw), token.CertThumbprint(pki.ClientB.Leaf.Raw), token.CertThumbprint(pki.RogueA.Leaf.Raw)) {
		for _, part := range strings.Split(secret, ".") {
			if strings.Contains(out, part) {
				t.Fatalf("the log shows a token or a thumbprint:\n%s", out)
			}
		}
	}
}

// TestBoundTokenWithoutMutualTLS: a bound token is refused on every
// connection that is not mutual TLS with a verified client certificate:
// server-only TLS (the client has A's certificate but is never asked for
// it), a client certificate the server asks for but does not verify
// (tls.RequireAnyClientCert: anyone can make one with A's name), and
// plaintext. Bearer tokens pass on all of them, as before.
func TestBoundTokenWithoutMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		name  string
		opts  []harnessOption
		cause string
	}{
		{"server-only TLS", []harnessOption{
			withServerOptions(grpc.Creds(pki.ServerCreds(tls.NoClientCert, false))),
			withDialOptions(pki.ClientCreds(&pki.ClientA)),
		}, "without a verified client certificate"},
		{"client certificate not verified", []harnessOption{
			withServerOptions(grpc.Creds(pki.ServerCreds(tls.RequireAnyClientCert, false))),
			withDialOptions(pki.ClientCreds(&pki.ClientA)),
		}, "without a verified client certificate"},
		{"client certificate optional, none given", []harnessOption{
			withServerOptions(grpc.Creds(pki.ServerCreds(tls.VerifyClientCertIfGiven, false))),
			withDialOptions(pki.ClientCreds(nil)),
		}, "without a verified client certificate"},
		{"plaintext", []harnessOption{
			withDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())),
		}, "without a verified client certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logged lockedBuffer
			h := newHarness(t, append(tc.opts, withGuardOptions(WithLogger(slog.New(slog.NewJSONHandler(&logged, nil)))))...)
			ctx := ctxWith(t)
			eachKind(t, func(t *testing.T, k rpcKind, body bool) {
				bound := h.token(t, boundTo(pki.ClientA), func(c *token.Claims) { c.ID = "b-" + t.Name() })
				for range 2 { // a miss, then a cache hit
					wantBindingMismatch(t, k.call(ctx, h.client, bound, body))
				}
				if err := k.call(ctx, h.client, h.token(t), body); err != nil {
					t.Fatalf("bearer token: %v", err)
				}
			})
			h.wantReachedOnlyByBearer(t)
			if !strings.Contains(logged.String(), tc.cause) {
				t.Errorf("the log does not say %q:\n%s", tc.cause, logged.String())
			}
		})
	}
	// With a verified optional certificate, the binding holds.
	t.Run("client certificate optional, A's given", func(t *testing.T) {
		h := newHarness(t, withServerOptions(grpc.Creds(pki.ServerCreds(tls.VerifyClientCertIfGiven, false))),
			withDialOptions(pki.ClientCreds(&pki.ClientA)))
		if err := rpcKinds[0].call(ctxWith(t), h.client, h.token(t, boundTo(pki.ClientA)), false); err != nil {
			t.Fatal(err)
		}
	})
}

// wantReachedOnlyByBearer checks that the handlers ran once per kind and
// place of the token: the bearer token's calls, never a bound one's.
func (h *harness) wantReachedOnlyByBearer(t *testing.T) {
	t.Helper()
	if n, want := h.reached(), int64(2*len(rpcKinds)); n != want {
		t.Fatalf("handlers reached %d times, want %d (the bearer calls only)", n, want)
	}
}

// TestBoundTokenRenewed: the guard renews a bound token near its expiry;
// the renewed token is bound to the same certificate, passes on A's
// connection and is refused on B's.
func TestBoundTokenRenewed(t *testing.T) {
	pki := newTestPKI(t)
	r := &testRenewer{}
	h := newRenewalHarness(t, r,
		withServerOptions(grpc.Creds(pki.ServerCreds(tls.RequireAndVerifyClientCert, false))),
		withDialOptions(pki.ClientCreds(&pki.ClientA)))
	connB := testpb.NewTestServiceClient(loopback.Dial(t, h.addr, pki.ClientCreds(&pki.ClientB)))
	tok := h.token(t, inWindow, boundTo(pki.ClientA))
	var trailer metadata.MD
	if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{Id: "1"}, grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	renewed := renewedIn(t, trailer)
	if renewed == "" {
		t.Fatal("no renewed token")
	}
	sess, err := h.verifier.Verify(context.Background(), renewed)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sess.CertThumbprint(), token.CertThumbprint(pki.ClientA.Leaf.Raw); got != want {
		t.Fatalf("renewed token bound to %q, want %q", got, want)
	}
	if _, err := h.client.Get(bearer(t, renewed), &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatalf("renewed token on A's connection: %v", err)
	}
	_, err = connB.Get(bearer(t, renewed), &testpb.GetRequest{Id: "1"})
	wantBindingMismatch(t, err)
	// A refused bound token starts no renewal: B's call, in the window,
	// renews nothing.
	calls := r.calls.Load()
	other := h.token(t, inWindow, boundTo(pki.ClientA), func(c *token.Claims) { c.ID = "other" })
	_, err = connB.Get(bearer(t, other), &testpb.GetRequest{Id: "1"}, grpc.Trailer(&trailer))
	wantBindingMismatch(t, err)
	if r.calls.Load() != calls || renewedIn(t, trailer) != "" {
		t.Fatal("a refused bound token was renewed")
	}
}

// TestRequireBoundTokensInGuard: an issuer whose profile requires bound
// tokens has its bearer tokens refused as invalid, on every RPC kind, even
// over mutual TLS; its bound tokens pass there.
func TestRequireBoundTokensInGuard(t *testing.T) {
	pki := newTestPKI(t)
	h := newHarness(t, withProfile(func(p *token.Profile) { p.RequireBoundTokens = true }),
		withServerOptions(grpc.Creds(pki.ServerCreds(tls.RequireAndVerifyClientCert, false))),
		withDialOptions(pki.ClientCreds(&pki.ClientA)))
	ctx := ctxWith(t)
	eachKind(t, func(t *testing.T, k rpcKind, body bool) {
		wantInvalid(t, k.call(ctx, h.client, h.token(t), body))
		if err := k.call(ctx, h.client, h.token(t, boundTo(pki.ClientA)), body); err != nil {
			t.Fatalf("bound token: %v", err)
		}
	})
}

// TestThumbprintOncePerConnection: the client certificate is hashed once
// per connection, not on every call; each connection's certificate is its
// own entry, and the entries leave the cache once their connections are
// gone (the certificates collected).
func TestThumbprintOncePerConnection(t *testing.T) {
	pki := newTestPKI(t)
	h := newHarness(t,
		withServerOptions(grpc.Creds(pki.ServerCreds(tls.RequireAndVerifyClientCert, false))),
		withDialOptions(pki.ClientCreds(&pki.ClientA)))
	// Buffered for every entry there may be: a cleanup never blocks.
	dropped := make(chan struct{}, 8)
	h.guard.thumbs.dropped = dropped
	ctx := ctxWith(t)
	bound := h.token(t, boundTo(pki.ClientA))
	for range 20 {
		for _, k := range rpcKinds {
			if err := k.call(ctx, h.client, bound, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := h.guard.thumbs.computed.Load(); n != 1 {
		t.Fatalf("the certificate was hashed %d times for 80 calls on one connection, want 1", n)
	}
	// A bearer token's call hashes nothing, on a new connection too.
	connB := loopback.Dial(t, h.addr, pki.ClientCreds(&pki.ClientB))
	if _, err := testpb.NewTestServiceClient(connB).Get(bearer(t, h.token(t)), &testpb.GetRequest{Id: "1"}); err != nil {
		t.Fatal(err)
	}
	if n := h.guard.thumbs.computed.Load(); n != 1 {
		t.Fatalf("a bearer token's call hashed a certificate (%d hashes)", n)
	}
	// Two more connections with A's certificate: one entry each.
	var conns []*grpc.ClientConn
	for range 2 {
		c, err := grpc.NewClient("passthrough:///"+h.addr, pki.ClientCreds(&pki.ClientA))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for range 3 {
			if _, err := testpb.NewTestServiceClient(c).Get(bearer(t, bound), &testpb.GetRequest{Id: "1"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := h.guard.thumbs.computed.Load(); n != 3 {
		t.Fatalf("%d hashes for three connections, want 3", n)
	}
	if n := h.guard.thumbs.len(); n != 3 {
		t.Fatalf("%d certificates cached, want 3", n)
	}
	for _, c := range conns {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Their certificates are garbage once the server has dropped the
	// connections: wait for the two cleanups, nudging the collector now
	// and then (a collection is what finds them unreachable; running one
	// back to back would starve the goroutine that runs the cleanups).
	deadline := time.After(30 * time.Second)
	nudge := time.NewTicker(20 * time.Millisecond)
	defer nudge.Stop()
	for n := 0; n < 2; {
		select {
		case <-dropped:
			n++
		case <-nudge.C:
			runtime.GC()
		case <-deadline:
			t.Fatalf("%d certificates still cached after their connections closed, want 1", h.guard.thumbs.len())
		}
	}
	if n := h.guard.thumbs.len(); n != 1 {
		t.Fatalf("%d certificates cached, want the open connection's only", n)
	}
	// The connection still open keeps its entry, and hashes no more.
	if err := rpcKinds[0].call(ctxWith(t), h.client, bound, false); err != nil {
		t.Fatal(err)
	}
	if n := h.guard.thumbs.computed.Load(); n != 3 {
		t.Fatalf("the open connection's certificate was hashed again (%d hashes)", n)
	}
}

// TestThumbprintEqual: every byte counts, and so does the length.
func TestThumbprintEqual(t *testing.T) {
	want := token.CertThumbprint([]byte("cert"))
	var tp thumbprint
	copy(tp[:], want)
	if !tp.equal(want) {
		t.Fatal("a thumbprint differs from itself")
	}
	for i := range want {
		b := []byte(want)
		b[i] ^= 1
		if tp.equal(string(b)) {
			t.Fatalf("equal ignores byte %d", i)
		}
	}
	for _, s := range []string{"", want[:42], want + "A"} {
		if tp.equal(s) {
			t.Fatalf("equal(%q) with a thumbprint of another length", s)
		}
	}
}
