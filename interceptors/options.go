package interceptors

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Defaults of a [Guard].
const (
	// DefaultMaxMetadataTokenSize caps a token read from metadata: 8 KiB, as
	// C-core, Java and nginx cap a header. Larger tokens belong in a body
	// field.
	DefaultMaxMetadataTokenSize = 8 << 10
	// DefaultMaxBodyTokenSize caps a token read from a request field.
	DefaultMaxBodyTokenSize = 64 << 10
	// DefaultMaxHeaderListSize is what [Guard.ServerOptions] sets as the
	// server's grpc.MaxHeaderListSize, instead of grpc-go's 16 MiB.
	DefaultMaxHeaderListSize = 64 << 10
	// DefaultRenewalTimeout bounds one renewal running beside a call.
	DefaultRenewalTimeout = 2 * time.Second
	// DefaultMaxConcurrentStreams is what [Guard.ServerOptions] sets as the
	// server's grpc.MaxConcurrentStreams: calls in flight on one connection,
	// instead of grpc-go's unbounded default.
	DefaultMaxConcurrentStreams = 1000
	// DefaultMaxStreamsPerConsumer bounds the streams of one method a
	// consumer may hold open at once, unless the method's rule sets
	// max_streams.
	DefaultMaxStreamsPerConsumer = 1000
	// DefaultMaxStreamsPerPeer bounds the streams of one public method a
	// peer address may hold open at once (health watches, reflection when
	// public), unless the method's rule sets max_streams.
	DefaultMaxStreamsPerPeer = 100
)

// DefaultLogLimit returns each denial reason's budget of log lines: 20 a
// second, 50 at once. A function, not a variable, so that no package can
// change every guard's default.
func DefaultLogLimit() throttle.Limit { return throttle.Limit{Rate: 20, Per: time.Second, Burst: 50} }

// DefaultAuthFailureLimit returns each peer's budget of failed
// authentications: 10 a second, 20 at once. Past it the peer's calls with a
// token the verifier has not already accepted are refused with
// ResourceExhausted before any signature is checked.
func DefaultAuthFailureLimit() throttle.Limit {
	return throttle.Limit{Rate: 10, Per: time.Second, Burst: 20}
}

// defaultPublicServices are answered without a token unless their methods
// carry rules of their own: health checks, which load balancers and
// orchestrators make without credentials. Their streams (Watch) are bounded
// per peer like every public stream.
func defaultPublicServices() []string { return []string{"grpc.health.v1.Health"} }

// authenticatedServices get the rule {} (a valid token, no permission) unless
// their methods carry rules of their own: reflection, which would otherwise
// show an anonymous caller every rule, including which permission bypasses
// ownership. [WithPublicServices] may make them public.
var authenticatedServices = [...]string{
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
}

type options struct {
	bindingExempt    map[string]bool // full method names whose tokens' binding is not checked
	tokenHeader      string
	maxMetadataToken int
	maxBodyToken     int
	maxHeaderList    uint32
	maxConcurrent    uint32
	lenient          bool
	publicServices   []string
	publicMethods    []string
	files            *protoregistry.Files
	types            *protoregistry.Types
	logger           *slog.Logger

	limiter          throttle.Limiter
	defaultThrottle  *throttle.Limit
	consumerClaim    string
	authFailureLimit throttle.Limit
	rateLimitHeaders bool

	renewer        token.Renewer
	renewalPolicy  token.RenewalPolicy
	renewalGrace   time.Duration
	renewalTimeout time.Duration
	renewalHeader  bool

	logLimit throttle.Limit
	peerKey  func(context.Context) string

	maxStreamsConsumer int
	maxStreamsPeer     int
	afterFunc          func(d time.Duration, f func()) (stop func() bool)

	requireTransportSecurity bool

	loggingFields bool // see WithLoggingFields (middleware.go)
	observer      Observer
}

// Option configures a [Guard].
type Option func(*options)

// WithTokenHeader also accepts the raw token (no scheme) in metadata key
// name, such as "x-prc-token". Exactly one value is allowed.
func WithTokenHeader(name string) Option {
	return func(o *options) { o.tokenHeader = strings.ToLower(name) }
}

// WithMaxMetadataTokenSize caps tokens read from metadata (default 8 KiB).
func WithMaxMetadataTokenSize(n int) Option {
	return func(o *options) { o.maxMetadataToken = n }
}

// WithMaxBodyTokenSize caps tokens read from a request field (default 64
// KiB). The verifier's own cap (token.WithMaxTokenSize) still applies.
func WithMaxBodyTokenSize(n int) Option {
	return func(o *options) { o.maxBodyToken = n }
}

// WithMaxHeaderListSize sets the grpc.MaxHeaderListSize that
// [Guard.ServerOptions] adds (default 64 KiB); 0 leaves grpc-go's default.
func WithMaxHeaderListSize(n uint32) Option {
	return func(o *options) { o.maxHeaderList = n }
}

// WithMaxConcurrentStreams sets the grpc.MaxConcurrentStreams that
// [Guard.ServerOptions] adds: calls (unary and streams) in flight on one
// connection (default [DefaultMaxConcurrentStreams]); 0 leaves grpc-go's
// unbounded default.
func WithMaxConcurrentStreams(n uint32) Option {
	return func(o *options) { o.maxConcurrent = n }
}

// WithMaxStreamsPerConsumer bounds the streams of one method one consumer may
// hold open at once (default [DefaultMaxStreamsPerConsumer]); a method's rule
// may set its own with max_streams. The stream past the bound is refused with
// ResourceExhausted (TOO_MANY_STREAMS) before its handler runs. n must be at
// least 1.
func WithMaxStreamsPerConsumer(n int) Option {
	return func(o *options) { o.maxStreamsConsumer = n }
}

// WithMaxStreamsPerPeer bounds the streams of one public method one peer (see
// [WithPeerKey]) may hold open at once (default [DefaultMaxStreamsPerPeer]);
// a method's rule may set its own with max_streams. n must be at least 1.
func WithMaxStreamsPerPeer(n int) Option {
	return func(o *options) { o.maxStreamsPeer = n }
}

// WithAfterFunc sets how the guard schedules its timers (ending an open
// stream when its token expires, even if no message comes): f must run fn
// once d has passed and return a function that cancels it, as
// time.AfterFunc's Stop does. The default is time.AfterFunc; a test whose
// verifier reads a fake clock passes that clock's timer function, so that
// both agree on the time.
func WithAfterFunc(f func(d time.Duration, fn func()) (stop func() bool)) Option {
	return func(o *options) { o.afterFunc = f }
}

// WithLenientInit lets [Guard.Init] succeed when registered methods have no
// rule; they are then denied at call time (PermissionDenied). By default
// Init fails, naming every such method, so a forgotten rule is found when
// the server starts rather than by its first caller.
func WithLenientInit() Option {
	return func(o *options) { o.lenient = true }
}

// WithPublicServices replaces the services whose methods are public when they
// carry no rule (default: gRPC health only). Pass none to make health need a
// rule like everything else. Reflection requires a valid token unless it is
// named here.
func WithPublicServices(names ...string) Option {
	return func(o *options) { o.publicServices = append([]string{}, names...) }
}

// WithPublicMethods makes these full method names ("/pkg.Svc/Method")
// public when they carry no rule. Matching is exact.
func WithPublicMethods(fullMethods ...string) Option {
	return func(o *options) { o.publicMethods = append(o.publicMethods, fullMethods...) }
}

// WithRegistry sets where service descriptors and request types are looked
// up (default protoregistry.GlobalFiles and GlobalTypes).
func WithRegistry(files *protoregistry.Files, types *protoregistry.Types) Option {
	return func(o *options) { o.files, o.types = files, types }
}

// WithRequireTransportSecurity refuses every non-public call that arrives on
// a connection without privacy and integrity (plaintext gRPC), with
// Unauthenticated and the ErrorInfo reason TRANSPORT_INSECURE, before its
// token is read. A bearer token sent in the clear must be assumed stolen;
// refusing it makes the misconfigured client fail at once instead of
// working insecurely.
func WithRequireTransportSecurity() Option {
	return func(o *options) { o.requireTransportSecurity = true }
}

// WithPeerKey names the caller for the per-peer budgets (public methods and
// failed authentications) with f instead of the connection's IP address:
// behind a proxy, sidecar or NAT every caller shares one address, and with
// IPv6 one caller may hold a whole /64. f might return the client address a
// trusted proxy forwards, or a /64 prefix. An empty result falls back to the
// IP address.
func WithPeerKey(f func(ctx context.Context) string) Option {
	return func(o *options) { o.peerKey = f }
}

// WithLogLimit sets each denial reason's budget of log lines (default
// [DefaultLogLimit]); lines past it are counted and the count is reported as
// "suppressed" on the next line of that reason. A zero Limit logs every
// denial.
func WithLogLimit(l throttle.Limit) Option {
	return func(o *options) { o.logLimit = l }
}

// WithLogger logs every denial at Warn level: reason, method, peer,
// consumer and a fingerprint of the jti when known, and the verifier's fixed
// cause. Never a token.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithLimiter sets the limiter that enforces the throttles declared in the
// rules (default: an in-memory throttle.Memory). Use a redisstore.Limiter
// wrapped in a throttle.Failover to share limits between replicas, and
// throttle.Shadow to observe a limit before enforcing it.
func WithLimiter(l throttle.Limiter) Option {
	return func(o *options) { o.limiter = l }
}

// WithDefaultThrottle throttles every method whose rule (and service rule)
// declares no throttle with l, in a bucket per method. Without it such
// methods are not throttled.
func WithDefaultThrottle(l throttle.Limit) Option {
	return func(o *options) { o.defaultThrottle = &l }
}

// WithConsumerClaim keys throttling on the custom claim name instead of the
// session's consumer (azp, falling back to sub). A session without the claim
// falls back to its consumer. It applies to every issuer the verifier
// trusts and changes only the guard's throttle key; an issuer's
// token.Profile.ConsumerClaims says per issuer which claim names the
// consumer, for the session itself (its ConsumerKey, the logs and the
// metrics too), and is the better place for a provider's client id.
func WithConsumerClaim(name string) Option {
	return func(o *options) { o.consumerClaim = name }
}

// WithAuthFailureLimit sets each peer's budget of failed authentications
// (default [DefaultAuthFailureLimit]); a zero Limit disables it. A peer that
// has spent it is refused with ResourceExhausted before its next token's
// signature is checked, so a flood of forged tokens cannot buy signature
// checks. Only failures are charged, and always to the peer address, never
// to the subject a forged token claims.
//
// A token the verifier has already accepted (held in its verified-token
// cache) is admitted whatever its peer's budget: behind a NAT or a sidecar
// the consumers sharing an address keep working while a neighbour floods it
// with forgeries. A token not seen before from an address over budget waits
// for the budget to refill; with the verifier's cache turned off
// (token.WithCache(0, 0)) every token from such an address does.
func WithAuthFailureLimit(l throttle.Limit) Option {
	return func(o *options) { o.authFailureLimit = l }
}

// WithRateLimitHeaders sends the IETF draft headers "ratelimit-policy" and
// "ratelimit" on throttled methods, as response headers (never trailers),
// on admitted and refused calls alike.
func WithRateLimitHeaders() Option {
	return func(o *options) { o.rateLimitHeaders = true }
}

// WithRenewal renews tokens inside their renewal window (per p) while calls
// run: the renewal starts on its own goroutine beside the handler, and its
// token is sent in the trailer "tollgate-renewed-token" if it is ready when
// the handler returns (see [WithRenewalGrace]). Use token.NewLocalRenewer
// when the service holds the signing key, tokenservice.NewRemoteRenewer
// when only the issuer does.
func WithRenewal(r token.Renewer, p token.RenewalPolicy) Option {
	return func(o *options) { o.renewer, o.renewalPolicy = r, p }
}

// WithRenewalGrace lets a call wait up to d after its handler returns for a
// renewal still under way (default 0: never wait). With no grace, the call
// that starts a renewal seldom carries its result; the next call with the
// same token gets it at once from the guard's memory. A few milliseconds
// suit clients that make one call at a time.
func WithRenewalGrace(d time.Duration) Option {
	return func(o *options) { o.renewalGrace = d }
}

// WithRenewalTimeout bounds each renewal (default 2 s).
func WithRenewalTimeout(d time.Duration) Option {
	return func(o *options) { o.renewalTimeout = d }
}

// WithRenewalHeader also sends a renewed token as a response header before
// the first message of a stream when the renewal has finished by then, for
// long server streams whose trailer comes too late.
func WithRenewalHeader() Option {
	return func(o *options) { o.renewalHeader = true }
}

// WithBindingExempt names methods (full names, "/pkg.Service/Method") on
// which a certificate-bound token is admitted without checking the
// connection's client certificate. It exists for one method:
// TokenService.Renew on an issuer (tokenservice.RenewMethod), which a
// service calls with its own connection to renew its client's bound token.
// That is safe only because Renew's successor stays bound to the same
// certificate: a thief who renews a stolen bound token gets another token
// useless without the certificate's key. Exempt nothing else.
func WithBindingExempt(methods ...string) Option {
	return func(o *options) {
		if o.bindingExempt == nil {
			o.bindingExempt = make(map[string]bool, len(methods))
		}
		for _, m := range methods {
			o.bindingExempt[m] = true
		}
	}
}
