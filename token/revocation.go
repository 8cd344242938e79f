package token

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate/session"
)

// RevocationKind says what a [Revocation] names.
type RevocationKind string

// What can be revoked.
const (
	// RevokeToken revokes the one token whose jti is Value.
	RevokeToken RevocationKind = "jti"
	// RevokeRef revokes the one token whose [session.Session.LogRef] is
	// Value: the reference the guard's log lines carry, and the way to
	// revoke a token that has no jti.
	RevokeRef RevocationKind = "ref"
	// RevokeSession revokes every token of the session (sid) Value: the
	// token that started it and every token renewed from it, including
	// renewals still to come.
	RevokeSession RevocationKind = "sid"
	// RevokeSubject revokes every token of the subject (sub) Value issued
	// before Before: "log out everywhere".
	RevokeSubject RevocationKind = "sub"
	// RevokeConsumer revokes every token of the consumer Value
	// ([session.Session.Consumer]: the azp, or the claim the issuer's
	// profile names, or the sub) issued before Before: "rotate a
	// compromised service".
	RevokeConsumer RevocationKind = "consumer"
)

// RevocationKinds lists the kinds, in a fixed order.
func RevocationKinds() []RevocationKind { return slices.Clone(revocationKinds[:]) }

// The kinds' places in a revocation snapshot's maps.
const (
	kindJTI = iota
	kindRef
	kindSID
	kindSub
	kindConsumer
	numRevocationKinds
)

var revocationKinds = [numRevocationKinds]RevocationKind{RevokeToken, RevokeRef, RevokeSession, RevokeSubject, RevokeConsumer}

// index returns k's place in a revocation snapshot's maps, or -1.
func (k RevocationKind) index() int {
	for i, kk := range revocationKinds {
		if kk == k {
			return i
		}
	}
	return -1
}

// MaxRevocationValue is the longest Value a [Revocation] may have, in bytes.
const MaxRevocationValue = 512

// Revocation is one entry of a revocation set.
//
// Revocations are never undone: an entry leaves the set when it expires,
// when no token it covers can still be valid. Two entries for the same
// kind and value merge into one with the later Before and the later
// Expires, so applying an entry twice, or applying entries in any order,
// gives the same set.
type Revocation struct {
	Kind  RevocationKind
	Value string
	// Before: a token is covered when it was issued (iat, else nbf)
	// before Before. Zero means every token, whenever issued: the only
	// meaning for RevokeToken and RevokeRef, and the default for
	// RevokeSession. RevokeSubject and RevokeConsumer need it. A token
	// that carries neither iat nor nbf is covered whatever Before is: its
	// age cannot be told, and a revocation errs on the side of refusing.
	Before time.Time
	// Expires is when the entry may be forgotten: every token it covers
	// has expired by then (see [RevocationLimits]).
	Expires time.Time
}

// Validate reports what makes r unusable: an unknown kind, an empty,
// oversized or non-UTF-8 value, a missing Expires, a Before on a kind that
// takes none, or a subject or consumer revocation without a Before. Its
// errors name the kind, never the value.
func (r Revocation) Validate() error {
	if r.Kind.index() < 0 {
		return fmt.Errorf("token: unknown revocation kind %q (want jti, ref, sid, sub or consumer)", truncateKind(r.Kind))
	}
	switch {
	case r.Value == "":
		return fmt.Errorf("token: %s revocation without a value", r.Kind)
	case len(r.Value) > MaxRevocationValue:
		return fmt.Errorf("token: %s revocation value longer than %d bytes", r.Kind, MaxRevocationValue)
	case !utf8.ValidString(r.Value):
		return fmt.Errorf("token: %s revocation value is not UTF-8", r.Kind)
	case r.Expires.IsZero():
		return fmt.Errorf("token: %s revocation without an expiry", r.Kind)
	}
	switch r.Kind {
	case RevokeToken, RevokeRef:
		if !r.Before.IsZero() {
			return fmt.Errorf("token: a %s revocation covers one token and takes no before time", r.Kind)
		}
	case RevokeSubject, RevokeConsumer:
		if r.Before.IsZero() {
			return fmt.Errorf("token: a %s revocation needs a before time", r.Kind)
		}
	}
	return nil
}

func truncateKind(k RevocationKind) string {
	s := string(k)
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// String describes r for logs: the kind, the value (as a [session.Fingerprint]
// for jti and sid, which are bearer-adjacent identifiers), and the times.
func (r Revocation) String() string {
	v := r.Value
	switch r.Kind {
	case RevokeToken, RevokeSession:
		v = session.Fingerprint(v)
	}
	s := string(r.Kind) + " " + v
	if !r.Before.IsZero() {
		s += " before " + r.Before.UTC().Format(time.RFC3339)
	}
	return s + " until " + r.Expires.UTC().Format(time.RFC3339)
}

// RevocationLimits bound how long a token can stay valid, and so how long
// a revocation must be kept. They are the verifier's settings: its
// maximum lifetime (exp − iat), its maximum session (since auth_time) and
// its leeway.
type RevocationLimits struct {
	MaxLifetime time.Duration
	MaxSession  time.Duration
	Leeway      time.Duration
}

// DefaultRevocationLimits are the limits of a verifier with the default
// settings.
func DefaultRevocationLimits() RevocationLimits {
	return RevocationLimits{MaxLifetime: DefaultMaxLifetime, MaxSession: DefaultMaxSession, Leeway: DefaultLeeway}
}

// RevocationLimits returns the limits of v's settings, from which
// [NewRevocation] computes an entry's expiry. With several issuers the
// maximum lifetime is the longest of theirs (an issuer whose profile sets
// none counts as [DefaultMaxLifetime]).
func (v *Verifier) RevocationLimits() RevocationLimits {
	lim := RevocationLimits{MaxLifetime: v.opts.maxLifetime, MaxSession: v.opts.maxSession, Leeway: v.opts.leeway}
	for _, is := range v.issuers {
		life := is.maxLife
		if life <= 0 {
			life = DefaultMaxLifetime
		}
		lim.MaxLifetime = max(lim.MaxLifetime, life)
	}
	return lim
}

// NewRevocation returns a validated revocation of kind and value, made at
// now, with its expiry computed from lim:
//   - a token (jti, ref): now + MaxLifetime + Leeway, by when every token
//     issued up to now has expired;
//   - a session (sid): now + MaxSession + Leeway, by when the session has
//     ended, renewals included; with a before time, the later of now and
//     before is the start of that span;
//   - a subject or consumer: max(now, before) + MaxLifetime + Leeway (the
//     tokens it covers were issued before that, and renewal issues new
//     ones). A zero before means now.
func NewRevocation(kind RevocationKind, value string, before, now time.Time, lim RevocationLimits) (Revocation, error) {
	r := Revocation{Kind: kind, Value: value, Before: before}
	from := now
	if before.After(now) {
		from = before
	}
	switch kind {
	case RevokeToken, RevokeRef:
		r.Expires = now.Add(lim.MaxLifetime + lim.Leeway)
	case RevokeSession:
		r.Expires = from.Add(lim.MaxSession + lim.Leeway)
	case RevokeSubject, RevokeConsumer:
		if r.Before.IsZero() {
			r.Before = now
		}
		r.Expires = from.Add(lim.MaxLifetime + lim.Leeway)
	}
	if err := r.Validate(); err != nil {
		return Revocation{}, err
	}
	return r, nil
}

// RevocationWriter records revocations: [*Revocations] in this process, or
// a shared store every replica follows (the Redis store of package
// redisstore).
type RevocationWriter interface {
	Revoke(ctx context.Context, r Revocation) error
}

// errRevocationExpired is returned for an entry that has already expired:
// it would cover nothing.
var errRevocationExpired = errors.New("token: revocation already expired")

// revEntry is an entry as a snapshot keeps it: Unix nanoseconds, before =
// MaxInt64 for "every token".
type revEntry struct {
	before, expires int64
}

func entryOf(r Revocation) revEntry {
	e := revEntry{before: math.MaxInt64, expires: r.Expires.UnixNano()}
	if !r.Before.IsZero() {
		e.before = r.Before.UnixNano()
	}
	return e
}

func (e revEntry) merge(o revEntry) revEntry {
	return revEntry{before: max(e.before, o.before), expires: max(e.expires, o.expires)}
}

// covers reports whether a token issued at issued (Unix nanoseconds,
// MinInt64 when unknown) is covered.
func (e revEntry) covers(issued int64) bool { return issued < e.before }
