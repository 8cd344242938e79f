package permissions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
	"github.com/tollgate/tollgate/session"
)

// Table holds the compiled rule of every method that has one, by full method
// name. It is immutable and safe for concurrent use.
type Table struct {
	rules map[string]*Rule
}

// ErrCompile wraps every compilation error.
var ErrCompile = errors.New("permissions: invalid rules")

type options struct {
	strict  bool
	public  []string
	authn   []string
	types   protoregistry.MessageTypeResolver
	unknown []string
}

// Option configures [Compile].
type Option func(*options)

// Strict makes compilation fail when any method of the given services (or
// any method passed to [WithUnresolved]) has no rule, instead of leaving it to
// be denied at call time.
func Strict() Option { return func(o *options) { o.strict = true } }

// WithPublicMethods makes these full method names public when they have no
// rule of their own (the guard uses it for health checks and reflection).
// Matching is exact: no prefixes, no case folding.
func WithPublicMethods(fullMethods ...string) Option {
	return func(o *options) { o.public = append(o.public, fullMethods...) }
}

// WithAuthenticatedMethods gives these full method names, when they have no
// rule of their own, the rule `{}`: any caller with a valid token, no
// permission needed (the guard uses it for reflection). Matching is exact. A
// method named here and in [WithPublicMethods] is public.
func WithAuthenticatedMethods(fullMethods ...string) Option {
	return func(o *options) { o.authn = append(o.authn, fullMethods...) }
}

// WithTypes sets where request message types are resolved (default
// protoregistry.GlobalTypes; a dynamic type is built when absent).
func WithTypes(r protoregistry.MessageTypeResolver) Option {
	return func(o *options) { o.types = r }
}

// WithUnresolved declares methods that are served but whose descriptors could
// not be found, so their rules cannot be read. They stay denied, unless
// public by [WithPublicMethods]; under [Strict] they fail compilation.
func WithUnresolved(fullMethods ...string) Option {
	return func(o *options) { o.unknown = append(o.unknown, fullMethods...) }
}

// Compile reads the tollgate.v1 options of every method of services and
// returns the table of their rules. It reports every problem it finds, each
// naming its method, joined in one error wrapping [ErrCompile].
func Compile(services []protoreflect.ServiceDescriptor, opts ...Option) (*Table, error) {
	o := options{types: protoregistry.GlobalTypes}
	for _, opt := range opts {
		opt(&o)
	}
	t := &Table{rules: make(map[string]*Rule)}
	var errs []error
	fail := func(method, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrCompile, method, fmt.Sprintf(format, args...)))
	}
	public := make(map[string]bool, len(o.public))
	for _, m := range o.public {
		public[m] = true
	}
	authn := make(map[string]bool, len(o.authn))
	for _, m := range o.authn {
		authn[m] = true
	}
	seen := make(map[protoreflect.FullName]bool)
	for _, sd := range services {
		if sd == nil || seen[sd.FullName()] {
			continue
		}
		seen[sd.FullName()] = true
		svcRule, _ := ruleOption(sd.Options(), tollgatev1.E_Service)
		methods := sd.Methods()
		for i := 0; i < methods.Len(); i++ {
			md := methods.Get(i)
			full := "/" + string(sd.FullName()) + "/" + string(md.Name())
			methodRule, _ := ruleOption(md.Options(), tollgatev1.E_Method)
			merged := merge(svcRule, methodRule)
			if merged == nil {
				if public[full] || authn[full] {
					t.rules[full] = &Rule{method: full, desc: md, public: public[full], inputType: inputType(o.types, md)}
					continue
				}
				if o.strict {
					fail(full, "no rule: declare (tollgate.v1.method) or (tollgate.v1.service)")
				}
				continue
			}
			r, problems := compileRule(full, md, merged, o.types)
			for _, p := range problems {
				fail(full, "%s", p)
			}
			if len(problems) == 0 {
				t.rules[full] = r
			}
		}
	}
	for _, full := range o.unknown {
		if _, ok := t.rules[full]; ok {
			continue
		}
		if public[full] || authn[full] {
			t.rules[full] = &Rule{method: full, public: public[full]}
			continue
		}
		if o.strict {
			fail(full, "no rule: its descriptor is not in the registry, so its options cannot be read")
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

func ruleOption(opts proto.Message, ext protoreflect.ExtensionType) (*tollgatev1.Rule, bool) {
	if opts == nil || !proto.HasExtension(opts, ext) {
		return nil, false
	}
	r, ok := proto.GetExtension(opts, ext).(*tollgatev1.Rule)
	return r, ok && r != nil
}

// merge returns the method rule laid over the service rule, field by field
// where the method sets one; nil when neither exists. A method that sets
// public: true does not inherit the service's permissions or ownership.
func merge(svc, method *tollgatev1.Rule) *tollgatev1.Rule {
	switch {
	case svc == nil && method == nil:
		return nil
	case svc == nil:
		return method
	case method == nil:
		return svc
	}
	out := proto.Clone(svc).(*tollgatev1.Rule)
	if method.Public != nil {
		out.Public = proto.Bool(method.GetPublic())
		if method.GetPublic() {
			// A method that declares itself public drops what the service
			// requires of callers: a proto list cannot be set to empty, so
			// there would be no other way to say it.
			out.Permissions, out.AnyPermissions, out.Ownership = nil, nil, nil
		}
	}
	if len(method.Permissions) > 0 {
		out.Permissions = method.Permissions
	}
	if len(method.AnyPermissions) > 0 {
		out.AnyPermissions = method.AnyPermissions
	}
	if len(method.Ownership) > 0 {
		out.Ownership = method.Ownership
	}
	if method.Throttle != nil {
		out.Throttle = method.Throttle
	}
	if method.NoRenewal != nil {
		out.NoRenewal = proto.Bool(method.GetNoRenewal())
	}
	if method.MaxStreams != nil {
		out.MaxStreams = proto.Uint32(method.GetMaxStreams())
	}
	return out
}

func compileRule(full string, md protoreflect.MethodDescriptor, pr *tollgatev1.Rule, types protoregistry.MessageTypeResolver) (*Rule, []string) {
	var problems []string
	r := &Rule{method: full, desc: md, public: pr.GetPublic(), noRenewal: pr.GetNoRenewal()}
	for _, p := range pr.GetPermissions() {
		if msg := checkPermission(p); msg != "" {
			problems = append(problems, "permissions: "+msg)
		}
	}
	for _, p := range pr.GetAnyPermissions() {
		if msg := checkPermission(p); msg != "" {
			problems = append(problems, "any_permissions: "+msg)
		}
	}
	r.all = dedupe(pr.GetPermissions())
	r.any = dedupe(pr.GetAnyPermissions())
	r.anyJoined = strings.Join(r.any, ",")
	if r.public && (len(r.all) > 0 || len(r.any) > 0 || len(pr.GetOwnership()) > 0) {
		problems = append(problems, "a public rule cannot require permissions or ownership (set public: false on the method to override a public service)")
	}
	input := md.Input()
	for i, po := range pr.GetOwnership() {
		o, msg := compileOwnership(input, po)
		if msg != "" {
			problems = append(problems, fmt.Sprintf("ownership[%d]: %s", i, msg))
			continue
		}
		r.owners = append(r.owners, o)
	}
	if pt := pr.GetThrottle(); pt != nil {
		t, msg := compileThrottle(full, pt)
		if msg != "" {
			problems = append(problems, "throttle: "+msg)
		} else {
			r.throttle = &t
		}
	}
	if pr.MaxStreams != nil {
		if pr.GetMaxStreams() == 0 {
			problems = append(problems, "max_streams must be at least 1 (leave it unset for the guard's default)")
		}
		r.maxStreams = pr.GetMaxStreams()
	}
	fd, msg := tokenField(input)
	if msg != "" {
		problems = append(problems, msg)
	}
	r.tokenField = fd
	r.inputType = inputType(types, md)
	return r, problems
}

func checkPermission(p string) string {
	switch {
	case p == "":
		return "empty permission"
	case len(p) > 256:
		return "permission longer than 256 bytes"
	case strings.Contains(p, "*"):
		return fmt.Sprintf("%q: wildcards are for grants in tokens, not for rules", p)
	case strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("%q: white space or unprintable character", p)
	}
	return ""
}

func dedupe(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func compileOwnership(input protoreflect.MessageDescriptor, po *tollgatev1.Ownership) (ownership, string) {
	o := ownership{field: po.GetField(), claim: po.GetClaim()}
	if o.field == "" {
		return o, "empty field path"
	}
	if o.claim == "" {
		return o, fmt.Sprintf("field %q: empty claim", o.field)
	}
	for _, b := range po.GetBypassPermissions() {
		if msg := checkPermission(b); msg != "" {
			return o, "bypass_permissions: " + msg
		}
	}
	o.bypass = dedupe(po.GetBypassPermissions())
	md := input
	elems := strings.Split(o.field, ".")
	for i, name := range elems {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return o, fmt.Sprintf("field %q: %s has no field %q", o.field, md.FullName(), name)
		}
		if fd.IsList() || fd.IsMap() {
			return o, fmt.Sprintf("field %q: %q is repeated; ownership needs a singular field", o.field, name)
		}
		o.path = append(o.path, fd)
		if i < len(elems)-1 {
			if fd.Kind() != protoreflect.MessageKind {
				return o, fmt.Sprintf("field %q: %q is not a message, so the path cannot go on", o.field, name)
			}
			md = fd.Message()
			continue
		}
		switch fd.Kind() {
		case protoreflect.StringKind, protoreflect.BoolKind, protoreflect.EnumKind,
			protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
			protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		default:
			return o, fmt.Sprintf("field %q: %s is not a string, integer, bool or enum scalar", o.field, fd.Kind())
		}
	}
	return o, ""
}

func compileThrottle(full string, pt *tollgatev1.Throttle) (Throttle, string) {
	t := Throttle{Rate: pt.GetRate(), Burst: pt.GetBurst(), Bucket: pt.GetBucket(), Cost: pt.GetCost()}
	if t.Rate == 0 {
		return t, "rate must be at least 1"
	}
	if pt.GetPer() == nil {
		return t, "no period (per)"
	}
	if err := pt.GetPer().CheckValid(); err != nil {
		return t, "invalid period"
	}
	t.Per = pt.GetPer().AsDuration()
	if t.Per <= 0 {
		return t, "period must be positive"
	}
	if t.Burst == 0 {
		return t, "burst must be at least 1"
	}
	if t.Cost == 0 {
		t.Cost = 1
	}
	if t.Cost > t.Burst {
		return t, fmt.Sprintf("cost %d above burst %d: no call could ever pass", t.Cost, t.Burst)
	}
	t.MessageCost = t.Cost
	if pt.MessageCost != nil {
		t.MessageCost = pt.GetMessageCost()
	}
	if t.MessageCost > t.Burst {
		return t, fmt.Sprintf("message_cost %d above burst %d: no second message could ever pass", t.MessageCost, t.Burst)
	}
	if t.Bucket == "" {
		t.Bucket = full
	}
	return t, ""
}

// tokenField finds the top-level field of input marked as carrying the
// token.
func tokenField(input protoreflect.MessageDescriptor) (protoreflect.FieldDescriptor, string) {
	var found protoreflect.FieldDescriptor
	fields := input.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		opts := fd.Options()
		if opts == nil || !proto.HasExtension(opts, tollgatev1.E_Field) {
			continue
		}
		f, _ := proto.GetExtension(opts, tollgatev1.E_Field).(*tollgatev1.Field)
		if !f.GetToken() {
			continue
		}
		if fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
			return nil, fmt.Sprintf("token field %s must be a singular string", fd.FullName())
		}
		if found != nil {
			return nil, fmt.Sprintf("%s marks two token fields (%s, %s)", input.FullName(), found.Name(), fd.Name())
		}
		found = fd
	}
	return found, ""
}

func inputType(types protoregistry.MessageTypeResolver, md protoreflect.MethodDescriptor) protoreflect.MessageType {
	if types != nil {
		if mt, err := types.FindMessageByName(md.Input().FullName()); err == nil {
			return mt
		}
	}
	return dynamicpb.NewMessageType(md.Input())
}

// Rule returns the compiled rule of fullMethod ("/package.Service/Method").
// Matching is exact.
func (t *Table) Rule(fullMethod string) (*Rule, bool) {
	r, ok := t.rules[fullMethod]
	return r, ok
}

// Methods returns the full names of the methods that have a rule, sorted.
func (t *Table) Methods() []string {
	out := make([]string, 0, len(t.rules))
	for m := range t.rules {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Check runs the whole rule of fullMethod against req for the session in
// ctx, exactly as the gRPC guard would: a method without a rule is denied, a
// public one admits anyone, any other needs a session in ctx.
func (t *Table) Check(ctx context.Context, fullMethod string, req proto.Message) error {
	r, ok := t.rules[fullMethod]
	if !ok {
		return &DeniedError{Reason: ReasonPermissionDenied, NoRule: true}
	}
	if r.public {
		return nil
	}
	sess, ok := session.FromContext(ctx)
	if !ok {
		return ErrNoSession
	}
	return r.Allow(sess, req)
}
