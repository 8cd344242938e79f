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
//     address. Any other token is verified by the [session.Verifier], unless
//     its peer has spent its budget of failed authentications: then it is
//     refused (ResourceExhausted) before any signature check. Failures are
//     charged to the peer.
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
// TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED; PermissionDenied with
// PERMISSION_DENIED (metadata "permission") or NOT_OWNER (metadata
// "field"); ResourceExhausted with RATE_LIMITED plus RetryInfo and
// QuotaFailure, or with TOO_MANY_STREAMS (metadata "max_streams") plus
// QuotaFailure; Unavailable when the limiter's store is down and the policy
// is fail-closed. No message ever contains a token or says which check failed
// beyond these reasons; the optional slog logger gets the detail, with a
// fingerprint of the token's jti, never the token.
//
// The interceptors are plain grpc.UnaryServerInterceptor and
// grpc.StreamServerInterceptor values, so they compose with
// go-grpc-middleware's chains and its selector.
package interceptors
