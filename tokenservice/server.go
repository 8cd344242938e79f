package tokenservice

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// RenewMethod is the full name of TokenService.Renew. An issuer whose
// services renew certificate-bound tokens (RFC 8705) for their clients
// serves it with interceptors.WithBindingExempt(RenewMethod): the service
// presents its client's token over its own connection, and the successor
// stays bound to the client's certificate.
const RenewMethod = tokenv1.TokenService_Renew_FullMethodName

// Server renews tokens with a local renewer (the issuer's signing key) and,
// with [WithRevocations], revokes them.
type Server struct {
	tokenv1.UnimplementedTokenServiceServer
	renewer *token.LocalRenewer
	revoke  token.RevocationWriter
	limits  token.RevocationLimits
	now     func() time.Time
}

// ServerOption configures [NewServer].
type ServerOption func(*Server)

// WithRevocations makes Revoke and Logout record revocations through w:
// the shared store every replica follows (package redisstore), or a
// *token.Revocations for a single instance. lim bounds how long an entry
// is kept: pass the verifier's [token.Verifier.RevocationLimits]. now is
// the clock revocations are made at (nil: time.Now).
func WithRevocations(w token.RevocationWriter, lim token.RevocationLimits, now func() time.Time) ServerOption {
	return func(s *Server) { s.revoke, s.limits, s.now = w, lim, now }
}

// NewServer returns the TokenService implementation. Without
// [WithRevocations], Revoke and Logout answer Unimplemented.
func NewServer(r *token.LocalRenewer, opts ...ServerOption) (*Server, error) {
	if r == nil {
		return nil, errors.New("tokenservice: a renewer is required")
	}
	s := &Server{renewer: r}
	for _, o := range opts {
		o(s)
	}
	if s.revoke != nil {
		if s.limits.MaxLifetime <= 0 || s.limits.MaxSession <= 0 || s.limits.Leeway < 0 {
			return nil, errors.New("tokenservice: revocation limits need a positive maximum lifetime and session")
		}
		if s.now == nil {
			s.now = time.Now
		}
	}
	return s, nil
}

// Register registers the service on srv, which must be guarded by tollgate
// (its interceptors put the verified session of the request's token in the
// context; without it every call fails with Unauthenticated).
func Register(srv grpc.ServiceRegistrar, s *Server) {
	tokenv1.RegisterTokenServiceServer(srv, s)
}

// Renew returns the successor of the request's token when it is inside its
// renewal window. Errors: InvalidArgument without a token, Unauthenticated
// when no guard verified it, FailedPrecondition when it is not due or not
// renewable (no auth_time, maximum session reached).
func (s *Server) Renew(ctx context.Context, req *tokenv1.RenewRequest) (*tokenv1.RenewResponse, error) {
	if req.GetToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "token required")
	}
	sess, ok := session.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "token not verified: TokenService must run behind the tollgate guard")
	}
	if !s.renewer.Due(sess) {
		return nil, status.Error(codes.FailedPrecondition, "token not due for renewal")
	}
	r, err := s.renewer.Renew(ctx, req.GetToken(), sess)
	if err != nil {
		if errors.Is(err, token.ErrNotRenewable) {
			return nil, status.Error(codes.FailedPrecondition, "token not renewable")
		}
		return nil, status.Error(codes.Internal, "renewal failed")
	}
	return &tokenv1.RenewResponse{Token: r.Token, ExpiresAt: timestamppb.New(r.ExpiresAt)}, nil
}

// Revoke records the revocation the request names. Errors: InvalidArgument
// for no target, an empty or oversized value, or a before time on a kind
// that takes none; Unimplemented without a revocation store; Unavailable
// when the store did not take it (nothing was revoked: retry). The caller
// needs tollgate.tokens.revoke (declared in the .proto, checked by the
// guard before Revoke runs).
func (s *Server) Revoke(ctx context.Context, req *tokenv1.RevokeRequest) (*tokenv1.RevokeResponse, error) {
	var kind token.RevocationKind
	var value string
	switch t := req.GetTarget().(type) {
	case *tokenv1.RevokeRequest_Jti:
		kind, value = token.RevokeToken, t.Jti
	case *tokenv1.RevokeRequest_Sid:
		kind, value = token.RevokeSession, t.Sid
	case *tokenv1.RevokeRequest_Sub:
		kind, value = token.RevokeSubject, t.Sub
	case *tokenv1.RevokeRequest_Consumer:
		kind, value = token.RevokeConsumer, t.Consumer
	case *tokenv1.RevokeRequest_Ref:
		kind, value = token.RevokeRef, t.Ref
	default:
		return nil, status.Error(codes.InvalidArgument, "revoke: one of jti, sid, sub, consumer or ref is required")
	}
	var before time.Time
	if req.GetBefore() != nil {
		if err := req.GetBefore().CheckValid(); err != nil {
			return nil, status.Error(codes.InvalidArgument, "revoke: invalid before time")
		}
		before = req.GetBefore().AsTime()
	}
	return s.record(ctx, kind, value, before)
}

// Logout revokes the caller's own session: its sid, or its jti (its
// reference, without a jti) when the token has no sid.
func (s *Server) Logout(ctx context.Context, _ *tokenv1.LogoutRequest) (*tokenv1.LogoutResponse, error) {
	sess, ok := session.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "token not verified: TokenService must run behind the tollgate guard")
	}
	kind, value := token.RevokeRef, sess.LogRef()
	switch {
	case sess.SessionID() != "":
		kind, value = token.RevokeSession, sess.SessionID()
	case sess.ID() != "":
		kind, value = token.RevokeToken, sess.ID()
	}
	r, err := s.record(ctx, kind, value, time.Time{})
	if err != nil {
		return nil, err
	}
	return &tokenv1.LogoutResponse{Revoked: r}, nil
}

func (s *Server) record(ctx context.Context, kind token.RevocationKind, value string, before time.Time) (*tokenv1.RevokeResponse, error) {
	if s.revoke == nil {
		return nil, status.Error(codes.Unimplemented, "revoke: this TokenService has no revocation store")
	}
	r, err := token.NewRevocation(kind, value, before, s.now(), s.limits)
	if err != nil {
		// The message names the kind and the rule broken, never the value.
		return nil, status.Error(codes.InvalidArgument, "revoke: "+err.Error())
	}
	if err := s.revoke.Revoke(ctx, r); err != nil {
		return nil, status.Error(codes.Unavailable, "revoke: the revocation store did not record it; nothing was revoked")
	}
	resp := &tokenv1.RevokeResponse{Kind: string(r.Kind), ExpiresAt: timestamppb.New(r.Expires)}
	if !r.Before.IsZero() {
		resp.Before = timestamppb.New(r.Before)
	}
	return resp, nil
}
