package session

import "context"

// Carrier is a context.Context that carries a session, like the context
// [NewContext] returns, for embedding in a struct that is allocated anyway:
// NewContext costs an allocation per call, while a Carrier inside, say, a
// stream wrapper carries the session for nothing. Init it before use;
// [FromContext] finds the session in it and in every context derived from
// it, and everything else (deadline, cancellation, other values) comes from
// the parent.
type Carrier struct {
	context.Context
	sess *Session
}

// Init makes c carry sess on top of parent.
func (c *Carrier) Init(parent context.Context, sess *Session) {
	c.Context, c.sess = parent, sess
}

// Value returns the session for the key [FromContext] looks up, and the
// parent's value for any other key.
func (c *Carrier) Value(key any) any {
	if _, ok := key.(contextKey); ok {
		return c.sess
	}
	return c.Context.Value(key)
}
