package permissions

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

var testNow = time.Unix(1_800_000_000, 0)

// newSession mints and verifies a token, the only way to get a Session.
func newSession(t testing.TB, perms []string, extra map[string]any) *session.Session {
	t.Helper()
	key, err := token.NewHMACKey("k1", token.HS256, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := token.NewKeySet(key)
	signer, _ := token.NewSigner(key)
	v, err := token.NewVerifier(ks, "iss", "aud", token.WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Sign(token.Claims{
		Issuer: "iss", Subject: "svc-a", Audience: []string{"aud"},
		IssuedAt: testNow, ExpiresAt: testNow.Add(10 * time.Minute),
		Permissions: perms, Extra: extra,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testTable(t *testing.T) *Table {
	t.Helper()
	f := testpb.File_tollgate_testpb_v1_test_proto
	tab, err := Compile([]protoreflect.ServiceDescriptor{f.Services().ByName("TestService"), f.Services().ByName("UnruledService")})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func deniedAs(t *testing.T, err error, reason, perm, field string) {
	t.Helper()
	var d *DeniedError
	if !errors.As(err, &d) || !errors.Is(err, ErrDenied) {
		t.Fatalf("want a DeniedError, got %v", err)
	}
	if d.Reason != reason || d.Permission != perm || d.Field != field {
		t.Fatalf("got %+v, want reason %s permission %q field %q", d, reason, perm, field)
	}
}

func TestAuthorize(t *testing.T) {
	tab := testTable(t)
	get, _ := tab.Rule("/tollgate.testpb.v1.TestService/Get")
	getAll, _ := tab.Rule("/tollgate.testpb.v1.TestService/GetAll")
	either, _ := tab.Rule("/tollgate.testpb.v1.TestService/Either")
	ping, _ := tab.Rule("/tollgate.testpb.v1.TestService/Ping")

	if err := get.Authorize(newSession(t, []string{"test.read"}, nil)); err != nil {
		t.Errorf("exact grant: %v", err)
	}
	if err := get.Authorize(newSession(t, []string{"test.*"}, nil)); err != nil {
		t.Errorf("wildcard grant: %v", err)
	}
	deniedAs(t, get.Authorize(newSession(t, nil, nil)), ReasonPermissionDenied, "test.read", "")
	deniedAs(t, get.Authorize(newSession(t, []string{"test"}, nil)), ReasonPermissionDenied, "test.read", "")
	deniedAs(t, get.Authorize(newSession(t, []string{"*"}, nil)), ReasonPermissionDenied, "test.read", "")
	deniedAs(t, get.Authorize(newSession(t, []string{"tes.*", "test.read.x", "TEST.READ"}, nil)), ReasonPermissionDenied, "test.read", "")
	// Case 26: a grant for Get does not reach GetAll.
	deniedAs(t, getAll.Authorize(newSession(t, []string{"test.read"}, nil)), ReasonPermissionDenied, "test.read_all", "")

	// Either: test.read (all-of, inherited) and one of alpha/beta.
	deniedAs(t, either.Authorize(newSession(t, []string{"test.alpha"}, nil)), ReasonPermissionDenied, "test.read", "")
	err := either.Authorize(newSession(t, []string{"test.read"}, nil))
	deniedAs(t, err, ReasonPermissionDenied, "test.alpha,test.beta", "")
	var d *DeniedError
	if errors.As(err, &d); !d.AnyOf {
		t.Error("any-of denial must say so")
	}
	for _, p := range []string{"test.alpha", "test.beta"} {
		if err := either.Authorize(newSession(t, []string{"test.read", p}, nil)); err != nil {
			t.Errorf("with %s: %v", p, err)
		}
	}

	if err := ping.Authorize(nil); err != nil {
		t.Errorf("public rule must admit a nil session: %v", err)
	}
	if err := get.Authorize(nil); !errors.Is(err, ErrNoSession) {
		t.Errorf("nil session on a protected rule: %v", err)
	}
}

func TestCheckMessageOwnership(t *testing.T) {
	tab := testTable(t)
	upd, _ := tab.Rule("/tollgate.testpb.v1.TestService/Update")
	owner := newSession(t, []string{"test.write"}, map[string]any{"owner_id": "o-1"})
	stranger := newSession(t, []string{"test.write"}, map[string]any{"owner_id": "o-2"})
	admin := newSession(t, []string{"test.write", "test.admin"}, map[string]any{"owner_id": "o-2"})
	noClaim := newSession(t, []string{"test.write"}, nil)
	emptyClaim := newSession(t, []string{"test.write"}, map[string]any{"owner_id": ""})
	numClaim := newSession(t, []string{"test.write"}, map[string]any{"owner_id": 7})

	mine := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o-1"}, Id: "x"}
	cases := []struct {
		name  string
		sess  *session.Session
		req   proto.Message
		allow bool
	}{
		{"owner", owner, mine, true},
		{"stranger", stranger, mine, false},
		{"bypass permission", admin, mine, true},
		{"claim missing", noClaim, mine, false},
		{"claim empty", emptyClaim, &testpb.UpdateRequest{Owner: &testpb.Owner{Id: ""}}, false},
		{"owner message unset", owner, &testpb.UpdateRequest{Id: "x"}, false},
		{"owner id empty", owner, &testpb.UpdateRequest{Owner: &testpb.Owner{}}, false},
		{"number claim compared as text", numClaim, &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "7"}}, true},
		{"case differs", owner, &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "O-1"}}, false},
		{"nil request", owner, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := upd.CheckMessage(tc.sess, tc.req)
			if tc.allow {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			deniedAs(t, err, ReasonNotOwner, "", "owner.id")
		})
	}
	// Allow = Authorize then CheckMessage.
	deniedAs(t, upd.Allow(newSession(t, nil, map[string]any{"owner_id": "o-1"}), mine), ReasonPermissionDenied, "test.write", "")
	if err := upd.Allow(owner, mine); err != nil {
		t.Errorf("Allow: %v", err)
	}
}

func TestRequireAndTableCheck(t *testing.T) {
	tab := testTable(t)
	sess := newSession(t, []string{"test.read", "test.write"}, map[string]any{"owner_id": "o-1"})
	ctx := session.NewContext(context.Background(), sess)

	if err := Require(ctx, "test.read", "test.write"); err != nil {
		t.Errorf("Require: %v", err)
	}
	deniedAs(t, Require(ctx, "test.read", "test.admin"), ReasonPermissionDenied, "test.admin", "")
	if err := Require(context.Background(), "test.read"); !errors.Is(err, ErrNoSession) {
		t.Errorf("Require without a session: %v", err)
	}

	// A worker runs the same rule the RPC runs.
	const upd = "/tollgate.testpb.v1.TestService/Update"
	if err := tab.Check(ctx, upd, &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o-1"}}); err != nil {
		t.Errorf("Check own: %v", err)
	}
	deniedAs(t, tab.Check(ctx, upd, &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o-9"}}), ReasonNotOwner, "", "owner.id")
	if err := tab.Check(context.Background(), upd, &testpb.UpdateRequest{}); !errors.Is(err, ErrNoSession) {
		t.Errorf("Check without a session: %v", err)
	}
	if err := tab.Check(context.Background(), "/tollgate.testpb.v1.TestService/Ping", &testpb.PingRequest{}); err != nil {
		t.Errorf("public method: %v", err)
	}
	err := tab.Check(ctx, "/tollgate.testpb.v1.UnruledService/Forgotten", &testpb.ForgottenRequest{})
	var d *DeniedError
	if !errors.As(err, &d) || !d.NoRule {
		t.Errorf("a method with no rule must be denied: %v", err)
	}
}

func BenchmarkAllowWithOwnership(b *testing.B) {
	f := testpb.File_tollgate_testpb_v1_test_proto
	tab, _ := Compile([]protoreflect.ServiceDescriptor{f.Services().ByName("TestService")})
	upd, _ := tab.Rule("/tollgate.testpb.v1.TestService/Update")
	sess := newSession(b, []string{"test.write"}, map[string]any{"owner_id": "o-1"})
	req := &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o-1"}}
	b.ReportAllocs()
	for b.Loop() {
		if err := upd.Allow(sess, req); err != nil {
			b.Fatal(err)
		}
	}
}
