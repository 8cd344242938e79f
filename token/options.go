package token

import (
	"fmt"
	"time"
)

// Defaults of a [Verifier], from RFC 8725 and the OWASP JWT guidance.
const (
	DefaultLeeway        = 30 * time.Second
	MaxLeeway            = 2 * time.Minute
	DefaultMaxLifetime   = time.Hour
	DefaultMaxSession    = 8 * time.Hour
	DefaultMaxTokenSize  = 8 << 10
	MaxTokenSizeLimit    = 64 << 10
	DefaultCacheEntries  = 10000
	DefaultCacheBytes    = 32 << 20
	maxJTILen            = 128
	sessionOverheadBytes = 512 // estimated bytes a cached session.Session holds beyond its strings
)

type verifierOptions struct {
	leeway       time.Duration
	maxLifetime  time.Duration
	lifetimeSet  bool
	maxSession   time.Duration
	maxTokenSize int
	now          func() time.Time
	scope        bool
	cacheEntries int
	cacheBytes   int
	revocations  *Revocations
}

// VerifierOption configures a [Verifier].
type VerifierOption func(*verifierOptions)

// WithLeeway sets the clock-skew allowance applied to exp, nbf and iat
// (default 30 s; 0 allowed; at most 2 min).
func WithLeeway(d time.Duration) VerifierOption {
	return func(o *verifierOptions) { o.leeway = d }
}

// WithMaxLifetime sets the longest exp - iat accepted (default 1 h) by a
// verifier of [NewVerifier]; [NewVerifierFor] takes it from each issuer's
// [Profile].
func WithMaxLifetime(d time.Duration) VerifierOption {
	return func(o *verifierOptions) { o.maxLifetime, o.lifetimeSet = d, true }
}

// WithMaxSession sets how long after auth_time a token (and every renewal of
// it) stays acceptable (default 8 h).
func WithMaxSession(d time.Duration) VerifierOption {
	return func(o *verifierOptions) { o.maxSession = d }
}

// WithMaxTokenSize sets the longest token Verify accepts, checked before any
// decoding (default 8 KiB; at most 64 KiB). Transports may apply a smaller
// cap of their own, such as the 8 KiB tollgate allows in gRPC metadata.
func WithMaxTokenSize(n int) VerifierOption {
	return func(o *verifierOptions) { o.maxTokenSize = n }
}

// WithClock sets the clock (default time.Now). Tests pass a fake one.
func WithClock(now func() time.Time) VerifierOption {
	return func(o *verifierOptions) { o.now = now }
}

// WithScopeClaim makes the space-separated scope claim grant permissions, in
// addition to the perms array.
func WithScopeClaim() VerifierOption {
	return func(o *verifierOptions) { o.scope = true }
}

// WithCache bounds the verified-token cache by entries and by bytes (token
// text plus an estimate of the session). Zero entries disables the cache.
func WithCache(entries, bytes int) VerifierOption {
	return func(o *verifierOptions) { o.cacheEntries, o.cacheBytes = entries, bytes }
}

// WithRevocations makes the verifier refuse every token the set covers,
// with an error matching [ErrRevokedToken]: on every verification, cache
// hits included (the check is a pointer load and a map lookup per kind of
// entry the set holds). One set may serve several verifiers.
func WithRevocations(r *Revocations) VerifierOption {
	return func(o *verifierOptions) { o.revocations = r }
}

func (o *verifierOptions) validate() error {
	switch {
	case o.leeway < 0 || o.leeway > MaxLeeway:
		return fmt.Errorf("token: leeway %v outside [0, %v]", o.leeway, MaxLeeway)
	case o.maxLifetime <= 0:
		return fmt.Errorf("token: maximum lifetime must be positive")
	case o.maxSession <= 0:
		return fmt.Errorf("token: maximum session must be positive")
	case o.maxTokenSize <= 0 || o.maxTokenSize > MaxTokenSizeLimit:
		return fmt.Errorf("token: maximum token size %d outside [1, %d]", o.maxTokenSize, MaxTokenSizeLimit)
	case o.now == nil:
		return fmt.Errorf("token: nil clock")
	case o.cacheEntries < 0 || o.cacheBytes < 0:
		return fmt.Errorf("token: negative cache bounds")
	}
	return nil
}
