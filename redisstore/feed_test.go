package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/token"
)

// feedWait bounds every wait of these tests for the feed.
const feedWait = 10 * time.Second

// testFeedOpts keep a feed's Close and its retries quick in tests.
var testFeedOpts = []FeedOption{FeedBlock(100 * time.Millisecond), FeedBackoff(20*time.Millisecond, 200*time.Millisecond), FeedTimeout(2 * time.Second)}

// watched is a revocation set with its changes and events as channels.
type watched struct {
	set     *token.Revocations
	changed chan struct{}
	mu      sync.Mutex
	events  []token.RevocationEvent
	evCh    chan struct{}
}

func newWatched(t *testing.T) *watched {
	w := &watched{set: token.NewRevocations(), changed: make(chan struct{}, 1), evCh: make(chan struct{}, 1)}
	t.Cleanup(w.set.Close)
	w.set.Watch(func() {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	})
	w.set.Observe(func(e token.RevocationEvent) {
		w.mu.Lock()
		w.events = append(w.events, e)
		w.mu.Unlock()
		select {
		case w.evCh <- struct{}{}:
		default:
		}
	})
	return w
}

// has reports whether the set holds an entry of kind and value.
func (w *watched) has(kind token.RevocationKind, value string) bool {
	for _, r := range w.set.All() {
		if r.Kind == kind && r.Value == value {
			return true
		}
	}
	return false
}

// waitHas waits until the set holds kind and value, and returns how long
// that took.
func (w *watched) waitHas(t *testing.T, kind token.RevocationKind, value string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(feedWait)
	defer deadline.Stop()
	for !w.has(kind, value) {
		select {
		case <-w.changed:
		case <-deadline.C:
			t.Fatalf("the set did not get the %s revocation within %v", kind, feedWait)
		}
	}
	return time.Since(start)
}

// count returns how many events of kind were reported.
func (w *watched) count(kind token.RevocationEventKind) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// waitEvent waits until n events of kind have been reported and returns
// the last.
func (w *watched) waitEvent(t *testing.T, kind token.RevocationEventKind, n int) token.RevocationEvent {
	t.Helper()
	deadline := time.NewTimer(feedWait)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		seen := 0
		var last token.RevocationEvent
		for _, e := range w.events {
			if e.Kind == kind {
				seen++
				last = e
			}
		}
		w.mu.Unlock()
		if seen >= n {
			return last
		}
		select {
		case <-w.evCh:
		case <-deadline.C:
			t.Fatalf("no %d %s events within %v (saw %d)", n, kind, feedWait, seen)
		}
	}
}

// client returns a client of srv that fails fast when Redis is down (no
// retries of its own: the feed retries), as a feed's client should.
func client(t *testing.T, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

func follow(t *testing.T, c redis.UniversalClient, w *watched, opts ...FeedOption) *RevocationFeed {
	t.Helper()
	f, err := FollowRevocations(context.Background(), c, w.set, append(append([]FeedOption{}, testFeedOpts...), opts...)...)
	if err != nil {
		t.Fatalf("FollowRevocations: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func newStore(t *testing.T, c redis.UniversalClient, opts ...Option) *RevocationStore {
	t.Helper()
	s, err := NewRevocationStore(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomID(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

func revoke(t *testing.T, s *RevocationStore, kind token.RevocationKind, value string) token.Revocation {
	t.Helper()
	r, err := token.NewRevocation(kind, value, time.Time{}, time.Now(), token.DefaultRevocationLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(context.Background(), r); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	return r
}

// tokens signs tokens of session sid and verifies them against set.
type tokens struct {
	signer *token.Signer
	v      *token.Verifier
}

func newTokens(t *testing.T, set *token.Revocations) *tokens {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ks, "iss", "aud", token.WithRevocations(set))
	if err != nil {
		t.Fatal(err)
	}
	return &tokens{signer: signer, v: v}
}

// verify reports the verification error of a fresh token of session sid.
func (k *tokens) verify(t *testing.T, sid string) error {
	t.Helper()
	now := time.Now()
	tok, err := k.signer.Sign(token.Claims{Issuer: "iss", Subject: "s", Audience: []string{"aud"}, SessionID: sid,
		IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.v.Verify(context.Background(), tok)
	return err
}

// A write through the store reaches a follower through the stream; the
// follower's set then refuses the session's tokens.
func TestRevFeedFeedAppliesAWrite(t *testing.T) {
	srv := redistest.Start(t)
	w := newWatched(t)
	follow(t, client(t, srv), w)
	if got := w.waitEvent(t, token.RevocationsLoaded, 1); !strings.HasPrefix(got.Source, "redis 127.0.0.1:") {
		t.Errorf("event source %q, want redis ADDR", got.Source)
	}
	keys := newTokens(t, w.set)
	sid := randomID(t)
	if err := keys.verify(t, sid); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	start := time.Now()
	revoke(t, newStore(t, srv.Client()), token.RevokeSession, sid)
	w.waitHas(t, token.RevokeSession, sid)
	t.Logf("write → applied by the follower: %v", time.Since(start))
	if err := keys.verify(t, sid); !errors.Is(err, token.ErrRevokedToken) {
		t.Fatalf("after the revocation: %v, want ErrRevokedToken", err)
	}
	if n := w.count(token.RevocationsStale); n != 0 {
		t.Errorf("%d stale events, want none", n)
	}
}

// What is in Redis before a follower starts is loaded; the set's times
// survive the round trip exactly, merged monotonically.
func TestRevFeedFeedLoadsAtStart(t *testing.T) {
	srv := redistest.Start(t)
	store := newStore(t, srv.Client())
	now := time.Now()
	before := now.Add(-time.Hour).Add(123456789 * time.Nanosecond)
	sub, err := token.NewRevocation(token.RevokeSubject, "alice", before, now, token.DefaultRevocationLimits())
	if err != nil {
		t.Fatal(err)
	}
	earlier := sub
	earlier.Before = before.Add(-time.Minute)
	earlier.Expires = sub.Expires.Add(-time.Minute)
	ctx := context.Background()
	for _, r := range []token.Revocation{sub, earlier} { // the later entry wins, whatever the order
		if err := store.Revoke(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	jti := revoke(t, store, token.RevokeToken, "j-1")
	w := newWatched(t)
	follow(t, client(t, srv), w)
	got := map[token.RevocationKind]token.Revocation{}
	for _, r := range w.set.All() {
		got[r.Kind] = r
	}
	if len(got) != 2 || !got[token.RevokeSubject].Before.Equal(sub.Before) || !got[token.RevokeSubject].Expires.Equal(sub.Expires) ||
		got[token.RevokeToken].Value != "j-1" || !got[token.RevokeToken].Before.IsZero() || !got[token.RevokeToken].Expires.Equal(jti.Expires) {
		t.Fatalf("loaded %v, want %v and %v", w.set.All(), sub, jti)
	}
	if n := srv.Client().XLen(ctx, "tollgate:{revocations}:feed").Val(); n != 2 {
		t.Errorf("feed holds %d entries, want 2 (a write that changes nothing appends nothing)", n)
	}
}

// Two followers of one Redis both apply a write.
func TestRevFeedTwoFollowers(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newWatched(t), newWatched(t)
	follow(t, client(t, srv), a)
	follow(t, client(t, srv), b)
	sid := randomID(t)
	start := time.Now()
	revoke(t, newStore(t, srv.Client()), token.RevokeSession, sid)
	a.waitHas(t, token.RevokeSession, sid)
	b.waitHas(t, token.RevokeSession, sid)
	t.Logf("write → applied by both followers: %v", time.Since(start))
}

// With Redis gone, followers keep refusing what they have and report
// stale, once, with an error that holds no revoked value.
func TestRevFeedRedisStoppedKeepsEnforcing(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newWatched(t), newWatched(t)
	retries := make(chan struct{}, 64)
	countRetries := func(o *feedOptions) {
		o.beforeRetry = func() {
			select {
			case retries <- struct{}{}:
			default:
			}
		}
	}
	follow(t, client(t, srv), a, countRetries)
	follow(t, client(t, srv), b, countRetries)
	sid := randomID(t)
	revoke(t, newStore(t, srv.Client()), token.RevokeSession, sid)
	for _, w := range []*watched{a, b} {
		w.waitHas(t, token.RevokeSession, sid)
	}
	srv.Stop()
	for _, w := range []*watched{a, b} {
		ev := w.waitEvent(t, token.RevocationsStale, 1)
		if ev.Err == nil || strings.Contains(ev.Err.Error(), sid) {
			t.Errorf("stale event error %v: want one, without the sid", ev.Err)
		}
		if !w.set.Stale() {
			t.Error("set not marked stale")
		}
		if err := newTokens(t, w.set).verify(t, sid); !errors.Is(err, token.ErrRevokedToken) {
			t.Errorf("with Redis stopped: %v, want ErrRevokedToken", err)
		}
	}
	// Retries do not repeat the report.
	deadline := time.After(feedWait)
	for range 6 {
		select {
		case <-retries:
		case <-deadline:
			t.Fatal("the followers did not retry")
		}
	}
	for _, w := range []*watched{a, b} {
		if n := w.count(token.RevocationsStale); n != 1 {
			t.Errorf("%d stale events, want 1", n)
		}
	}
}

// A revocation written while a follower was cut off (after Redis came back
// empty, before the follower reconnected) is applied once it reconnects,
// and the follower reports caught_up; what it had before is kept although
// the restarted Redis lost it.
func TestRevFeedCatchesUpAfterReconnect(t *testing.T) {
	srv := redistest.Start(t)
	w := newWatched(t)
	follow(t, client(t, srv), w, FeedBackoff(300*time.Millisecond, 300*time.Millisecond))
	old := randomID(t)
	revoke(t, newStore(t, srv.Client()), token.RevokeSession, old)
	w.waitHas(t, token.RevokeSession, old)

	srv.Stop()
	w.waitEvent(t, token.RevocationsStale, 1)
	srv.Restart()
	writer := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	defer writer.Close()
	missed := randomID(t)
	revoke(t, newStore(t, writer), token.RevokeSession, missed)

	w.waitEvent(t, token.RevocationsCaughtUp, 1)
	w.waitHas(t, token.RevokeSession, missed)
	if !w.has(token.RevokeSession, old) {
		t.Error("the entry the restarted Redis lost left the set")
	}
	if w.set.Stale() {
		t.Error("set still stale after caught_up")
	}
	// And it follows the stream again.
	after := randomID(t)
	revoke(t, newStore(t, writer), token.RevokeSession, after)
	w.waitHas(t, token.RevokeSession, after)
}

// A hung Redis (answering nothing) turns the feed stale too, and it
// catches up when Redis resumes.
func TestRevFeedHungRedis(t *testing.T) {
	srv := redistest.Start(t)
	w := newWatched(t)
	follow(t, client(t, srv), w, FeedTimeout(200*time.Millisecond))
	srv.Pause()
	w.waitEvent(t, token.RevocationsStale, 1)
	srv.Resume()
	w.waitEvent(t, token.RevocationsCaughtUp, 1)
}

// Writes prune expired entries from the hash and the sorted set, by the
// server's clock; the keys expire with the last entry.
func TestRevFeedPrunesExpiredEntries(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	keys := revocationKeys("tollgate")
	past := time.Now().Add(-time.Minute).UnixNano()
	for i := range 5 { // entries left behind, expired a minute ago
		field := fmt.Sprintf("jti:old-%d", i)
		c.HSet(ctx, keys.set, field, fmt.Sprintf("%019d/%019d", int64(everyToken), past))
		c.ZAdd(ctx, keys.expiry, redis.Z{Score: float64(past / 1e6), Member: field})
	}
	r := revoke(t, newStore(t, c), token.RevokeToken, "live")
	if n := c.HLen(ctx, keys.set).Val(); n != 1 {
		t.Errorf("hash holds %d entries after a write, want 1 (the expired ones pruned)", n)
	}
	if m := c.ZRange(ctx, keys.expiry, 0, -1).Val(); len(m) != 1 || m[0] != "jti:live" {
		t.Errorf("sorted set %v, want [jti:live]", m)
	}
	wantMS := (r.Expires.UnixNano() + 999_999) / 1e6
	if s := c.ZScore(ctx, keys.expiry, "jti:live").Val(); int64(s) != wantMS {
		t.Errorf("expiry score %v, want %d", int64(s), wantMS)
	}
	for _, k := range keys.all() {
		at := c.PExpireTime(ctx, k).Val()
		if at <= 0 || at.Milliseconds() < wantMS {
			t.Errorf("%s expires at %v, want at the last entry's expiry", k, at)
		}
	}
}

// The writer validates entries (its errors never hold the value) and
// refuses expired ones by the server's clock.
func TestRevFeedStoreRefuses(t *testing.T) {
	srv := redistest.Start(t)
	store := newStore(t, srv.Client())
	ctx := context.Background()
	secret := "do-not-print-this-value"
	for name, r := range map[string]token.Revocation{
		"no expiry":   {Kind: token.RevokeToken, Value: secret},
		"bad kind":    {Kind: "nope", Value: secret, Expires: time.Now().Add(time.Hour)},
		"jti before":  {Kind: token.RevokeToken, Value: secret, Before: time.Now(), Expires: time.Now().Add(time.Hour)},
		"sub no time": {Kind: token.RevokeSubject, Value: secret, Expires: time.Now().Add(time.Hour)},
	} {
		err := store.Revoke(ctx, r)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: %v, want an error without the value", name, err)
		}
	}
	err := store.Revoke(ctx, token.Revocation{Kind: token.RevokeToken, Value: secret, Expires: time.Now().Add(-time.Second)})
	if !errors.Is(err, ErrRevocationExpired) {
		t.Errorf("expired entry: %v, want ErrRevocationExpired", err)
	}
	if n := srv.Client().Exists(ctx, revocationKeys("tollgate").all()...).Val(); n != 0 {
		t.Errorf("%d keys written by refused entries", n)
	}
	if _, err := NewRevocationStore(nil); err == nil {
		t.Error("NewRevocationStore(nil) succeeded")
	}
	if _, err := NewRevocationStore(redis.NewClient(&redis.Options{Addr: srv.Addr()})); err == nil {
		t.Error("NewRevocationStore accepted a client without ContextTimeoutEnabled")
	}
}

// A stream trimmed past what a follower read is covered by the set: at
// start (the load reads the hash), and while following (a sequence jump
// makes the follower reload).
func TestRevFeedTrimmedStream(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	keys := revocationKeys("tollgate")
	store := newStore(t, c)
	var ids []string
	for range 5 {
		ids = append(ids, randomID(t))
		revoke(t, store, token.RevokeSession, ids[len(ids)-1])
	}
	c.XTrimMaxLen(ctx, keys.feed, 0)
	w := newWatched(t)
	follow(t, c, w)
	for _, id := range ids {
		if !w.has(token.RevokeSession, id) {
			t.Fatal("an entry of the trimmed stream is missing after the load")
		}
	}

	// Entries written and trimmed away while the follower follows: the
	// hash holds one the stream lost, and the sequence jumps past it.
	hidden := randomID(t)
	r, _ := token.NewRevocation(token.RevokeSession, hidden, time.Time{}, time.Now(), token.DefaultRevocationLimits())
	v, _ := encodeValue(r)
	c.HSet(ctx, keys.set, fieldOf(r.Kind, r.Value), v)
	c.Incr(ctx, keys.seq)
	next := randomID(t)
	revoke(t, store, token.RevokeSession, next)
	w.waitHas(t, token.RevokeSession, next)
	w.waitHas(t, token.RevokeSession, hidden)
	if n := w.count(token.RevocationsStale); n != 0 {
		t.Errorf("a gap reported %d stale events, want none", n)
	}
}

// Garbage in Redis (fields written by hand, stream entries of another
// shape) is skipped, at load and while following, and stops nothing.
func TestRevFeedSkipsInvalidEntries(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	keys := revocationKeys("tollgate")
	future := time.Now().Add(time.Hour).UnixNano()
	good := fmt.Sprintf("%019d/%019d", int64(everyToken), future)
	for field, value := range map[string]string{
		"no-separator":       good,
		"bogus:x":            good,
		"jti:":               good,
		"jti:bad-value":      "garbage",
		"jti:short":          "1/2",
		"jti:letters":        strings.Repeat("x", 19) + "/" + strings.Repeat("y", 19),
		"sub:needs-a-before": good,
		"jti:valid":          good,
	} {
		c.HSet(ctx, keys.set, field, value)
	}
	w := newWatched(t)
	follow(t, c, w)
	if all := w.set.All(); len(all) != 1 || all[0].Value != "valid" {
		t.Fatalf("loaded %v, want only jti valid", all)
	}
	c.XAdd(ctx, &redis.XAddArgs{Stream: keys.feed, Values: []string{"f", "jti:x", "v", "nonsense", "s", "1"}})
	c.XAdd(ctx, &redis.XAddArgs{Stream: keys.feed, Values: []string{"other", "shape"}})
	c.Set(ctx, keys.seq, 1, 0)
	sid := randomID(t)
	revoke(t, newStore(t, c), token.RevokeSession, sid)
	w.waitHas(t, token.RevokeSession, sid)
	// A write on top of a garbage field replaces it.
	c.HSet(ctx, keys.set, "jti:garbled", "garbage")
	revoke(t, newStore(t, c), token.RevokeToken, "garbled")
	w.waitHas(t, token.RevokeToken, "garbled")
	if n := w.count(token.RevocationsStale); n != 0 {
		t.Errorf("%d stale events, want none", n)
	}
}

// Start: an unreachable Redis is an error, unless the feed may start
// stale; then it loads once Redis is there.
func TestRevFeedStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	w := newWatched(t)
	_, err := FollowRevocations(context.Background(), client(t, srv), w.set, testFeedOpts...)
	if err == nil || !strings.Contains(err.Error(), "loading the revocations") {
		t.Fatalf("FollowRevocations with Redis down: %v, want an error", err)
	}
	follow(t, client(t, srv), w, FeedStartStale())
	w.waitEvent(t, token.RevocationsStale, 1)
	srv.Restart()
	w.waitEvent(t, token.RevocationsLoaded, 1)
	if n := w.count(token.RevocationsCaughtUp); n != 0 {
		t.Errorf("%d caught_up events, want loaded only", n)
	}
	if _, err := FollowRevocations(context.Background(), nil, w.set); err == nil {
		t.Error("FollowRevocations(nil client) succeeded")
	}
	if _, err := FollowRevocations(context.Background(), srv.Client(), nil); err == nil {
		t.Error("FollowRevocations(nil set) succeeded")
	}
}

// A client with a 50 ms ReadTimeout (a limiter's) still blocks for a whole
// FeedBlock: go-redis gives blocking reads their own deadline.
func TestRevFeedShortReadTimeoutClient(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 50 * time.Millisecond, ContextTimeoutEnabled: true})
	defer c.Close()
	idle := make(chan struct{}, 16)
	w := newWatched(t)
	f, err := FollowRevocations(context.Background(), c, w.set, FeedBlock(300*time.Millisecond), FeedTimeout(time.Second),
		func(o *feedOptions) {
			o.afterRead = func() { idle <- struct{}{} }
		})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadline := time.After(feedWait)
	for range 2 { // two whole blocks, far longer than the ReadTimeout
		select {
		case <-idle:
		case <-deadline:
			t.Fatal("no idle read within the deadline")
		}
	}
	if n := w.count(token.RevocationsStale); n != 0 {
		t.Fatalf("%d stale events with a short ReadTimeout, want none: %v", n, w.waitEvent(t, token.RevocationsStale, 1).Err)
	}
	sid := randomID(t)
	revoke(t, newStore(t, srv.Client()), token.RevokeSession, sid)
	w.waitHas(t, token.RevokeSession, sid)
}

// A million entries load.
func TestRevFeedLoadsAMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a million entries")
	}
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const n = 1_000_000
	v := fmt.Sprintf("%019d/%019d", int64(everyToken), time.Now().Add(time.Hour).UnixNano())
	fill := redis.NewScript(`for i = 1, tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'jti:j' .. i, ARGV[2]) end return 1`)
	if err := fill.Run(ctx, c, []string{revocationKeys("tollgate").set}, n, v).Err(); err != nil {
		t.Fatal(err)
	}
	w := newWatched(t)
	start := time.Now()
	follow(t, c, w)
	t.Logf("loaded %d entries in %v", w.set.Len(), time.Since(start))
	if w.set.Len() != n {
		t.Fatalf("loaded %d entries, want %d", w.set.Len(), n)
	}
}
