package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
)

// Guard verifies and authorizes every call of a gRPC server. Build it with
// [NewGuard], pass [Guard.ServerOptions] to grpc.NewServer, register the
// services, then call [Guard.Init] before serving: Init compiles the rules of
// every registered service, once. Until Init succeeds every call fails with
// Internal; nothing is ever let through by default.
type Guard struct {
	verifier *session.Verifier
	opts     options
	table    atomic.Pointer[permissions.Table]
}

// ServiceInfoProvider is what [Guard.Init] reads the registered services
// from; *grpc.Server implements it.
type ServiceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// NewGuard returns a guard that verifies tokens with v.
func NewGuard(v *session.Verifier, opts ...Option) (*Guard, error) {
	if v == nil {
		return nil, errors.New("interceptors: a verifier is required")
	}
	o := options{
		maxMetadataToken: DefaultMaxMetadataTokenSize,
		maxBodyToken:     DefaultMaxBodyTokenSize,
		maxHeaderList:    DefaultMaxHeaderListSize,
		publicServices:   defaultPublicServices,
		files:            protoregistry.GlobalFiles,
		types:            protoregistry.GlobalTypes,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.maxMetadataToken <= 0 || o.maxBodyToken <= 0:
		return nil, errors.New("interceptors: token size caps must be positive")
	case o.maxMetadataToken > session.MaxTokenSizeLimit || o.maxBodyToken > session.MaxTokenSizeLimit:
		return nil, fmt.Errorf("interceptors: token size caps may not exceed %d", session.MaxTokenSizeLimit)
	case o.files == nil || o.types == nil:
		return nil, errors.New("interceptors: nil registry")
	case o.tokenHeader == "authorization":
		return nil, errors.New("interceptors: the token header must not be authorization, which is always read as Bearer")
	}
	return &Guard{verifier: v, opts: o}, nil
}

// Init compiles the rules of every service registered on srv. It fails,
// naming each method and problem, on an invalid rule, and with [WithStrict]
// on any method without one. Call it after registering services and before
// serving; calling it again recompiles.
func (g *Guard) Init(srv ServiceInfoProvider) error {
	if srv == nil {
		return errors.New("interceptors: nil server")
	}
	publicSvc := make(map[string]bool, len(g.opts.publicServices))
	for _, s := range g.opts.publicServices {
		publicSvc[s] = true
	}
	var descs []protoreflect.ServiceDescriptor
	var unresolved, public []string
	public = append(public, g.opts.publicMethods...)
	for name, info := range srv.GetServiceInfo() {
		d, err := g.opts.files.FindDescriptorByName(protoreflect.FullName(name))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			if err != nil || !ok {
				unresolved = append(unresolved, full)
			}
			if publicSvc[name] {
				public = append(public, full)
			}
		}
		if err == nil && ok {
			descs = append(descs, sd)
		}
	}
	copts := []permissions.Option{
		permissions.WithPublicMethods(public...),
		permissions.WithUnresolved(unresolved...),
		permissions.WithTypes(g.opts.types),
	}
	if g.opts.strict {
		copts = append(copts, permissions.Strict())
	}
	t, err := permissions.Compile(descs, copts...)
	if err != nil {
		return err
	}
	g.table.Store(t)
	return nil
}

// Table returns the compiled table, or nil before [Guard.Init].
func (g *Guard) Table() *permissions.Table { return g.table.Load() }

// ServerOptions returns the guard's interceptors (chained, so they compose
// with others) and a header-list cap of 64 KiB instead of grpc-go's 16 MiB.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()),
	}
	if g.opts.maxHeaderList > 0 {
		opts = append(opts, grpc.MaxHeaderListSize(g.opts.maxHeaderList))
	}
	return opts
}

// rule finds the compiled rule of method; the error is the status to return.
func (g *Guard) rule(ctx context.Context, method string) (*permissions.Rule, error) {
	t := g.table.Load()
	if t == nil {
		g.log(ctx, method, "NOT_INITIALIZED", nil, "Guard.Init was not called")
		return nil, errNotReady
	}
	r, ok := t.Rule(method)
	if !ok {
		g.log(ctx, method, permissions.ReasonPermissionDenied, nil, "method has no rule")
		return nil, errNoRule
	}
	return r, nil
}

// authenticate verifies tok and authorizes the session for r.
func (g *Guard) authenticate(ctx context.Context, method string, r *permissions.Rule, tok string, p *tokenProblem) (*session.Session, error) {
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
	if err := r.Authorize(sess); err != nil {
		reason, st := deniedStatus(err)
		g.log(ctx, method, reason, sess, err.Error())
		return nil, st
	}
	return sess, nil
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
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r, err := g.rule(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if r.Public() {
			return handler(ctx, req)
		}
		tok, p := g.metadataToken(ctx)
		if p == nil {
			pm, _ := req.(proto.Message)
			tok, p = g.bodyToken(r.TokenField(), pm, tok)
		}
		sess, err := g.authenticate(ctx, info.FullMethod, r, tok, p)
		if err != nil {
			return nil, err
		}
		if err := g.checkMessage(ctx, info.FullMethod, r, sess, req); err != nil {
			return nil, err
		}
		return handler(session.NewContext(ctx, sess), req)
	}
}

func causeOf(err error) string {
	var ve *session.VerifyError
	if errors.As(err, &ve) {
		return ve.Cause
	}
	return "verification failed"
}

// log records a denial. It never receives a token: only fixed causes,
// names from the .proto and a fingerprint of the jti.
func (g *Guard) log(ctx context.Context, method, reason string, sess *session.Session, cause string) {
	l := g.opts.logger
	if l == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("reason", reason), slog.String("method", method))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if sess != nil {
		attrs = append(attrs, slog.String("consumer", sess.Consumer()), slog.String("jti_fp", session.Fingerprint(sess.ID())))
	}
	attrs = append(attrs, slog.String("cause", cause))
	l.LogAttrs(ctx, slog.LevelWarn, "tollgate: call denied", attrs...)
}
