package token

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
	"github.com/tollgate/tollgate/session"
)

// Verifier checks tokens against a [KeySet] and returns the [session.Session] they
// carry. It is safe for concurrent use; [Verifier.SetKeys] swaps the key set
// atomically while calls are in flight.
type Verifier struct {
	keys     atomic.Pointer[KeySet]
	issuer   string
	audience string
	opts     verifierOptions
	cache    *cache
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
		return nil, errors.New("token: issuer and audience are required")
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
func (v *Verifier) Verify(ctx context.Context, tok string) (*session.Session, error) {
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
	sc := getScratch()
	sc.ks, sc.now = ks, now
	s, err := v.miss(sc, tok)
	putScratch(sc)
	return s, err
}

// Cached returns the session of tok when the verified-token cache holds it
// and may still serve it (before the session's ValidUntil, its key still in
// the set): proof, at the cost of a map lookup, that tok passed every check
// of [Verifier.Verify]. It never verifies anything, so false means "not
// known", never "invalid". The guard uses it to admit a token it has
// verified before even while the caller's address is refused new signature
// checks.
func (v *Verifier) Cached(tok string) (*session.Session, bool) {
	if v.cache == nil || len(tok) == 0 || len(tok) > v.opts.maxTokenSize {
		return nil, false
	}
	s := v.cache.get(tok, v.opts.now(), v.keys.Load())
	return s, s != nil
}

// miss runs every check on tok, in the order of RFC 8725: shape, header,
// key, signature, and only then the claims; it caches what passes.
//
// The stages run one after the other from here, each returning before the
// next starts, and keep their working memory and their state in a pooled
// scratch (sc): a miss typically runs on a request's fresh goroutine, whose
// stack starts small, and a deep chain of large frames would make every
// miss pay for growing (copying) that stack. The signature check is one
// call down from here for that reason: crypto/hmac and crypto/sha256 need
// some 600 bytes of stack of their own.
func (v *Verifier) miss(sc *scratch, tok string) (*session.Session, error) {
	if err := readToken(sc, tok); err != nil {
		return nil, err
	}
	if !checkSignature(sc, tok) {
		return nil, errSignature
	}
	s, err := v.claimsSession(sc)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(tok, s, sc.key)
	}
	return s, nil
}

// readToken checks tok's shape and header, resolves its key (sc.key) and
// decodes its signature (sc.sig). It leaves a copy of tok and the places
// of its dots in sc.
func readToken(sc *scratch, tok string) error {
	dot1, dot2, err := splitCompact(tok)
	if err != nil {
		return err
	}
	sc.tok = append(sc.tok[:0], tok...)
	sc.dot1, sc.dot2 = dot1, dot2
	if err := resolveKey(sc); err != nil {
		return err
	}
	sig, ok := decodeInto(&sc.sig, sc.tok[dot2+1:])
	if !ok {
		return errSignatureEnc
	}
	sc.sig = sig
	return nil
}

// checkSignature reports whether the token in sc carries a valid
// signature by sc.key; tok is the token itself.
func checkSignature(sc *scratch, tok string) bool {
	if sc.key.verify != verifyHMAC {
		return sc.key.verifySignature(sc, tok[:sc.dot2], sc.sig)
	}
	m := sc.key.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(sc.tok[:sc.dot2])
	sum := m.Sum(sc.mac[:0])
	sc.key.macs.Put(m)
	return hmac.Equal(sum, sc.sig)
}

// resolveKey decodes and checks the header of the token in sc and sets
// sc.key to the key of sc.ks it names.
func resolveKey(sc *scratch) error {
	ks := sc.ks
	hdata, ok := decodeInto(&sc.buf, sc.tok[:sc.dot1])
	if !ok {
		return errHeader
	}
	h, err := parseHeader(hdata)
	if err != nil {
		return err
	}
	if len(ks.keys) > 1 && !h.hasKID {
		return errNoKID
	}
	key := ks.lookup(h.kid)
	if key == nil {
		return errUnknownKID
	}
	// The algorithm comes from the key, never from the token: the header's
	// alg must merely agree, byte for byte.
	if string(h.alg) != key.alg {
		return errAlgMismatch
	}
	sc.key = key
	return nil
}

// claimsSession decodes, reads and checks the claim set of the token in sc
// and returns its session. It is small enough to be inlined into miss, so
// newSession's allocations run one frame less deep.
func (v *Verifier) claimsSession(sc *scratch) (*session.Session, error) {
	if err := v.readClaims(sc); err != nil {
		return nil, err
	}
	return v.newSession(sc)
}

// readClaims decodes, reads and checks the claim set of the token in sc,
// into sc.data and sc.claims.
func (v *Verifier) readClaims(sc *scratch) error {
	data, ok := decodeInto(&sc.buf, sc.tok[sc.dot1+1:sc.dot2])
	if !ok {
		return errClaims
	}
	sc.data = data
	if err := parseClaims(data, &sc.claims); err != nil {
		return err
	}
	return v.checkClaims(&sc.claims, data, sc.now)
}

// checkClaims checks exp (required), iat (required, not in the future),
// nbf, iss and aud, with leeway, exactly at the boundaries golang-jwt's
// Validator drew (tollgate used it until it cost more than the rest of a
// verification), and then tollgate's own rules. Where several checks fail,
// the error is the one Validator's errors were mapped to.
func (v *Verifier) checkClaims(c *claimSet, data []byte, now time.Time) error {
	if !c.exp.set {
		return errNoExp
	}
	if !c.iat.set {
		return errNoIat
	}
	leeway := v.opts.leeway
	// Valid while now < exp + leeway; issued and usable from now ≥ iat -
	// leeway and now ≥ nbf - leeway.
	if now.Before(c.iat.t.Add(-leeway)) {
		return errIatFuture
	}
	if c.nbf.set && now.Before(c.nbf.t.Add(-leeway)) {
		return errNbf
	}
	// An empty iss, and an aud that is absent, empty or only "", count as
	// missing: "claims invalid", unless the other is present and wrong.
	noIss := c.iss.len() == 0
	if !noIss && !c.iss.is(data, v.issuer) {
		return errIssuer
	}
	noAud := len(c.aud) == 0 || len(c.aud) == 1 && c.aud[0].len() == 0
	if !noAud && !c.audienceHas(data, v.audience) {
		return errAudience
	}
	if noIss || noAud {
		return errClaimsInvalid
	}
	// Expiry is reported only once every other check has passed: a token
	// that is expired and also wrong in any other way is invalid, never
	// merely expired (ErrExpiredToken means "authentic, only stale").
	var stale error
	if !now.Before(c.exp.t.Add(leeway)) {
		stale = errExpired
	}
	if c.sub.len() == 0 {
		return errNoSub
	}
	if n := c.jti.len(); n == 0 || n > maxJTILen {
		return errJTI
	}
	if c.exp.t.Sub(c.iat.t) > v.opts.maxLifetime {
		return errLifetime
	}
	if c.authTime.set {
		if c.authTime.t.After(now.Add(leeway)) || c.authTime.t.After(c.iat.t.Add(leeway)) {
			return errAuthTime
		}
		if stale == nil && !now.Before(c.authTime.t.Add(v.opts.maxSession).Add(leeway)) {
			stale = errSessionOver
		}
	}
	return stale
}

func (c *claimSet) audienceHas(data []byte, aud string) bool {
	for i := range c.aud {
		if c.aud[i].is(data, aud) {
			return true
		}
	}
	return false
}

// mint returns a new session and its fields, which newSession fills in.
func mint() (*session.Session, *sessionmint.Data) {
	s, d := sessionmint.New()
	return s.(*session.Session), d
}

// newSession builds the session of the checked claim set in sc. Its
// strings are all parts of one string, the claim set's text with the
// consumer key appended (strings with escapes aside); aud and perms share
// one slice.
func (v *Verifier) newSession(sc *scratch) (*session.Session, error) {
	s, d := mint()
	c := &sc.claims
	n := len(sc.data)
	d.Text = sessionText(c, sc)
	d.ConsumerKey = d.Text[n:]
	setClaims(d, c, sc.key, v.opts.maxSession)
	d.Audience, d.Perms = audienceAndPerms(c, d, v.opts.scope)
	if len(d.Perms) > sessionmint.MaxScannedGrants {
		d.Exact, d.Wildcards = sessionmint.NewGrants(d.Perms)
	}
	if len(c.custom) > 0 {
		claims, ok := customClaims(c, d.Text, sc.buf[:n])
		if !ok {
			return nil, errClaims
		}
		d.Claims, d.ClaimMap = claims, sessionmint.ClaimsByName(claims)
	}
	return s, nil
}

// setClaims sets the session's string and time claims, and its end.
func setClaims(d *sessionmint.Data, c *claimSet, key *Key, maxSession time.Duration) {
	text := d.Text
	d.Subject = c.sub.in(text)
	d.Issuer = c.iss.in(text)
	d.ID = c.jti.in(text)
	d.SessionID = c.sid.in(text)
	d.AZP = c.azp.in(text)
	d.KeyID = key.id
	d.Algorithm = key.alg
	d.IssuedAt = c.iat.t
	d.NotBefore = c.nbf.t
	d.ExpiresAt = c.exp.t
	d.AuthTime = c.authTime.t
	d.ValidUntil = d.ExpiresAt
	if c.authTime.set {
		if end := d.AuthTime.Add(maxSession); end.Before(d.ValidUntil) {
			d.ValidUntil = end
		}
	}
}

// sessionText returns the claim set data (in sc.buf) with the consumer key
// appended ("azp:" and the azp, or "sub:" and the subject), as one string.
// Not inlined: its frame would sit under the allocations of newSession.
//
//go:noinline
func sessionText(c *claimSet, sc *scratch) string {
	data := sc.data
	prefix, consumer := "azp:", &c.azp
	if c.azp.len() == 0 {
		prefix, consumer = "sub:", &c.sub
	}
	buf := append(data, prefix...)
	if consumer.esc {
		buf = append(buf, consumer.dec...)
	} else {
		buf = append(buf, data[consumer.off:consumer.end]...)
	}
	sc.buf = buf[:0] // keep what append grew
	return string(buf)
}

// emptyPerms is the permissions of a token whose perms is an empty array:
// not nil, as encoding/json decoded it. Nothing appends to it.
var emptyPerms = []string{}

// audienceAndPerms returns aud and perms (with scope's words appended when
// scope is set) in one slice; a single aud (the usual case) lives in the
// session itself, d.Aud1. perms is nil when absent, empty but not nil when
// an empty array, as encoding/json decoded them.
func audienceAndPerms(c *claimSet, d *sessionmint.Data, scope bool) (aud, perms []string) {
	text := d.Text
	scope = scope && c.scope.len() > 0
	var words string
	nScope := 0
	if scope {
		words = c.scope.in(text)
		for range strings.FieldsSeq(words) {
			nScope++
		}
	}
	nAud, nPerms := len(c.aud), len(c.perms)+nScope
	if nAud == 1 {
		d.Aud1[0] = c.aud[0].in(text)
		aud, nAud = d.Aud1[:], 0
	}
	var strs []string
	if nAud+nPerms > 0 {
		strs = make([]string, nAud+nPerms)
	}
	if nAud > 0 {
		for i := range c.aud {
			strs[i] = c.aud[i].in(text)
		}
		aud = strs[:nAud:nAud]
	}
	switch {
	case nPerms > 0:
		perms = strs[nAud:]
		for i := range c.perms {
			perms[i] = c.perms[i].in(text)
		}
		i := len(c.perms)
		for w := range strings.FieldsSeq(words) {
			perms[i] = w
			i++
		}
	case c.permsSet && !scope:
		perms = emptyPerms
	}
	return aud, perms
}

// customClaims decodes the custom claims, sorted by name; text and data
// are the claim set as a string and as bytes.
func customClaims(c *claimSet, text string, data []byte) ([]sessionmint.Claim, bool) {
	claims := make([]sessionmint.Claim, len(c.custom))
	for i := range c.custom {
		r := &c.custom[i]
		val, ok := customValue(text, data, r)
		if !ok {
			return nil, false
		}
		claims[i].Set(c.names[r.name].in(text), val)
	}
	sortClaims(claims)
	return claims, true
}

// sortClaims sorts claims by name, whose names are unique (duplicates were
// refused): a few by insertion, in place and in a small frame, the rare
// many by slices.SortFunc.
func sortClaims(claims []sessionmint.Claim) {
	if len(claims) > 16 {
		slices.SortFunc(claims, func(a, b sessionmint.Claim) int { return strings.Compare(a.Name, b.Name) })
		return
	}
	for i := 1; i < len(claims); i++ {
		for j := i; j > 0 && claims[j].Name < claims[j-1].Name; j-- {
			claims[j], claims[j-1] = claims[j-1], claims[j]
		}
	}
}

// Expired reports whether sess is no longer valid at the verifier's clock:
// past its expiry or its maximum session, leeway included (the same
// instant at which Verify starts refusing its token). Long streams use it
// to end calls whose token ran out mid-way.
func (v *Verifier) Expired(sess *session.Session) bool {
	return !v.opts.now().Before(sess.ValidUntil().Add(v.opts.leeway))
}
