package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks tokens against a [KeySet] and returns the [Session] they
// carry. It is safe for concurrent use; [Verifier.SetKeys] swaps the key set
// atomically while calls are in flight.
type Verifier struct {
	keys      atomic.Pointer[KeySet]
	issuer    string
	audience  string
	opts      verifierOptions
	validator *jwt.Validator
	cache     *cache
}

// NewVerifier returns a verifier that accepts tokens signed by a key of
// keys, issued by issuer for audience (both compared exactly). It returns an
// error, never a verifier with a hole in it, when anything is missing or out
// of range.
func NewVerifier(keys *KeySet, issuer, audience string, opts ...VerifierOption) (*Verifier, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: no key configured (tollgate has no default key)", ErrKeySet)
	}
	if issuer == "" || audience == "" {
		return nil, errors.New("session: issuer and audience are required")
	}
	o := verifierOptions{
		leeway:       DefaultLeeway,
		maxLifetime:  DefaultMaxLifetime,
		maxSession:   DefaultMaxSession,
		maxTokenSize: DefaultMaxTokenSize,
		now:          time.Now,
		cacheEntries: DefaultCacheEntries,
		cacheBytes:   DefaultCacheBytes,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	v := &Verifier{issuer: issuer, audience: audience, opts: o}
	v.keys.Store(keys)
	v.validator = jwt.NewValidator(
		jwt.WithLeeway(o.leeway),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(o.now),
	)
	if o.cacheEntries > 0 {
		v.cache = newCache(o.cacheEntries, o.cacheBytes)
	}
	return v, nil
}

// Now returns the verifier's clock reading.
func (v *Verifier) Now() time.Time { return v.opts.now() }

// Leeway returns the configured clock-skew allowance.
func (v *Verifier) Leeway() time.Duration { return v.opts.leeway }

// MaxSession returns the configured maximum session.
func (v *Verifier) MaxSession() time.Duration { return v.opts.maxSession }

// Issuer returns the issuer tokens must name.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience returns the audience tokens must name.
func (v *Verifier) Audience() string { return v.audience }

// Keys returns the current key set.
func (v *Verifier) Keys() *KeySet { return v.keys.Load() }

// SetKeys replaces the key set atomically: calls that start after it returns
// verify against ks only, and cached tokens of keys that left the set are
// dropped (they would no longer be served anyway: every hit rechecks its
// key).
func (v *Verifier) SetKeys(ks *KeySet) error {
	if ks == nil {
		return fmt.Errorf("%w: nil key set", ErrKeySet)
	}
	v.keys.Store(ks)
	if v.cache != nil {
		v.cache.purge(func(k *Key) bool { return !ks.holds(k) })
	}
	return nil
}

// Verify checks tok and returns its session. Every error is a *VerifyError
// matching [ErrInvalidToken] or [ErrExpiredToken]; none contains any part of
// the token. ctx is accepted for future key sources that do I/O; Verify does
// none today.
func (v *Verifier) Verify(ctx context.Context, tok string) (*Session, error) {
	_ = ctx
	if len(tok) == 0 {
		return nil, errEmpty
	}
	if len(tok) > v.opts.maxTokenSize {
		return nil, errTooLarge
	}
	ks := v.keys.Load()
	now := v.opts.now()
	if v.cache != nil {
		if s := v.cache.get(tok, now, ks); s != nil {
			return s, nil
		}
	}
	s, key, err := v.verify(tok, ks, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(tok, s, key)
	}
	return s, nil
}

// Cached returns the session of tok when the verified-token cache holds it
// and may still serve it (before the session's ValidUntil, its key still in
// the set): proof, at the cost of a map lookup, that tok passed every check
// of [Verifier.Verify]. It never verifies anything, so false means "not
// known", never "invalid". The guard uses it to admit a token it has
// verified before even while the caller's address is refused new signature
// checks.
func (v *Verifier) Cached(tok string) (*Session, bool) {
	if v.cache == nil || len(tok) == 0 || len(tok) > v.opts.maxTokenSize {
		return nil, false
	}
	s := v.cache.get(tok, v.opts.now(), v.keys.Load())
	return s, s != nil
}

// verify runs every check on tok, in the order of RFC 8725: shape, header,
// key, signature, and only then the claims.
func (v *Verifier) verify(tok string, ks *KeySet, now time.Time) (*Session, *Key, error) {
	dot1, dot2, err := splitCompact(tok)
	if err != nil {
		return nil, nil, err
	}
	// Decoded segments escape (to encoding/json and the signing method), so
	// they are allocated at their exact size.
	hdata, ok := decodeSegment(tok[:dot1], nil)
	if !ok {
		return nil, nil, errHeader
	}
	h, err := parseHeader(hdata)
	if err != nil {
		return nil, nil, err
	}
	if len(ks.keys) > 1 && !h.hasKID {
		return nil, nil, errNoKID
	}
	key := ks.lookup(h.kid)
	if key == nil {
		return nil, nil, errUnknownKID
	}
	// The algorithm comes from the key, never from the token: the header's
	// alg must merely agree, byte for byte.
	if string(h.alg) != key.alg {
		return nil, nil, errAlgMismatch
	}
	sig, ok := decodeSegment(tok[dot2+1:], nil)
	if !ok {
		return nil, nil, errSignatureEnc
	}
	if key.method.Verify(tok[:dot2], sig, key.verifyKey) != nil {
		return nil, nil, errSignature
	}
	cdata, ok := decodeSegment(tok[dot1+1:dot2], nil)
	if !ok {
		return nil, nil, errClaims
	}
	var c tokenClaims
	if err := parseClaims(cdata, &c); err != nil {
		return nil, nil, err
	}
	if err := v.checkClaims(&c, now); err != nil {
		return nil, nil, err
	}
	return v.newSession(&c, key), key, nil
}

// checkClaims applies golang-jwt's validator (exp required, iat not in the
// future, nbf, iss, aud, all with leeway) and then tollgate's own rules.
func (v *Verifier) checkClaims(c *tokenClaims, now time.Time) error {
	if !c.ExpiresAt.set {
		return errNoExp
	}
	if !c.IssuedAt.set {
		return errNoIat
	}
	// Expiry is reported only once every other check has passed: a token
	// that is expired and also wrong in any other way is invalid, never
	// merely expired (ErrExpiredToken means "authentic, only stale").
	var stale error
	if err := v.validator.Validate(c); err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return errIatFuture
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			return errNbf
		case errors.Is(err, jwt.ErrTokenInvalidIssuer):
			return errIssuer
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return errAudience
		case !onlyExpired(err):
			return errClaimsInvalid
		}
		stale = errExpired
	}
	if c.Subject == "" {
		return errNoSub
	}
	if c.ID == "" || len(c.ID) > maxJTILen {
		return errJTI
	}
	if c.ExpiresAt.t.Sub(c.IssuedAt.t) > v.opts.maxLifetime {
		return errLifetime
	}
	if c.AuthTime.set {
		if c.AuthTime.t.After(now.Add(v.opts.leeway)) || c.AuthTime.t.After(c.IssuedAt.t.Add(v.opts.leeway)) {
			return errAuthTime
		}
		if stale == nil && !now.Before(c.AuthTime.t.Add(v.opts.maxSession).Add(v.opts.leeway)) {
			stale = errSessionOver
		}
	}
	return stale
}

// onlyExpired reports whether every error the validator joined in err is
// jwt.ErrTokenExpired.
func onlyExpired(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyExpired(e) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return errors.Is(err, jwt.ErrTokenExpired)
}

func (v *Verifier) newSession(c *tokenClaims, key *Key) *Session {
	perms := c.Perms
	if v.opts.scope && c.Scope != "" {
		perms = append(append([]string(nil), perms...), strings.Fields(c.Scope)...)
	}
	s := &Session{
		subject:   c.Subject,
		issuer:    c.Issuer,
		audience:  []string(c.Audience),
		id:        c.ID,
		sessionID: c.SID,
		azp:       c.AZP,
		keyID:     key.id,
		algorithm: key.alg,
		issuedAt:  c.IssuedAt.t,
		notBefore: c.NotBefore.t,
		expiresAt: c.ExpiresAt.t,
		authTime:  c.AuthTime.t,
		perms:     perms,
		claims:    c.custom,
	}
	s.exact, s.wildcards = newGrants(perms)
	if s.azp != "" {
		s.consumerKey = "azp:" + s.azp
	} else {
		s.consumerKey = "sub:" + s.subject
	}
	s.validUntil = s.expiresAt
	if c.AuthTime.set {
		if end := s.authTime.Add(v.opts.maxSession); end.Before(s.validUntil) {
			s.validUntil = end
		}
	}
	return s
}

// Expired reports whether sess is no longer valid at the verifier's clock:
// past its expiry or its maximum session, leeway included (the same
// instant at which Verify starts refusing its token). Long streams use it
// to end calls whose token ran out mid-way.
func (v *Verifier) Expired(sess *Session) bool {
	return !v.opts.now().Before(sess.validUntil.Add(v.opts.leeway))
}
