package interceptors

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// renewals runs token renewals for the guard: at most one per token at a
// time (single flight), remembered after it completes (old → new) until the
// old token expires, so that every call carrying the old token gets the same
// new one and the issuer signs once.
//
// Both are keyed on the token itself (its SHA-256), never on a claim: two
// tokens that share a jti (an issuer's bug, or a forgery that got this far)
// carry their own claims, and each must get a successor of its own claims.
// A successor is handed out only while the guard's own verifier accepts it,
// so one signed by a key that has left the key set is forgotten instead.
type renewals struct {
	renewer token.Renewer
	policy  token.RenewalPolicy
	grace   time.Duration
	timeout time.Duration
	now     func() time.Time
	accept  func(token string) bool
	// revoked reports whether a session is revoked now: a successor of a
	// revoked session is never handed out, even one that does not share
	// what was revoked (a new jti, an iat after a not-before).
	revoked func(*session.Session) bool
	onError func(err error)
	// onDone, when set, is told how every renewal ended, with the method
	// of the call that started it.
	onDone func(method string, sess *session.Session, err error)

	mu       sync.Mutex
	inflight map[tokenKey]*flight
	done     map[tokenKey]*flight
	wg       sync.WaitGroup
}

// tokenKey identifies a token without holding it.
type tokenKey [sha256.Size]byte

// errSuccessorRefused: the renewer returned a token the guard's verifier
// refuses.
var errSuccessorRefused = errors.New("interceptors: renewed token refused by the verifier")

// flight is one renewal: ready is closed when it has ended.
type flight struct {
	key    tokenKey
	ready  chan struct{}
	result token.Renewed
	err    error
	oldExp time.Time        // the renewed token's expiry: the memory is kept until then
	pred   *session.Session // the renewed session: its successor is handed out only while it is not revoked
}

// Renewal memory bounds: a failed renewal is not retried for a short while,
// so a dead issuer is not called by every request.
const (
	maxRememberedRenewals = 10000
	failureBackoff        = time.Second
)

func newRenewals(r token.Renewer, p token.RenewalPolicy, grace, timeout time.Duration, now func() time.Time, accept func(string) bool) *renewals {
	return &renewals{
		renewer:  r,
		policy:   p,
		grace:    grace,
		timeout:  timeout,
		now:      now,
		accept:   accept,
		inflight: make(map[tokenKey]*flight),
		done:     make(map[tokenKey]*flight),
	}
}

// start returns the renewal of tok (whose verified session is sess), starting
// it on its own goroutine unless one is running or remembered. The goroutine
// is bounded by the renewal timeout and does not depend on the call: a call
// that ends first leaves the result for the next call with the same token.
func (r *renewals) start(tok string, sess *session.Session, method string) *flight {
	key := tokenKey(sha256.Sum256([]byte(tok)))
	now := r.now()
	r.mu.Lock()
	if f, ok := r.inflight[key]; ok {
		r.mu.Unlock()
		return f
	}
	if f, ok := r.done[key]; ok {
		switch {
		case f.err != nil && now.Before(f.oldExp):
			// A recent failure: not retried until its back-off ends.
			r.mu.Unlock()
			return f
		case f.err == nil:
			// Checked outside the lock: a verification may miss the cache.
			r.mu.Unlock()
			if r.accept(f.result.Token) {
				return f
			}
			// Its key has left the set: forget it and renew afresh.
			r.mu.Lock()
			if g, ok := r.inflight[key]; ok {
				r.mu.Unlock()
				return g
			}
		}
		if r.done[key] == f {
			delete(r.done, key)
		}
	}
	f := &flight{key: key, ready: make(chan struct{}), oldExp: sess.ExpiresAt(), pred: sess}
	r.inflight[key] = f
	r.wg.Add(1)
	r.mu.Unlock()

	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		res, err := r.renewer.Renew(ctx, tok, sess)
		cancel()
		if err == nil && (r.isRevoked(sess) || !r.accept(res.Token)) {
			res, err = token.Renewed{}, errSuccessorRefused
		}
		r.mu.Lock()
		f.result, f.err = res, err
		if err != nil {
			// Remember the failure briefly, not until the old expiry.
			f.oldExp = r.now().Add(failureBackoff)
		}
		delete(r.inflight, key)
		r.remember(key, f)
		r.mu.Unlock()
		close(f.ready)
		if err != nil && r.onError != nil {
			r.onError(err)
		}
		if r.onDone != nil {
			r.onDone(method, sess, err)
		}
	}()
	return f
}

// remember keeps f for key while its old token is valid. When the memory is
// full it first forgets entries whose old token has expired; if still full,
// f is not remembered (single flight still holds for concurrent calls).
// r.mu must be held.
func (r *renewals) remember(key tokenKey, f *flight) {
	if len(r.done) >= maxRememberedRenewals {
		now := r.now()
		for k, old := range r.done {
			if !now.Before(old.oldExp) {
				delete(r.done, k)
			}
		}
		if len(r.done) >= maxRememberedRenewals {
			return
		}
	}
	r.done[key] = f
}

// wait returns the renewed token if f has ended successfully, waiting at most
// the grace period.
func (r *renewals) wait(f *flight) (string, bool) {
	select {
	case <-f.ready:
	default:
		if r.grace <= 0 {
			return "", false
		}
		t := time.NewTimer(r.grace)
		select {
		case <-f.ready:
			t.Stop()
		case <-t.C:
			return "", false
		}
	}
	return r.handOut(f)
}

// readyToken returns the renewed token if f has already ended successfully.
func (r *renewals) readyToken(f *flight) (string, bool) {
	select {
	case <-f.ready:
		return r.handOut(f)
	default:
	}
	return "", false
}

// handOut returns the successor of an ended flight while the verifier still
// accepts it; one it refuses now (its key left the set, it expired) is
// forgotten, and the next call renews afresh.
func (r *renewals) handOut(f *flight) (string, bool) {
	if f.err != nil || f.result.Token == "" {
		return "", false
	}
	if r.isRevoked(f.pred) || !r.accept(f.result.Token) {
		r.mu.Lock()
		if r.done[f.key] == f {
			delete(r.done, f.key)
		}
		r.mu.Unlock()
		return "", false
	}
	return f.result.Token, true
}

func (r *renewals) isRevoked(sess *session.Session) bool {
	return r.revoked != nil && r.revoked(sess)
}

// close waits for renewals under way.
func (r *renewals) close() { r.wg.Wait() }
