package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/throttle"
)

// Limiter is a [throttle.Limiter] whose buckets live in Redis, so that every replica of
// a service shares them: a consumer gets Burst tokens across all replicas, not
// Burst per replica.
//
// Each decision is one round trip: a Lua script (sent with EVALSHA, and once
// more with EVAL after the server loses its script cache) reads the bucket,
// applies the arithmetic of the throttle package documentation and writes the bucket
// back, atomically. The time is the Redis server's (TIME), so replicas whose
// clocks disagree still agree on every bucket.
//
// # Precision
//
// Decisions are exact: the script computes in integer nanoseconds, as the
// memory limiter does, with times taken relative to the server's now so that
// they stay within the 2^53 integers a Lua number holds exactly. The server's
// clock has a resolution of one microsecond, so now is always a whole
// microsecond. For that arithmetic to be exact the bucket's span,
// Burst × Per/Rate, may be at most 100 days ([MaxSpan]); a longer one is
// an invalid limit here.
//
// # Keys
//
// A bucket is the string key "PREFIX:{CONSUMER}:BUCKET" (prefix "tollgate"
// by default, see [WithKeyPrefix]), holding the instant the bucket is full
// again in nanoseconds since the Unix epoch, and expiring at that instant
// (rounded up to a millisecond): a full bucket takes no memory. The braces
// make the consumer the key's Redis Cluster hash tag, so one consumer's
// buckets share a slot; each decision touches a single key anyway. Because
// braces would move the hash tag, the consumer is escaped: "%", "{" and "}"
// become "%25", "%7B" and "%7D", which keeps distinct (consumer, bucket) pairs
// on distinct keys. An empty consumer makes an empty hash tag, which Redis
// Cluster ignores (the whole key is hashed).
//
// # Client
//
// Any go-redis [redis.UniversalClient] works: a single node, Sentinel, or
// Cluster. Redis 5 or later is needed (scripts that call TIME before writing
// are replicated by their effects). The client must honour context deadlines
// (ContextTimeoutEnabled in its options), or neither the caller's deadline
// nor a [throttle.Failover]'s timeout would bound a decision when Redis
// hangs; [NewLimiter] checks it for the go-redis client types.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	client redis.UniversalClient
	prefix string
}

// MaxSpan is the longest bucket span, Burst × Per/Rate, the [Limiter]
// accepts: its script keeps nanoseconds relative to now exact below 2^53
// (about 104 days).
const MaxSpan = 100 * 24 * time.Hour

// Source is throttle.Decision.Source for decisions of a [Limiter].
const Source = "redis"

// gcraLua is the decision script; see the comments in it.
//
//go:embed limiter.lua
var gcraLua string

// gcraScript is gcraLua with its SHA-1, for EVALSHA.
var gcraScript = redis.NewScript(gcraLua)

// consumerEscaper escapes the characters of a consumer that would move the
// hash tag of its keys, and the escape character itself.
var consumerEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

// Option configures [NewLimiter].
type Option func(*options)

type options struct {
	prefix  string
	feedLen int // RevocationStore only
}

// WithKeyPrefix sets the prefix of the limiter's (or the revocation
// store's) keys (default "tollgate"), for services that share a Redis and
// must not share buckets or revocations. It must not be empty nor contain
// "{" or "}".
func WithKeyPrefix(p string) Option {
	return func(o *options) { o.prefix = p }
}

// NewLimiter returns a limiter that keeps its buckets in the Redis behind
// client. It does not contact Redis. It returns an error for a nil client, a
// client that ignores context deadlines, or an invalid key prefix.
func NewLimiter(client redis.UniversalClient, opts ...Option) (*Limiter, error) {
	if err := checkClient(client, "NewLimiter"); err != nil {
		return nil, err
	}
	o := options{prefix: "tollgate"}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkPrefix(o.prefix); err != nil {
		return nil, err
	}
	return &Limiter{client: client, prefix: o.prefix}, nil
}

// checkPrefix rejects an empty key prefix and one with braces, which would
// move the keys' hash tag.
func checkPrefix(p string) error {
	if p == "" || strings.ContainsAny(p, "{}") {
		return fmt.Errorf("redisstore: key prefix %q must be non-empty and free of braces", p)
	}
	return nil
}

// checkClient rejects a nil client, and a go-redis client that does not
// bound its socket I/O by the context's deadline. Clients of other types are
// assumed to honour deadlines.
func checkClient(c redis.UniversalClient, who string) error {
	var nilClient, honours bool
	switch c := c.(type) {
	case nil:
		nilClient = true
	case *redis.Client:
		nilClient = c == nil
		honours = !nilClient && c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		nilClient = c == nil
		honours = !nilClient && c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		nilClient = c == nil
		honours = !nilClient && c.Options().ContextTimeoutEnabled
	default:
		honours = true
	}
	switch {
	case nilClient:
		return errors.New("redisstore: " + who + " needs a Redis client, got nil")
	case !honours:
		return errors.New("redisstore: the Redis client ignores context deadlines, so a hung Redis would stall every call; set ContextTimeoutEnabled: true in its options")
	}
	return nil
}

// Allow takes cost tokens from the bucket key under limit if it holds them
// now, in one round trip to Redis, and reports the decision with Source
// "redis".
//
// A cost of 0 or less counts as 1. A cost above limit.Burst is never
// admitted (RetryAfter is -1). An invalid limit, or one whose span exceeds
// [MaxSpan], returns an error wrapping [throttle.ErrInvalidLimit] without
// contacting Redis. Any other error comes from Redis or the context, and the
// decision is then meaningless.
//
// As with the memory limiter, the limit is not stored with the bucket: calls
// naming the same key should pass the same limit.
//
// A decision whose answer is lost (its context ends first, or the connection
// breaks) may still have run on the server and taken its tokens, and one
// that go-redis retries after a network error may run twice: errors make
// the limiter stricter, never more lenient.
func (r *Limiter) Allow(ctx context.Context, key throttle.Key, limit throttle.Limit, cost int) (throttle.Decision, error) {
	if err := validateLimit(limit); err != nil {
		return throttle.Decision{}, err
	}
	if cost <= 0 {
		cost = 1
	}
	interval := int64(limit.Interval())
	need := int64(-1)
	if cost <= limit.Burst {
		need = int64(cost) * interval
	}
	res, err := gcraScript.Run(ctx, r.client, []string{r.key(key)},
		interval, interval*int64(limit.Burst), need).Int64Slice()
	if err != nil {
		return throttle.Decision{}, fmt.Errorf("redisstore: %w", err)
	}
	if len(res) != 4 {
		return throttle.Decision{}, fmt.Errorf("redisstore: script returned %d values, want 4", len(res))
	}
	return throttle.Decision{
		Allowed:    res[0] == 1,
		Limit:      limit,
		Remaining:  int(res[1]),
		RetryAfter: time.Duration(res[2]),
		ResetAfter: time.Duration(res[3]),
		Source:     Source,
	}, nil
}

// key returns the Redis key of a bucket: PREFIX:{CONSUMER}:BUCKET, with the
// consumer escaped.
func (r *Limiter) key(k throttle.Key) string {
	c := k.Consumer
	if strings.ContainsAny(c, "%{}") {
		c = consumerEscaper.Replace(c)
	}
	return r.prefix + ":{" + c + "}:" + k.Bucket
}

// validateLimit is [throttle.Limit.Validate] plus the bound on the span
// that keeps the script's arithmetic exact.
func validateLimit(l throttle.Limit) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if int64(l.Burst) > int64(MaxSpan/l.Interval()) {
		return fmt.Errorf("%w: burst %d at one token every %v spans more than the Redis limiter's %v",
			throttle.ErrInvalidLimit, l.Burst, l.Interval(), MaxSpan)
	}
	return nil
}
