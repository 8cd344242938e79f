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
//     reaching an UnknownServiceHandler.
//  2. A public method is throttled by peer address (when its rule declares a
//     throttle) and goes to its handler with no session.
//  3. A peer that has spent its budget of failed authentications is refused
//     (ResourceExhausted) before its token is verified.
//  4. The token comes from exactly one `authorization: Bearer <token>`
//     value (scheme case-insensitive, one space), from a configured header
//     such as `x-prc-token`, or from the request field marked
//     `(tollgate.v1.field) = {token: true}` (unary calls and the first message
//     of a stream). When several are present they must be identical. Size and
//     alphabet are checked before any decoding.
//  5. The token is verified by the [session.Verifier] (cached when seen
//     before); a failure is charged to the peer.
//  6. The rule is evaluated: all-of and any-of permissions, then ownership,
//     on the unary request or on every message a stream receives.
//  7. The consumer's token bucket for the method is charged (a stream takes
//     one token when it opens).
//  8. Inside its renewal window, the token's renewal starts beside the
//     handler.
//  9. The handler runs with [session.NewContext]; streams whose token
//     expires mid-way end with Unauthenticated on their next message.
//  10. A renewed token ready in time goes out in the trailer
//     "tollgate-renewed-token".
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
// QuotaFailure; Unavailable when the limiter's store is down and the policy
// is fail-closed. No message ever contains a token or says which check failed
// beyond these reasons; the optional slog logger gets the detail, with a
// fingerprint of the token's jti, never the token.
//
// The interceptors are plain grpc.UnaryServerInterceptor and
// grpc.StreamServerInterceptor values, so they compose with
// go-grpc-middleware's chains and its selector.
package interceptors
