package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/token"
)

// RevocationStore is a [token.RevocationWriter] that records revocations
// in Redis, where every replica's [RevocationFeed] follows them.
//
// Each [RevocationStore.Revoke] is one Lua script, atomic on the server:
// it merges the entry into the set (the later Before and the later Expires
// win, as in [token.Revocations], so writing an entry twice or writing
// entries in any order gives the same set), records its expiry, prunes up
// to 1,000 expired entries by the server's clock (TIME), and appends the
// merged entry to the feed, a Redis stream trimmed to about
// [DefaultFeedLength] entries ([WithFeedLength]). A write that changes
// nothing appends nothing.
//
// # Keys
//
// With the default prefix "tollgate" ([WithKeyPrefix]) the store uses four
// keys sharing the Redis Cluster hash tag {revocations}:
//
//   - tollgate:{revocations}:set, a hash: field KIND:VALUE (kind jti, ref,
//     sid, sub or consumer, then the value as given), value BEFORE/EXPIRES,
//     each 19 decimal digits of nanoseconds since the Unix epoch (BEFORE
//     9223372036854775807 means every token, whenever issued);
//   - tollgate:{revocations}:expiry, a sorted set of the same fields, score
//     EXPIRES in milliseconds (rounded up): what the pruning reads;
//   - tollgate:{revocations}:feed, a stream of entries {f: FIELD, v: VALUE,
//     s: SEQ}, what followers read;
//   - tollgate:{revocations}:seq, the SEQ of the feed's last entry: a
//     follower that sees a SEQ jump has missed entries (the stream was
//     trimmed, or Redis lost its data) and reloads the set.
//
// All four expire when the last entry does, so a set nobody writes to any
// more leaves Redis on its own. Redis 6.2 or later is needed (ZADD GT).
//
// A RevocationStore is safe for concurrent use.
type RevocationStore struct {
	client redis.UniversalClient
	keys   revKeys
	maxLen int64
}

// DefaultFeedLength is about how many entries the feed stream keeps
// (XADD MAXLEN ~). A follower further behind than that reloads the whole
// set, so the bound costs memory in Redis, never a missed revocation.
const DefaultFeedLength = 10000

// pruneBatch is the most expired entries one write prunes.
const pruneBatch = 1000

// ErrRevocationExpired is returned by [RevocationStore.Revoke] for an
// entry that has already expired by the Redis server's clock: it would
// cover no token.
var ErrRevocationExpired = errors.New("redisstore: revocation already expired (by the Redis server's clock)")

//go:embed revoke.lua
var revokeLua string

var revokeScript = redis.NewScript(revokeLua)

// revKeys are the keys of one revocation set.
type revKeys struct {
	set, expiry, feed, seq string
}

func revocationKeys(prefix string) revKeys {
	p := prefix + ":{revocations}:"
	return revKeys{set: p + "set", expiry: p + "expiry", feed: p + "feed", seq: p + "seq"}
}

func (k revKeys) all() []string { return []string{k.set, k.expiry, k.feed, k.seq} }

// WithFeedLength sets about how many entries a [RevocationStore]'s feed
// stream keeps (default [DefaultFeedLength]). It does not apply to
// [NewLimiter].
func WithFeedLength(n int) Option {
	return func(o *options) { o.feedLen = n }
}

// NewRevocationStore returns a store that keeps revocations in the Redis
// behind client. It does not contact Redis. It returns an error for a nil
// client, a client that ignores context deadlines, an invalid key prefix
// or a feed length below 1. Options are [WithKeyPrefix] (the followers
// must use the same, [FeedKeyPrefix]) and [WithFeedLength].
func NewRevocationStore(client redis.UniversalClient, opts ...Option) (*RevocationStore, error) {
	if err := checkClient(client, "NewRevocationStore"); err != nil {
		return nil, err
	}
	o := options{prefix: "tollgate", feedLen: DefaultFeedLength}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkPrefix(o.prefix); err != nil {
		return nil, err
	}
	if o.feedLen < 1 {
		return nil, fmt.Errorf("redisstore: feed length %d must be at least 1", o.feedLen)
	}
	return &RevocationStore{client: client, keys: revocationKeys(o.prefix), maxLen: int64(o.feedLen)}, nil
}

// Revoke records r: validated ([token.Revocation.Validate]; its errors
// never hold the value), refused with [ErrRevocationExpired] when it has
// already expired, and merged into the set in one atomic script. Once it
// returns nil, every follower applies r as soon as it reads the feed. An
// error other than a validation error comes from Redis or ctx: the entry
// may or may not have been written, and writing it again is harmless.
func (s *RevocationStore) Revoke(ctx context.Context, r token.Revocation) error {
	if err := r.Validate(); err != nil {
		return err
	}
	value, err := encodeValue(r)
	if err != nil {
		return err
	}
	res, err := revokeScript.Run(ctx, s.client, s.keys.all(),
		fieldOf(r.Kind, r.Value), value, s.maxLen, pruneBatch).Int64Slice()
	if err != nil {
		return fmt.Errorf("redisstore: writing a %s revocation: %w", r.Kind, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("redisstore: revocation script returned %d values, want 2", len(res))
	}
	if res[0] < 0 {
		return ErrRevocationExpired
	}
	return nil
}

// fieldSep separates the kind from the value in a field of the set. Kinds
// hold no colon, so the first one ends the kind.
const fieldSep = ":"

func fieldOf(k token.RevocationKind, v string) string { return string(k) + fieldSep + v }

// everyToken is BEFORE for an entry covering every token (a zero Before):
// the largest, so that merging keeps it.
const everyToken = math.MaxInt64

// encodeValue returns r's BEFORE/EXPIRES.
func encodeValue(r token.Revocation) (string, error) {
	before := int64(everyToken)
	if !r.Before.IsZero() {
		before = r.Before.UnixNano()
		if before < 0 || r.Before.Year() > 2200 {
			return "", fmt.Errorf("redisstore: a %s revocation's before time must lie between 1970 and 2200", r.Kind)
		}
	}
	expires := r.Expires.UnixNano()
	if expires <= 0 || r.Expires.Year() > 2200 {
		return "", fmt.Errorf("redisstore: a %s revocation's expiry must lie between 1970 and 2200", r.Kind)
	}
	return fmt.Sprintf("%019d/%019d", before, expires), nil
}

// errMalformed is what a feed counts for an entry it cannot read; it names
// nothing of the entry, whose value may be a revoked identifier.
var errMalformed = errors.New("malformed revocation entry")

// decodeEntry returns the revocation of a field and value of the set (or
// of a feed entry). It returns errMalformed for anything it cannot read,
// and for entries [token.Revocation.Validate] refuses.
func decodeEntry(field, value string) (token.Revocation, error) {
	kind, v, ok := strings.Cut(field, fieldSep)
	if !ok || len(value) != 39 || value[19] != '/' {
		return token.Revocation{}, errMalformed
	}
	before, err1 := parseDigits(value[:19])
	expires, err2 := parseDigits(value[20:])
	if err1 != nil || err2 != nil || expires <= 0 {
		return token.Revocation{}, errMalformed
	}
	r := token.Revocation{Kind: token.RevocationKind(kind), Value: v, Expires: time.Unix(0, expires)}
	if before != everyToken {
		r.Before = time.Unix(0, before)
	}
	if r.Validate() != nil {
		return token.Revocation{}, errMalformed
	}
	return r, nil
}

// parseDigits parses 19 decimal digits (no sign).
func parseDigits(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errMalformed
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
