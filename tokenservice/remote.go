package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/session"
)

// DefaultRemoteTimeout bounds one remote renewal.
const DefaultRemoteTimeout = 2 * time.Second

// ErrBadResponse reports an issuer answer that cannot be a renewal.
var ErrBadResponse = errors.New("tokenservice: issuer returned an unusable token")

// RemoteRenewer renews tokens by calling an issuer's TokenService. It
// implements session.Renewer.
type RemoteRenewer struct {
	client  tokenv1.TokenServiceClient
	timeout time.Duration
}

// RemoteOption configures a [RemoteRenewer].
type RemoteOption func(*RemoteRenewer)

// WithTimeout bounds each remote call (default 2 s).
func WithTimeout(d time.Duration) RemoteOption { return func(r *RemoteRenewer) { r.timeout = d } }

// NewRemoteRenewer returns a renewer calling the TokenService on conn. Give
// conn transport security in production: the token travels in the request.
func NewRemoteRenewer(conn grpc.ClientConnInterface, opts ...RemoteOption) (*RemoteRenewer, error) {
	if conn == nil {
		return nil, errors.New("tokenservice: a connection is required")
	}
	r := &RemoteRenewer{client: tokenv1.NewTokenServiceClient(conn), timeout: DefaultRemoteTimeout}
	for _, o := range opts {
		o(r)
	}
	if r.timeout <= 0 {
		return nil, errors.New("tokenservice: timeout must be positive")
	}
	return r, nil
}

// Renew asks the issuer for the successor of token. The answer must be a
// token that expires later than sess; anything else is [ErrBadResponse].
// Errors never contain a token.
func (r *RemoteRenewer) Renew(ctx context.Context, token string, sess *session.Session) (session.Renewed, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.client.Renew(ctx, &tokenv1.RenewRequest{Token: token})
	if err != nil {
		return session.Renewed{}, fmt.Errorf("tokenservice: remote renewal failed: %w", err)
	}
	exp, err := session.UnverifiedExpiry(resp.GetToken())
	if err != nil || resp.GetToken() == token {
		return session.Renewed{}, ErrBadResponse
	}
	if sess != nil && !exp.After(sess.ExpiresAt()) {
		return session.Renewed{}, ErrBadResponse
	}
	return session.Renewed{Token: resp.GetToken(), ExpiresAt: exp}, nil
}
