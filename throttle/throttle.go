// Package throttle limits how often a consumer may call, with token buckets
// kept in memory or, through package redisstore, shared in Redis by every
// replica of a service. This package links no Redis client.
//
// # Model
//
// A [Limit] describes a token bucket: it holds at most Burst tokens and
// refills at Rate tokens per Per, one token every Per/Rate. A call of cost c
// is admitted when the bucket holds at least c tokens, and takes them; a
// denied call takes nothing. A bucket nobody has touched is full.
//
// The buckets are kept as a theoretical arrival time (GCRA, the generic cell
// rate algorithm), which is the token bucket stated with one number per key:
// tat is the instant the bucket will be full again. At time now the bucket
// holds Burst - (tat - now)/interval tokens (all Burst when tat <= now). A
// call of cost c is admitted when tat + c*interval - now <= Burst*interval,
// and then tat becomes max(tat, now) + c*interval. The arithmetic is done in
// integer nanoseconds, so decisions are exact.
//
// # What a call costs
//
// A limiter takes whatever cost its caller asks for. tollgate's guard asks,
// always from the bucket the method's rule names, keyed by the consumer
// that called (by its address for public methods):
//
//   - a unary call takes the rule's cost;
//   - opening a stream takes the cost; on client and bidi streams that pays
//     for the first message received, and every later message received
//     takes the rule's message cost (by default the cost), so a stream of n
//     messages costs what n unary calls cost and a runaway stream is cut
//     message by message;
//   - a server stream takes the cost once, when it opens, however many
//     messages it sends;
//   - a call or message refused for lack of a permission or of ownership is
//     charged like an admitted one, so a consumer looping on calls it may
//     not make is slowed down too. A call whose token did not verify is
//     charged to the caller's address instead, in a bucket of its own.
//
// # Edge cases
//
//   - cost > Burst: never admitted; the [Decision] says so with RetryAfter
//     of -1 (no wait helps). The interceptors reject such limits at start-up.
//   - cost 0 is treated as 1.
//   - Rate, Per or Burst of zero or less: the limit is invalid ([Limit.Validate]);
//     limiters deny and return [ErrInvalidLimit].
//   - the clock going backwards: no tokens are created. tat is never moved
//     back, so an earlier now only makes the bucket look emptier: a step back
//     can make decisions stricter, never more lenient.
//   - a full bucket (tat <= now) holds no information and may be dropped:
//     the memory limiter's bound on keys relies on it.
//
// A [Limiter] decides for one key at a time. [Key] names the consumer and the
// bucket; methods that name the same bucket share it.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Limit is a token bucket: Burst tokens at most, refilled at Rate tokens per
// Per.
type Limit struct {
	Rate  int
	Per   time.Duration
	Burst int
}

// PerSecond returns a limit of rate tokens a second with the given burst.
func PerSecond(rate, burst int) Limit { return Limit{Rate: rate, Per: time.Second, Burst: burst} }

// ErrInvalidLimit reports a limit that cannot admit anything.
var ErrInvalidLimit = errors.New("throttle: invalid limit")

// Validate reports whether the limit can work: Rate, Per and Burst positive,
// the interval between tokens (Per/Rate) at least one nanosecond, and an
// empty bucket refilled (Burst intervals) in less than about 73 years.
func (l Limit) Validate() error {
	switch {
	case l.Rate <= 0:
		return fmt.Errorf("%w: rate %d must be at least 1", ErrInvalidLimit, l.Rate)
	case l.Per <= 0:
		return fmt.Errorf("%w: period %v must be positive", ErrInvalidLimit, l.Per)
	case l.Burst <= 0:
		return fmt.Errorf("%w: burst %d must be at least 1", ErrInvalidLimit, l.Burst)
	case l.Per < time.Duration(l.Rate): // Per/Rate would be 0
		return fmt.Errorf("%w: %d per %v is finer than a nanosecond", ErrInvalidLimit, l.Rate, l.Per)
	}
	// Multiplied rather than divided: limiters validate on every call.
	if hi, span := bits.Mul64(uint64(l.Interval()), uint64(l.Burst)); hi != 0 || span > uint64(maxRefill) {
		return fmt.Errorf("%w: burst %d at %d per %v takes more than %v to refill", ErrInvalidLimit, l.Burst, l.Rate, l.Per, maxRefill)
	}
	return nil
}

// maxRefill bounds the time an empty bucket takes to refill (Burst
// intervals) to about 73 years. The largest value gcra computes is now plus
// two refills; with now counted from 1970 (about 56 years in nanoseconds)
// that stays within int64.
const maxRefill = time.Duration(math.MaxInt64 / 4)

// Interval returns the time one token takes to refill: Per/Rate.
func (l Limit) Interval() time.Duration { return l.Per / time.Duration(l.Rate) }

// String renders the limit as "RATE/PER burst BURST".
func (l Limit) String() string { return fmt.Sprintf("%d/%v burst %d", l.Rate, l.Per, l.Burst) }

// Key names a bucket: the consumer it belongs to and the bucket's name.
type Key struct {
	Consumer string
	Bucket   string
}

// Decision is the outcome of one call to [Limiter.Allow].
type Decision struct {
	// Allowed reports whether the call may proceed. In shadow mode it is
	// always true; see Shadowed.
	Allowed bool
	// Shadowed is true when a shadow limiter admitted a call that the limit
	// would have denied.
	Shadowed bool
	// Limit is the limit the decision applied.
	Limit Limit
	// Remaining is the whole number of tokens left after the decision.
	Remaining int
	// RetryAfter is how long to wait before a call of the same cost can
	// pass: 0 when allowed, -1 when no wait helps (cost above burst).
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// Source says which store decided: "memory", "redis", or for a
	// [Failover] on a store error "fail-open", "fail-closed" or "local".
	Source string
}

// Limiter decides whether a call of the given cost may take tokens from the
// bucket key under limit. It is safe for concurrent use.
//
// An error means the limiter could not decide (an invalid limit, a store
// that did not answer); the Decision is then meaningless. Use [Failover] to
// turn store errors into a policy.
type Limiter interface {
	Allow(ctx context.Context, key Key, limit Limit, cost int) (Decision, error)
}

// gcraInto (gcra in the comments) applies one decision to a bucket stored
// as its theoretical arrival time tat (ns on the limiter's clock), at now
// (ns), writing the decision into *d, all of which it sets. It returns the
// new tat (unchanged when denied). It is the single statement of the
// algorithm, used by the memory limiter; the Redis script
// (redisstore/limiter.lua) states the same arithmetic in Lua, and the
// redisstore tests hold it to the memory limiter. Returning the Decision by
// value and copying it on made Allow a third slower.
func gcraInto(d *Decision, tat, now int64, l Limit, cost int) int64 {
	if cost <= 0 {
		cost = 1
	}
	interval := int64(l.Interval())
	burstSpan := interval * int64(l.Burst)
	*d = Decision{Limit: l}
	if now > tat || tat == 0 {
		// A full bucket; also a clock that jumped forward.
		tat = max(tat, now)
	}
	if cost > l.Burst {
		d.RetryAfter = -1
		d.ResetAfter = time.Duration(tat - now)
		d.Remaining = remaining(tat-now, burstSpan, interval)
		return tat
	}
	newTat := tat + int64(cost)*interval
	if newTat-now > burstSpan {
		d.RetryAfter = time.Duration(newTat - now - burstSpan)
		d.ResetAfter = time.Duration(tat - now)
		d.Remaining = remaining(tat-now, burstSpan, interval)
		return tat
	}
	d.Allowed = true
	d.ResetAfter = time.Duration(newTat - now)
	d.Remaining = remaining(newTat-now, burstSpan, interval)
	return newTat
}

// remaining returns the whole tokens held by a bucket that will be full in
// reset ns. After the clock went back, reset can exceed the burst span: the
// bucket then holds nothing, not a negative count.
func remaining(reset, burstSpan, interval int64) int {
	return int(max(burstSpan-reset, 0) / interval)
}
