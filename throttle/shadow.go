package throttle

import (
	"context"
	"errors"
)

// Shadow returns a limiter that decides with l but admits every call, so
// that a new limit can be watched on real traffic before it is enforced.
//
// Each call is decided by l as usual; when l denies it, report is called
// with the key and l's decision (Allowed false, its RetryAfter and
// Remaining), and the call is admitted anyway: the decision returned is l's
// with Allowed and Shadowed set to true. Decisions l admits are returned
// unchanged and not reported. A nil report only marks decisions Shadowed.
//
// A call l denies takes no tokens, so the buckets evolve as if the limit
// were enforced and every denied call had been rejected: the reports show
// what enforcing the limit would reject, not less.
//
// Errors from l are returned unchanged, with l's decision, and are not
// reported; wrap l in a [Failover] first to turn them into a policy.
//
// report runs on the caller's goroutine, before Allow returns, and must be
// safe for concurrent use. A nil l is refused with an error, so that no
// call can reach a missing limiter.
func Shadow(l Limiter, report func(ctx context.Context, key Key, d Decision)) (Limiter, error) {
	if l == nil {
		return nil, errors.New("throttle: Shadow: nil limiter")
	}
	return shadow{l: l, report: report}, nil
}

type shadow struct {
	l      Limiter
	report func(ctx context.Context, key Key, d Decision)
}

func (s shadow) Allow(ctx context.Context, key Key, limit Limit, cost int) (Decision, error) {
	d, err := s.l.Allow(ctx, key, limit, cost)
	if err != nil || d.Allowed {
		return d, err
	}
	if s.report != nil {
		s.report(ctx, key, d)
	}
	d.Allowed, d.Shadowed = true, true
	return d, nil
}
