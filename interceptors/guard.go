package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
)

// Guard verifies and authorizes every call of a gRPC server. Build it with
// [NewGuard], pass [Guard.ServerOptions] to grpc.NewServer, register the
// services, then call [Guard.Init] before serving: Init compiles the rules of
// every registered service, once, and fails when the guard's interceptors
// are not installed or a method has no rule. Until Init succeeds every call
// fails with Internal; nothing is ever let through by default. Call
// [Guard.Close] after the server stops, so that no renewal or timer
// outlives it.
type Guard struct {
	verifier *token.Verifier
	opts     options
	table    atomic.Pointer[compiled]
	limiter  throttle.Limiter
	preauth  *throttle.Memory // per-peer failed authentications; nil when disabled
	renew    *renewals        // nil when renewal is off
	streams  streamCounts     // open streams per consumer (or peer) and method
	expiries expiries         // open streams by the instant their token runs out
	peerKeys peerKeys         // "peer:<IP>" of recent peers
	thumbs   thumbprints      // client certificates' thumbprints, for bound tokens

	claimKeyPrefix string // "claim:<name>:" with WithConsumerClaim

	// Whether a server has taken the guard's interceptors: Init refuses to
	// compile for a server that would run without them.
	unaryTaken, streamTaken atomic.Bool

	logBudget     *throttle.Memory // per-reason budget of log lines; nil: unlimited
	logSuppressed sync.Map         // reason -> *atomic.Int64 lines suppressed
}

// ServiceInfoProvider is what [Guard.Init] reads the registered services
// from; *grpc.Server implements it.
type ServiceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// NewGuard returns a guard that verifies tokens with v.
func NewGuard(v *token.Verifier, opts ...Option) (*Guard, error) {
	if v == nil {
		return nil, errors.New("interceptors: a verifier is required")
	}
	o := options{
		maxMetadataToken:   DefaultMaxMetadataTokenSize,
		maxBodyToken:       DefaultMaxBodyTokenSize,
		maxHeaderList:      DefaultMaxHeaderListSize,
		maxConcurrent:      DefaultMaxConcurrentStreams,
		publicServices:     defaultPublicServices(),
		files:              protoregistry.GlobalFiles,
		types:              protoregistry.GlobalTypes,
		authFailureLimit:   DefaultAuthFailureLimit(),
		renewalTimeout:     DefaultRenewalTimeout,
		logLimit:           DefaultLogLimit(),
		maxStreamsConsumer: DefaultMaxStreamsPerConsumer,
		maxStreamsPeer:     DefaultMaxStreamsPerPeer,
		afterFunc:          realAfterFunc,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.maxMetadataToken <= 0 || o.maxBodyToken <= 0:
		return nil, errors.New("interceptors: token size caps must be positive")
	case o.maxMetadataToken > token.MaxTokenSizeLimit || o.maxBodyToken > token.MaxTokenSizeLimit:
		return nil, fmt.Errorf("interceptors: token size caps may not exceed %d", token.MaxTokenSizeLimit)
	case o.files == nil || o.types == nil:
		return nil, errors.New("interceptors: nil registry")
	case o.tokenHeader == "authorization":
		return nil, errors.New("interceptors: the token header must not be authorization, which is always read as Bearer")
	case o.renewalGrace < 0 || o.renewalTimeout <= 0:
		return nil, errors.New("interceptors: renewal grace must be non-negative and its timeout positive")
	case o.maxStreamsConsumer < 1 || o.maxStreamsPeer < 1:
		return nil, errors.New("interceptors: stream bounds per consumer and per peer must be at least 1")
	case o.afterFunc == nil:
		return nil, errors.New("interceptors: nil timer function")
	}
	if o.defaultThrottle != nil {
		if err := o.defaultThrottle.Validate(); err != nil {
			return nil, fmt.Errorf("interceptors: default throttle: %w", err)
		}
	}
	g := &Guard{verifier: v, opts: o, limiter: o.limiter}
	g.expiries = expiries{afterFunc: o.afterFunc, now: v.Now}
	if o.consumerClaim != "" {
		g.claimKeyPrefix = "claim:" + o.consumerClaim + ":"
	}
	if g.limiter == nil {
		m, err := throttle.NewMemory()
		if err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
		g.limiter = m
	}
	if o.authFailureLimit != (throttle.Limit{}) {
		if err := o.authFailureLimit.Validate(); err != nil {
			return nil, fmt.Errorf("interceptors: auth failure limit: %w", err)
		}
		// On the verifier's clock, the guard's one notion of time (renewal
		// uses it too), so that a fake clock drives the budget's refill.
		m, err := throttle.NewMemory(throttle.WithMemoryMaxKeys(100_000), throttle.WithMemoryClock(v.Now))
		if err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
		g.preauth = m
	}
	if o.logger != nil && o.logLimit != (throttle.Limit{}) {
		if err := o.logLimit.Validate(); err != nil {
			return nil, fmt.Errorf("interceptors: log limit: %w", err)
		}
		m, err := throttle.NewMemory(throttle.WithMemoryMaxKeys(64), throttle.WithMemoryClock(v.Now))
		if err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
		g.logBudget = m
	}
	if o.renewer != nil {
		if err := o.renewalPolicy.Validate(); err != nil {
			return nil, fmt.Errorf("interceptors: renewal: %w", err)
		}
		g.renew = newRenewals(o.renewer, o.renewalPolicy, o.renewalGrace, o.renewalTimeout, v.Now, g.acceptable)
		g.renew.revoked = v.Revoked
		if o.observer != nil {
			g.renew.onDone = func(method string, sess *session.Session, err error) {
				g.observeRenewal(method, g.consumerKey(sess), err)
			}
		}
		g.renew.onError = func(err error) {
			if l := g.opts.logger; l != nil {
				l.LogAttrs(context.Background(), slog.LevelWarn, "tollgate: renewal failed", slog.String("cause", renewalCause(err)))
			}
		}
	}
	if o.observer != nil || o.logger != nil {
		v.ObserveKeys(g.observeKeys)
	}
	if rv := v.Revocations(); rv != nil {
		// A revocation ends the open streams it covers at once, even idle
		// ones; calls and later messages meet it in the verifier.
		rv.Watch(g.endRevokedStreams)
		if o.observer != nil || o.logger != nil {
			rv.Observe(g.observeRevocations)
		}
	}
	return g, nil
}

func realAfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// acceptable reports whether the guard's own verifier accepts tok now: a
// renewed token is handed out only then (never one signed by a key that has
// left the set since). After the first check it is a cache hit.
func (g *Guard) acceptable(tok string) bool {
	_, err := g.verifier.Verify(context.Background(), tok)
	return err == nil
}

// Close waits for the renewals under way (each bounded by its timeout) to
// end, and stops the timer that ends streams whose token runs out (it would
// otherwise stay armed, holding the guard, until the last stream's token
// had expired). Call it after the server has stopped.
func (g *Guard) Close() {
	if g.renew != nil {
		g.renew.close()
	}
	g.expiries.close()
}

// transportSecure reports whether the call's connection provides privacy and
// integrity (TLS, ALTS, local credentials over a Unix socket).
func transportSecure(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return false
	}
	ci, ok := p.AuthInfo.(interface {
		GetCommonAuthInfo() credentials.CommonAuthInfo
	})
	return ok && ci.GetCommonAuthInfo().SecurityLevel >= credentials.PrivacyAndIntegrity
}

// renewalCause is the log line's cause of a failed renewal.
func renewalCause(err error) string {
	switch renewalResultOf(err) {
	case RenewalNotRenewable:
		return "not renewable"
	case RenewalRefused:
		return "the verifier refuses the renewed token"
	case RenewalTimedOut:
		return "timed out"
	}
	return "renewer error"
}

// renewalResultOf says how a renewal that ended with err (nil: renewed)
// went: the one classification the log and the observer share.
func renewalResultOf(err error) RenewalResult {
	switch {
	case err == nil:
		return RenewalRenewed
	case errors.Is(err, token.ErrNotRenewable):
		return RenewalNotRenewable
	case errors.Is(err, errSuccessorRefused):
		return RenewalRefused
	case errors.Is(err, context.DeadlineExceeded):
		return RenewalTimedOut
	}
	return RenewalFailed
}

// Init compiles the rules of every service registered on srv. It fails,
// naming each method and problem, on an invalid rule and on a method
// without one (unless [WithLenientInit]), and it fails when srv was not
// built with the guard's interceptors ([Guard.ServerOptions]): a server
// without them would serve every call unchecked. Call it after registering
// services and before serving; calling it again recompiles.
func (g *Guard) Init(srv ServiceInfoProvider) error {
	if srv == nil {
		return errors.New("interceptors: nil server")
	}
	infos := srv.GetServiceInfo()
	kinds := make(map[string]grpc.MethodInfo)
	for name, info := range infos {
		for _, m := range info.Methods {
			kinds["/"+name+"/"+m.Name] = m
		}
	}
	if err := g.checkInstalled(kinds); err != nil {
		return err
	}
	t, err := compileRules(infos, &g.opts)
	if err != nil {
		return err
	}
	c, err := g.compilePlans(t, kinds)
	if err != nil {
		return err
	}
	if io, ok := g.opts.observer.(InitObserver); ok {
		g.initObserver(io, c)
	}
	g.table.Store(c)
	return nil
}

// CompileRules compiles the rules of the services in infos (as
// *grpc.Server.GetServiceInfo returns them: full service name to its
// methods) exactly as [Guard.Init] does for a guard built with opts, and
// returns the table or the very error Init would. Of opts, only those that
// decide the rules count: [WithRegistry] (where descriptors are looked up),
// [WithPublicServices] (default: gRPC health), [WithPublicMethods] and
// [WithLenientInit]; reflection needs a valid token unless made public. The
// others are ignored.
//
// It is for tools that show or lint what a guard would enforce (the
// tollgate CLI's rules and explain commands) without a server to build.
func CompileRules(infos map[string]grpc.ServiceInfo, opts ...Option) (*permissions.Table, error) {
	o := options{
		publicServices: defaultPublicServices(),
		files:          protoregistry.GlobalFiles,
		types:          protoregistry.GlobalTypes,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.files == nil || o.types == nil {
		return nil, errors.New("interceptors: nil registry")
	}
	return compileRules(infos, &o)
}

// compileRules is the rule compilation of [Guard.Init], shared with
// [CompileRules] so that a tool shows exactly what a guard enforces.
func compileRules(infos map[string]grpc.ServiceInfo, o *options) (*permissions.Table, error) {
	publicSvc := make(map[string]bool, len(o.publicServices))
	for _, s := range o.publicServices {
		publicSvc[s] = true
	}
	authnSvc := make(map[string]bool, len(authenticatedServices))
	for _, s := range authenticatedServices {
		authnSvc[s] = true
	}
	var descs []protoreflect.ServiceDescriptor
	var unresolved, public, authn []string
	public = append(public, o.publicMethods...)
	// In name order, so that the errors come in the same order every time.
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		info := infos[name]
		d, err := o.files.FindDescriptorByName(protoreflect.FullName(name))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			if err != nil || !ok {
				unresolved = append(unresolved, full)
			}
			switch {
			case publicSvc[name]:
				public = append(public, full)
			case authnSvc[name]:
				authn = append(authn, full)
			}
		}
		if err == nil && ok {
			descs = append(descs, sd)
		}
	}
	copts := []permissions.Option{
		permissions.WithPublicMethods(public...),
		permissions.WithAuthenticatedMethods(authn...),
		permissions.WithUnresolved(unresolved...),
		permissions.WithTypes(o.types),
	}
	if !o.lenient {
		copts = append(copts, permissions.Strict())
	}
	t, err := permissions.Compile(descs, copts...)
	if err != nil {
		if !o.lenient {
			err = fmt.Errorf("%w\n(declare the missing rules in the .proto, or build the guard WithLenientInit to deny unruled methods at call time)", err)
		}
		return nil, err
	}
	return t, nil
}

// checkInstalled refuses a server that registers unary (or streaming)
// methods, kinds by full name, while the guard's unary (or stream)
// interceptor was never taken.
func (g *Guard) checkInstalled(kinds map[string]grpc.MethodInfo) error {
	var unary, streams []string
	for full, m := range kinds {
		if m.IsClientStream || m.IsServerStream {
			streams = append(streams, full)
		} else {
			unary = append(unary, full)
		}
	}
	var missing []string
	if len(unary) > 0 && !g.unaryTaken.Load() {
		missing = append(missing, "unary interceptor (serving "+firstOf(unary)+")")
	}
	if len(streams) > 0 && !g.streamTaken.Load() {
		missing = append(missing, "stream interceptor (serving "+firstOf(streams)+")")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("interceptors: the guard's %s is not installed, so those calls would run unchecked: "+
		"build the server with grpc.NewServer(guard.ServerOptions()...), or chain guard.UnaryServerInterceptor() and guard.StreamServerInterceptor()",
		strings.Join(missing, " and "))
}

// firstOf names the alphabetically first of methods, and how many more.
func firstOf(methods []string) string {
	sort.Strings(methods)
	if len(methods) == 1 {
		return methods[0]
	}
	return fmt.Sprintf("%s and %d more", methods[0], len(methods)-1)
}

// Table returns the compiled permissions table, or nil before [Guard.Init].
func (g *Guard) Table() *permissions.Table {
	if c := g.table.Load(); c != nil {
		return c.perms
	}
	return nil
}

// ServerOptions returns what a server needs for the guard: its interceptors
// (chained, so they compose with others), a header-list cap of 64 KiB
// instead of grpc-go's 16 MiB, and a bound of 1000 calls in flight per
// connection (grpc.MaxConcurrentStreams; see [WithMaxConcurrentStreams]).
//
// grpc-go runs an interceptor given with grpc.UnaryInterceptor or
// grpc.StreamInterceptor before every chained one, so such an interceptor
// sees calls the guard has not yet checked: chain yours after the guard's
// (grpc.ChainUnaryInterceptor) unless it must run first.
//
// A server that chains the guard's interceptors by hand (with
// go-grpc-middleware, say) adds [Guard.TransportOptions] to keep the two
// transport bounds.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()),
	}, g.TransportOptions()...)
}

// plan finds the compiled plan of method; the error is the status to return.
func (g *Guard) plan(ctx context.Context, method string) (*plan, error) {
	t := g.table.Load()
	if t == nil {
		g.log(ctx, method, ReasonNotInitialized, nil, "Guard.Init was not called")
		return nil, errNotReady
	}
	p, ok := t.plans[method]
	if !ok {
		g.log(ctx, method, permissions.ReasonPermissionDenied, nil, "method has no rule")
		return nil, errNoRule
	}
	return p, nil
}

// authenticate verifies tok. A token bound to a client certificate (RFC
// 8705) is then admitted only on a mutual-TLS connection with that
// certificate (checkBinding), on a cache hit too. A token the verifier has
// accepted before (a cache hit) is admitted at once: it is never refused for other callers'
// failures from the same address. Any other attempt first reserves one of
// the peer's failed authentications: a peer that has spent them is refused
// before any signature check, a failure keeps the reservation as its
// charge, and a success gives it back.
//
// With an observer, vs gets whether the token was a cache hit and how long
// authentication took.
func (g *Guard) authenticate(ctx context.Context, method string, tok string, p *tokenProblem, vs *verifyStat) (*session.Session, error) {
	if g.opts.requireTransportSecurity && !transportSecure(ctx) {
		g.log(ctx, method, ReasonTransportInsecure, nil, "call without transport security")
		return nil, errInsecure
	}
	if g.opts.observer != nil {
		start := time.Now()
		defer func() { vs.dur = time.Since(start) }()
	}
	if p == nil && tok != "" {
		if sess, ok := g.verifier.Cached(tok); ok {
			vs.cache = CacheHit
			if sess.CertThumbprint() != "" {
				if err := g.checkBinding(ctx, method, sess); err != nil {
					return nil, err
				}
			}
			return sess, nil
		}
	}
	vs.cache = CacheMiss
	pk, err := g.reserveAuthAttempt(ctx, method)
	if err != nil {
		return nil, err
	}
	if p != nil {
		if p.missing {
			g.log(ctx, method, ReasonTokenMissing, nil, p.cause)
			return nil, errTokenMissing
		}
		g.log(ctx, method, ReasonTokenInvalid, nil, p.cause)
		return nil, errTokenInvalid
	}
	if tok == "" {
		g.log(ctx, method, ReasonTokenMissing, nil, problemMissing.cause)
		return nil, errTokenMissing
	}
	sess, err := g.verifier.Verify(ctx, tok)
	if err != nil {
		reason, st := verifyStatus(err)
		g.log(ctx, method, reason, nil, causeOf(err))
		return nil, st
	}
	g.refundAuthAttempt(pk)
	if sess.CertThumbprint() != "" {
		// The token is authentic: its refusal here is the connection's,
		// not a failed authentication to charge the peer for.
		if err := g.checkBinding(ctx, method, sess); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// authorize checks the session's permissions for r and returns the status to
// refuse the call with, or nil.
func (g *Guard) authorize(ctx context.Context, method string, r *permissions.Rule, sess *session.Session) error {
	if err := r.Authorize(sess); err != nil {
		reason, st := deniedStatus(err)
		g.log(ctx, method, reason, sess, err.Error())
		return st
	}
	return nil
}

// checkMessage runs the rule's ownership checks on one request message.
// A panic in evaluation is turned into a denial: nothing on the request path
// may crash the server or let a call through.
func (g *Guard) checkMessage(ctx context.Context, method string, r *permissions.Rule, sess *session.Session, msg any) (err error) {
	if !r.HasOwnership() {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			g.log(ctx, method, permissions.ReasonNotOwner, sess, fmt.Sprintf("panic evaluating ownership: %v", p))
			_, err = deniedStatus(&permissions.DeniedError{Reason: permissions.ReasonNotOwner})
		}
	}()
	pm, ok := msg.(proto.Message)
	if !ok {
		g.log(ctx, method, permissions.ReasonNotOwner, sess, fmt.Sprintf("request of type %T is not a protobuf message", msg))
		_, st := deniedStatus(&permissions.DeniedError{Reason: permissions.ReasonNotOwner})
		return st
	}
	if err := r.CheckMessage(sess, pm); err != nil {
		reason, st := deniedStatus(err)
		g.log(ctx, method, reason, sess, err.Error())
		return st
	}
	return nil
}

// UnaryServerInterceptor returns the guard's unary interceptor.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	g.unaryTaken.Store(true)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		obs := g.opts.observer != nil
		pl, err := g.plan(ctx, info.FullMethod)
		if err != nil {
			if obs {
				g.observeCall(info.FullMethod, nil, "", nil, StageCall, err)
			}
			return nil, err
		}
		r := pl.rule
		if r.Public() {
			err := g.admit(ctx, pl, "", nil, nil, nil)
			if obs {
				g.observeCall(info.FullMethod, pl, g.peerKey(ctx), nil, StageCall, err)
			}
			if err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}
		tok, p := g.metadataToken(ctx)
		if p == nil {
			pm, _ := req.(proto.Message)
			tok, p = g.bodyToken(r.TokenField(), pm, tok)
		}
		var vs verifyStat
		sess, err := g.authenticate(ctx, info.FullMethod, tok, p, &vs)
		if err != nil {
			if obs {
				g.observeCall(info.FullMethod, pl, "", &vs, StageCall, err)
			}
			return nil, err
		}
		denial := g.authorize(ctx, info.FullMethod, r, sess)
		if denial == nil {
			denial = g.checkMessage(ctx, info.FullMethod, r, sess, req)
		}
		// A refused call is charged like an admitted one, so a consumer
		// looping on calls it may not make is slowed down too.
		key := g.consumerKey(sess)
		err = g.admit(ctx, pl, key, sess, nil, denial)
		if obs {
			g.observeCall(info.FullMethod, pl, key, &vs, StageCall, err)
		}
		if err != nil {
			return nil, err
		}
		// Only a call that passed authentication, authorization and
		// throttling may start a renewal; the handler's own errors do not
		// take the renewed token away.
		f := g.startRenewal(pl, tok, sess)
		resp, err := handler(g.callContext(ctx, sess), req)
		if f != nil {
			if renewed, ok := g.renew.wait(f); ok {
				_ = grpc.SetTrailer(ctx, metadata.Pairs(RenewedTokenKey, renewed))
			}
		}
		return resp, err
	}
}

// startRenewal starts (or joins) the renewal of tok when the guard renews,
// the method allows it and the session is inside its window.
func (g *Guard) startRenewal(pl *plan, tok string, sess *session.Session) *flight {
	if g.renew == nil || pl.rule.NoRenewal() || !g.renew.policy.Due(sess, g.verifier.Now()) {
		return nil
	}
	return g.renew.start(tok, sess, pl.method)
}

func causeOf(err error) string {
	var ve *token.VerifyError
	if errors.As(err, &ve) {
		return ve.Cause()
	}
	return "verification failed"
}

// log records a denial. It never receives a token: only fixed causes,
// names from the .proto and a fingerprint of the jti. Each reason has its own
// budget of log lines (see [WithLogLimit]), so a consumer stuck in a loop or a
// flood of forged tokens cannot flood the log; the next line of that reason
// says how many were suppressed.
func (g *Guard) log(ctx context.Context, method, reason string, sess *session.Session, cause string) {
	l := g.opts.logger
	if l == nil {
		return
	}
	var suppressed int64
	if g.logBudget != nil {
		counter, _ := g.logSuppressed.LoadOrStore(reason, new(atomic.Int64))
		c := counter.(*atomic.Int64)
		if d, err := g.logBudget.Allow(ctx, throttle.Key{Consumer: reason, Bucket: "log"}, g.opts.logLimit, 1); err == nil && !d.Allowed {
			c.Add(1)
			return
		}
		suppressed = c.Swap(0)
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("reason", reason), slog.String("method", method))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if sess != nil {
		attrs = append(attrs, slog.String("consumer", sess.ConsumerKey()), slog.String("jti_fp", sess.LogRef()))
	}
	attrs = append(attrs, slog.String("cause", cause))
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	l.LogAttrs(ctx, slog.LevelWarn, "tollgate: call denied", attrs...)
}
