package interceptors

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/token"
)

// RenewedTokenKey is the metadata key of a renewed token: a trailer at the
// end of a call, or, for server streams configured to, a header.
const RenewedTokenKey = "tollgate-renewed-token"

// successorSkew is how far in the future, by the source's clock, a
// successor's iat may be: the clock-skew leeway the verifier allows by
// default.
const successorSkew = token.DefaultLeeway

// TokenSource holds a client's current token. It is safe for concurrent use:
// calls read it while responses offer renewed tokens, and it keeps whichever
// token expires later, so concurrent responses can never swap an older
// token back in.
//
// A renewed token arrives in metadata the server (or anything on the path)
// writes, so the source takes only a successor that continues the session
// of the token it was built with: the same iss, sub, sid, aud and azp, and
// the same client certificate binding (cnf x5t#S256, or none); an
// iat that is present and not in the future (30 s of clock skew allowed);
// a lifetime exp − iat no longer than the first token's (its exp − iat, or
// exp − now when it has no iat); and an exp strictly later than the current
// token's. A forged successor therefore expires at most one lifetime (plus
// the skew) after the source's now, never years later. When the issuer
// renews for longer than the first token lived (its renewal TTL is longer),
// say so with [MaxRenewedLifetime]; otherwise every renewal is refused.
//
// Without keys those claims are read unverified ([token.UnverifiedClaims]):
// they only guard the client against an implausible successor; the server
// verifies everything. A client that holds the issuer's public keys should
// give [VerifyRenewalsWith], and then a successor must also verify.
type TokenSource struct {
	cur atomic.Pointer[heldToken]
	// swap serializes replacements, so that onRenew sees them in the order
	// they happened: an application persisting each one must end with the
	// latest. Readers never take it.
	swap     sync.Mutex
	onRenew  func(token string, expiresAt time.Time)
	verifier *token.Verifier
	now      func() time.Time

	// The session every successor must continue, from the first token,
	// and the client certificate it is bound to (cnf x5t#S256), if any.
	iss, sub, sid, azp string
	certThumbprint     string
	aud                []string
	lifetime           time.Duration

	// beforeLock, nil in production, runs in Offer after the lock-free
	// pre-check and before the lock is taken: tests use it to lose the
	// race to a concurrent Offer on purpose.
	beforeLock func()
}

type heldToken struct {
	token string
	exp   time.Time
}

type tokenSourceOptions struct {
	onRenew     func(token string, expiresAt time.Time)
	verifier    *token.Verifier
	verifierSet bool
	now         func() time.Time
	maxLifetime time.Duration // 0: the first token's
}

// TokenSourceOption configures a [TokenSource].
type TokenSourceOption func(*tokenSourceOptions)

// OnRenew calls f, synchronously, each time a renewed token replaces the
// current one, so an application can persist it. Calls never overlap and
// come in the order of the swaps, so expiries only increase. f must not
// block, nor call Offer.
func OnRenew(f func(token string, expiresAt time.Time)) TokenSourceOption {
	return func(o *tokenSourceOptions) { o.onRenew = f }
}

// VerifyRenewalsWith makes the source verify every successor with v (its
// signature and every claim, at v's clock) before the continuity checks: for
// clients that hold the issuer's public keys. A successor v refuses is
// ignored. The first token is not verified. v must not be nil.
func VerifyRenewalsWith(v *token.Verifier) TokenSourceOption {
	return func(o *tokenSourceOptions) { o.verifier, o.verifierSet = v, true }
}

// MaxRenewedLifetime lets a successor live up to d (exp − iat) instead of
// the first token's lifetime: for an issuer whose renewal TTL is longer
// than the lifetime of the token a client starts with. d must be positive;
// keep it to the issuer's TTL, as it bounds how long a forged successor
// could keep the client on a wrong token.
func MaxRenewedLifetime(d time.Duration) TokenSourceOption {
	return func(o *tokenSourceOptions) { o.maxLifetime = d }
}

// TokenSourceClock sets the clock a successor's iat is checked against, and
// that dates a first token without iat (default time.Now). now must not be
// nil.
func TokenSourceClock(now func() time.Time) TokenSourceOption {
	return func(o *tokenSourceOptions) { o.now = now }
}

// NewTokenSource returns a source holding tok, whose claims must be
// readable ([token.UnverifiedClaims]: exp required). The token is not
// verified: it is the one the client was given, and the session every
// successor must continue. The error never contains the token.
func NewTokenSource(tok string, opts ...TokenSourceOption) (*TokenSource, error) {
	o := tokenSourceOptions{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	switch {
	case o.now == nil:
		return nil, errors.New("interceptors: TokenSourceClock(nil)")
	case o.verifierSet && o.verifier == nil:
		return nil, errors.New("interceptors: VerifyRenewalsWith(nil)")
	case o.maxLifetime < 0:
		return nil, errors.New("interceptors: MaxRenewedLifetime must be positive")
	}
	c, err := token.UnverifiedClaims(tok)
	if err != nil {
		return nil, errors.New("interceptors: the initial tok has no readable claims or exp")
	}
	s := &TokenSource{
		onRenew:  o.onRenew,
		verifier: o.verifier,
		now:      o.now,
		iss:      c.Issuer,
		sub:      c.Subject,
		sid:      c.SessionID,
		azp:      c.AuthorizedParty,
		aud:      slices.Clone(c.Audience),

		certThumbprint: c.CertThumbprint,
	}
	switch {
	case o.maxLifetime > 0:
		s.lifetime = o.maxLifetime
	case c.IssuedAt.IsZero():
		s.lifetime = c.ExpiresAt.Sub(o.now())
	default:
		s.lifetime = c.ExpiresAt.Sub(c.IssuedAt)
	}
	s.cur.Store(&heldToken{token: tok, exp: c.ExpiresAt})
	return s, nil
}

// Token returns the current token.
func (s *TokenSource) Token() string { return s.cur.Load().token }

// ExpiresAt returns the current token's (unverified) expiry.
func (s *TokenSource) ExpiresAt() time.Time { return s.cur.Load().exp }

// Offer replaces the current token with tok when tok continues the
// session (see [TokenSource]), passes the verifier given with
// [VerifyRenewalsWith] if any, and expires strictly later than the current
// token; it reports whether it did. Anything else, an unreadable token
// included, is ignored.
func (s *TokenSource) Offer(tok string) bool {
	c, err := token.UnverifiedClaims(tok)
	// The cheap test first: a trailer usually repeats a token already held.
	if err != nil || !c.ExpiresAt.After(s.cur.Load().exp) || !s.continues(&c) {
		return false
	}
	if s.verifier != nil {
		if _, err := s.verifier.Verify(context.Background(), tok); err != nil {
			return false
		}
	}
	if s.beforeLock != nil {
		s.beforeLock()
	}
	s.swap.Lock()
	defer s.swap.Unlock()
	// Rechecked under the lock: a later token may have won meanwhile. With
	// onRenew inside the lock too, two swaps cannot report out of order.
	if !c.ExpiresAt.After(s.cur.Load().exp) {
		return false
	}
	s.cur.Store(&heldToken{token: tok, exp: c.ExpiresAt})
	if s.onRenew != nil {
		s.onRenew(tok, c.ExpiresAt)
	}
	return true
}

// continues reports whether a successor's claims c continue the session of
// the first token. Every successor taken passed this test against the same
// first token, so comparing with it is comparing with the current one.
func (s *TokenSource) continues(c *token.Claims) bool {
	if c.Issuer != s.iss || c.Subject != s.sub || c.SessionID != s.sid ||
		c.AuthorizedParty != s.azp || !slices.Equal(c.Audience, s.aud) ||
		c.CertThumbprint != s.certThumbprint {
		return false
	}
	if c.IssuedAt.IsZero() || c.IssuedAt.After(s.now().Add(successorSkew)) {
		return false
	}
	return c.ExpiresAt.Sub(c.IssuedAt) <= s.lifetime
}

// offerFrom offers the renewed token found in any of mds.
func (s *TokenSource) offerFrom(mds ...metadata.MD) {
	for _, md := range mds {
		for _, v := range md.Get(RenewedTokenKey) {
			s.Offer(v)
		}
	}
}

type clientOptions struct {
	attach   bool
	insecure bool
}

// ClientOption configures the client interceptors and [PerRPCCredentials].
type ClientOption func(*clientOptions)

// PickUpOnly makes the interceptors only collect renewed tokens, for clients
// that attach the token with [PerRPCCredentials] instead. PerRPCCredentials
// ignores it.
func PickUpOnly() ClientOption { return func(o *clientOptions) { o.attach = false } }

// AllowInsecureTransport lets the interceptors and [PerRPCCredentials] send
// the token over a connection without transport security. For tests and
// loopback demos only: a bearer token on plaintext can be read by anyone on
// the path.
func AllowInsecureTransport() ClientOption { return func(o *clientOptions) { o.insecure = true } }

func clientOpts(opts []ClientOption) clientOptions {
	o := clientOptions{attach: true}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// hasAuthorization reports whether the call's outgoing metadata already
// carries an authorization value: the interceptors then attach no token, as
// two values would be refused by the guard.
func hasAuthorization(ctx context.Context) bool {
	md, ok := metadata.FromOutgoingContext(ctx)
	return ok && len(md.Get("authorization")) > 0
}

// UnaryClientInterceptor attaches src's token to every call and swaps in a
// renewed token from the response's trailers or headers. The token travels
// as per-call credentials (grpc.PerRPCCredentials), so grpc-go refuses to
// send it on a connection without transport security: the call fails with
// Unauthenticated before anything is sent, unless [AllowInsecureTransport]
// is given. No token is attached to a call whose outgoing metadata already
// carries authorization.
func UnaryClientInterceptor(src *TokenSource, opts ...ClientOption) grpc.UnaryClientInterceptor {
	o := clientOpts(opts)
	creds := grpc.PerRPCCredentials(&perRPC{src: src, insecure: o.insecure})
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		all := make([]grpc.CallOption, 0, len(callOpts)+3)
		if o.attach && !hasAuthorization(ctx) {
			// First, so that credentials the caller gave for this call
			// replace them.
			all = append(all, creds)
		}
		var header, trailer metadata.MD
		all = append(append(all, callOpts...), grpc.Header(&header), grpc.Trailer(&trailer))
		err := invoker(ctx, method, req, reply, cc, all...)
		src.offerFrom(header, trailer)
		return err
	}
}

// StreamClientInterceptor attaches src's token to every stream and swaps in
// a renewed token from the stream's headers and, once RecvMsg returns io.EOF
// or an error (or, on a client stream, its one answer), its trailers. The
// token is attached as by [UnaryClientInterceptor], with the same refusal
// on a connection without transport security.
func StreamClientInterceptor(src *TokenSource, opts ...ClientOption) grpc.StreamClientInterceptor {
	o := clientOpts(opts)
	creds := grpc.PerRPCCredentials(&perRPC{src: src, insecure: o.insecure})
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		if o.attach && !hasAuthorization(ctx) {
			callOpts = append([]grpc.CallOption{creds}, callOpts...)
		}
		cs, err := streamer(ctx, desc, cc, method, callOpts...)
		if err != nil {
			return nil, err
		}
		return &renewingStream{ClientStream: cs, src: src, serverStreams: desc.ServerStreams}, nil
	}
}

type renewingStream struct {
	grpc.ClientStream
	src *TokenSource
	// serverStreams is false for client streams: their one answer ends the
	// call (grpc-go reads the status before RecvMsg returns it), so RecvMsg
	// returns nil, never io.EOF, and the trailers are final already.
	serverStreams bool
	sawHeader     atomic.Bool
	sawTrailer    atomic.Bool
}

func (s *renewingStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if err == nil {
		s.src.offerFrom(md)
	}
	return md, err
}

func (s *renewingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		// Headers have arrived with the first message; read them once.
		if s.sawHeader.CompareAndSwap(false, true) {
			if md, herr := s.ClientStream.Header(); herr == nil {
				s.src.offerFrom(md)
			}
		}
		if !s.serverStreams && s.sawTrailer.CompareAndSwap(false, true) {
			s.src.offerFrom(s.ClientStream.Trailer())
		}
		return nil
	}
	// io.EOF or a status: the trailers are final now.
	if s.sawTrailer.CompareAndSwap(false, true) {
		s.src.offerFrom(s.ClientStream.Trailer())
	}
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return err
}

type perRPC struct {
	src      *TokenSource
	insecure bool
}

// PerRPCCredentials adapts src to credentials.PerRPCCredentials (for
// grpc.WithPerRPCCredentials). It requires transport security unless
// [AllowInsecureTransport] is given; grpc-go then refuses to send the token
// on an insecure connection. It only attaches tokens: add the client
// interceptors with [PickUpOnly] to collect renewed ones.
func PerRPCCredentials(src *TokenSource, opts ...ClientOption) credentials.PerRPCCredentials {
	o := clientOpts(opts)
	return &perRPC{src: src, insecure: o.insecure}
}

func (p *perRPC) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + p.src.Token()}, nil
}

func (p *perRPC) RequireTransportSecurity() bool { return !p.insecure }
