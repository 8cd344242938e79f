// Pricing-server serves the pricing example's PriceService with tollgate in
// front of it.
//
// Usage:
//
//	pricing-server [-listen 127.0.0.1:8443] [-key PATH] [-alg HS256]
//	    [-issuer tollgate-demo] [-audience pricing] [-tls-cert F -tls-key F]
//	    [-redis HOST:PORT [-throttle-fail local|open|closed]]
//	    [-token-ttl 15m] [-max-session 8h] [-renew-grace 0]
//	    [-metrics-listen 127.0.0.1:9464] [-jwks-listen 127.0.0.1:8080]
//
// The verification key comes from -key (a file, mode 0600 when it holds a
// secret) or else from the environment variable TOLLGATE_KEY, in the text
// form token.ParseKey reads (a base64 secret for HMAC, PEM otherwise).
// There is no default key: without one the server refuses to start.
//
// The prices live in memory, starting from the demo catalogue, and are
// capped at the store's defaults: 10,000 SKUs per seller and 100,000 in
// all. A call that would add a SKU past either is refused with
// ResourceExhausted naming the limit; prices already held can always be
// replaced.
//
// # Throttling
//
// pricing.proto declares how often each consumer (the token's azp) may call:
// reads 20 a second, the four writing methods 5 a second from one shared
// bucket, Ping 50 a second per peer address. Without -redis the buckets live
// in this process, so each replica has budgets of its own. With -redis they
// live in that Redis, shared by every replica pointing at it; when Redis
// cannot answer within 50 ms, -throttle-fail decides: "local" (the default)
// falls back to this process's own buckets, "open" admits the call, "closed"
// refuses it with Unavailable. A circuit breaker stops asking a dead Redis
// for a second at a time. -throttle-fail is accepted without -redis, and
// then ignored: there is no store that could fail. -redis takes a plain
// HOST:PORT, without password or TLS, as befits an example: a real service
// builds its redis.UniversalClient (single, Sentinel or Cluster) from its
// own configuration and hands it to redisstore.NewLimiter the same way.
//
// Throttled calls answer with the rate-limit headers "ratelimit-policy" and
// "ratelimit"; refusals are ResourceExhausted with a RetryInfo saying when
// to try again.
//
// # Revocation
//
// Every call's token, cache hits included, is checked against a set of
// revoked tokens (jti), sessions (sid), and subjects and consumers revoked
// before a time; a revoked token is refused with Unauthenticated and the
// ErrorInfo reason TOKEN_REVOKED, and an open stream of one is ended, idle
// or not. With -redis the set follows the revocations in that Redis
// (redisstore.FollowRevocations, on a client of its own): every replica
// applies a revocation written there ("tollgate revoke -redis ADDR -sid
// ID") within a second. When Redis goes away the replica keeps refusing
// what it has, logs that its revocations may be stale, retries every
// second at most, and loads the whole set again once Redis answers (logged
// as caught up); a Redis that does not answer at start is the same,
// starting from an empty set. Without -redis the set lives in memory and
// nothing feeds it.
//
// # Renewal
//
// The server holds the signing key (an HMAC secret is both), so it renews
// tokens itself: a token inside the last third of its lifetime gets a
// successor, valid for -token-ttl, in the trailer "tollgate-renewed-token"
// (the pricing-client picks it up). A session ends -max-session after its
// auth_time however often it is renewed: successors never expire later than
// that, and tokens past it are refused as expired. -renew-grace is how long
// a call may wait for its renewal after its handler has returned; with 0 a
// renewal that is not ready in time goes to the next call presenting the same
// token. With a public key, which cannot sign, renewal is off (logged once).
//
// # Publishing the key
//
// With -jwks-listen ADDR and an asymmetric key (ES256, ES384, EdDSA, RS256,
// PS256; -key may be the private key or the public one) the server publishes
// the key's public half as a JWK Set at http://ADDR/.well-known/jwks.json
// (tokenservice.NewKeysHandler; Cache-Control max-age 300 s), so that other
// services verify the tokens it renews from that URL instead of a copy of the
// key file. When -issuer is a URL (https, or http on a loopback host) the OIDC
// discovery document is served as well, at /.well-known/openid-configuration
// under the issuer's path, naming that issuer and its jwks_uri; the JWKS then
// lives under the issuer's path too. An HMAC key is refused (exit 2): a shared
// secret is never published. The key file carries no kid, so the published key
// has none: a set of one key, which verifiers use for tokens that name no kid.
//
// # Metrics
//
// With -metrics-listen ADDR the guard's decisions are exported as
// OpenTelemetry metrics (package oteltollgate) through the OpenTelemetry
// Prometheus exporter, in the Prometheus text format at
// http://ADDR/metrics: tollgate_server_decisions_total by method, decision,
// reason and bucket, tollgate_verify_duration_seconds, tollgate_renewals_total,
// tollgate_limiter_errors_total, tollgate_limiter_breaker_open (with -redis)
// and tollgate_consumer_refusals_total for the consumers refused most often.
//
// Once the listener is bound the server prints exactly one line,
// "listening on HOST:PORT", on standard output, so -listen 127.0.0.1:0
// works and scripts can read the port; with -metrics-listen a second line,
// "metrics on http://HOST:PORT/metrics", follows, with the bound address, and
// with -jwks-listen the line "jwks on http://HOST:PORT/.well-known/jwks.json". Denied calls are logged on standard
// error. SIGINT or SIGTERM stops the server gracefully (in-flight calls get
// a few seconds to finish) and it exits 0. Any start-up problem is one line
// on standard error and exit status 1 (2 for bad usage). That line names the
// flag or variable that is wrong and never quotes its value: a key or a
// token pasted in the wrong place is not echoed, and anything that looks like
// one is cut from the line besides (token.Redact).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tollgate/tollgate/examples/pricing/internal/quiet"
	"github.com/tollgate/tollgate/examples/pricing/server"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/redisstore"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// keyEnv names the environment variable the key is read from without -key.
const keyEnv = "TOLLGATE_KEY"

// stopGrace is how long a graceful stop may wait for in-flight calls (open
// streams in particular) before they are cut.
const stopGrace = 5 * time.Second

// redisTimeout bounds one throttling decision in Redis; past it the
// -throttle-fail policy decides.
const redisTimeout = 50 * time.Millisecond

// renewalWindow is the part of a token's lifetime, at its end, in which it
// is renewed.
const renewalWindow = 1.0 / 3

const usage = `usage: pricing-server [-listen 127.0.0.1:8443] [-key PATH] [-alg HS256]
    [-issuer tollgate-demo] [-audience pricing] [-tls-cert F -tls-key F]
    [-jwks-url URL | -oidc-issuer URL] [-profile NAME]
    [-permissions-claim PATH[,PATH...]] [-consumer-claim NAME[,NAME...]]
    [-redis HOST:PORT [-throttle-fail local|open|closed]]
    [-token-ttl 15m] [-max-session 8h] [-renew-grace 0]
    [-metrics-listen 127.0.0.1:9464] [-jwks-listen 127.0.0.1:8080]
The key is read from -key PATH or else from $TOLLGATE_KEY; there is no default key.
Instead of a key, -jwks-url follows an issuer's published key set (with -issuer), and
-oidc-issuer finds it through OpenID Connect discovery; both refresh in the background.
-profile names the shape of the issuer's tokens: tollgate (the default with -key), oidc
(the default otherwise), keycloak, auth0, okta, google, entra or spiffe;
-permissions-claim and -consumer-claim override where it reads permissions and the
consumer. Tokens of an external issuer are never renewed here: their issuer renews them.
Throttle buckets live in memory, or in the Redis at -redis, shared by every replica;
-throttle-fail says what happens when that Redis does not answer (ignored without -redis).
With -redis the server also follows the revocations written there (tollgate revoke):
revoked tokens are refused with TOKEN_REVOKED on every replica within a second.
Tokens in the last third of their lifetime are renewed for -token-ttl, never past
auth_time + -max-session; -renew-grace is how long a call may wait for its renewal.
-metrics-listen serves the guard's decisions as Prometheus metrics at http://ADDR/metrics.
-jwks-listen publishes the public half of an asymmetric key at http://ADDR/.well-known/jwks.json
(and, when -issuer is a URL, the OIDC discovery document); HMAC keys are never published.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type config struct {
	listen, keyPath, alg, issuer, audience, tlsCert, tlsKey string

	redisAddr    string
	throttleFail string
	failPolicy   throttle.Policy // parsed from throttleFail

	tokenTTL, maxSession, renewGrace time.Duration

	metricsListen string
	observer      interceptors.Observer // built from metricsListen

	jwksURL, oidcIssuer, profile string
	permsClaims, consumerClaims  []string // parsed from their flags
	issuerSet, keySet, algSet    bool     // -issuer, -key, -alg given
	jwksListen                   string

	revocations *token.Revocations // the set the verifier checks
}

// run is the whole command; it serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// fail is the one place errors are printed: as one line of printable
	// text, scrubbed of anything shaped like a token or key material or
	// sharing a run with an argument or $TOLLGATE_KEY that is (the flag
	// package and the os package quote what they were given).
	fail := func(code int, err error) int {
		msg := token.Redact(err.Error(), append([]string{os.Getenv(keyEnv)}, args...)...)
		msg = strings.Map(func(r rune) rune {
			if unicode.IsPrint(r) {
				return r
			}
			return ' '
		}, msg)
		fmt.Fprintln(stderr, "pricing-server: "+strings.Join(strings.Fields(msg), " "))
		return code
	}
	fs := flag.NewFlagSet("pricing-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var c config
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "address to listen on")
	fs.StringVar(&c.keyPath, "key", "", "verification key file (default: $"+keyEnv+")")
	fs.StringVar(&c.alg, "alg", token.HS256, "algorithm of the key")
	fs.StringVar(&c.issuer, "issuer", "tollgate-demo", "issuer tokens must name")
	fs.StringVar(&c.audience, "audience", "pricing", "audience tokens must name")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM), with -tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file (PEM), with -tls-cert")
	fs.StringVar(&c.redisAddr, "redis", "", "Redis HOST:PORT holding the throttle buckets and the revocations, shared by all replicas (default: in memory)")
	fs.StringVar(&c.throttleFail, "throttle-fail", "local", "when Redis does not answer: local, open or closed (ignored without -redis)")
	fs.DurationVar(&c.tokenTTL, "token-ttl", 15*time.Minute, "lifetime of renewed tokens")
	fs.DurationVar(&c.maxSession, "max-session", 8*time.Hour, "how long after auth_time a session (and every renewal) may last")
	fs.DurationVar(&c.renewGrace, "renew-grace", 0, "how long a call may wait for its token's renewal after its handler returns")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "address to serve Prometheus metrics on, at /metrics (default: none)")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "URL of the issuer's JWK Set to follow, instead of -key")
	fs.StringVar(&c.oidcIssuer, "oidc-issuer", "", "OpenID Connect issuer whose key set to find through discovery, instead of -key and -issuer")
	fs.StringVar(&c.profile, "profile", "", "shape of the issuer's tokens: "+strings.Join(profileNames(), ", ")+" (default: tollgate with -key, oidc otherwise)")
	permsClaim := fs.String("permissions-claim", "", "claims holding the caller's permissions, comma separated (a dotted path reads into objects: realm_access.roles)")
	consumerClaim := fs.String("consumer-claim", "", "claims naming the calling service, comma separated, first present wins (default: the profile's)")
	fs.StringVar(&c.jwksListen, "jwks-listen", "", "address to publish the public key on, at /.well-known/jwks.json (default: none)")
	bad := quiet.Flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if *bad != nil {
			return fail(2, *bad)
		}
		return fail(2, err)
	}
	if fs.NArg() > 0 {
		return fail(2, errors.New("unexpected argument after the flags"))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "issuer":
			c.issuerSet = true
		case "key":
			c.keySet = true
		case "alg":
			c.algSet = true
		}
	})
	c.permsClaims, c.consumerClaims = splitList(*permsClaim), splitList(*consumerClaim)
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return fail(2, errors.New("-tls-cert and -tls-key go together: give both or neither"))
	}
	if err := c.check(); err != nil {
		return fail(2, err)
	}

	var metrics *metricsServer
	if c.metricsListen != "" {
		var err error
		if metrics, err = newMetricsServer(c.metricsListen); err != nil {
			return fail(1, err)
		}
		defer metrics.close()
		c.observer = metrics.observer
	}
	srv, ks, closeLimiter, err := build(ctx, c, stderr)
	if err != nil {
		return fail(1, err)
	}
	defer closeLimiter()
	var jwks *jwksServer
	if c.jwksListen != "" {
		if jwks, err = newJWKSServer(c.jwksListen, c.issuer, ks); err != nil {
			return fail(1, err)
		}
		defer jwks.close()
	}
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fail(1, fmt.Errorf("-listen: %s", addressless(err)))
	}
	fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())
	if metrics != nil {
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", metrics.lis.Addr())
		go metrics.serve()
	}
	if jwks != nil {
		fmt.Fprintf(stdout, "jwks on %s\n", jwks.url())
		go jwks.serve()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return fail(1, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil {
		return fail(1, fmt.Errorf("serve: %w", err))
	}
	return 0
}

// check validates the flags that need more than parsing; its errors are
// usage errors.
func (c *config) check() error {
	if !slices.Contains(token.Algorithms(), c.alg) {
		return fmt.Errorf("-alg: unsupported algorithm (supported: %s)", strings.Join(token.Algorithms(), ", "))
	}
	if err := c.checkIssuer(); err != nil {
		return err
	}
	p, err := throttle.ParsePolicy(c.throttleFail)
	if err != nil {
		return errors.New("-throttle-fail: want local, open or closed")
	}
	c.failPolicy = p
	// A host name is looked up in DNS: a key or a token pasted as one
	// would be sent to the resolver.
	if host, _, err := net.SplitHostPort(c.listen); err == nil && token.Redact(host) != host {
		return errors.New("-listen: the host looks like key material or a token")
	}
	if c.metricsListen != "" {
		host, _, err := net.SplitHostPort(c.metricsListen)
		if err != nil {
			return errors.New("-metrics-listen: want HOST:PORT")
		}
		if token.Redact(host) != host {
			return errors.New("-metrics-listen: the host looks like key material or a token")
		}
	}
	if c.jwksListen != "" {
		host, _, err := net.SplitHostPort(c.jwksListen)
		if err != nil {
			return errors.New("-jwks-listen: want HOST:PORT")
		}
		if token.Redact(host) != host {
			return errors.New("-jwks-listen: the host looks like key material or a token")
		}
		if token.MinHMACKeyLen(c.alg) > 0 {
			return errors.New("-jwks-listen: an HMAC key is a shared secret and is never published; publish an asymmetric key (-alg ES256, ES384, EdDSA, RS256 or PS256)")
		}
	}
	if c.redisAddr != "" {
		host, _, err := net.SplitHostPort(c.redisAddr)
		if err != nil {
			return errors.New("-redis: want HOST:PORT")
		}
		if token.Redact(host) != host {
			return errors.New("-redis: the host looks like key material or a token")
		}
	}
	switch {
	case c.tokenTTL <= 0:
		return fmt.Errorf("-token-ttl %v: must be positive", c.tokenTTL)
	case c.maxSession <= 0:
		return fmt.Errorf("-max-session %v: must be positive", c.maxSession)
	case c.renewGrace < 0:
		return fmt.Errorf("-renew-grace %v: must not be negative", c.renewGrace)
	}
	return nil
}

// build loads the key and TLS material (or fetches the issuer's key set)
// and builds the guarded server. The returned function releases the
// limiter's Redis client and stops following the key set; call it once
// the server has stopped. It returns the key set too, for -jwks-listen.
func build(ctx context.Context, c config, stderr io.Writer) (*server.Server, *token.KeySet, func(), error) {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	// Revocations: with -redis followed from that Redis (below); without,
	// an in-memory set that nothing feeds, as a single instance would
	// revoke through its own code.
	c.revocations = token.NewRevocations()
	v, signs, closeVerifier, err := verifier(ctx, c)
	if err != nil {
		c.revocations.Close()
		return nil, nil, nil, err
	}
	closeKeys := func() { closeVerifier(); c.revocations.Close() }
	cfg := server.Config{
		Verifier:     v,
		Observer:     c.observer,
		GuardOptions: []interceptors.Option{interceptors.WithLogger(logger)},
	}
	switch {
	case signs:
		cfg.Renewal = &token.RenewalPolicy{Window: renewalWindow, TTL: c.tokenTTL, MaxSession: c.maxSession}
		cfg.RenewalGrace = c.renewGrace
	case c.remote():
		logger.Warn("token renewal is off: tokens of an external issuer are renewed by their issuer, never by a service")
	default:
		logger.Warn("token renewal is off: the key cannot sign (a public key); tokens must be renewed by their issuer")
	}
	if c.tlsCert != "" {
		cert, err := loadTLS(c.tlsCert, c.tlsKey)
		if err != nil {
			closeKeys()
			return nil, nil, nil, err
		}
		creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		cfg.ServerOptions = append(cfg.ServerOptions, grpc.Creds(creds))
	}
	closeLimiter := closeKeys
	if c.redisAddr != "" {
		lim, client, err := redisLimiter(c.redisAddr, c.failPolicy, logger)
		if err != nil {
			closeKeys()
			return nil, nil, nil, err
		}
		cfg.Limiter = lim
		closeLimiter = func() { client.Close(); closeKeys() }
	}
	srv, err := server.New(cfg)
	if err != nil {
		closeLimiter()
		return nil, nil, nil, err
	}
	if c.redisAddr != "" {
		// After server.New: the guard has registered its observer on the
		// set, so the feed's first events reach the log.
		closeFeed, err := followRevocations(ctx, c.redisAddr, c.revocations)
		if err != nil {
			closeLimiter()
			return nil, nil, nil, err
		}
		inner := closeLimiter
		closeLimiter = func() { closeFeed(); inner() }
	}
	return srv, v.Keys(), closeLimiter, nil
}

// feedBackoffCap caps the wait between two attempts of the revocation feed
// to reach a Redis that went away: a revocation made meanwhile is applied
// within about this long of Redis answering again.
const feedBackoffCap = time.Second

// followRevocations follows the revocations in the Redis at addr into set,
// through a client of its own: the feed holds one connection in a blocking
// read, which the limiter's pool need not lend, and it retries on its own,
// so its client does not (a dead Redis is reported stale at once). A Redis
// that does not answer at start does not stop the server, as with the
// limiter: the feed starts stale (the guard logs a warning) and loads the
// set once Redis answers. The returned function stops the feed and closes
// its client.
func followRevocations(ctx context.Context, addr string, set *token.Revocations) (func(), error) {
	client := redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              2,
	})
	fctx, cancel := context.WithTimeout(ctx, firstFetchTimeout)
	defer cancel()
	feed, err := redisstore.FollowRevocations(fctx, client, set,
		redisstore.FeedBackoff(100*time.Millisecond, feedBackoffCap), redisstore.FeedStartStale())
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("-redis: %w", err)
	}
	return func() { feed.Close(); client.Close() }, nil
}

// redisLimiter returns the redisstore.Limiter at addr wrapped in a Failover
// applying policy, and its client. Redis need not be up: until it answers,
// the policy decides (a warning says so).
func redisLimiter(addr string, policy throttle.Policy, logger *slog.Logger) (throttle.Limiter, *redis.Client, error) {
	// go-redis logs every failed dial on its own; the breaker's state
	// changes below say the same once, so its lines go to debug level.
	redis.SetLogger(redisLog{logger})
	client := redis.NewClient(&redis.Options{
		Addr: addr,
		// Deadlines bound every command, so a hung Redis costs a call at
		// most the Failover's timeout; redisstore.NewLimiter insists on it.
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})
	primary, err := redisstore.NewLimiter(client)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	lim, err := throttle.NewFailover(primary, policy,
		throttle.WithFailoverTimeout(redisTimeout),
		throttle.WithFailoverStateChange(func(open bool) {
			if open {
				logger.Warn("throttle: Redis is not answering; its breaker is open and -throttle-fail applies", "redis", addr, "policy", policy.String())
			} else {
				logger.Info("throttle: Redis answers again; its breaker is closed", "redis", addr)
			}
		}))
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		logger.Warn("throttle: Redis is not answering at start; -throttle-fail applies until it does", "redis", addr, "policy", policy.String(), "error", err.Error())
	}
	return lim, client, nil
}

// redisLog sends go-redis's own log lines to logger at debug level.
type redisLog struct{ logger *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// loadKey reads the key from path or, without one, from $TOLLGATE_KEY. The
// key files of tollgate keygen carry no kid, and the server holds exactly
// one key, so tokens need not name one. The loaders' errors hold neither
// the path nor the value; they get the flag's or the variable's name.
func loadKey(path, alg string) (*token.Key, error) {
	if path != "" {
		k, err := token.LoadKeyFile(path, "", alg)
		if err != nil {
			return nil, fmt.Errorf("-key: %w", err)
		}
		return k, nil
	}
	if _, ok := os.LookupEnv(keyEnv); !ok {
		return nil, fmt.Errorf("no key: pass -key PATH or set %s (tollgate has no default key)", keyEnv)
	}
	return token.LoadKeyEnv(keyEnv, "", alg)
}

// loadTLS reads the certificate and key files of -tls-cert and -tls-key.
// Its errors name the flag, never the path (tls.LoadX509KeyPair's quote
// it, and a PEM key pasted as -tls-key would be echoed).
func loadTLS(certPath, keyPath string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("-tls-cert: %w", quiet.Pathless(err))
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("-tls-key: %w", quiet.Pathless(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		// X509KeyPair's errors are fixed words ("failed to find any PEM
		// data in key input"), and they say which of the two is wrong.
		return tls.Certificate{}, fmt.Errorf("-tls-cert, -tls-key: %w", err)
	}
	return cert, nil
}

// addressless returns what went wrong in a net error without the address
// it names ("no such host", "missing port in address", "bind: address
// already in use").
func addressless(err error) string {
	var dnsErr *net.DNSError
	var addrErr *net.AddrError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return "cannot resolve the host: " + dnsErr.Err
	case errors.As(err, &addrErr):
		return addrErr.Err
	case errors.As(err, &opErr):
		return opErr.Err.Error()
	}
	return err.Error()
}
