// Package interceptors puts tollgate in front of a gRPC server: a [Guard]
// whose unary and stream interceptors verify every call's token, run the
// method's compiled rule, and hand the handler a context holding the
// caller's [session.Session].
//
// # The call path
//
//  1. The method's rule is looked up by full method name in the table
//     compiled by [Guard.Init]. A method without a rule is denied
//     (PermissionDenied): the default is deny, also for unknown methods
//     reaching an UnknownServiceHandler. By default Init refuses to start a
//     server with unruled methods, or one built without the guard's
//     interceptors.
//  2. A public method is throttled by peer address (when its rule declares a
//     throttle), its streams are bounded per peer, and it goes to its
//     handler with no session.
//  3. The token comes from exactly one `authorization: Bearer <token>`
//     value (scheme case-insensitive, one space), from a configured header
//     such as `x-prc-token`, or from the request field marked
//     `(tollgate.v1.field) = {token: true}` (unary calls and the first message
//     of a stream). When several are present they must be identical. Size and
//     alphabet are checked before any decoding.
//  4. A token the verifier has accepted before (a cache hit) is admitted at
//     once: it is never refused for other callers' failures from the same
//     address. Any other token is verified by the [token.Verifier], unless
//     its peer has spent its budget of failed authentications: then it is
//     refused (ResourceExhausted) before any signature check. Failures are
//     charged to the peer. A token bound to a client certificate (RFC 8705:
//     cnf x5t#S256), verified or a cache hit, is then admitted only on a
//     mutual-TLS connection whose verified client certificate has that
//     thumbprint (hashed once per connection), else refused with
//     TOKEN_BINDING_MISMATCH; a bearer token costs this step nothing.
//  5. The rule is evaluated: all-of and any-of permissions, then ownership,
//     on the unary request or on every message a stream receives.
//  6. The consumer's token bucket for the method is charged: a unary call
//     and a stream's opening take the rule's cost, every later message a
//     client or bidi stream receives takes its message cost. Calls refused
//     in step 5 are charged too. Buckets are keyed by the claim the
//     consumer came from ("azp:orders", "sub:alice").
//  7. A stream counts against its consumer's bound of open streams of the
//     method (max_streams, or the guard's default).
//  8. Inside its renewal window, the token's renewal starts beside the
//     handler (single flight per token).
//  9. The handler runs with [session.NewContext]. A stream ends with
//     Unauthenticated (TOKEN_EXPIRED) when its token expires, at that
//     instant, even when no message comes.
//  10. A renewed token ready in time, and accepted by the guard's own
//     verifier, goes out in the trailer "tollgate-renewed-token".
//
// The client side ([TokenSource], [UnaryClientInterceptor],
// [StreamClientInterceptor], [PerRPCCredentials]) attaches the token, only
// over transport security unless told [AllowInsecureTransport], and swaps in
// a renewed token that expires later and continues the same session.
//
// # Errors a caller sees
//
// Every refusal is a gRPC status with a google.rpc.ErrorInfo detail in the
// "tollgate" domain and one fixed message per reason: Unauthenticated with
// TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED or TOKEN_BINDING_MISMATCH;
// PermissionDenied with
// PERMISSION_DENIED (metadata "permission") or NOT_OWNER (metadata
// "field"); ResourceExhausted with RATE_LIMITED plus RetryInfo and
// QuotaFailure, or with TOO_MANY_STREAMS (metadata "max_streams") plus
// QuotaFailure; Unavailable when the limiter's store is down and the policy
// is fail-closed. No message ever contains a token or says which check failed
// beyond these reasons; the optional slog logger gets the detail, with a
// fingerprint of the token's jti, never the token.
//
// # Composing with go-grpc-middleware
//
// The interceptors are plain grpc.UnaryServerInterceptor and
// grpc.StreamServerInterceptor values, so they chain with go-grpc-middleware
// v2's. Its package is also named interceptors: import this one under an
// alias, as the examples do:
//
//	tollgate "github.com/tollgate/tollgate/interceptors"
//
// Order the chain recovery → guard → logging (then anything else):
//
//	srv := grpc.NewServer(append(guard.TransportOptions(),
//		grpc.ChainUnaryInterceptor(
//			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(internalError)),
//			guard.UnaryServerInterceptor(),
//			logging.UnaryServerInterceptor(logger)),
//		grpc.ChainStreamInterceptor(
//			recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(internalError)),
//			guard.StreamServerInterceptor(),
//			logging.StreamServerInterceptor(logger)),
//	)...)
//
// Why in this order, and what else to keep:
//
//   - recovery outermost, so that a panic anywhere in the chain (guard,
//     logging, handler) becomes Internal instead of killing the server. Give
//     it a handler that returns a plain Internal status: its default one sends
//     the panic value and the stack trace to the caller. A panicking call
//     unwinds past logging, which then logs its start but not its end; add a
//     second recovery innermost if panics must reach the access log.
//   - the guard before logging, so that logging sees the caller: with
//     [WithLoggingFields] the guard adds the consumer, subject and jti
//     fingerprint to the logging fields. Calls the guard refuses never reach
//     logging; [WithLogger] logs them.
//   - [Guard.TransportOptions] beside a hand-built chain: [Guard.ServerOptions]
//     adds grpc.MaxHeaderListSize (64 KiB) and grpc.MaxConcurrentStreams
//     (1000) besides the interceptors, and a chain built by hand without
//     TransportOptions silently falls back to grpc-go's 16 MiB header lists
//     and unbounded streams.
//   - nothing given with grpc.UnaryInterceptor or grpc.StreamInterceptor:
//     grpc-go runs it before every chained interceptor, ahead of the guard.
//
// Never wrap the guard in go-grpc-middleware's selector: for a method its
// matcher does not select, the guard does not run at all, so deny by default
// is gone. A method without a rule, which the guard would refuse, is served
// to anyone. The guard cannot warn about it: a skipped call never reaches it,
// and [Guard.Init] sees only that its interceptors were taken, not what
// wraps them. Exempt a method from authentication with a rule instead,
// `option (tollgate.v1.method) = {public: true}` in the .proto (or
// [WithPublicMethods] for a method whose .proto is not yours): the guard still
// sees the call, throttles it by peer, bounds its streams, and keeps denying
// every other method without a rule.
//
// A server built on go-grpc-middleware's auth interceptor can take
// [Guard.AuthFunc]. An auth.AuthFunc sees neither the request nor the stream,
// so it refuses (Internal, AUTHFUNC_UNSUPPORTED) methods whose rule checks
// ownership or declares a token field, and every stream: chain
// [Guard.StreamServerInterceptor] for those. [NewRateLimiter] adapts a
// throttle.Limiter to go-grpc-middleware's ratelimit.Limiter, for a limit
// apart from the .proto's throttles.
package interceptors
