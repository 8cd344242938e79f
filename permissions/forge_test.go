package permissions

import (
	"context"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
)

// Only the verifier builds a Session with a subject, permissions or claims
// (through internal/sessionmint); the one Session other code can make is
// the zero one. It has no subject, so it counts as no session at all
// wherever a permission, an ownership claim or merely an authenticated
// caller is asked for: not even a wildcard or an empty owner field lets it
// through.
func TestForgedSessionHoldsNothing(t *testing.T) {
	tab := testTable(t)
	forged := &session.Session{}
	for _, m := range []string{"Get", "GetAll", "Either", "Update"} {
		r, ok := tab.Rule("/tollgate.testpb.v1.TestService/" + m)
		if !ok {
			t.Fatalf("no rule for %s", m)
		}
		if err := r.Authorize(forged); !errors.Is(err, ErrNoSession) {
			t.Errorf("%s: Authorize(&session.Session{}) = %v, want ErrNoSession", m, err)
		}
	}
	upd, _ := tab.Rule("/tollgate.testpb.v1.TestService/Update")
	for _, req := range []*testpb.UpdateRequest{{}, {Owner: &testpb.Owner{}}, {Owner: &testpb.Owner{Id: "o-1"}}} {
		if err := upd.CheckMessage(forged, req); !errors.Is(err, ErrNoSession) {
			t.Errorf("CheckMessage(&session.Session{}, %v) = %v, want ErrNoSession", req, err)
		}
	}

	ctx := session.NewContext(context.Background(), forged)
	if s, ok := session.FromContext(ctx); ok || s != nil {
		t.Errorf("FromContext(forged) = %v, %v; want none", s, ok)
	}
	for _, p := range []string{"test.read", "test.write", "", "*", "test.*"} {
		if err := Require(ctx, p); !errors.Is(err, ErrNoSession) {
			t.Errorf("Require(forged, %q) = %v, want ErrNoSession", p, err)
		}
	}
	if err := tab.Check(ctx, "/tollgate.testpb.v1.TestService/Update", &testpb.UpdateRequest{Owner: &testpb.Owner{}}); !errors.Is(err, ErrNoSession) {
		t.Errorf("Check(forged, Update) = %v, want ErrNoSession", err)
	}
}
