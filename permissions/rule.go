package permissions

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tollgate/tollgate/session"
)

// Rule is the compiled rule of one method. It is immutable and safe for
// concurrent use.
type Rule struct {
	method     string // "/pkg.Service/Method"
	desc       protoreflect.MethodDescriptor
	public     bool
	all        []string
	any        []string
	anyJoined  string
	owners     []ownership
	throttle   *Throttle
	maxStreams uint32 // 0: the guard's default
	noRenewal  bool
	tokenField protoreflect.FieldDescriptor
	inputType  protoreflect.MessageType
}

type ownership struct {
	path   []protoreflect.FieldDescriptor
	field  string
	claim  string
	bypass []string
}

// Throttle is a method's declared token bucket: Rate tokens every Per, at
// most Burst held, in the bucket named Bucket. A unary call, and the opening
// of a stream, takes Cost; on client and bidi streams the opening pays for
// the first message received and every later one takes MessageCost (0:
// messages are free).
type Throttle struct {
	Rate        uint32
	Per         time.Duration
	Burst       uint32
	Bucket      string
	Cost        uint32
	MessageCost uint32
}

// Method returns the full method name, "/package.Service/Method".
func (r *Rule) Method() string { return r.method }

// Descriptor returns the method's descriptor; nil for methods made public by
// name without one (such as a health service absent from the registry).
func (r *Rule) Descriptor() protoreflect.MethodDescriptor { return r.desc }

// Public reports whether the method needs no token.
func (r *Rule) Public() bool { return r.public }

// Permissions returns a copy of the permissions a caller must all hold.
func (r *Rule) Permissions() []string { return slices.Clone(r.all) }

// AnyPermissions returns a copy of the permissions of which a caller must
// hold at least one (none when empty).
func (r *Rule) AnyPermissions() []string { return slices.Clone(r.any) }

// Ownership is one ownership entry of a rule, as declared: the request field
// path Field must equal the session's claim Claim, unless the caller holds
// one of BypassPermissions.
type Ownership struct {
	Field             string
	Claim             string
	BypassPermissions []string
}

// Ownership returns copies of the rule's ownership entries, in declaration
// order (none when the rule checks no request field).
func (r *Rule) Ownership() []Ownership {
	if len(r.owners) == 0 {
		return nil
	}
	out := make([]Ownership, len(r.owners))
	for i, o := range r.owners {
		out[i] = Ownership{Field: o.field, Claim: o.claim, BypassPermissions: slices.Clone(o.bypass)}
	}
	return out
}

// HasOwnership reports whether the rule checks request fields against
// claims, so every request message must be checked.
func (r *Rule) HasOwnership() bool { return len(r.owners) > 0 }

// Throttle returns the method's declared throttle, if any.
func (r *Rule) Throttle() (Throttle, bool) {
	if r.throttle == nil {
		return Throttle{}, false
	}
	return *r.throttle, true
}

// MaxStreams returns the rule's bound on streams of this method one consumer
// (one peer, when public) may hold open at once, and false when the rule sets
// none, leaving the guard's default.
func (r *Rule) MaxStreams() (uint32, bool) { return r.maxStreams, r.maxStreams > 0 }

// NoRenewal reports whether tokens must never be renewed on this method.
func (r *Rule) NoRenewal() bool { return r.noRenewal }

// TokenField returns the request field marked to carry the token, or nil.
func (r *Rule) TokenField() protoreflect.FieldDescriptor { return r.tokenField }

// InputType returns the request message type, for transports that must
// receive a message before the handler does (a token in the first message of
// a stream). Nil when the method has no descriptor.
func (r *Rule) InputType() protoreflect.MessageType { return r.inputType }

// Authorize checks the caller's permissions: all of Permissions, then one of
// AnyPermissions. It does not look at the request; see [Rule.CheckMessage].
// A public rule admits anyone, including a nil session. A session without a
// subject (the zero Session: no verifier built it, since every issuer's
// tokens carry sub) is no session.
func (r *Rule) Authorize(sess *session.Session) error {
	if r.public {
		return nil
	}
	if sess == nil || sess.Subject() == "" {
		return ErrNoSession
	}
	for _, p := range r.all {
		if !sess.Has(p) {
			return &DeniedError{Reason: ReasonPermissionDenied, Permission: p}
		}
	}
	if len(r.any) > 0 {
		for _, p := range r.any {
			if sess.Has(p) {
				return nil
			}
		}
		return &DeniedError{Reason: ReasonPermissionDenied, Permission: r.anyJoined, AnyOf: true}
	}
	return nil
}

// CheckMessage checks the ownership entries against one request message:
// each field must be set and equal the session's claim, unless the session
// holds a bypass permission of that entry. Streams call it for every message
// they receive.
func (r *Rule) CheckMessage(sess *session.Session, msg proto.Message) error {
	if len(r.owners) == 0 {
		return nil
	}
	if sess == nil || sess.Subject() == "" {
		return ErrNoSession
	}
	var m protoreflect.Message
	if msg != nil {
		m = msg.ProtoReflect()
	}
	for i := range r.owners {
		o := &r.owners[i]
		if o.bypassed(sess) {
			continue
		}
		want, ok := sess.ClaimString(o.claim)
		if !ok || want == "" || m == nil {
			return &DeniedError{Reason: ReasonNotOwner, Field: o.field}
		}
		got, ok := o.value(m)
		if !ok || got != want {
			return &DeniedError{Reason: ReasonNotOwner, Field: o.field}
		}
	}
	return nil
}

// Allow runs the whole rule: [Rule.Authorize], then [Rule.CheckMessage] on
// req.
func (r *Rule) Allow(sess *session.Session, req proto.Message) error {
	if err := r.Authorize(sess); err != nil {
		return err
	}
	return r.CheckMessage(sess, req)
}

func (o *ownership) bypassed(sess *session.Session) bool {
	for _, p := range o.bypass {
		if sess.Has(p) {
			return true
		}
	}
	return false
}

// value reads the field at o.path in m, in canonical text form; false when
// any element of the path is unset.
func (o *ownership) value(m protoreflect.Message) (string, bool) {
	if !m.IsValid() {
		return "", false
	}
	last := len(o.path) - 1
	for _, fd := range o.path[:last] {
		if fd = sameField(m, fd); fd == nil {
			return "", false
		}
		// Get of an unset message field is an invalid message: one
		// lookup where Has and then Get would take two (each a
		// reflect.NewAt inside protobuf-go).
		if m = m.Get(fd).Message(); !m.IsValid() {
			return "", false
		}
	}
	fd := sameField(m, o.path[last])
	if fd == nil {
		return "", false
	}
	// A field with presence (proto2, proto3 optional, a oneof member) may
	// be set to its zero value, which only Has tells; without presence,
	// unset and zero are the same thing, and Get alone says which.
	if fd.HasPresence() && !m.Has(fd) {
		return "", false
	}
	v := m.Get(fd)
	zero := false
	var s string
	switch fd.Kind() {
	case protoreflect.StringKind:
		s = v.String()
		zero = s == ""
	case protoreflect.BoolKind:
		zero = !v.Bool()
		s = strconv.FormatBool(v.Bool())
	case protoreflect.EnumKind:
		zero = v.Enum() == 0
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			s = string(ev.Name())
		} else {
			s = strconv.FormatInt(int64(v.Enum()), 10)
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		zero = v.Int() == 0
		s = strconv.FormatInt(v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		zero = v.Uint() == 0
		s = strconv.FormatUint(v.Uint(), 10)
	default:
		return "", false
	}
	if zero && !fd.HasPresence() {
		return "", false
	}
	return s, true
}

// sameField returns fd as a field of m's own descriptor. Messages built from
// another registry than the one the rule was compiled from have distinct
// descriptors; protoreflect panics on a foreign field, so it is resolved by
// number and kind instead.
func sameField(m protoreflect.Message, fd protoreflect.FieldDescriptor) protoreflect.FieldDescriptor {
	md := m.Descriptor()
	if md == fd.ContainingMessage() {
		return fd
	}
	if md.FullName() != fd.ContainingMessage().FullName() {
		return nil
	}
	f := md.Fields().ByNumber(fd.Number())
	if f == nil || f.Kind() != fd.Kind() || f.Cardinality() != fd.Cardinality() {
		return nil
	}
	return f
}

// String describes the rule in one line, such as
// "/pkg.Service/Get: authenticated all-of[orders.read]": for printing what a
// Table holds (the example of interceptors.NewGuard prints one) and for logs.
func (r *Rule) String() string {
	var parts []string
	if r.public {
		parts = append(parts, "public")
	} else {
		parts = append(parts, "authenticated")
	}
	if len(r.all) > 0 {
		parts = append(parts, "all-of["+strings.Join(r.all, ",")+"]")
	}
	if len(r.any) > 0 {
		parts = append(parts, "any-of["+r.anyJoined+"]")
	}
	for _, o := range r.owners {
		s := "owner(" + o.field + "=" + o.claim
		if len(o.bypass) > 0 {
			s += " unless " + strings.Join(o.bypass, "|")
		}
		parts = append(parts, s+")")
	}
	if t := r.throttle; t != nil {
		parts = append(parts, fmt.Sprintf("throttle(%d/%s burst %d cost %d message-cost %d bucket %s)", t.Rate, t.Per, t.Burst, t.Cost, t.MessageCost, t.Bucket))
	}
	if r.maxStreams > 0 {
		parts = append(parts, fmt.Sprintf("max-streams(%d)", r.maxStreams))
	}
	if r.noRenewal {
		parts = append(parts, "no-renewal")
	}
	if r.tokenField != nil {
		parts = append(parts, "token-field("+string(r.tokenField.Name())+")")
	}
	return r.method + ": " + strings.Join(parts, " ")
}

// Require returns nil when the session in ctx holds every permission of
// perms, ErrNoSession when ctx has no session, and a *DeniedError naming the
// first missing permission otherwise. Domain code and background workers use
// it to enforce the same permissions an RPC declares.
func Require(ctx context.Context, perms ...string) error {
	sess, ok := session.FromContext(ctx)
	if !ok {
		return ErrNoSession
	}
	for _, p := range perms {
		if !sess.Has(p) {
			return &DeniedError{Reason: ReasonPermissionDenied, Permission: p}
		}
	}
	return nil
}
