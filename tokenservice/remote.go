package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// DefaultRemoteTimeout bounds one remote renewal.
const DefaultRemoteTimeout = 2 * time.Second

// ErrBadResponse reports an issuer answer that cannot be a renewal.
var ErrBadResponse = errors.New("tokenservice: issuer returned an unusable token")

// RemoteRenewer renews tokens by calling an issuer's TokenService. It
// implements token.Renewer.
type RemoteRenewer struct {
	client   tokenv1.TokenServiceClient
	verifier *token.Verifier
	timeout  time.Duration
}

// RemoteOption configures a [RemoteRenewer].
type RemoteOption func(*RemoteRenewer)

// WithRemoteTimeout bounds each remote call (default 2 s).
func WithRemoteTimeout(d time.Duration) RemoteOption { return func(r *RemoteRenewer) { r.timeout = d } }

// NewRemoteRenewer returns a renewer calling the TokenService on conn and
// checking every answer with v, the service's own verifier (the issuer's
// public keys are enough). Give conn transport security in production: the
// token travels in the request.
func NewRemoteRenewer(conn grpc.ClientConnInterface, v *token.Verifier, opts ...RemoteOption) (*RemoteRenewer, error) {
	if conn == nil {
		return nil, errors.New("tokenservice: a connection is required")
	}
	if v == nil {
		return nil, errors.New("tokenservice: a verifier is required to check the issuer's answers")
	}
	r := &RemoteRenewer{client: tokenv1.NewTokenServiceClient(conn), verifier: v, timeout: DefaultRemoteTimeout}
	for _, o := range opts {
		o(r)
	}
	if r.timeout <= 0 {
		return nil, errors.New("tokenservice: timeout must be positive")
	}
	return r, nil
}

// Renew asks the issuer for the successor of tok. The answer is handed to
// callers only if it verifies with the service's own verifier, continues the
// same session (sub, sid, azp, iss and auth_time unchanged) and expires later
// than sess; anything else is [ErrBadResponse]. A compromised issuer or a
// tampered connection therefore cannot hand a client someone else's token.
// Errors carry the gRPC code of a failed call but never its message, so no
// token can reach them.
func (r *RemoteRenewer) Renew(ctx context.Context, tok string, sess *session.Session) (token.Renewed, error) {
	if sess == nil {
		return token.Renewed{}, errors.New("tokenservice: a verified session is required")
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.client.Renew(ctx, &tokenv1.RenewRequest{Token: tok})
	if err != nil {
		return token.Renewed{}, status.Error(status.Code(err), "tokenservice: remote renewal failed")
	}
	next := resp.GetToken()
	if next == "" || next == tok {
		return token.Renewed{}, ErrBadResponse
	}
	ns, err := r.verifier.Verify(ctx, next)
	if err != nil {
		return token.Renewed{}, fmt.Errorf("%w: it does not verify here", ErrBadResponse)
	}
	if ns.Subject() != sess.Subject() || ns.SessionID() != sess.SessionID() || ns.AuthorizedParty() != sess.AuthorizedParty() ||
		ns.Issuer() != sess.Issuer() || !ns.AuthTime().Equal(sess.AuthTime()) || ns.CertThumbprint() != sess.CertThumbprint() {
		return token.Renewed{}, fmt.Errorf("%w: it does not continue the same session", ErrBadResponse)
	}
	if !ns.ExpiresAt().After(sess.ExpiresAt()) {
		return token.Renewed{}, fmt.Errorf("%w: it does not expire later", ErrBadResponse)
	}
	return token.Renewed{Token: next, ExpiresAt: ns.ExpiresAt()}, nil
}
