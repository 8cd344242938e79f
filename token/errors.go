package token

import "errors"

// Sentinel errors a caller of [Verifier.Verify] branches on. Every error
// Verify returns is a *VerifyError that matches exactly one of them with
// errors.Is.
var (
	// ErrInvalidToken: the token is malformed, not signed by a key of the
	// set, or its claims fail a check other than expiry.
	ErrInvalidToken = errors.New("invalid token")
	// ErrExpiredToken: the token is authentic but past its expiry (plus
	// leeway) or past the end of its maximum session.
	ErrExpiredToken = errors.New("token expired")
	// ErrRevokedToken: the token is authentic and valid, but an entry of
	// the verifier's [Revocations] covers it (its jti, its session, or its
	// subject or consumer before a time).
	ErrRevokedToken = errors.New("token revoked")
)

// VerifyError is why a token failed. Verify returns shared, preallocated
// values (a flood of bad tokens allocates no errors), so a VerifyError has no
// exported fields: no caller can change what the next one sees.
type VerifyError struct {
	expired bool
	revoked bool
	cause   string
}

func (e *VerifyError) Error() string {
	switch {
	case e.expired:
		return "token expired: " + e.cause
	case e.revoked:
		return "token revoked: " + e.cause
	}
	return "invalid token: " + e.cause
}

// Cause returns one fixed phrase per check (such as "signature invalid" or
// "unknown kid"): never any part of the token, so it is safe to log.
func (e *VerifyError) Cause() string { return e.cause }

// Is makes errors.Is(err, ErrInvalidToken), errors.Is(err,
// ErrExpiredToken) and errors.Is(err, ErrRevokedToken) work.
func (e *VerifyError) Is(target error) bool {
	switch {
	case e.expired:
		return target == ErrExpiredToken
	case e.revoked:
		return target == ErrRevokedToken
	}
	return target == ErrInvalidToken
}

// Expired reports whether the token failed only because it expired.
func (e *VerifyError) Expired() bool { return e.expired }

// Revoked reports whether the token failed only because it was revoked.
func (e *VerifyError) Revoked() bool { return e.revoked }

func invalid(cause string) error { return &VerifyError{cause: cause} }
func expired(cause string) error { return &VerifyError{expired: true, cause: cause} }

// Fixed causes, preallocated: a flood of bad tokens allocates no errors.
var (
	errTooLarge      = invalid("token too large")
	errEmpty         = invalid("empty token")
	errShape         = invalid("not a compact JWS: want base64url segments and exactly two dots")
	errHeader        = invalid("malformed header")
	errHeaderMember  = invalid("header member not allowed")
	errHeaderDup     = invalid("duplicate header member")
	errTyp           = invalid("typ must be at+jwt")
	errTypProfile    = invalid("typ not accepted by the issuer's profile")
	errUnknownIssuer = invalid("unknown issuer")
	errPermsClaim    = invalid("permissions claim of the wrong type")
	errConsumerClaim = invalid("consumer claim of the wrong type")
	errNoAlg         = invalid("missing alg")
	errAlgMismatch   = invalid("alg does not match the key")
	errNoKID         = invalid("missing kid")
	errUnknownKID    = invalid("unknown kid")
	errSignatureEnc  = invalid("malformed signature")
	errSignature     = invalid("signature invalid")
	errClaims        = invalid("malformed claims")
	errClaimsDup     = invalid("duplicate claim")
	errClaimsCase    = invalid("claim name differs from a registered claim only in case")
	errClaimType     = invalid("claim of the wrong type")
	errNoExp         = invalid("missing exp")
	errNoIat         = invalid("missing iat")
	errIatFuture     = invalid("iat in the future")
	errNbf           = invalid("not valid yet (nbf)")
	errIssuer        = invalid("issuer mismatch")
	errAudience      = invalid("audience mismatch")
	errNoSub         = invalid("missing sub")
	errJTI           = invalid("missing or oversized jti")
	errLifetime      = invalid("lifetime exceeds the maximum")
	errAuthTime      = invalid("auth_time in the future or after iat")
	errExpired       = expired("past exp")
	errSessionOver   = expired("past the maximum session since auth_time")
	errClaimsInvalid = invalid("claims invalid")
	errCnf           = invalid("malformed cnf claim")
	errCnfMethod     = invalid("cnf holds no confirmation method tollgate checks (x5t#S256)")
	errUnbound       = invalid("token not bound to a client certificate, which its issuer's profile requires")
	errRevoked       = &VerifyError{revoked: true, cause: "revoked"}
)
