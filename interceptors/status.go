package interceptors

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/token"
)

// Domain is the ErrorInfo domain of every tollgate refusal.
const Domain = "tollgate"

// ErrorInfo reasons for authentication failures. Authorization failures use
// permissions.ReasonPermissionDenied and permissions.ReasonNotOwner.
const (
	ReasonTokenMissing = "TOKEN_MISSING"
	ReasonTokenInvalid = "TOKEN_INVALID"
	ReasonTokenExpired = "TOKEN_EXPIRED"
	// ReasonTokenRevoked: the token is valid but revoked (its jti, its
	// session, or its subject or consumer before a time).
	ReasonTokenRevoked = "TOKEN_REVOKED"
	// ReasonTokenBindingMismatch: the token is valid but bound to a client
	// certificate (RFC 8705: cnf x5t#S256), and the call's connection is
	// not mutual TLS with that certificate (another certificate, none, an
	// unverified one, server-only TLS or plaintext).
	ReasonTokenBindingMismatch = "TOKEN_BINDING_MISMATCH"
	// ReasonTransportInsecure: the guard requires transport security and the
	// call came in plaintext.
	ReasonTransportInsecure = "TRANSPORT_INSECURE"
	// ReasonNotInitialized: the call came before [Guard.Init] succeeded.
	ReasonNotInitialized = "NOT_INITIALIZED"
)

// One fixed message per reason: a caller learns the reason, never which check
// failed or anything about its token.
const (
	msgTokenMissing = "missing access token"
	msgTokenInvalid = "invalid access token"
	msgTokenExpired = "access token expired"
	msgTokenRevoked = "access token revoked"
	msgTokenBinding = "access token not bound to this connection's client certificate"
	msgDenied       = "permission denied"
	msgNotOwner     = "not the owner of the resource"
	msgNotReady     = "tollgate guard not initialized"
)

func newStatus(code codes.Code, msg, reason string, md map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md})
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// Authentication errors never vary, so they are built once.
var (
	errTokenMissing = newStatus(codes.Unauthenticated, msgTokenMissing, ReasonTokenMissing, nil)
	errTokenInvalid = newStatus(codes.Unauthenticated, msgTokenInvalid, ReasonTokenInvalid, nil)
	errTokenExpired = newStatus(codes.Unauthenticated, msgTokenExpired, ReasonTokenExpired, nil)
	errTokenRevoked = newStatus(codes.Unauthenticated, msgTokenRevoked, ReasonTokenRevoked, nil)
	errTokenBinding = newStatus(codes.Unauthenticated, msgTokenBinding, ReasonTokenBindingMismatch, nil)
	errNoRule       = newStatus(codes.PermissionDenied, msgDenied, permissions.ReasonPermissionDenied, nil)
	errNotReady     = newStatus(codes.Internal, msgNotReady, ReasonNotInitialized, nil)
	errInsecure     = newStatus(codes.Unauthenticated, "transport security required", ReasonTransportInsecure, nil)
)

// verifyStatus maps a verifier error to its reason and status.
func verifyStatus(err error) (string, error) {
	if errors.Is(err, token.ErrExpiredToken) {
		return ReasonTokenExpired, errTokenExpired
	}
	if errors.Is(err, token.ErrRevokedToken) {
		return ReasonTokenRevoked, errTokenRevoked
	}
	return ReasonTokenInvalid, errTokenInvalid
}

// deniedStatus maps a permissions error to its reason and status.
func deniedStatus(err error) (string, error) {
	var d *permissions.DeniedError
	if !errors.As(err, &d) {
		return permissions.ReasonPermissionDenied, errNoRule
	}
	switch {
	case d.NoRule:
		return permissions.ReasonPermissionDenied, errNoRule
	case d.Reason == permissions.ReasonNotOwner:
		return permissions.ReasonNotOwner, newStatus(codes.PermissionDenied, msgNotOwner, permissions.ReasonNotOwner, map[string]string{"field": d.Field})
	default:
		md := map[string]string{"permission": d.Permission}
		if d.AnyOf {
			md["any_of"] = "true"
		}
		return permissions.ReasonPermissionDenied, newStatus(codes.PermissionDenied, msgDenied, permissions.ReasonPermissionDenied, md)
	}
}
