package token

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
	"github.com/tollgate/tollgate/session"
)

// Renewal defaults.
const (
	DefaultRenewalWindow = 1.0 / 3
	DefaultRenewalTTL    = 15 * time.Minute
)

// ErrNotRenewable reports a session that must not be renewed: no auth_time,
// expired, or at the end of its maximum session.
var ErrNotRenewable = errors.New("token: not renewable")

// Why a session is not renewable, built once: Due runs on every call and
// must not format an error to say no.
var (
	errNoAuthTime  = fmt.Errorf("%w: no auth_time", ErrNotRenewable)
	errExternal    = fmt.Errorf("%w: a token of an issuer this service does not renew", ErrNotRenewable)
	errRenewLate   = fmt.Errorf("%w: expired", ErrNotRenewable)
	errSessionEnd  = fmt.Errorf("%w: maximum session reached", ErrNotRenewable)
	errNotOutlived = fmt.Errorf("%w: the successor would not expire later", ErrNotRenewable)
)

// RenewalPolicy decides when a token is renewed and what its successor
// looks like. Stateless tokens cannot be revoked, so they must be short; the
// policy keeps renewal from turning a short token into an endless one:
//
//   - only a token in the last Window of its lifetime (remaining ≤ Window ×
//     (exp − iat)) is due;
//   - only while now < auth_time + MaxSession; a token without auth_time is
//     never renewed, because its session has no absolute end;
//   - the successor keeps sub, sid, aud, iss, azp, perms, auth_time, the
//     certificate binding (cnf x5t#S256: a renewed bound token is bound to
//     the same certificate) and the custom claims, gets a new jti and iat = now, and
//     exp = min(now + TTL, auth_time + MaxSession). auth_time is never reset,
//     so a chain of renewals ends at auth_time + MaxSession, however often
//     it is renewed. A successor that would not expire later than the token
//     it replaces is not minted.
type RenewalPolicy struct {
	Window     float64       // fraction of the lifetime, in (0, 1); default 1/3
	TTL        time.Duration // lifetime of renewed tokens; default 15 min
	MaxSession time.Duration // absolute end after auth_time; default 8 h
}

// DefaultRenewalPolicy returns the last third, 15 min and 8 h.
func DefaultRenewalPolicy() RenewalPolicy {
	return RenewalPolicy{Window: DefaultRenewalWindow, TTL: DefaultRenewalTTL, MaxSession: DefaultMaxSession}
}

// Validate reports a policy that cannot work.
func (p RenewalPolicy) Validate() error {
	switch {
	case !(p.Window > 0 && p.Window < 1):
		return fmt.Errorf("token: renewal window %v outside (0, 1)", p.Window)
	case p.TTL <= 0:
		return fmt.Errorf("token: renewal TTL must be positive")
	case p.MaxSession <= 0:
		return fmt.Errorf("token: maximum session must be positive")
	}
	return nil
}

// Due reports whether sess should be renewed at now: it is not expired, has
// an auth_time whose maximum session has not ended, is inside the renewal
// window, and its successor would expire later than it does. Expired means
// past exp with no leeway: a token accepted only thanks to the leeway is
// never renewed.
func (p RenewalPolicy) Due(sess *session.Session, now time.Time) bool {
	if sess == nil || sess.IssuedAt().IsZero() || sess.AuthTime().IsZero() {
		return false
	}
	// The window first: most calls are outside it, and the test is two
	// subtractions.
	life := sess.ExpiresAt().Sub(sess.IssuedAt())
	remaining := sess.ExpiresAt().Sub(now)
	if float64(remaining) > p.Window*float64(life) {
		return false
	}
	// A token whose successor would not outlive it (it already ends at the
	// session's end, or it has more left than the TTL) is not due: renewing
	// it is refused, and it would be retried on every call.
	_, _, err := p.successorTimes(sess, now)
	return err == nil
}

// successorTimes returns the iat and exp of the token that renews sess at
// now, or why there is none. It is the one statement of those rules, shared
// by Due and Successor so the two can never disagree.
func (p RenewalPolicy) successorTimes(sess *session.Session, now time.Time) (iat, exp time.Time, err error) {
	if sess == nil || sess.AuthTime().IsZero() {
		return iat, exp, errNoAuthTime
	}
	if !sessionmint.Of(sess).Renewable {
		// A token of an external issuer: its issuer renews it, through
		// its own refresh flow.
		return iat, exp, errExternal
	}
	if !now.Before(sess.ExpiresAt()) {
		return iat, exp, errRenewLate
	}
	end := sess.AuthTime().Add(p.MaxSession)
	iat = now.Truncate(time.Second)
	// From the truncated iat, so exp - iat never exceeds the TTL (and the
	// verifier's maximum lifetime) by the truncated fraction.
	exp = iat.Add(p.TTL)
	if end.Before(exp) {
		exp = end
	}
	exp = exp.Truncate(time.Second)
	if !exp.After(iat) || !now.Before(end) {
		return iat, exp, errSessionEnd
	}
	// A successor that does not outlive the token it replaces renews
	// nothing: clients and the remote renewer discard it. Refusing it ends a
	// chain at its cap instead of minting one useless token per call there.
	if !exp.After(sess.ExpiresAt()) {
		return iat, exp, errNotOutlived
	}
	return iat, exp, nil
}

// Successor returns the claims of the token that renews sess at now, or
// ErrNotRenewable. It does not check the window: see [RenewalPolicy.Due].
func (p RenewalPolicy) Successor(sess *session.Session, now time.Time) (Claims, error) {
	iat, exp, err := p.successorTimes(sess, now)
	if err != nil {
		return Claims{}, err
	}
	d := sessionmint.Of(sess)
	return Claims{
		Issuer:          d.Issuer,
		Subject:         d.Subject,
		Audience:        slices.Clone(d.Audience),
		IssuedAt:        iat,
		ExpiresAt:       exp,
		AuthTime:        d.AuthTime,
		SessionID:       d.SessionID,
		AuthorizedParty: d.AZP,
		Permissions:     slices.Clone(d.Perms),
		CertThumbprint:  d.CertThumbprint,
		Extra:           d.ClaimsMap(),
	}, nil
}

// Renewed is a renewed token and its expiry.
type Renewed struct {
	Token     string
	ExpiresAt time.Time
}

// Renewer mints the successor of a verified token. token is the token the
// session was verified from (a remote renewer sends it to the issuer); sess
// is its verified session. Implementations must refuse sessions their policy
// does not allow to renew.
type Renewer interface {
	Renew(ctx context.Context, token string, sess *session.Session) (Renewed, error)
}

// LocalRenewer renews with the current signing key of a verifier's key set,
// for services that hold the signing key (a shared HMAC secret, or the
// issuer itself).
type LocalRenewer struct {
	verifier *Verifier
	issuer   *issuer // the verifier's renewable issuer, whose keys sign
	policy   RenewalPolicy
}

// NewLocalRenewer returns a renewer signing with v's current signing key
// (looked up on every renewal, so a rotation takes effect at once) on v's
// clock. The policy's TTL may not exceed v's maximum lifetime nor its
// MaxSession v's maximum session: renewed tokens would be refused.
func NewLocalRenewer(v *Verifier, policy RenewalPolicy) (*LocalRenewer, error) {
	if v == nil {
		return nil, errors.New("token: a verifier is required")
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	is := v.renewing()
	if is == nil {
		return nil, errors.New("token: the verifier trusts no issuer whose tokens this service renews (Profile.Renewable)")
	}
	if is.maxLife > 0 && policy.TTL > is.maxLife {
		return nil, fmt.Errorf("token: renewal TTL %v exceeds the verifier's maximum lifetime %v", policy.TTL, is.maxLife)
	}
	if policy.MaxSession > v.opts.maxSession {
		return nil, fmt.Errorf("token: renewal maximum session %v exceeds the verifier's %v", policy.MaxSession, v.opts.maxSession)
	}
	if _, ok := is.keys.Load().SigningKey(); !ok {
		return nil, fmt.Errorf("%w: the key set holds no key that can sign", ErrKey)
	}
	return &LocalRenewer{verifier: v, issuer: is, policy: policy}, nil
}

// Policy returns the renewal policy.
func (r *LocalRenewer) Policy() RenewalPolicy { return r.policy }

// Due reports whether sess is due for renewal now, on the verifier's clock.
func (r *LocalRenewer) Due(sess *session.Session) bool { return r.policy.Due(sess, r.verifier.Now()) }

// Renew signs the successor of sess with the current signing key. It does
// not re-verify token: callers pass a session the verifier just returned.
func (r *LocalRenewer) Renew(ctx context.Context, token string, sess *session.Session) (Renewed, error) {
	_ = token
	if err := ctx.Err(); err != nil {
		return Renewed{}, err
	}
	if r.verifier.Revoked(sess) {
		return Renewed{}, errRevoked
	}
	claims, err := r.policy.Successor(sess, r.verifier.Now())
	if err != nil {
		return Renewed{}, err
	}
	key, ok := r.issuer.keys.Load().SigningKey()
	if !ok {
		return Renewed{}, fmt.Errorf("%w: the key set holds no key that can sign", ErrKey)
	}
	signer, err := NewSigner(key)
	if err != nil {
		return Renewed{}, err
	}
	tok, err := signer.Sign(claims)
	if err != nil {
		return Renewed{}, err
	}
	if r.verifier.Revoked(sess) {
		// Revoked while the successor was being made: it goes nowhere (a
		// successor of a revoked session, or issued after a subject's
		// not-before, would otherwise outlive the revocation).
		return Renewed{}, errRevoked
	}
	return Renewed{Token: tok, ExpiresAt: claims.ExpiresAt}, nil
}
