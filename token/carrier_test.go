package token

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/session"
)

// A session.Carrier behaves as session.NewContext's context does: its session is found in
// it and in contexts derived from it, a nearer session hides it, and the
// parent's values, deadline and cancellation come through.
func TestCarrier(t *testing.T) {
	f := newFixture(t)
	sess := mustVerify(t, f.v, token(t, f.key, claimsAt(f.clock.Now())))
	type other struct{}
	parent, cancel := context.WithDeadline(context.WithValue(context.Background(), other{}, "x"), time.Unix(1<<40, 0))
	var c session.Carrier
	c.Init(parent, sess)

	if got, ok := session.FromContext(&c); !ok || got != sess {
		t.Fatalf("FromContext(carrier) = %v, %v", got, ok)
	}
	derived, stop := context.WithCancel(context.WithValue(&c, other{}, "y"))
	defer stop()
	if got, ok := session.FromContext(derived); !ok || got != sess {
		t.Fatalf("FromContext(derived) = %v, %v", got, ok)
	}
	if got := c.Value(other{}); got != "x" {
		t.Fatalf("parent value through the carrier: %v", got)
	}
	if d, ok := c.Deadline(); !ok || !d.Equal(time.Unix(1<<40, 0)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	cancel()
	<-derived.Done()
	if c.Err() != context.Canceled {
		t.Fatalf("Err = %v", c.Err())
	}

	var empty session.Carrier
	empty.Init(session.NewContext(context.Background(), sess), nil)
	if _, ok := session.FromContext(&empty); ok {
		t.Fatal("a carrier of no session still shows its parent's")
	}
}
