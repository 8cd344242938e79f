package token

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/sessionmint"
	"github.com/tollgate/tollgate/session"
)

// Verifier checks tokens against the keys of the issuers it trusts and
// returns the [session.Session] they carry. It is safe for concurrent use;
// key sets are swapped atomically while calls are in flight.
type Verifier struct {
	issuers []*issuer
	one     *issuer // the issuer, when there is only one: no iss is read before the signature
	opts    verifierOptions
	cache   *cache
}

// NewVerifier returns a verifier of tollgate's own tokens ([TollgateProfile]):
// signed by a key of keys, issued by issuer for audience (both compared
// exactly). It returns an error, never a verifier with a hole in it, when
// anything is missing or out of range. [NewVerifierFor] trusts several
// issuers, or issuers of other profiles.
func NewVerifier(keys *KeySet, issuer, audience string, opts ...VerifierOption) (*Verifier, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: no key configured (tollgate has no default key)", ErrKeySet)
	}
	if issuer == "" || audience == "" {
		return nil, errors.New("token: issuer and audience are required")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	p := TollgateProfile()
	p.MaxLifetime = o.maxLifetime
	if o.scope {
		p.PermissionsClaims = []string{"perms", "scope"}
	}
	return buildVerifier([]Issuer{{Name: issuer, Keys: keys, Audiences: []string{audience}, Profile: p}}, o)
}

// NewVerifierFor returns a verifier trusting issuers, each with its own
// keys, audiences and profile. A token's iss picks its issuer before its
// signature is checked, and only that issuer's keys may verify it; a token
// of any other iss is refused without a key lookup. Issuer names must be
// unique. [WithMaxLifetime] and [WithScopeClaim] do not apply: each
// issuer's [Profile] says it.
//
// The verifier follows each key source: it adopts every set the source
// hands to [KeySource.Watch], and drops cached tokens whose key left it.
func NewVerifierFor(issuers []Issuer, opts ...VerifierOption) (*Verifier, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.lifetimeSet || o.scope {
		return nil, errors.New("token: WithMaxLifetime and WithScopeClaim configure NewVerifier; set each issuer's Profile instead")
	}
	return buildVerifier(issuers, o)
}

func newOptions(opts []VerifierOption) (verifierOptions, error) {
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
	return o, o.validate()
}

func buildVerifier(issuers []Issuer, o verifierOptions) (*Verifier, error) {
	if len(issuers) == 0 {
		return nil, fmt.Errorf("%w: no issuer configured", ErrKeySet)
	}
	v := &Verifier{opts: o}
	names := make(map[string]bool, len(issuers))
	optIss := 0
	for _, is := range issuers {
		st, err := compileIssuer(is, &o)
		if err != nil {
			return nil, err
		}
		if names[st.name] {
			return nil, fmt.Errorf("token: issuer %q appears twice", st.name)
		}
		names[st.name] = true
		if st.optIss {
			optIss++
		}
		v.issuers = append(v.issuers, st)
	}
	if optIss > 1 {
		return nil, errors.New("token: at most one issuer may accept tokens without iss")
	}
	if len(v.issuers) == 1 {
		v.one = v.issuers[0]
	}
	if o.cacheEntries > 0 {
		v.cache = newCache(o.cacheEntries, o.cacheBytes)
	}
	for _, st := range v.issuers {
		st.src.Watch(func(ks *KeySet) { v.adopt(st, ks) })
	}
	return v, nil
}

// adopt makes ks st's key set and drops the cached tokens of st whose key
// left it.
func (v *Verifier) adopt(st *issuer, ks *KeySet) {
	if ks == nil {
		ks = noKeys
	}
	st.keys.Store(ks)
	if v.cache != nil {
		v.cache.purge(func(is *issuer, k *Key) bool { return is == st && !ks.holds(k) })
	}
}

// Now returns the verifier's clock reading.
func (v *Verifier) Now() time.Time { return v.opts.now() }

// Leeway returns the configured clock-skew allowance.
func (v *Verifier) Leeway() time.Duration { return v.opts.leeway }

// MaxSession returns the configured maximum session.
func (v *Verifier) MaxSession() time.Duration { return v.opts.maxSession }

// Issuer returns the name of the (first) issuer tokens must name.
func (v *Verifier) Issuer() string { return v.issuers[0].name }

// Audience returns the (first) audience tokens of the first issuer must
// name.
func (v *Verifier) Audience() string { return v.issuers[0].audiences[0] }

// Issuers returns the names of the issuers the verifier trusts, in order.
func (v *Verifier) Issuers() []string {
	names := make([]string, len(v.issuers))
	for i, is := range v.issuers {
		names[i] = is.name
	}
	return names
}

// Keys returns the current key set of the first issuer.
func (v *Verifier) Keys() *KeySet { return v.issuers[0].keys.Load() }

// renewing returns the issuer whose tokens this service renews: the first
// renewable one, or nil.
func (v *Verifier) renewing() *issuer {
	for _, is := range v.issuers {
		if is.renewable {
			return is
		}
	}
	return nil
}

// SetKeys replaces the key set of a verifier of one issuer atomically:
// calls that start after it returns verify against ks only, and cached
// tokens of keys that left the set are dropped (they would no longer be
// served anyway: every hit rechecks its key). A verifier of several
// issuers follows their key sources instead, and refuses SetKeys.
func (v *Verifier) SetKeys(ks *KeySet) error {
	if ks == nil {
		return fmt.Errorf("%w: nil key set", ErrKeySet)
	}
	if v.one == nil {
		return fmt.Errorf("%w: SetKeys needs a verifier of one issuer", ErrKeySet)
	}
	v.adopt(v.one, ks)
	return nil
}

// Verify checks tok and returns its session. Every error is a *VerifyError
// matching [ErrInvalidToken] or [ErrExpiredToken]; none contains any part of
// the token. ctx bounds the wait for a key source that refetches on an
// unknown kid (itself bounded to a short wait); a token whose key is known
// waits on nothing.
func (v *Verifier) Verify(ctx context.Context, tok string) (*session.Session, error) {
	if len(tok) == 0 {
		return nil, errEmpty
	}
	if len(tok) > v.opts.maxTokenSize {
		return nil, errTooLarge
	}
	now := v.opts.now()
	if v.cache != nil {
		if s := v.cache.get(tok, now); s != nil {
			if v.opts.revocations != nil && v.opts.revocations.covered(sessionmint.Of(s)) {
				return nil, errRevoked
			}
			return s, nil
		}
	}
	sc := getScratch()
	sc.ctx, sc.now = ctx, now
	s, err := v.miss(sc, tok)
	putScratch(sc)
	return s, err
}

// Revocations returns the set the verifier checks ([WithRevocations]), or
// nil.
func (v *Verifier) Revocations() *Revocations { return v.opts.revocations }

// Revoked reports whether the verifier's revocation set covers sess now.
// An open stream asks it on every message, and a renewal asks it again
// once its successor is signed.
func (v *Verifier) Revoked(sess *session.Session) bool {
	if v.opts.revocations == nil || sess == nil {
		return false
	}
	return v.opts.revocations.covered(sessionmint.Of(sess))
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
	s := v.cache.get(tok, v.opts.now())
	if s == nil || v.Revoked(s) {
		return nil, false
	}
	return s, true
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
	if err := v.readToken(sc, tok); err != nil {
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
		// A revoked token is cached too: the next call with it is refused
		// by a hit, which checks the set again, rather than by another
		// signature check.
		v.cache.put(tok, s, sc.iss, sc.key)
	}
	if v.opts.revocations != nil && v.opts.revocations.covered(sessionmint.Of(s)) {
		return nil, errRevoked
	}
	return s, nil
}

// readToken checks tok's shape, picks its issuer (sc.iss), checks its
// header, resolves its key (sc.key) and decodes its signature (sc.sig). It
// leaves a copy of tok and the places of its dots in sc.
func (v *Verifier) readToken(sc *scratch, tok string) error {
	dot1, dot2, err := splitCompact(tok)
	if err != nil {
		return err
	}
	sc.tok = append(sc.tok[:0], tok...)
	sc.dot1, sc.dot2 = dot1, dot2
	if sc.iss = v.one; sc.iss == nil {
		// Several issuers: the iss picks the keys, so the claim set is
		// read (not trusted) before the signature is checked.
		if err := readClaims(sc); err != nil {
			return err
		}
		c := &sc.claims
		iss := sc.data[c.iss.off:c.iss.end]
		if c.iss.esc {
			iss = []byte(c.iss.dec)
		}
		if sc.iss = v.pick(iss, len(iss) > 0); sc.iss == nil {
			return errUnknownIssuer
		}
	}
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
// sc.key to the key of its issuer's set it names. A kid the set lacks is
// reported to the issuer's key source, which may fetch a newer set within
// its own bounds.
func resolveKey(sc *scratch) error {
	is := sc.iss
	ks := is.keys.Load()
	hdata, ok := decodeInto(&sc.hbuf, sc.tok[:sc.dot1])
	if !ok {
		return errHeader
	}
	sc.hbuf = hdata
	h, err := parseHeader(hdata, &is.hdr)
	if err != nil {
		return err
	}
	if len(ks.keys) > 1 && !h.hasKID {
		return errNoKID
	}
	key := ks.lookup(h.kid)
	if key == nil {
		if key = unknownKID(sc, ks, h.kid); key == nil {
			return errUnknownKID
		}
	}
	// The algorithm comes from the key, never from the token: the header's
	// alg must merely agree, byte for byte.
	if string(h.alg) != key.alg {
		return errAlgMismatch
	}
	sc.key = key
	return nil
}

// unknownKID asks the issuer's key source for a set holding kid, which ks
// (the issuer's current set) lacks, and returns the key, or nil. A set the
// source returns replaces ks unless a newer one arrived meanwhile.
func unknownKID(sc *scratch, ks *KeySet, kid []byte) *Key {
	ctx := sc.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	fresh := sc.iss.src.Unknown(ctx, string(kid))
	if fresh == nil || fresh == ks {
		return nil
	}
	sc.iss.keys.CompareAndSwap(ks, fresh)
	return fresh.lookup(kid)
}

// claimsSession decodes, reads and checks the claim set of the token in sc
// and returns its session. It is small enough to be inlined into miss, so
// newSession's allocations run one frame less deep.
func (v *Verifier) claimsSession(sc *scratch) (*session.Session, error) {
	if !sc.read {
		if err := readClaims(sc); err != nil {
			return nil, err
		}
	}
	if err := v.checkClaims(sc.iss, &sc.claims, sc.data, sc.now); err != nil {
		return nil, err
	}
	return v.newSession(sc)
}

// readClaims decodes and reads the claim set of the token in sc, into
// sc.data and sc.claims; it checks its syntax, not its claims.
func readClaims(sc *scratch) error {
	data, ok := decodeInto(&sc.buf, sc.tok[sc.dot1+1:sc.dot2])
	if !ok {
		return errClaims
	}
	sc.data, sc.read = data, true
	return parseClaims(data, &sc.claims)
}

// checkClaims checks exp (required), iat (required, not in the future),
// nbf, iss and aud, with leeway, exactly at the boundaries golang-jwt's
// Validator drew (tollgate used it until it cost more than the rest of a
// verification), and then tollgate's own rules. Where several checks fail,
// the error is the one Validator's errors were mapped to.
func (v *Verifier) checkClaims(is *issuer, c *claimSet, data []byte, now time.Time) error {
	if !c.exp.set {
		return errNoExp
	}
	if !c.iat.set && !is.optIAT {
		return errNoIat
	}
	leeway := v.opts.leeway
	// Valid while now < exp + leeway; issued and usable from now ≥ iat -
	// leeway and now ≥ nbf - leeway.
	if c.iat.set && now.Before(c.iat.t.Add(-leeway)) {
		return errIatFuture
	}
	if c.nbf.set && now.Before(c.nbf.t.Add(-leeway)) {
		return errNbf
	}
	// An empty iss, and an aud that is absent, empty or only "", count as
	// missing: "claims invalid", unless the other is present and wrong.
	noIss := c.iss.len() == 0
	if !noIss && !c.iss.is(data, is.name) {
		return errIssuer
	}
	noIss = noIss && !is.optIss
	noAud := len(c.aud) == 0 || len(c.aud) == 1 && c.aud[0].len() == 0
	if !noAud && !c.audienceHasAny(data, is.audiences) {
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
	if n := c.jti.len(); n == 0 && !is.optJTI || n > maxJTILen {
		return errJTI
	}
	if is.maxLife > 0 && (!c.iat.set || c.exp.t.Sub(c.iat.t) > is.maxLife) {
		return errLifetime
	}
	if is.requireBound && c.x5t.len() == 0 {
		return errUnbound
	}
	if c.authTime.set {
		if c.authTime.t.After(now.Add(leeway)) || c.iat.set && c.authTime.t.After(c.iat.t.Add(leeway)) {
			return errAuthTime
		}
		if stale == nil && is.maxSession > 0 && !now.Before(c.authTime.t.Add(is.maxSession).Add(leeway)) {
			stale = errSessionOver
		}
	}
	return stale
}

func (c *claimSet) audienceHasAny(data []byte, auds []string) bool {
	for i := range c.aud {
		for _, aud := range auds {
			if c.aud[i].is(data, aud) {
				return true
			}
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
	is := sc.iss
	n := len(sc.data)
	d.Text = sessionText(c, sc)
	d.ConsumerKey = d.Text[n:]
	setClaims(d, c, sc.key, is.maxSession)
	d.Renewable = is.renewable
	d.Audience, d.Perms = audienceAndPerms(c, d, is.permsArray, is.permsScope)
	if len(c.custom) > 0 {
		claims, ok := customClaims(c, d.Text, sc.buf[:n])
		if !ok {
			return nil, errClaims
		}
		d.Claims, d.ClaimMap = claims, sessionmint.ClaimsByName(claims)
	}
	if !is.plain {
		if err := profileClaims(d, is); err != nil {
			return nil, err
		}
	}
	if len(d.Perms) > sessionmint.MaxScannedGrants {
		d.Exact, d.Wildcards = sessionmint.NewGrants(d.Perms)
	}
	return s, nil
}

// profileClaims sets what an issuer's profile reads from claims of its
// choice: permissions from custom claims (appended to those of perms and
// scope), and the consumer.
func profileClaims(d *sessionmint.Data, is *issuer) error {
	for _, path := range is.permPaths {
		v, ok := claimAt(d, path)
		if !ok {
			continue
		}
		switch v := v.(type) {
		case string:
			d.Perms = append(d.Perms[:len(d.Perms):len(d.Perms)], strings.Fields(v)...)
		case []any:
			perms := make([]string, len(d.Perms), len(d.Perms)+len(v))
			copy(perms, d.Perms)
			for _, p := range v {
				p, ok := p.(string)
				if !ok {
					return errPermsClaim
				}
				perms = append(perms, p)
			}
			d.Perms = perms
		case nil:
		default:
			return errPermsClaim
		}
	}
	for _, name := range is.consumers {
		var val string
		switch name {
		case "azp":
			val = d.AZP
		case "sub":
			val = d.Subject
		default:
			v, ok := claimAt(d, []string{name})
			if !ok || v == nil {
				continue
			}
			if val, ok = v.(string); !ok {
				return errConsumerClaim
			}
		}
		if val != "" {
			d.ConsumerKey = name + ":" + val
			return nil
		}
	}
	d.ConsumerKey = "sub:" + d.Subject
	return nil
}

// claimAt returns the value at path: a custom claim, then members of the
// objects it holds.
func claimAt(d *sessionmint.Data, path []string) (any, bool) {
	var v any
	found := false
	for i := range d.Claims {
		if d.Claims[i].Name == path[0] {
			v, found = d.Claims[i].Value, true
			break
		}
	}
	if !found {
		return nil, false
	}
	for _, seg := range path[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, v != nil
		}
		if v, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return v, true
}

// setClaims sets the session's string and time claims, and its end.
func setClaims(d *sessionmint.Data, c *claimSet, key *Key, maxSession time.Duration) {
	text := d.Text
	d.Subject = c.sub.in(text)
	d.Issuer = c.iss.in(text)
	d.ID = c.jti.in(text)
	d.SessionID = c.sid.in(text)
	d.AZP = c.azp.in(text)
	d.CertThumbprint = c.x5t.in(text)
	d.KeyID = key.id
	d.Algorithm = key.alg
	d.IssuedAt = c.iat.t
	d.NotBefore = c.nbf.t
	d.ExpiresAt = c.exp.t
	d.AuthTime = c.authTime.t
	d.ValidUntil = d.ExpiresAt
	if c.authTime.set && maxSession > 0 {
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
func audienceAndPerms(c *claimSet, d *sessionmint.Data, arr, scope bool) (aud, perms []string) {
	if !arr {
		clear(c.perms)
		c.perms, c.permsSet = c.perms[:0], false
	}
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
