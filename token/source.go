package token

import "context"

// KeySource supplies the keys of one issuer to a [Verifier]. A [*KeySet] is
// the static source (key files, environment variables); [*JWKS] follows a
// published key set.
//
// The verifier keeps the source's current set in an atomic pointer of its
// own, replaced by the sets the source hands to the watchers registered
// with Watch: a request never calls the source while its token's key is in
// the set, so a remote source costs the hot path nothing.
type KeySource interface {
	// Current returns the set to verify with now; nil only when the source
	// has no usable set.
	Current() *KeySet
	// Watch registers f; f is called with every set the source adopts after
	// Watch returns, from the source's own goroutine, never concurrently
	// with itself. A set replaces the previous one: a key missing from it
	// is gone.
	Watch(f func(*KeySet))
	// Unknown is called by a verification whose token names kid, a kid the
	// current set lacks (kid is "" when the token names none and the set
	// needs one). A source that can fetch may refetch, within its own rate
	// bound and single flight, waiting at most its own short bound (and
	// never past ctx); it returns the set that holds kid, or nil when it
	// has none. It never blocks a call for long and never fails loudly: an
	// unknown kid is the caller's problem, reported as an invalid token.
	Unknown(ctx context.Context, kid string) *KeySet
}

// Current returns ks itself: a KeySet is a static key source.
func (ks *KeySet) Current() *KeySet { return ks }

// Watch does nothing: a static set never changes (rotate static keys with
// [Verifier.SetKeys]).
func (ks *KeySet) Watch(func(*KeySet)) {}

// Unknown returns nil: a static set learns no keys.
func (ks *KeySet) Unknown(context.Context, string) *KeySet { return nil }

// KeyEventKind says what happened to a key source.
type KeyEventKind string

// What a remote key source reports.
const (
	// KeysFetched: a good set was fetched and adopted (it may equal the
	// previous one).
	KeysFetched KeyEventKind = "fetched"
	// KeysFetchFailed: a fetch failed (network, status, size, time); the
	// last good set is kept.
	KeysFetchFailed KeyEventKind = "fetch_failed"
	// KeysRejected: a fetched document was not a usable key set (invalid
	// JSON, a refused key, duplicate kids); the last good set is kept.
	KeysRejected KeyEventKind = "rejected"
	// KeysRefetchUnknownKID: a token's unknown kid started a refetch.
	KeysRefetchUnknownKID KeyEventKind = "refetch_unknown_kid"
	// KeysUnknownKIDSuppressed: an unknown kid started no fetch (remembered
	// as unknown, or the refetch interval had not passed).
	KeysUnknownKIDSuppressed KeyEventKind = "unknown_kid_suppressed"
)

// KeyEvent is one report of a key source. Its fields never hold key
// material or any part of a token; Err's text is safe to log.
type KeyEvent struct {
	// Source names the source: the JWKS URL (without its query).
	Source string
	Kind   KeyEventKind
	// Keys is the number of keys in the set in use after the event.
	Keys int
	// Err is why a fetch failed or a set was rejected.
	Err error
}

// keyObserver is a key source that reports [KeyEvent]s (a [*JWKS] does).
type keyObserver interface {
	Observe(f func(KeyEvent))
}

// ObserveKeys registers f for the events of every issuer's key source that
// reports them: fetches, failed fetches and refused sets (the last good set
// is kept), and refetches on unknown kids. f is called with the issuer's
// name, from the source's goroutine; it must not block.
func (v *Verifier) ObserveKeys(f func(issuer string, e KeyEvent)) {
	for _, is := range v.issuers {
		if o, ok := is.src.(keyObserver); ok {
			name := is.name
			o.Observe(func(e KeyEvent) { f(name, e) })
		}
	}
}
