package interceptors

import (
	"context"
	"sync"
	"time"

	"github.com/tollgate/tollgate/session"
)

// renewals runs token renewals for the guard: at most one per token at a
// time (single flight, keyed by jti), remembered after it completes (old →
// new) until the old token expires, so that every call carrying the old
// token gets the same new one and the issuer signs once.
type renewals struct {
	renewer session.Renewer
	policy  session.RenewalPolicy
	grace   time.Duration
	timeout time.Duration
	now     func() time.Time
	onError func(err error)

	mu       sync.Mutex
	inflight map[string]*flight
	done     map[string]*flight
	wg       sync.WaitGroup
}

// flight is one renewal: ready is closed when it has ended.
type flight struct {
	ready  chan struct{}
	result session.Renewed
	err    error
	oldExp time.Time // the renewed token's expiry: the memory is kept until then
}

// Renewal memory bounds: a failed renewal is not retried for a short while,
// so a dead issuer is not called by every request.
const (
	maxRememberedRenewals = 10000
	failureBackoff        = time.Second
)

func newRenewals(r session.Renewer, p session.RenewalPolicy, grace, timeout time.Duration, now func() time.Time) *renewals {
	return &renewals{
		renewer:  r,
		policy:   p,
		grace:    grace,
		timeout:  timeout,
		now:      now,
		inflight: make(map[string]*flight),
		done:     make(map[string]*flight),
	}
}

// start returns the renewal of tok (whose verified session is sess), starting
// it on its own goroutine unless one is running or remembered. The goroutine
// is bounded by the renewal timeout and does not depend on the call: a call
// that ends first leaves the result for the next call with the same token.
func (r *renewals) start(tok string, sess *session.Session) *flight {
	key := sess.ID()
	now := r.now()
	r.mu.Lock()
	if f, ok := r.inflight[key]; ok {
		r.mu.Unlock()
		return f
	}
	if f, ok := r.done[key]; ok {
		if f.err == nil || now.Before(f.oldExp) {
			r.mu.Unlock()
			return f
		}
		delete(r.done, key)
	}
	f := &flight{ready: make(chan struct{}), oldExp: sess.ExpiresAt()}
	r.inflight[key] = f
	r.wg.Add(1)
	r.mu.Unlock()

	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		res, err := r.renewer.Renew(ctx, tok, sess)
		cancel()
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
	}()
	return f
}

// remember keeps f for key while its old token is valid. When the memory is
// full it first forgets entries whose old token has expired; if still full,
// f is not remembered (single flight still holds for concurrent calls).
// r.mu must be held.
func (r *renewals) remember(key string, f *flight) {
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
	if f.err != nil || f.result.Token == "" {
		return "", false
	}
	return f.result.Token, true
}

// ready returns the renewed token if f has already ended successfully.
func (f *flight) readyToken() (string, bool) {
	select {
	case <-f.ready:
		if f.err == nil && f.result.Token != "" {
			return f.result.Token, true
		}
	default:
	}
	return "", false
}

// close waits for renewals under way.
func (r *renewals) close() { r.wg.Wait() }
