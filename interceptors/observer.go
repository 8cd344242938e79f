package interceptors

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Observer is told every decision the guard takes (see [WithObserver]): for
// metrics, audit or tests. Observe runs on the call's goroutine (on the
// renewal's for [DecisionRenewed], on the expiry timer's for a stream ended
// by its token's expiry) before the call goes on, so it must be quick and
// safe for concurrent use; it must not keep e's strings beyond what it
// needs (they are the guard's, never a token).
//
// A panic in Observe is recovered and dropped: it neither crashes the server
// nor changes the decision, and it is logged (reason OBSERVER_PANIC) when
// the guard has a logger.
type Observer interface {
	Observe(e Event)
}

// ObserverFunc makes a function an [Observer].
type ObserverFunc func(e Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// InitObserver is an [Observer] that wants to know what the guard serves
// before the first call: every successful [Guard.Init] calls ObserveInit
// with the methods it compiled, before the new table takes effect, so that
// an adapter can prepare what it records per method (and tell a registered
// method from an unknown one).
type InitObserver interface {
	Observer
	ObserveInit(info GuardInfo)
}

// GuardInfo is what [InitObserver.ObserveInit] receives.
type GuardInfo struct {
	// Methods are the methods with a compiled rule, sorted by name.
	Methods []MethodInfo
	// BreakerOpen reports whether the limiter's circuit breaker keeps its
	// store out of use, when the guard's limiter has one (a
	// throttle.Failover, or any limiter with a BreakerOpen() bool method);
	// nil otherwise.
	BreakerOpen func() bool
}

// MethodInfo describes one method the guard serves.
type MethodInfo struct {
	FullMethod string // "/pkg.Service/Method"
	Public     bool
	Throttled  bool
	Bucket     string // the throttle bucket; "" when not throttled
}

// Decision says what the guard decided.
type Decision uint8

// The decisions. Allowed through Unavailable are decisions on a call, a
// stream's opening, or a stream message; Renewed and LimiterError report
// what happened beside them.
const (
	// DecisionAllowed: the call (or message) goes on to the handler.
	DecisionAllowed Decision = iota + 1
	// DecisionUnauthenticated: refused with Unauthenticated (TOKEN_MISSING,
	// TOKEN_INVALID, TOKEN_EXPIRED, TRANSPORT_INSECURE, ...).
	DecisionUnauthenticated
	// DecisionDenied: refused with PermissionDenied (PERMISSION_DENIED,
	// also for a method without a rule, or NOT_OWNER).
	DecisionDenied
	// DecisionThrottled: refused with ResourceExhausted (RATE_LIMITED,
	// TOO_MANY_STREAMS).
	DecisionThrottled
	// DecisionUnavailable: the guard could not decide: the limiter's store
	// is down and the policy is fail-closed (LIMITER_UNAVAILABLE), or
	// [Guard.Init] has not succeeded (NOT_INITIALIZED).
	DecisionUnavailable
	// DecisionRenewed: a renewal ended; Event.Renewal says how.
	DecisionRenewed
	// DecisionLimiterError: the limiter's store did not decide the call:
	// the limiter returned an error, or a throttle.Failover's policy decided
	// instead (a store error, a timeout, or its breaker open), which
	// Event.LimiterSource names. The call's own decision follows in an
	// event of its own.
	DecisionLimiterError
	// DecisionKeySource: an issuer's key source reported something:
	// Event.Reason is its [token.KeyEventKind] ("fetched", "fetch_failed",
	// "rejected", "refetch_unknown_kid", "unknown_kid_suppressed"), with
	// Event.Issuer and Event.KeySource. After fetch_failed and rejected
	// the verifier keeps the last good set.
	DecisionKeySource
	// DecisionRevocations: the feed of the verifier's revocation set
	// reported something: Event.Reason is its [token.RevocationEventKind]
	// ("loaded", "stale", "caught_up"), Event.KeySource names the feed and
	// Event.Revocations is the set's size. While stale the set keeps
	// enforcing every entry it holds.
	DecisionRevocations
)

var decisionNames = [...]string{
	DecisionAllowed:         "allowed",
	DecisionUnauthenticated: "unauthenticated",
	DecisionDenied:          "denied",
	DecisionThrottled:       "throttled",
	DecisionUnavailable:     "unavailable",
	DecisionRenewed:         "renewed",
	DecisionLimiterError:    "limiter_error",
	DecisionKeySource:       "key_source",
	DecisionRevocations:     "revocations",
}

// String returns the decision's lower-case name ("allowed", "throttled",
// ...).
func (d Decision) String() string {
	if int(d) < len(decisionNames) && decisionNames[d] != "" {
		return decisionNames[d]
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Stage says what a decision was about.
type Stage uint8

const (
	// StageCall: a unary call, or a stream's opening.
	StageCall Stage = iota + 1
	// StageMessage: one message the client sent on an open stream (those
	// after the first of a client or bidi stream, and any the guard
	// refuses: not the owner, throttled, token expired or mismatched).
	StageMessage
	// StageStream: an open stream the guard ended outside a received
	// message: its token expired while it was idle or sending.
	StageStream
)

var stageNames = [...]string{StageCall: "call", StageMessage: "message", StageStream: "stream"}

// String returns "call", "message" or "stream".
func (s Stage) String() string {
	if int(s) < len(stageNames) && stageNames[s] != "" {
		return stageNames[s]
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// Cache says whether a call's token was found in the verifier's cache.
type Cache uint8

const (
	CacheNone Cache = iota // no verification: public method, no token, a stream message
	CacheHit               // verified before: admitted from the cache
	CacheMiss              // verified now (signature checked, or refused)
)

// String returns "", "hit" or "miss".
func (c Cache) String() string {
	switch c {
	case CacheHit:
		return "hit"
	case CacheMiss:
		return "miss"
	}
	return ""
}

// RenewalResult says how a renewal ended.
type RenewalResult uint8

const (
	RenewalRenewed      RenewalResult = iota + 1 // a successor was signed and accepted
	RenewalFailed                                // the renewer returned an error
	RenewalRefused                               // the guard's verifier refuses the successor
	RenewalTimedOut                              // the renewer did not answer within the renewal timeout
	RenewalNotRenewable                          // the renewer says the session may not be renewed
)

var renewalNames = [...]string{
	RenewalRenewed:      "renewed",
	RenewalFailed:       "failed",
	RenewalRefused:      "refused",
	RenewalTimedOut:     "timed_out",
	RenewalNotRenewable: "not_renewable",
}

// String returns "renewed", "failed", "refused", "timed_out" or
// "not_renewable".
func (r RenewalResult) String() string {
	if int(r) < len(renewalNames) && renewalNames[r] != "" {
		return renewalNames[r]
	}
	return fmt.Sprintf("RenewalResult(%d)", int(r))
}

// ReasonLimiterUnavailable is the reason of [DecisionUnavailable] when the
// limiter could not decide (the caller sees Unavailable without details),
// and of every [DecisionLimiterError].
const ReasonLimiterUnavailable = "LIMITER_UNAVAILABLE"

// Event is one decision of the guard. It is passed by value: observing it
// allocates nothing.
type Event struct {
	// Method is the call's full method name ("/pkg.Service/Method"), as
	// the client sent it: also for methods the guard does not serve.
	Method   string
	Decision Decision
	Stage    Stage
	// Reason is the ErrorInfo reason the caller sees (TOKEN_MISSING,
	// PERMISSION_DENIED, NOT_OWNER, RATE_LIMITED, TOO_MANY_STREAMS, ...),
	// or ReasonLimiterUnavailable; "" when allowed or renewed.
	Reason string
	// Bucket is the method's throttle bucket ("" when it is not
	// throttled), whatever the decision, or for a peer over its
	// failed-authentication budget "tollgate.auth-failures".
	Bucket string
	// Consumer is whose bucket the call is charged to, once known: the
	// consumer key of a verified session ("azp:orders", "sub:alice"), or
	// "peer:<IP>" on a public method and for a peer over its
	// failed-authentication budget. "" when no caller is known (a token
	// that did not verify names no one).
	Consumer string
	// Cache and VerifyDuration: whether the token came from the verifier's
	// cache, and how long authentication took (timed only when an observer
	// is set). CacheNone when nothing was verified.
	Cache          Cache
	VerifyDuration time.Duration
	// Renewal is the outcome of a [DecisionRenewed].
	Renewal RenewalResult
	// LimiterSource names what decided instead of the store on a
	// [DecisionLimiterError]: "fail-open", "fail-closed" or "local" (a
	// throttle.Failover's policy), or "error" when the limiter returned an
	// error.
	LimiterSource string
	// Issuer and KeySource name the issuer and its key source (a JWKS
	// URL, without query) of a [DecisionKeySource].
	Issuer    string
	KeySource string
	// Revocations is the size of the revocation set after a
	// [DecisionRevocations].
	Revocations int
}

// LimiterSourceError is Event.LimiterSource when the limiter returned an
// error.
const LimiterSourceError = "error"

// WithObserver tells o every decision the guard takes: one [Event] per call
// or stream opening, per stream message the guard checks, per stream it
// ends, per renewal, per decision the limiter's store did not take, and per
// event of an issuer's key source ([DecisionKeySource]). An
// o that is also an [InitObserver] learns the compiled methods at every
// [Guard.Init]. Without an observer the guard does no work for it.
func WithObserver(o Observer) Option {
	return func(opts *options) { opts.observer = o }
}

// emit tells the observer e; a panic in it is recovered and dropped.
func (g *Guard) emit(e Event) {
	defer func() {
		if p := recover(); p != nil {
			g.log(context.Background(), e.Method, "OBSERVER_PANIC", nil, "the observer panicked; its event was dropped")
		}
	}()
	g.opts.observer.Observe(e)
}

// verifyStat is how a call's authentication went, for its event.
type verifyStat struct {
	cache Cache
	dur   time.Duration
}

// observeCall reports the decision on a call or stream opening: allowed
// when err is nil, else the refusal err is. pl is nil when the method has
// no plan; key is whose bucket the call was charged to, if known.
func (g *Guard) observeCall(method string, pl *plan, key string, vs *verifyStat, stage Stage, err error) {
	e := Event{Method: method, Stage: stage, Consumer: key}
	if pl != nil && pl.limited {
		e.Bucket = pl.bucket
	}
	if vs != nil {
		e.Cache, e.VerifyDuration = vs.cache, vs.dur
	}
	if err == nil {
		e.Decision = DecisionAllowed
	} else {
		refusalOf(err, &e)
	}
	g.emit(e)
}

// redactedCause is a source's error for a log line, with anything token-
// or key-shaped cut out; "unknown" without one.
func redactedCause(err error) string {
	if err == nil {
		return "unknown"
	}
	return token.Redact(err.Error())
}

// observeRevocations reports an event of the revocation feed: to the log
// when it turns stale or catches up, then to the observer.
func (g *Guard) observeRevocations(e token.RevocationEvent) {
	if l := g.opts.logger; l != nil {
		switch e.Kind {
		case token.RevocationsStale:
			l.LogAttrs(context.Background(), slog.LevelWarn, "tollgate: revocation feed lost its store; enforcing the revocations it has, which may be stale",
				slog.String("source", e.Source), slog.Int("revocations", e.Entries), slog.String("cause", redactedCause(e.Err)))
		case token.RevocationsCaughtUp:
			l.LogAttrs(context.Background(), slog.LevelInfo, "tollgate: revocation feed caught up",
				slog.String("source", e.Source), slog.Int("revocations", e.Entries))
		}
	}
	if g.opts.observer != nil {
		g.emit(Event{Decision: DecisionRevocations, Reason: string(e.Kind), KeySource: e.Source, Revocations: e.Entries})
	}
}

// observeKeys reports an event of an issuer's key source: to the log when
// the source kept its last good set, then to the observer.
func (g *Guard) observeKeys(issuer string, e token.KeyEvent) {
	if l := g.opts.logger; l != nil && (e.Kind == token.KeysFetchFailed || e.Kind == token.KeysRejected) {
		l.LogAttrs(context.Background(), slog.LevelWarn, "tollgate: key source kept its last good key set",
			slog.String("issuer", issuer), slog.String("source", e.Source), slog.String("event", string(e.Kind)),
			slog.Int("keys", e.Keys), slog.String("cause", redactedCause(e.Err)))
	}
	if g.opts.observer != nil {
		g.emit(Event{Decision: DecisionKeySource, Reason: string(e.Kind), Issuer: issuer, KeySource: e.Source})
	}
}

// observeRenewal reports how a renewal started by a call of method ended.
func (g *Guard) observeRenewal(method, key string, err error) {
	g.emit(Event{Method: method, Decision: DecisionRenewed, Consumer: key, Renewal: renewalResultOf(err)})
}

// observeLimiter reports a decision of p's limiter that its store did not
// take: err is the limiter's error, or else d came from a Failover's policy.
func (g *Guard) observeLimiter(p *plan, key string, d throttle.Decision, err error) {
	src := LimiterSourceError
	if err == nil {
		switch d.Source {
		case throttle.SourceFailOpen, throttle.SourceFailClosed, throttle.SourceLocal:
			src = d.Source
		default:
			return
		}
	}
	g.emit(Event{Method: p.method, Decision: DecisionLimiterError, Stage: StageCall, Reason: ReasonLimiterUnavailable,
		Bucket: p.bucket, Consumer: key, LimiterSource: src})
}

// refusalOf sets e's decision, reason (the ErrorInfo reason the caller
// sees) and, for a throttled call, its bucket and subject from the refusal
// err. The guard's fixed refusals are matched without decoding anything.
func refusalOf(err error, e *Event) {
	switch err {
	case errTokenMissing:
		e.Decision, e.Reason = DecisionUnauthenticated, ReasonTokenMissing
		return
	case errTokenInvalid:
		e.Decision, e.Reason = DecisionUnauthenticated, ReasonTokenInvalid
		return
	case errTokenExpired:
		e.Decision, e.Reason = DecisionUnauthenticated, ReasonTokenExpired
		return
	case errTokenRevoked:
		e.Decision, e.Reason = DecisionUnauthenticated, ReasonTokenRevoked
		return
	case errTokenBinding:
		e.Decision, e.Reason = DecisionUnauthenticated, ReasonTokenBindingMismatch
		return
	case errInsecure:
		e.Decision, e.Reason = DecisionUnauthenticated, ReasonTransportInsecure
		return
	case errNoRule:
		e.Decision, e.Reason = DecisionDenied, permissions.ReasonPermissionDenied
		return
	case errNotReady:
		e.Decision, e.Reason = DecisionUnavailable, ReasonNotInitialized
		return
	case errLimiterDown:
		e.Decision, e.Reason = DecisionUnavailable, ReasonLimiterUnavailable
		return
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		e.Decision = DecisionUnauthenticated
	case codes.PermissionDenied:
		e.Decision = DecisionDenied
	case codes.ResourceExhausted:
		e.Decision = DecisionThrottled
	default:
		e.Decision = DecisionUnavailable
	}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason = d.GetReason()
			if b, ok := d.GetMetadata()["bucket"]; ok {
				e.Bucket = b
			}
		case *errdetails.QuotaFailure:
			if v := d.GetViolations(); e.Consumer == "" && len(v) == 1 {
				e.Consumer = v[0].GetSubject()
			}
		}
	}
}

// guardInfo describes the compiled table c for an InitObserver.
func (g *Guard) guardInfo(c *compiled) GuardInfo {
	info := GuardInfo{Methods: make([]MethodInfo, 0, len(c.plans))}
	for _, m := range c.perms.Methods() {
		p, ok := c.plans[m]
		if !ok {
			continue
		}
		mi := MethodInfo{FullMethod: m, Public: p.rule.Public(), Throttled: p.limited}
		if p.limited {
			mi.Bucket = p.bucket
		}
		info.Methods = append(info.Methods, mi)
	}
	if b, ok := g.limiter.(interface{ BreakerOpen() bool }); ok {
		info.BreakerOpen = b.BreakerOpen
	}
	return info
}

// initObserver tells o what the compiled table c serves; a panic in it is
// recovered and dropped, as in Observe.
func (g *Guard) initObserver(o InitObserver, c *compiled) {
	defer func() {
		if p := recover(); p != nil {
			g.log(context.Background(), "", "OBSERVER_PANIC", nil, "the observer panicked in ObserveInit")
		}
	}()
	o.ObserveInit(g.guardInfo(c))
}
