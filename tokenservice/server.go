package tokenservice

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// Server renews tokens with a local renewer (the issuer's signing key).
type Server struct {
	tokenv1.UnimplementedTokenServiceServer
	renewer *token.LocalRenewer
}

// NewServer returns the TokenService implementation.
func NewServer(r *token.LocalRenewer) (*Server, error) {
	if r == nil {
		return nil, errors.New("tokenservice: a renewer is required")
	}
	return &Server{renewer: r}, nil
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
