package interceptors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/throttle"
)

// ReasonRateLimited is the ErrorInfo reason of a throttled call.
const ReasonRateLimited = "RATE_LIMITED"

const (
	msgRateLimited = "rate limit exceeded"
	msgUnavailable = "rate limiter unavailable"
	// authFailureBucket names the per-peer bucket of failed authentications.
	authFailureBucket = "tollgate.auth-failures"
)

var errLimiterDown = status.Error(codes.Unavailable, msgUnavailable)

// plan is everything the guard needs for one method, compiled at Init.
type plan struct {
	method string
	rule   *permissions.Rule

	// The method's kind, as registered on the server: client or bidi
	// streams receive many messages.
	clientStreams bool
	streams       bool // any stream kind: [Guard.AuthFunc] refuses them

	limited bool
	limit   throttle.Limit
	cost    int // a unary call, or a stream's opening and first message
	msgCost int // each later message received; 0: free
	bucket  string
	quoted  string // bucket as a structured-field string, for the headers
	policy  string // the ratelimit-policy header value

	maxStreams int // open streams per consumer (per peer when public)
}

// chargesMessages reports whether messages received on the method's streams
// take tokens.
func (p *plan) chargesMessages() bool { return p.limited && p.clientStreams && p.msgCost > 0 }

// compiled is the guard's table: the permissions table and a plan per method.
type compiled struct {
	perms *permissions.Table
	plans map[string]*plan
}

func (g *Guard) compilePlans(t *permissions.Table, kinds map[string]grpc.MethodInfo) (*compiled, error) {
	c := &compiled{perms: t, plans: make(map[string]*plan)}
	var errs []error
	for _, m := range t.Methods() {
		r, _ := t.Rule(m)
		p := &plan{method: m, rule: r}
		if k, ok := kinds[m]; ok {
			p.clientStreams = k.IsClientStream
			p.streams = k.IsClientStream || k.IsServerStream
		} else if d := r.Descriptor(); d != nil {
			p.clientStreams = d.IsStreamingClient()
			p.streams = d.IsStreamingClient() || d.IsStreamingServer()
		}
		p.maxStreams = g.opts.maxStreamsConsumer
		if r.Public() {
			p.maxStreams = g.opts.maxStreamsPeer
		}
		if n, ok := r.MaxStreams(); ok {
			p.maxStreams = int(n)
		}
		if th, ok := r.Throttle(); ok {
			p.limited = true
			p.limit = throttle.Limit{Rate: int(th.Rate), Per: th.Per, Burst: int(th.Burst)}
			p.cost = int(th.Cost)
			p.msgCost = int(th.MessageCost)
			p.bucket = th.Bucket
			// permissions.Compile has checked rate, period, burst and cost;
			// the limiter's own check adds what only it knows (a refill span
			// its arithmetic can hold). The default throttle was checked by
			// NewGuard.
			if err := p.limit.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: throttle: %w", m, err))
				continue
			}
		} else if g.opts.defaultThrottle != nil {
			p.limited = true
			p.limit = *g.opts.defaultThrottle
			p.cost, p.msgCost = 1, 1
			p.bucket = m
		}
		if p.limited {
			p.quoted = sfString(p.bucket)
			p.policy = policyHeader(p.quoted, p.limit)
		}
		c.plans[m] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// policyHeader renders draft-ietf-httpapi-ratelimit-headers' RateLimit-Policy
// for a token bucket, whose name quoted is already a structured-field
// string: the quota is the burst, the window the time to refill it.
func policyHeader(quoted string, l throttle.Limit) string {
	w := (time.Duration(l.Burst)*l.Interval() + time.Second - 1) / time.Second
	return quoted + ";q=" + strconv.Itoa(l.Burst) + ";w=" + strconv.FormatInt(int64(w), 10)
}

// rateLimitHeader renders the RateLimit header of decision d for the bucket
// quoted (already a structured-field string), in one allocation.
func rateLimitHeader(quoted string, d throttle.Decision) string {
	t := (d.ResetAfter + time.Second - 1) / time.Second
	var buf [128]byte
	b := append(buf[:0], quoted...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(d.Remaining, 0)), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, int64(max(t, 0)), 10)
	return string(b)
}

// sfString quotes s as a structured-field string (RFC 8941), dropping
// characters it cannot hold.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// peerKey names the caller's network peer for per-peer budgets: the
// configured WithPeerKey function, or else its IP without the port, which
// changes with every connection.
func (g *Guard) peerKey(ctx context.Context) string {
	if g.opts.peerKey != nil {
		if k := g.opts.peerKey(ctx); k != "" {
			return "peer:" + k
		}
	}
	return g.peerKeys.of(ctx)
}

// peerKeys remembers the "peer:<IP>" key of recent TCP peers, so that
// calls that need one (every cache miss, every public call) do not format
// an address and concatenate a string each time. It is bounded: past
// maxPeerKeys addresses it starts afresh.
type peerKeys struct {
	m sync.Map // netip.Addr -> string
	n atomic.Int64
}

const maxPeerKeys = 4096

func (k *peerKeys) of(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "peer:unknown"
	}
	a, ok := p.Addr.(*net.TCPAddr)
	if !ok {
		return peerAddrKey(p.Addr)
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return peerAddrKey(p.Addr)
	}
	ip = ip.Unmap()
	if v, ok := k.m.Load(ip); ok {
		return v.(string)
	}
	s := "peer:" + ip.String()
	if k.n.Add(1) > maxPeerKeys {
		k.m.Clear()
		k.n.Store(1)
	}
	k.m.Store(ip, s)
	return s
}

// peerAddrKey is the key of a peer address that is not TCP: its host when
// it has one, else the whole address.
func peerAddrKey(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok {
		return "peer:" + a.IP.String()
	}
	if host, _, err := net.SplitHostPort(addr.String()); err == nil {
		return "peer:" + host
	}
	return "peer:" + addr.String()
}

// consumerKey returns the throttling identity of a verified session, naming
// the claim it came from ("azp:orders", "sub:alice", or with
// [WithConsumerClaim] "claim:tenant:t1"), so that identities read from
// different claims never share a bucket.
func (g *Guard) consumerKey(sess *session.Session) string {
	if g.opts.consumerClaim != "" {
		if v, ok := sess.ClaimString(g.opts.consumerClaim); ok && v != "" {
			return g.claimKeyPrefix + v
		}
	}
	return sess.ConsumerKey()
}

// setHeader sets response headers to go out with the response: on the
// stream ss, or for a unary call (ss nil) through ctx.
func setHeader(ctx context.Context, ss grpc.ServerStream, md metadata.MD) error {
	if ss != nil {
		return ss.SetHeader(md)
	}
	return grpc.SetHeader(ctx, md)
}

// sendHeader sends response headers at once.
func sendHeader(ctx context.Context, ss grpc.ServerStream, md metadata.MD) error {
	if ss != nil {
		return ss.SendHeader(md)
	}
	return grpc.SendHeader(ctx, md)
}

// admit takes the call's tokens from its bucket; ss is the stream, nil for
// a unary call. key names whose bucket it is: the consumer's, or the peer's
// on a public method (computed when empty). denial is the status the call
// is refused with anyway (a permission or ownership check failed), or nil:
// a refused call is charged too, and when its bucket is empty it is refused
// as throttled. admit returns nil when the call may go on, or the status to
// refuse it with.
func (g *Guard) admit(ctx context.Context, p *plan, key string, sess *session.Session, ss grpc.ServerStream, denial error) error {
	if !p.limited {
		return denial
	}
	if key == "" {
		key = g.peerKey(ctx)
	}
	d, ok := g.take(ctx, p, key, sess, p.cost)
	if !ok {
		return cmp.Or(denial, errLimiterDown)
	}
	if g.opts.rateLimitHeaders {
		// Keys already lower case: no need for metadata.Pairs to fold them.
		md := metadata.MD{"ratelimit-policy": {p.policy}, "ratelimit": {rateLimitHeader(p.quoted, d)}}
		if d.Allowed && denial == nil {
			_ = setHeader(ctx, ss, md)
		} else {
			// Sent now, explicitly as headers ahead of the refusal, rather
			// than left to how the transport folds pending headers into a
			// trailers-only error response.
			_ = sendHeader(ctx, ss, md)
		}
	}
	return g.verdict(ctx, p, key, sess, d, denial)
}

// admitMessage takes a received stream message's tokens from the stream's
// bucket, under key; denial as for [Guard.admit]. No headers: a stream's
// headers went out before its messages.
func (g *Guard) admitMessage(ctx context.Context, p *plan, key string, sess *session.Session, denial error) error {
	d, ok := g.take(ctx, p, key, sess, p.msgCost)
	if !ok {
		return cmp.Or(denial, errLimiterDown)
	}
	return g.verdict(ctx, p, key, sess, d, denial)
}

// take asks the limiter for cost tokens of key's bucket of p; false when it
// could not decide (logged).
func (g *Guard) take(ctx context.Context, p *plan, key string, sess *session.Session, cost int) (throttle.Decision, bool) {
	d, err := g.limiter.Allow(ctx, throttle.Key{Consumer: key, Bucket: p.bucket}, p.limit, cost)
	if g.opts.observer != nil {
		g.observeLimiter(p, key, d, err)
	}
	if err != nil {
		g.log(ctx, p.method, "LIMITER_UNAVAILABLE", sess, "limiter error: "+limiterCause(err))
		return d, false
	}
	if d.Shadowed {
		g.log(ctx, p.method, "RATE_LIMITED_SHADOW", sess, "would be throttled (shadow mode)")
	}
	return d, true
}

// verdict turns a decision into the call's outcome: denial (nil to go on)
// when the bucket paid, else the throttling refusal.
func (g *Guard) verdict(ctx context.Context, p *plan, key string, sess *session.Session, d throttle.Decision, denial error) error {
	if d.Allowed {
		return denial
	}
	g.log(ctx, p.method, ReasonRateLimited, sess, "bucket "+p.bucket+" empty")
	return rateLimitedStatus(p.bucket, key, d)
}

func limiterCause(err error) string {
	if errors.Is(err, throttle.ErrUnavailable) {
		return "store unavailable (fail closed)"
	}
	if errors.Is(err, throttle.ErrInvalidLimit) {
		return "invalid limit"
	}
	return "store error"
}

func rateLimitedStatus(bucket, subject string, d throttle.Decision) error {
	st := status.New(codes.ResourceExhausted, msgRateLimited)
	retry := d.RetryAfter
	if retry < 0 {
		retry = 0
	}
	withDetails, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonRateLimited, Domain: Domain, Metadata: map[string]string{"bucket": bucket}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     subject,
			Description: "token bucket " + bucket + " (" + d.Limit.String() + ") is empty",
		}}},
	)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// reserveAuthAttempt takes one of the peer's failed authentications before
// the caller checks a token, so that concurrent calls from one peer can
// never check more tokens than its budget allows: the reservation is the
// charge when the check fails, and [Guard.refundAuthAttempt] gives it back
// when it succeeds. A peer whose budget is spent is refused with the
// returned status, before anything is verified. The key is "" when the
// budget is off.
func (g *Guard) reserveAuthAttempt(ctx context.Context, method string) (string, error) {
	if g.preauth == nil {
		return "", nil
	}
	pk := g.peerKey(ctx)
	d, err := g.preauth.Allow(ctx, throttle.Key{Consumer: pk, Bucket: authFailureBucket}, g.opts.authFailureLimit, 1)
	if err != nil || d.Allowed {
		return pk, nil
	}
	g.log(ctx, method, ReasonRateLimited, nil, "peer exhausted its failed-authentication budget")
	return pk, rateLimitedStatus(authFailureBucket, pk, d)
}

// refundAuthAttempt gives back the reservation of a check that succeeded:
// only failures are charged.
func (g *Guard) refundAuthAttempt(pk string) {
	if g.preauth != nil && pk != "" {
		_ = g.preauth.Refund(throttle.Key{Consumer: pk, Bucket: authFailureBucket}, g.opts.authFailureLimit, 1)
	}
}
