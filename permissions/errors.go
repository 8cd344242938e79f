package permissions

import (
	"errors"
	"strings"
)

// Reasons a call is denied; they are also the ErrorInfo reasons the gRPC
// guard sends.
const (
	// ReasonPermissionDenied: the caller lacks a permission, or the method
	// has no rule at all.
	ReasonPermissionDenied = "PERMISSION_DENIED"
	// ReasonNotOwner: the caller does not own the resource the request names.
	ReasonNotOwner = "NOT_OWNER"
)

var (
	// ErrDenied matches every *DeniedError.
	ErrDenied = errors.New("permission denied")
	// ErrNoSession: the context carries no session, so nothing can be
	// granted.
	ErrNoSession = errors.New("permissions: no session in context")
)

// DeniedError says why a rule denied a caller. Every field is safe to show
// the caller: names from the .proto, never values from the request or the
// token.
type DeniedError struct {
	// Reason is ReasonPermissionDenied or ReasonNotOwner.
	Reason string
	// Permission names what was missing: one permission of an all-of list,
	// or the comma-joined any-of list.
	Permission string
	// AnyOf is true when Permission lists alternatives.
	AnyOf bool
	// Field is the request field path of a failed ownership check.
	Field string
	// NoRule is true when the method has no rule (denied by default).
	NoRule bool
}

func (e *DeniedError) Error() string {
	var b strings.Builder
	b.WriteString("permission denied")
	switch {
	case e.NoRule:
		b.WriteString(": method has no rule")
	case e.Reason == ReasonNotOwner:
		b.WriteString(": not the owner of ")
		b.WriteString(e.Field)
	case e.AnyOf:
		b.WriteString(": needs one of ")
		b.WriteString(e.Permission)
	case e.Permission != "":
		b.WriteString(": needs ")
		b.WriteString(e.Permission)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }
