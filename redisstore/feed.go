package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/token"
)

// RevocationFeed keeps a [token.Revocations] in step with the revocations
// a [RevocationStore] writes to Redis: every replica of a service follows
// the same Redis, so a revocation written anywhere is enforced everywhere,
// typically within milliseconds.
//
// At start the feed notes the feed stream's last entry, then loads the
// whole set (HSCAN, in batches: a million entries load) and follows the
// stream from the noted entry (XREAD BLOCK), so whatever is written during
// the load is read again afterwards; merging is idempotent. Entries carry a
// sequence number: a jump (the stream was trimmed past the feed, or Redis
// lost its data) makes the feed reload the whole set.
//
// When Redis fails (a command errs or times out) the feed reports
// [token.RevocationsStale] once, with the error, and keeps the set as it
// is: every revocation it holds is still enforced. It retries with a
// capped exponential backoff ([FeedBackoff]); once Redis answers it loads
// the whole set again, unioned into the set it has (an entry Redis lost is
// kept until it expires), and reports [token.RevocationsCaughtUp]. The
// first load reports [token.RevocationsLoaded]. Entries the feed cannot
// read (malformed or invalid, such as a field written by hand) are skipped
// and never stop it; no event or error holds a revoked value.
//
// # Client and timeouts
//
// The feed holds one connection of its client in a blocking XREAD most of
// the time. go-redis gives a blocking command a read deadline of its block
// plus 10 s whatever the client's ReadTimeout, so a client with a short
// ReadTimeout (a limiter's 50 ms) works; with ContextTimeoutEnabled the
// feed bounds each read by its block plus [FeedTimeout] instead, so a hung
// Redis is noticed sooner. Its other commands are bounded by FeedTimeout
// (with ContextTimeoutEnabled) or the client's ReadTimeout. A dedicated
// client keeps the feed's connection out of a limiter's pool; sharing one
// works too. The feed retries on its own: a client that retries too
// (go-redis's defaults: MaxRetries 3, DialerRetries 5) only delays the
// stale report by a second or two; MaxRetries -1 and DialerRetries 1 make
// it immediate.
type RevocationFeed struct {
	client redis.UniversalClient
	set    *token.Revocations
	keys   revKeys
	o      feedOptions

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	// Owned by the feed's goroutine (and by FollowRevocations before it
	// starts).
	lastID string // the stream entry read last
	seq    int64  // its sequence number
	loaded bool   // a load has succeeded
	stale  bool   // Stale reported, CaughtUp not yet
}

// FeedOption configures [FollowRevocations].
type FeedOption func(*feedOptions)

type feedOptions struct {
	prefix               string
	source               string
	block, timeout       time.Duration
	minBackoff, maxWait  time.Duration
	scanBatch            int
	startStale           bool
	afterRead, afterLoad func() // test hooks
	beforeRetry          func()
}

// FeedKeyPrefix sets the prefix of the keys the feed reads (default
// "tollgate"): the [WithKeyPrefix] of the store that writes them.
func FeedKeyPrefix(p string) FeedOption { return func(o *feedOptions) { o.prefix = p } }

// FeedSource names the feed in its events (default "redis ADDR" for a
// single-node client, else "redis").
func FeedSource(name string) FeedOption { return func(o *feedOptions) { o.source = name } }

// FeedBlock sets how long one XREAD waits for new entries (default 1 s).
// New entries are read as soon as they are written, whatever the block;
// it bounds how long [RevocationFeed.Close] waits.
func FeedBlock(d time.Duration) FeedOption {
	return func(o *feedOptions) {
		if d > 0 {
			o.block = d
		}
	}
}

// FeedTimeout bounds each command other than the blocking read, and how
// much longer than its block a read may take (default 5 s). It applies
// only with a client whose options set ContextTimeoutEnabled.
func FeedTimeout(d time.Duration) FeedOption {
	return func(o *feedOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// FeedBackoff sets the wait before the first retry after an error and its
// cap (defaults 100 ms and 1 s); each failed retry doubles it, with 20 %
// jitter.
func FeedBackoff(first, limit time.Duration) FeedOption {
	return func(o *feedOptions) {
		if first > 0 {
			o.minBackoff = first
		}
		if limit > 0 {
			o.maxWait = limit
		}
	}
}

// FeedStartStale lets [FollowRevocations] return a feed when Redis cannot
// be read at start: the set starts as it is (typically empty), the feed
// reports [token.RevocationsStale] and keeps trying, and reports
// [token.RevocationsLoaded] once it has loaded. Without it, a Redis that
// cannot be read at start is an error: a replica would otherwise serve
// tokens revoked everywhere else.
func FeedStartStale() FeedOption { return func(o *feedOptions) { o.startStale = true } }

// FeedScanBatch sets the COUNT of each HSCAN of a load (default 2000).
func FeedScanBatch(n int) FeedOption {
	return func(o *feedOptions) {
		if n > 0 {
			o.scanBatch = n
		}
	}
}

// readCount is the most stream entries one XREAD returns.
const readCount = 1000

// FollowRevocations loads the revocations in the Redis behind client into
// set and follows them until [RevocationFeed.Close]. It returns once the
// first load is done, or with an error when it fails (Redis down, ctx done)
// unless [FeedStartStale] is given. The feed never closes client nor set.
func FollowRevocations(ctx context.Context, client redis.UniversalClient, set *token.Revocations, opts ...FeedOption) (*RevocationFeed, error) {
	if client == nil {
		return nil, errors.New("redisstore: FollowRevocations needs a Redis client, got nil")
	}
	if c, ok := client.(*redis.Client); ok && c == nil {
		return nil, errors.New("redisstore: FollowRevocations needs a Redis client, got nil")
	}
	if set == nil {
		return nil, errors.New("redisstore: FollowRevocations needs a revocation set, got nil")
	}
	o := feedOptions{
		prefix: "tollgate", source: "redis",
		block: time.Second, timeout: 5 * time.Second,
		minBackoff: 100 * time.Millisecond, maxWait: time.Second,
		scanBatch: 2000,
	}
	if c, ok := client.(*redis.Client); ok {
		o.source = "redis " + c.Options().Addr
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkPrefix(o.prefix); err != nil {
		return nil, err
	}
	o.maxWait = max(o.maxWait, o.minBackoff)
	f := &RevocationFeed{client: client, set: set, keys: revocationKeys(o.prefix), o: o, done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())

	err := f.load(ctx)
	if err != nil {
		if !o.startStale {
			f.cancel()
			return nil, fmt.Errorf("redisstore: loading the revocations from Redis (%s): %w", o.source, err)
		}
		f.lost(err)
	} else {
		f.recovered()
	}
	go f.run(err != nil)
	return f, nil
}

// Close stops following and waits for the feed's goroutine to end (at most
// about one [FeedBlock]). The set keeps what it holds. Close is safe to
// call more than once.
func (f *RevocationFeed) Close() error {
	f.once.Do(f.cancel)
	<-f.done
	return nil
}

// run follows the stream; with reload it first loads the whole set.
func (f *RevocationFeed) run(reload bool) {
	defer close(f.done)
	wait := f.o.minBackoff
	for f.ctx.Err() == nil {
		if reload {
			if err := f.load(f.ctx); err != nil {
				if f.ctx.Err() != nil {
					return
				}
				f.lost(err)
				if !f.sleep(&wait) {
					return
				}
				continue
			}
			reload = false
			wait = f.o.minBackoff
			f.recovered()
		}
		gap, err := f.read()
		switch {
		case f.ctx.Err() != nil:
			return
		case err != nil:
			f.lost(err)
			if !f.sleep(&wait) {
				return
			}
			reload = true
		case gap:
			reload = true
		}
	}
}

// sleep waits *wait (with jitter), doubling it up to the cap; it returns
// false when the feed is closed meanwhile.
func (f *RevocationFeed) sleep(wait *time.Duration) bool {
	if f.o.beforeRetry != nil {
		f.o.beforeRetry()
	}
	d := *wait
	d += time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	*wait = min(*wait*2, f.o.maxWait)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// lost reports the feed stale, once until it recovers.
func (f *RevocationFeed) lost(err error) {
	if f.stale {
		return
	}
	f.stale = true
	f.set.Report(token.RevocationEvent{Source: f.o.source, Kind: token.RevocationsStale, Err: fmt.Errorf("redisstore: revocation feed: %w", err)})
}

// recovered reports a successful load: the first, or one after the feed
// was stale. A reload after a gap, with Redis answering all along, reports
// nothing.
func (f *RevocationFeed) recovered() {
	switch {
	case !f.loaded:
		f.loaded, f.stale = true, false
		f.set.Report(token.RevocationEvent{Source: f.o.source, Kind: token.RevocationsLoaded})
	case f.stale:
		f.stale = false
		f.set.Report(token.RevocationEvent{Source: f.o.source, Kind: token.RevocationsCaughtUp})
	}
	if f.o.afterLoad != nil {
		f.o.afterLoad()
	}
}

// load notes the stream's last entry and sequence number, then merges the
// whole set into f.set. Each command is bounded by the feed's timeout.
func (f *RevocationFeed) load(parent context.Context) error {
	var last *redis.XMessageSliceCmd
	var seq *redis.StringCmd
	ctx, cancel := context.WithTimeout(parent, f.o.timeout)
	_, err := f.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		last = p.XRevRangeN(ctx, f.keys.feed, "+", "-", 1)
		seq = p.Get(ctx, f.keys.seq)
		return nil
	})
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err := last.Err(); err != nil {
		return err
	}
	lastID, n := "0-0", int64(0)
	if msgs := last.Val(); len(msgs) > 0 {
		lastID = msgs[0].ID
	}
	if s, err := seq.Result(); err == nil {
		// A malformed sequence counts as 0: the next entry then looks
		// like a gap unless it is 1, and a reload is harmless.
		n, _ = strconv.ParseInt(s, 10, 64)
	} else if !errors.Is(err, redis.Nil) {
		return err
	}

	var pending []token.Revocation
	flush := func() {
		f.set.Add(pending...)
		pending = pending[:0]
	}
	var cursor uint64
	for {
		ctx, cancel := context.WithTimeout(parent, f.o.timeout)
		kv, next, err := f.client.HScan(ctx, f.keys.set, cursor, "*", int64(f.o.scanBatch)).Result()
		cancel()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if r, err := decodeEntry(kv[i], kv[i+1]); err == nil {
				pending = append(pending, r)
			}
		}
		// Batches grow with the set, so that a large load rebuilds the
		// set's maps a few times, not once per HSCAN page.
		if len(pending) >= max(4096, f.set.Len()/4) {
			flush()
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	flush()
	f.lastID, f.seq = lastID, n
	return nil
}

// read waits up to one block for new stream entries and applies them. gap
// reports a jump in the entries' sequence numbers: some were missed.
func (f *RevocationFeed) read() (gap bool, err error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.o.block+f.o.timeout)
	defer cancel()
	streams, err := f.client.XRead(ctx, &redis.XReadArgs{
		Streams: []string{f.keys.feed, f.lastID},
		Count:   readCount,
		Block:   f.o.block,
	}).Result()
	if f.o.afterRead != nil {
		defer f.o.afterRead()
	}
	if errors.Is(err, redis.Nil) {
		return false, nil // nothing new within the block
	}
	if err != nil {
		return false, err
	}
	var revs []token.Revocation
	for _, s := range streams {
		for _, m := range s.Messages {
			f.lastID = m.ID
			field, _ := m.Values["f"].(string)
			value, _ := m.Values["v"].(string)
			if sv, ok := m.Values["s"].(string); ok {
				if n, err := strconv.ParseInt(sv, 10, 64); err == nil {
					gap = gap || n != f.seq+1
					f.seq = n
				}
			}
			if r, err := decodeEntry(field, value); err == nil {
				revs = append(revs, r)
			}
		}
	}
	if len(revs) > 0 {
		f.set.Add(revs...)
	}
	return gap, nil
}
