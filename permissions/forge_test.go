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
// the zero one, and it is refused wherever a permission or an ownership
// claim is asked for: it holds nothing, not even through a wildcard or an
// empty owner field.
func TestForgedSessionHoldsNothing(t *testing.T) {
	tab := testTable(t)
	forged := &session.Session{}
	for _, m := range []string{"Get", "GetAll", "Either", "Update"} {
		r, ok := tab.Rule("/tollgate.testpb.v1.TestService/" + m)
		if !ok {
			t.Fatalf("no rule for %s", m)
		}
		var d *DeniedError
		if err := r.Authorize(forged); !errors.As(err, &d) || d.Reason != ReasonPermissionDenied {
			t.Errorf("%s: Authorize(&session.Session{}) = %v, want a permission denial", m, err)
		}
	}
	upd, _ := tab.Rule("/tollgate.testpb.v1.TestService/Update")
	for _, req := range []*testpb.UpdateRequest{{}, {Owner: &testpb.Owner{}}, {Owner: &testpb.Owner{Id: "o-1"}}} {
		deniedAs(t, upd.CheckMessage(forged, req), ReasonNotOwner, "", "owner.id")
	}

	ctx := session.NewContext(context.Background(), forged)
	for _, p := range []string{"test.read", "test.write", "", "*", "test.*"} {
		if err := Require(ctx, p); !errors.Is(err, ErrDenied) {
			t.Errorf("Require(forged, %q) = %v, want denied", p, err)
		}
	}
	if err := tab.Check(ctx, "/tollgate.testpb.v1.TestService/Update", &testpb.UpdateRequest{Owner: &testpb.Owner{}}); !errors.Is(err, ErrDenied) {
		t.Errorf("Check(forged, Update) = %v, want denied", err)
	}

}
