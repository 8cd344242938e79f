package interceptors

// Composition with go-grpc-middleware v2: identity in its logging fields,
// the guard as an auth.AuthFunc, a throttle.Limiter as a ratelimit.Limiter,
// and the transport bounds for servers that chain interceptors by hand. See
// the package documentation, "Composing with go-grpc-middleware".

import (
	"context"
	"errors"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/throttle"
)

// The go-grpc-middleware logging fields [WithLoggingFields] adds.
const (
	// LogFieldConsumer is the caller's consumer key ("azp:orders",
	// "sub:alice"), the identity its throttle buckets are keyed on.
	LogFieldConsumer = "tollgate.consumer"
	// LogFieldSubject is the token's sub claim.
	LogFieldSubject = "tollgate.subject"
	// LogFieldJTI is session.Fingerprint of the token's jti, absent when
	// the token has none: it tells calls of one token apart without
	// disclosing it.
	LogFieldJTI = "tollgate.jti_fp"
)

// WithLoggingFields puts the caller's identity into go-grpc-middleware's
// logging fields (logging.InjectFields) of every authenticated call's
// context: [LogFieldConsumer], [LogFieldSubject] and [LogFieldJTI]. Its
// logging interceptor, chained after the guard, then logs who called; so
// does any logger reading logging.ExtractFields. Never the token.
//
// It is off by default because it costs every authenticated call a
// fingerprint of the jti and a few allocations (the fields and their
// context) on the path the guard otherwise keeps allocation-free for a
// cached token. Public calls carry no identity and get no fields; refused
// calls never reach an interceptor chained after the guard (the guard's own
// [WithLogger] logs them).
func WithLoggingFields() Option {
	return func(o *options) { o.loggingFields = true }
}

// withLoggingFields adds the session's identity to ctx's logging fields.
func withLoggingFields(ctx context.Context, sess *session.Session) context.Context {
	f := make(logging.Fields, 0, 6)
	f = append(f, LogFieldConsumer, sess.ConsumerKey(), LogFieldSubject, sess.Subject())
	if ref := sess.LogRef(); ref != "" {
		f = append(f, LogFieldJTI, ref)
	}
	return logging.InjectFields(ctx, f)
}

// callContext is the context a handler of an authenticated call runs with:
// the session, and the logging fields when asked for.
func (g *Guard) callContext(ctx context.Context, sess *session.Session) context.Context {
	if g.opts.loggingFields {
		ctx = withLoggingFields(ctx, sess)
	}
	return session.NewContext(ctx, sess)
}

// TransportOptions returns the transport bounds [Guard.ServerOptions] adds
// beside the interceptors: grpc.MaxHeaderListSize (64 KiB, see
// [WithMaxHeaderListSize]) and grpc.MaxConcurrentStreams (1000, see
// [WithMaxConcurrentStreams]), each left out when set to 0. A server that
// chains the guard's interceptors by hand, with go-grpc-middleware's, adds
// these so that composing does not drop them:
//
//	srv := grpc.NewServer(append(guard.TransportOptions(),
//		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(),
//			guard.UnaryServerInterceptor(), logging.UnaryServerInterceptor(logger)),
//		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(),
//			guard.StreamServerInterceptor(), logging.StreamServerInterceptor(logger)),
//	)...)
func (g *Guard) TransportOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if g.opts.maxHeaderList > 0 {
		opts = append(opts, grpc.MaxHeaderListSize(g.opts.maxHeaderList))
	}
	if g.opts.maxConcurrent > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(g.opts.maxConcurrent))
	}
	return opts
}

// ReasonAuthFuncUnsupported is the ErrorInfo reason (code Internal) of a
// call refused by [Guard.AuthFunc] because its method needs what an
// auth.AuthFunc never sees: the request message, or the stream.
const ReasonAuthFuncUnsupported = "AUTHFUNC_UNSUPPORTED"

var errAuthFuncUnsupported = newStatus(codes.Internal, "tollgate guard misconfigured", ReasonAuthFuncUnsupported, nil)

// AuthFunc returns the guard as a go-grpc-middleware auth.AuthFunc, for a
// server already built on auth.UnaryServerInterceptor. For the call's method
// (grpc.Method) it does what the unary interceptor does before the handler:
// looks up the rule (no rule: denied), reads the token from metadata,
// verifies it, checks all-of and any-of permissions, charges
// the method's throttle (by peer on a public method), and returns the
// context with the [session.Session] (and [WithLoggingFields]' fields).
// Refusals carry the same statuses and ErrorInfo details as the guard's
// interceptors. A renewal inside the window starts as usual, and a renewed
// token ready within the renewal grace goes out in the trailer (waited for
// before the handler, not after it).
//
// An auth.AuthFunc sees neither the request nor the stream, so AuthFunc
// refuses, with Internal (ErrorInfo reason [ReasonAuthFuncUnsupported]) and
// a log line naming the method, every call it cannot check in full: a
// method whose rule checks ownership or declares a token field (both read
// the request), and every streaming method (per-message ownership and
// costs, the bound of open streams and the end of a stream at its token's
// expiry all need the stream). Serve those with the guard's own
// interceptors; never let auth.StreamServerInterceptor(guard.AuthFunc())
// serve streams.
//
// Taking AuthFunc counts as installing the guard's unary interceptor for
// [Guard.Init]; a server that registers streaming methods must still chain
// [Guard.StreamServerInterceptor], or Init fails. Init compiles the rules
// either way, and until it has, AuthFunc refuses with Internal
// (NOT_INITIALIZED) like the interceptors.
//
// A service implementing auth.ServiceAuthFuncOverride replaces AuthFunc for
// its methods in go-grpc-middleware's interceptor: the guard then never
// sees those calls. Do not implement it on a guarded service.
func (g *Guard) AuthFunc() auth.AuthFunc {
	g.unaryTaken.Store(true)
	return func(ctx context.Context) (context.Context, error) {
		method, ok := grpc.Method(ctx)
		if !ok {
			g.log(ctx, "", ReasonAuthFuncUnsupported, nil, "AuthFunc called outside a gRPC call (no method in the context)")
			return nil, errAuthFuncUnsupported
		}
		obs := g.opts.observer != nil
		pl, err := g.plan(ctx, method)
		if err != nil {
			if obs {
				g.observeCall(method, nil, "", nil, StageCall, err)
			}
			return nil, err
		}
		r := pl.rule
		if pl.streams || r.HasOwnership() || r.TokenField() != nil {
			g.log(ctx, method, ReasonAuthFuncUnsupported, nil,
				"the method's rule needs the request or the stream (ownership, a token field, or a streaming method), which an auth.AuthFunc never sees: serve it with the guard's own interceptors (guard.ServerOptions)")
			if obs {
				g.observeCall(method, pl, "", nil, StageCall, errAuthFuncUnsupported)
			}
			return nil, errAuthFuncUnsupported
		}
		if r.Public() {
			err := g.admit(ctx, pl, "", nil, nil, nil)
			if obs {
				g.observeCall(method, pl, g.peerKey(ctx), nil, StageCall, err)
			}
			if err != nil {
				return nil, err
			}
			return ctx, nil
		}
		tok, p := g.metadataToken(ctx)
		var vs verifyStat
		sess, err := g.authenticate(ctx, method, tok, p, &vs)
		if err != nil {
			if obs {
				g.observeCall(method, pl, "", &vs, StageCall, err)
			}
			return nil, err
		}
		denial := g.authorize(ctx, method, r, sess)
		key := g.consumerKey(sess)
		err = g.admit(ctx, pl, key, sess, nil, denial)
		if obs {
			g.observeCall(method, pl, key, &vs, StageCall, err)
		}
		if err != nil {
			return nil, err
		}
		if f := g.startRenewal(pl, tok, sess); f != nil {
			if renewed, ok := g.renew.wait(f); ok {
				_ = grpc.SetTrailer(ctx, metadata.Pairs(RenewedTokenKey, renewed))
			}
		}
		return g.callContext(ctx, sess), nil
	}
}

// RateLimiter applies a throttle.Limiter to calls, as a go-grpc-middleware
// ratelimit.Limiter and as interceptors of its own. Build it with
// [NewRateLimiter].
type RateLimiter struct {
	limiter throttle.Limiter
	limit   throttle.Limit
	cost    int
	peers   peerKeys
}

// NewRateLimiter returns a RateLimiter charging cost (at least 1) tokens per
// call from a bucket per caller and method, under limit. The caller is the
// session's consumer ([session.Session.ConsumerKey]) when the guard ran
// before it, else the peer's IP ("peer:<IP>"); the bucket is the full method
// name. It returns an error for an invalid limit or a nil limiter.
//
// Use it for a throttle apart from the .proto's (one limit for every method
// of a server, say); the rules' own throttles need nothing of it.
func NewRateLimiter(l throttle.Limiter, limit throttle.Limit, cost int) (*RateLimiter, error) {
	if l == nil {
		return nil, errNilLimiter
	}
	if err := limit.Validate(); err != nil {
		return nil, err
	}
	return &RateLimiter{limiter: l, limit: limit, cost: max(cost, 1)}, nil
}

var errNilLimiter = errors.New("interceptors: NewRateLimiter needs a limiter, got nil")

// Limit implements ratelimit.Limiter: nil when the call may go on, else the
// guard's refusal, ResourceExhausted with RetryInfo, QuotaFailure and
// ErrorInfo{RATE_LIMITED} (Unavailable when the limiter cannot decide).
//
// go-grpc-middleware's ratelimit interceptors keep only the code and text of
// that error: their refusal is ResourceExhausted with a message of their
// own, without the details. Use [RateLimiter.UnaryServerInterceptor] and
// [RateLimiter.StreamServerInterceptor] to hand callers the RetryInfo.
func (rl *RateLimiter) Limit(ctx context.Context) error {
	method, _ := grpc.Method(ctx)
	key := ""
	if sess, ok := session.FromContext(ctx); ok {
		key = sess.ConsumerKey()
	} else {
		key = rl.peers.of(ctx)
	}
	d, err := rl.limiter.Allow(ctx, throttle.Key{Consumer: key, Bucket: method}, rl.limit, rl.cost)
	if err != nil {
		return errLimiterDown
	}
	if !d.Allowed {
		return rateLimitedStatus(method, key, d)
	}
	return nil
}

// UnaryServerInterceptor refuses a call [RateLimiter.Limit] refuses, with
// its status in full.
func (rl *RateLimiter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := rl.Limit(ctx); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor refuses opening a stream [RateLimiter.Limit]
// refuses, with its status in full; its messages are not charged.
func (rl *RateLimiter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := rl.Limit(ss.Context()); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

var _ ratelimit.Limiter = (*RateLimiter)(nil)
