package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a [JWKS].
const (
	// DefaultJWKSTimeout bounds one fetch: connection, request and body.
	DefaultJWKSTimeout = 5 * time.Second
	// DefaultJWKSMinRefresh and DefaultJWKSMaxRefresh clamp the issuer's
	// Cache-Control max-age.
	DefaultJWKSMinRefresh = 5 * time.Minute
	DefaultJWKSMaxRefresh = 24 * time.Hour
	// DefaultJWKSRefresh is the refresh period of a response without
	// max-age.
	DefaultJWKSRefresh = time.Hour
	// DefaultJWKSRefetchInterval is the least time between two refetches
	// caused by unknown kids.
	DefaultJWKSRefetchInterval = time.Minute
	// DefaultJWKSUnknownKIDWait bounds how long a verification waits for
	// the refetch its unknown kid started.
	DefaultJWKSUnknownKIDWait = 100 * time.Millisecond
	// MaxJWKSBody is the largest document fetched (key set or discovery).
	MaxJWKSBody = 1 << 20

	jwksFirstBackoff = time.Second
	jwksMaxRedirects = 5
	// jwksNegativeKIDs bounds the kids remembered as unknown.
	jwksNegativeKIDs = 4096
)

// ErrJWKSFetch reports a key set or discovery document that could not be
// fetched: the network, a status other than 200, a body over [MaxJWKSBody],
// the time bound. Its text names the URL without its query and never holds
// the body.
var ErrJWKSFetch = errors.New("token: JWKS fetch failed")

// JWKSOption configures [NewJWKS], [Discover] and [ParseJWKS].
type JWKSOption func(*jwksOptions)

type jwksOptions struct {
	algs       []string
	algsSet    bool
	allowHMAC  bool
	insecure   bool
	startEmpty bool
	client     *http.Client
	timeout    time.Duration
	minRefresh time.Duration
	maxRefresh time.Duration
	refresh    time.Duration
	refetch    time.Duration
	wait       time.Duration
	now        func() time.Time
	afterFunc  func(time.Duration, func()) (stop func() bool)
	observers  []func(KeyEvent)
	err        error
}

func (o *jwksOptions) fail(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("token: JWKS option: "+format, args...)
	}
}

// JWKSAlgorithms sets the algorithms keys of the set may be bound to
// (default: every asymmetric algorithm tollgate supports: RS256, PS256,
// ES256, ES384, EdDSA). A key whose alg is not listed is skipped; a key
// without alg is bound to the one listed algorithm that fits its kty and
// crv, and skipped when several or none fit. An issuer that publishes RSA
// keys without alg (Entra ID) needs JWKSAlgorithms(RS256). HMAC algorithms
// also need [JWKSAllowHMAC].
func JWKSAlgorithms(algs ...string) JWKSOption {
	return func(o *jwksOptions) {
		if len(algs) == 0 {
			o.fail("JWKSAlgorithms needs at least one algorithm")
		}
		for _, a := range algs {
			if _, err := signingMethod(a); err != nil {
				o.fail("JWKSAlgorithms: unsupported algorithm (supported: %s)", strings.Join(Algorithms(), ", "))
			}
		}
		o.algs, o.algsSet = slices.Clone(algs), true
	}
}

// JWKSAllowHMAC accepts "oct" (shared secret) keys, which a published key
// set should never hold: without it, an oct key refuses the whole set. Their
// algorithms must also be listed with [JWKSAlgorithms]. tollgate never signs
// with a fetched secret.
func JWKSAllowHMAC() JWKSOption { return func(o *jwksOptions) { o.allowHMAC = true } }

// JWKSAllowInsecureHTTP allows plain http URLs (and redirects to them) for
// any host. Without it, http is allowed only for loopback hosts
// (127.0.0.0/8, ::1, localhost), and an https URL may not redirect to http.
func JWKSAllowInsecureHTTP() JWKSOption { return func(o *jwksOptions) { o.insecure = true } }

// JWKSHTTPClient sets the client fetches go through (default: a client on
// http.DefaultTransport). Its redirect policy is kept, after tollgate's own
// (at most 5 redirects, the scheme rules).
func JWKSHTTPClient(c *http.Client) JWKSOption {
	return func(o *jwksOptions) {
		if c == nil {
			o.fail("JWKSHTTPClient: nil client")
		}
		o.client = c
	}
}

// JWKSTimeout bounds each fetch (default [DefaultJWKSTimeout]).
func JWKSTimeout(d time.Duration) JWKSOption {
	return func(o *jwksOptions) {
		if d <= 0 {
			o.fail("JWKSTimeout must be positive")
		}
		o.timeout = d
	}
}

// JWKSRefreshBounds clamps the refresh period the issuer's Cache-Control
// max-age asks for (defaults [DefaultJWKSMinRefresh],
// [DefaultJWKSMaxRefresh]). min also caps the backoff after failed fetches.
func JWKSRefreshBounds(min, max time.Duration) JWKSOption {
	return func(o *jwksOptions) {
		if min <= 0 || max < min {
			o.fail("JWKSRefreshBounds needs 0 < min <= max")
		}
		o.minRefresh, o.maxRefresh = min, max
	}
}

// JWKSDefaultRefresh sets the refresh period of a response without max-age
// (default [DefaultJWKSRefresh]); it is clamped by [JWKSRefreshBounds] too.
func JWKSDefaultRefresh(d time.Duration) JWKSOption {
	return func(o *jwksOptions) {
		if d <= 0 {
			o.fail("JWKSDefaultRefresh must be positive")
		}
		o.refresh = d
	}
}

// JWKSRefetchInterval sets the least time between two refetches caused by
// unknown kids (default [DefaultJWKSRefetchInterval]). Scheduled refreshes
// do not count.
func JWKSRefetchInterval(d time.Duration) JWKSOption {
	return func(o *jwksOptions) {
		if d <= 0 {
			o.fail("JWKSRefetchInterval must be positive")
		}
		o.refetch = d
	}
}

// JWKSUnknownKIDWait bounds how long [JWKS.Unknown] waits for the refetch
// (default [DefaultJWKSUnknownKIDWait]); 0 never waits, the refetch still
// runs in the background. The wait is real time, whatever [JWKSClock] says.
func JWKSUnknownKIDWait(d time.Duration) JWKSOption {
	return func(o *jwksOptions) {
		if d < 0 {
			o.fail("JWKSUnknownKIDWait must not be negative")
		}
		o.wait = d
	}
}

// JWKSClock sets the clock of the refresh schedule and of the refetch
// interval (default time.Now and time.AfterFunc): afterFunc must run f once
// d has passed and return a function that cancels it, as time.AfterFunc's
// Stop does. Tests pass a fake clock's.
func JWKSClock(now func() time.Time, afterFunc func(d time.Duration, f func()) (stop func() bool)) JWKSOption {
	return func(o *jwksOptions) {
		if now == nil || afterFunc == nil {
			o.fail("JWKSClock needs both functions")
		}
		o.now, o.afterFunc = now, afterFunc
	}
}

// JWKSObserver adds f to the listeners of the source's events from its
// first fetch on (see [JWKS.Observe]).
func JWKSObserver(f func(KeyEvent)) JWKSOption {
	return func(o *jwksOptions) {
		if f != nil {
			o.observers = append(o.observers, f)
		}
	}
}

// JWKSStartWithoutKeys makes [NewJWKS] succeed when its first fetch fails:
// the source then has no set (Current returns nil, every token is refused)
// and keeps fetching in the background, with backoff. Without it, a first
// fetch that fails is NewJWKS's error, so a service does not start with no
// way to verify anything.
func JWKSStartWithoutKeys() JWKSOption { return func(o *jwksOptions) { o.startEmpty = true } }

func newJWKSOptions(opts []JWKSOption) (jwksOptions, error) {
	o := jwksOptions{
		algs:       []string{RS256, PS256, ES256, ES384, EdDSA},
		timeout:    DefaultJWKSTimeout,
		minRefresh: DefaultJWKSMinRefresh,
		maxRefresh: DefaultJWKSMaxRefresh,
		refresh:    DefaultJWKSRefresh,
		refetch:    DefaultJWKSRefetchInterval,
		wait:       DefaultJWKSUnknownKIDWait,
		now:        time.Now,
		afterFunc:  func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop },
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.err != nil {
		return o, o.err
	}
	if !o.allowHMAC && slices.ContainsFunc(o.algs, isHMAC) {
		return o, errors.New("token: JWKS option: HMAC algorithms in JWKSAlgorithms need JWKSAllowHMAC")
	}
	return o, nil
}

// JWKS is a [KeySource] that follows a JWK set published at a URL (RFC
// 7517): the keys of an OpenID Connect provider, of tollgate's own
// tokenservice, of any issuer that publishes its keys.
//
// The set is fetched once by [NewJWKS], then in the background: on the
// period the response's Cache-Control max-age asks for, clamped to
// [JWKSRefreshBounds] (1 h without max-age), and after a failure with a
// backoff from 1 s doubling up to the lower bound. A token naming a kid the
// set lacks makes [JWKS.Unknown] refetch at once, at most one fetch in
// flight and at most once per [JWKSRefetchInterval]; kids that a fresh set
// still lacks are remembered (up to 4096, forgotten when the set changes), so
// a flood of random kids costs one fetch per interval. Every fetch
// reschedules the next refresh from its own response.
//
// A fetch that fails, or a document that is not a usable set (see
// [ParseJWKS]), keeps the last good set and is reported to the observers; a
// good set replaces the previous one, so a key removed upstream is removed
// here. A key that did not change keeps its *Key, so tokens it verified stay
// cached.
//
// A JWKS is safe for concurrent use. Close stops it.
type JWKS struct {
	url       string // as configured, fetched
	source    string // url without user info, query and fragment
	o         jwksOptions
	client    *http.Client
	discovery *DiscoveryDocument

	cur    atomic.Pointer[KeySet]
	ctx    context.Context // canceled by Close: ends a fetch in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetches and armed timers

	mu         sync.Mutex
	closed     bool
	stopTimer  func() bool
	gen        uint64 // of the armed timer; a timer of another is stale
	call       *jwksCall
	unknownAt  time.Time
	unknownRan bool
	negative   map[string]struct{}
	failures   int
	watchers   []func(*KeySet)
	observers  []func(KeyEvent)

	deliverMu sync.Mutex // one delivery to the watchers at a time
	delivered *KeySet
}

// jwksCall is one fetch in flight; callers of Unknown join it.
type jwksCall struct {
	done chan struct{}
	set  *KeySet             // the set adopted, when the fetch succeeded; set before done closes
	kids map[string]struct{} // kids the callers wait for
}

func newJWKSCall() *jwksCall {
	return &jwksCall{done: make(chan struct{}), kids: make(map[string]struct{})}
}

// NewJWKS fetches the key set at rawURL and returns a source that follows
// it. The URL must be https; http is allowed for loopback hosts only,
// unless [JWKSAllowInsecureHTTP]; it must not hold user info. When the first
// fetch fails or its document is refused, NewJWKS returns that error
// (unless [JWKSStartWithoutKeys]). ctx bounds the first fetch only.
func NewJWKS(ctx context.Context, rawURL string, opts ...JWKSOption) (*JWKS, error) {
	o, err := newJWKSOptions(opts)
	if err != nil {
		return nil, err
	}
	return newJWKS(ctx, rawURL, o, nil)
}

func newJWKS(ctx context.Context, rawURL string, o jwksOptions, disc *DiscoveryDocument) (*JWKS, error) {
	u, err := checkFetchURL(rawURL, o.insecure)
	if err != nil {
		return nil, err
	}
	j := &JWKS{
		url:       u.String(),
		source:    redactURL(u),
		o:         o,
		client:    fetchClient(&o),
		discovery: disc,
		negative:  make(map[string]struct{}),
		observers: slices.Clone(o.observers),
	}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	c := newJWKSCall()
	j.call = c
	err = j.fetch(ctx, c)
	if err != nil && !o.startEmpty {
		j.Close()
		return nil, err
	}
	j.delivered = j.cur.Load()
	return j, nil
}

// URL returns the key set's URL without its query: what events and errors
// name.
func (j *JWKS) URL() string { return j.source }

// Discovery returns the discovery document the source was found through
// ([Discover]), or nil for a source made by [NewJWKS].
func (j *JWKS) Discovery() *DiscoveryDocument {
	if j.discovery == nil {
		return nil
	}
	d := *j.discovery
	d.SigningAlgorithms = slices.Clone(d.SigningAlgorithms)
	return &d
}

// Current returns the last good set, nil only before the first one (see
// [JWKSStartWithoutKeys]). It keeps returning it after Close.
func (j *JWKS) Current() *KeySet { return j.cur.Load() }

// Watch registers f, called with each new set adopted after Watch returns
// (a refresh that brings the same keys calls no one), from one goroutine at
// a time, never while the source holds a lock. When sets follow each other
// faster than f returns, f gets the latest. f must not call Close.
func (j *JWKS) Watch(f func(*KeySet)) {
	if f == nil {
		return
	}
	j.mu.Lock()
	j.watchers = append(j.watchers, f)
	j.mu.Unlock()
}

// Observe adds f to the listeners of the source's events. f is called
// without the source's locks held, possibly from several goroutines at once
// (suppressed unknown kids are reported from the verifications that asked),
// so it must be safe for concurrent use and quick. f must not call Close.
func (j *JWKS) Observe(f func(KeyEvent)) {
	if f == nil {
		return
	}
	j.mu.Lock()
	j.observers = append(j.observers, f)
	j.mu.Unlock()
}

// Close stops the background refresh and ends a fetch in flight; it returns
// once no goroutine of the source runs. Current keeps returning the last
// set; Unknown fetches nothing more.
func (j *JWKS) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.gen++
	if j.stopTimer != nil && j.stopTimer() {
		j.wg.Done()
	}
	j.stopTimer = nil
	j.mu.Unlock()
	j.cancel()
	j.wg.Wait()
	return nil
}

// Unknown refetches the set for a token naming kid, which the current set
// lacks: at once when no refetch for an unknown kid ran within the refetch
// interval, joining the fetch in flight if there is one, and not at all for
// a kid a fresh set already lacked. It waits for the fetch at most
// [JWKSUnknownKIDWait] and never past ctx, and returns the new set when it
// holds kid, else nil.
func (j *JWKS) Unknown(ctx context.Context, kid string) *KeySet {
	if ks := j.cur.Load(); ks != nil && ks.lookup([]byte(kid)) != nil {
		return ks
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	// A fetch may have adopted a set holding kid since the look above:
	// such a caller must neither join a finished flight nor be suppressed
	// by the interval that fetch just started.
	if ks := j.cur.Load(); ks != nil && ks.lookup([]byte(kid)) != nil {
		j.mu.Unlock()
		return ks
	}
	if _, known := j.negative[kid]; known {
		obs := j.observers
		j.mu.Unlock()
		j.emit(obs, KeysUnknownKIDSuppressed, nil)
		return nil
	}
	c, started := j.call, false
	if c == nil {
		now := j.o.now()
		if j.unknownRan && now.Sub(j.unknownAt) < j.o.refetch {
			obs := j.observers
			j.mu.Unlock()
			j.emit(obs, KeysUnknownKIDSuppressed, nil)
			return nil
		}
		j.unknownRan, j.unknownAt = true, now
		c, started = newJWKSCall(), true
		j.call = c
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			_ = j.fetch(j.ctx, c)
		}()
	}
	if len(c.kids) < jwksNegativeKIDs {
		c.kids[kid] = struct{}{}
	}
	obs := j.observers
	j.mu.Unlock()
	if started {
		j.emit(obs, KeysRefetchUnknownKID, nil)
	}
	if j.o.wait > 0 {
		t := time.NewTimer(j.o.wait)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	} else {
		select {
		case <-c.done:
		default:
			return nil
		}
	}
	if c.set != nil && c.set.lookup([]byte(kid)) != nil {
		return c.set
	}
	return nil
}

// tick is the scheduled refresh armed as generation gen.
func (j *JWKS) tick(gen uint64) {
	j.mu.Lock()
	if j.closed || gen != j.gen || j.call != nil {
		// Stale, or a fetch is in flight: it arms the next timer.
		j.mu.Unlock()
		return
	}
	j.stopTimer = nil
	c := newJWKSCall()
	j.call = c
	j.mu.Unlock()
	_ = j.fetch(j.ctx, c)
}

// fetch runs call c, which is j.call: it fetches, adopts a good set, arms
// the next refresh and reports.
func (j *JWKS) fetch(ctx context.Context, c *jwksCall) error {
	body, maxAge, hasMaxAge, err := j.get(ctx)
	kind := KeysFetchFailed
	prev := j.cur.Load() // only fetches store, and one runs at a time
	var ks *KeySet
	if err == nil {
		ks, _, err = parseJWKS(body, &j.o, prev)
		if err != nil {
			kind = KeysRejected
			err = fmt.Errorf("%w: JWKS %s: %w", ErrKeySet, j.source, err)
		}
	}
	j.mu.Lock()
	changed := false
	var delay time.Duration
	if err == nil {
		kind = KeysFetched
		if ks != prev {
			j.cur.Store(ks)
			clear(j.negative)
			changed = true
		}
		for kid := range c.kids {
			if ks.lookup([]byte(kid)) == nil {
				j.rememberLocked(kid)
			}
		}
		c.set = ks
		j.failures = 0
		delay = j.o.refresh
		if hasMaxAge {
			delay = maxAge
		}
		delay = min(max(delay, j.o.minRefresh), j.o.maxRefresh)
	} else {
		j.failures++
		delay = jwksFirstBackoff
		for i := 1; i < j.failures && delay < j.o.minRefresh; i++ {
			delay *= 2
		}
		delay = min(delay, j.o.minRefresh)
	}
	j.call = nil
	j.armLocked(delay)
	closed := j.closed
	obs := j.observers
	j.mu.Unlock()
	close(c.done)
	if closed {
		return err
	}
	j.emit(obs, kind, err)
	if changed {
		j.deliver()
	}
	return err
}

// rememberLocked adds kid to the kids known to be unknown; when the cache
// is full an arbitrary entry makes room.
func (j *JWKS) rememberLocked(kid string) {
	if len(j.negative) >= jwksNegativeKIDs {
		for k := range j.negative {
			delete(j.negative, k)
			break
		}
	}
	j.negative[kid] = struct{}{}
}

// armLocked arms the next scheduled refresh in d, replacing the armed one.
func (j *JWKS) armLocked(d time.Duration) {
	if j.closed {
		return
	}
	if j.stopTimer != nil && j.stopTimer() {
		j.wg.Done()
	}
	j.gen++
	gen := j.gen
	j.wg.Add(1)
	j.stopTimer = j.o.afterFunc(d, func() {
		defer j.wg.Done()
		j.tick(gen)
	})
}

// deliver hands the current set to the watchers, unless they have it.
func (j *JWKS) deliver() {
	j.deliverMu.Lock()
	defer j.deliverMu.Unlock()
	ks := j.cur.Load()
	if ks == j.delivered {
		return
	}
	j.delivered = ks
	j.mu.Lock()
	ws := j.watchers
	j.mu.Unlock()
	for _, f := range ws {
		f(ks)
	}
}

func (j *JWKS) emit(obs []func(KeyEvent), kind KeyEventKind, err error) {
	if len(obs) == 0 {
		return
	}
	ev := KeyEvent{Source: j.source, Kind: kind, Err: err}
	if ks := j.cur.Load(); ks != nil {
		ev.Keys = len(ks.keys)
	}
	for _, f := range obs {
		f(ev)
	}
}

// get fetches the key set: the body and the response's max-age.
func (j *JWKS) get(ctx context.Context) (body []byte, maxAge time.Duration, hasMaxAge bool, err error) {
	body, h, err := httpGet(ctx, j.client, j.url, j.source, j.o.timeout, "application/jwk-set+json, application/json")
	if err != nil {
		return nil, 0, false, err
	}
	maxAge, hasMaxAge = cacheMaxAge(h)
	return body, maxAge, hasMaxAge, nil
}

// httpGet GETs rawURL within timeout and returns a 200 response's body, at
// most MaxJWKSBody bytes. Errors name the URL as source, never the body.
func httpGet(ctx context.Context, client *http.Client, rawURL, source string, timeout time.Duration, accept string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(format string, args ...any) ([]byte, http.Header, error) {
		return nil, nil, fmt.Errorf("%w: %s: "+format, append([]any{ErrJWKSFetch, source}, args...)...)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fail("bad request")
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return fail("%v", httpCause(ctx, err, timeout))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBody+1))
	if err != nil {
		return fail("reading the body: %v", httpCause(ctx, err, timeout))
	}
	if len(body) > MaxJWKSBody {
		return fail("body larger than %d bytes", MaxJWKSBody)
	}
	return body, resp.Header, nil
}

// httpCause is err without the URL (with its query) that *url.Error
// prepends.
func httpCause(ctx context.Context, err error, timeout time.Duration) error {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("no response within %v", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// cacheMaxAge reads Cache-Control's max-age; no-store and no-cache count as
// max-age 0.
func cacheMaxAge(h http.Header) (time.Duration, bool) {
	var age time.Duration
	found := false
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.TrimSpace(d)
			name, val, _ := strings.Cut(d, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(val), `"`), 10, 32)
				if err != nil {
					continue
				}
				age, found = time.Duration(n)*time.Second, true
			}
		}
	}
	return age, found
}

// checkFetchURL parses and checks a key set or discovery URL.
func checkFetchURL(raw string, insecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("token: JWKS: URL does not parse")
	}
	if u.User != nil {
		return nil, errors.New("token: JWKS: URL must not hold user info (credentials)")
	}
	if err := checkScheme(u, insecure); err != nil {
		return nil, fmt.Errorf("token: JWKS: %s: %v", redactURL(u), err)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

func checkScheme(u *url.URL, insecure bool) error {
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("URL needs a host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if insecure || isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("plain http is allowed only for loopback hosts (or with JWKSAllowInsecureHTTP); use https")
	}
	return errors.New("URL must be https")
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// redactURL is u without user info, query and fragment.
func redactURL(u *url.URL) string {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return c.String()
}

// fetchClient is the client of o with tollgate's redirect policy first.
func fetchClient(o *jwksOptions) *http.Client {
	var c http.Client
	if o.client != nil {
		c = *o.client
	}
	theirs := c.CheckRedirect
	insecure := o.insecure
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= jwksMaxRedirects {
			return fmt.Errorf("more than %d redirects", jwksMaxRedirects)
		}
		if err := checkScheme(req.URL, insecure); err != nil {
			return fmt.Errorf("redirect to %s refused: %v", redactURL(req.URL), err)
		}
		if !insecure && via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect from https to %s refused", redactURL(req.URL))
		}
		if theirs != nil {
			return theirs(req, via)
		}
		return nil
	}
	return &c
}
