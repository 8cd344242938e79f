package permissions

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate/tollgate/internal/testpb"
	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
)

// method describes one method of a service built for a test.
type method struct {
	name string
	rule *tollgatev1.Rule // nil: no method option
}

// buildService returns the descriptor of service "t.v1.Svc" whose methods all
// take t.v1.Req {string id = 1; Owner owner = 2; repeated string tags = 3;
// double score = 4; int64 num = 5; string tok = 6 [token]} and whose service
// option is svcRule (nil: none).
func buildService(t *testing.T, svcRule *tollgatev1.Rule, methods ...method) protoreflect.ServiceDescriptor {
	t.Helper()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	tokOpts := &descriptorpb.FieldOptions{}
	proto.SetExtension(tokOpts, tollgatev1.E_Field, &tollgatev1.Field{Token: true})
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("t/v1/t.proto"),
		Package:    proto.String("t.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"tollgate/v1/options.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Owner"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("id"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("id")},
			}},
			{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("id"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("id")},
				{Name: proto.String("owner"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".t.v1.Owner"), Label: opt, JsonName: proto.String("owner")},
				{Name: proto.String("tags"), Number: proto.Int32(3), Type: str, Label: rep, JsonName: proto.String("tags")},
				{Name: proto.String("score"), Number: proto.Int32(4), Type: descriptorpb.FieldDescriptorProto_TYPE_DOUBLE.Enum(), Label: opt, JsonName: proto.String("score")},
				{Name: proto.String("num"), Number: proto.Int32(5), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(), Label: opt, JsonName: proto.String("num")},
				{Name: proto.String("tok"), Number: proto.Int32(6), Type: str, Label: opt, JsonName: proto.String("tok"), Options: tokOpts},
			}},
		},
	}
	svc := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Svc")}
	if svcRule != nil {
		svc.Options = &descriptorpb.ServiceOptions{}
		proto.SetExtension(svc.Options, tollgatev1.E_Service, svcRule)
	}
	for _, m := range methods {
		mp := &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(m.name),
			InputType:  proto.String(".t.v1.Req"),
			OutputType: proto.String(".t.v1.Owner"),
		}
		if m.rule != nil {
			mp.Options = &descriptorpb.MethodOptions{}
			proto.SetExtension(mp.Options, tollgatev1.E_Method, m.rule)
		}
		svc.Method = append(svc.Method, mp)
	}
	fdp.Service = []*descriptorpb.ServiceDescriptorProto{svc}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(tollgatev1.File_tollgate_v1_options_proto); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(fdp, files)
	if err != nil {
		t.Fatalf("building test descriptor: %v", err)
	}
	return fd.Services().Get(0)
}

func TestCompileTestService(t *testing.T) {
	sd := testpb.File_tollgate_testpb_v1_test_proto.Services().ByName("TestService")
	unruled := testpb.File_tollgate_testpb_v1_test_proto.Services().ByName("UnruledService")
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd, unruled})
	if err != nil {
		t.Fatal(err)
	}
	get, ok := tab.Rule("/tollgate.testpb.v1.TestService/Get")
	if !ok || get.Public() || strings.Join(get.Permissions(), ",") != "test.read" {
		t.Fatalf("Get should inherit the service rule test.read, got %v", get)
	}
	if get.TokenField() == nil || get.TokenField().Name() != "access_token" {
		t.Errorf("Get's token field not found")
	}
	if get.InputType() == nil || get.InputType().Descriptor().FullName() != "tollgate.testpb.v1.GetRequest" {
		t.Errorf("Get's input type not resolved")
	}
	if _, isGenerated := get.InputType().New().Interface().(*testpb.GetRequest); !isGenerated {
		t.Errorf("input type should be the generated type, got %T", get.InputType().New().Interface())
	}
	ping, _ := tab.Rule("/tollgate.testpb.v1.TestService/Ping")
	if !ping.Public() {
		t.Errorf("Ping should be public")
	}
	either, _ := tab.Rule("/tollgate.testpb.v1.TestService/Either")
	if strings.Join(either.Permissions(), ",") != "test.read" || strings.Join(either.AnyPermissions(), ",") != "test.alpha,test.beta" {
		t.Errorf("Either should keep test.read from the service and add any-of: %v", either)
	}
	upd, _ := tab.Rule("/tollgate.testpb.v1.TestService/Update")
	if !upd.HasOwnership() || strings.Join(upd.Permissions(), ",") != "test.write" {
		t.Errorf("Update: %v", upd)
	}
	for _, m := range []string{"/tollgate.testpb.v1.UnruledService/Forgotten", "/tollgate.testpb.v1.UnruledService/ForgottenStream"} {
		if _, ok := tab.Rule(m); ok {
			t.Errorf("%s has no rule and must be absent from the table", m)
		}
	}
	// Exact matching only: no prefix, no case folding.
	for _, m := range []string{"/tollgate.testpb.v1.TestService/get", "/tollgate.testpb.v1.TestService/Ge", "/tollgate.testpb.v1.TestService/GetX", "tollgate.testpb.v1.TestService/Get"} {
		if _, ok := tab.Rule(m); ok {
			t.Errorf("%q must not match", m)
		}
	}
}

func TestCompileStrict(t *testing.T) {
	sd := testpb.File_tollgate_testpb_v1_test_proto.Services().ByName("UnruledService")
	_, err := Compile([]protoreflect.ServiceDescriptor{sd}, Strict())
	if err == nil || !errors.Is(err, ErrCompile) {
		t.Fatalf("strict compile of an unruled service must fail, got %v", err)
	}
	for _, m := range []string{"/tollgate.testpb.v1.UnruledService/Forgotten", "/tollgate.testpb.v1.UnruledService/ForgottenStream"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error should name %s: %v", m, err)
		}
	}
	_, err = Compile(nil, Strict(), WithUnresolved("/x.Y/Z"))
	if err == nil || !strings.Contains(err.Error(), "/x.Y/Z") {
		t.Errorf("strict compile must name unresolved methods, got %v", err)
	}
	tab, err := Compile(nil, Strict(), WithUnresolved("/x.Y/Z"), WithPublicMethods("/x.Y/Z"))
	if err != nil {
		t.Fatalf("an unresolved public method is fine: %v", err)
	}
	if r, ok := tab.Rule("/x.Y/Z"); !ok || !r.Public() {
		t.Errorf("/x.Y/Z should be public")
	}
}

func TestMergeFieldByField(t *testing.T) {
	svcRule := &tollgatev1.Rule{
		Permissions:    []string{"svc.read"},
		AnyPermissions: []string{"svc.a", "svc.b"},
		Throttle:       &tollgatev1.Throttle{Rate: 10, Per: durationpb.New(time.Second), Burst: 10},
		NoRenewal:      proto.Bool(true),
	}
	sd := buildService(t, svcRule,
		method{name: "Inherit"},
		method{name: "Perms", rule: &tollgatev1.Rule{Permissions: []string{"m.write"}}},
		method{name: "Renew", rule: &tollgatev1.Rule{NoRenewal: proto.Bool(false)}},
		method{name: "Throttle", rule: &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Per: durationpb.New(time.Minute), Burst: 2, Bucket: "shared", Cost: 2}}},
	)
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := tab.Rule("/t.v1.Svc/Inherit")
	if got := strings.Join(r.Permissions(), ","); got != "svc.read" || !r.NoRenewal() {
		t.Errorf("Inherit: %v", r)
	}
	th, ok := r.Throttle()
	if !ok || th.Rate != 10 || th.Per != time.Second || th.Burst != 10 || th.Cost != 1 || th.Bucket != "/t.v1.Svc/Inherit" {
		t.Errorf("Inherit throttle: %+v (cost defaults to 1, bucket to the method)", th)
	}
	r, _ = tab.Rule("/t.v1.Svc/Perms")
	if got := strings.Join(r.Permissions(), ","); got != "m.write" {
		t.Errorf("method permissions must replace the service's: %q", got)
	}
	if got := strings.Join(r.AnyPermissions(), ","); got != "svc.a,svc.b" {
		t.Errorf("unset any_permissions must be inherited: %q", got)
	}
	r, _ = tab.Rule("/t.v1.Svc/Renew")
	if r.NoRenewal() {
		t.Errorf("an explicit no_renewal: false must override the service's true")
	}
	r, _ = tab.Rule("/t.v1.Svc/Throttle")
	th, _ = r.Throttle()
	if th.Rate != 1 || th.Per != time.Minute || th.Burst != 2 || th.Cost != 2 || th.Bucket != "shared" {
		t.Errorf("Throttle: %+v", th)
	}
}

// message_cost defaults to cost, an explicit 0 makes messages free, and
// max_streams is inherited from the service and replaced by the method.
func TestMessageCostAndMaxStreams(t *testing.T) {
	sec := durationpb.New(time.Second)
	sd := buildService(t, &tollgatev1.Rule{MaxStreams: proto.Uint32(7)},
		method{name: "Default", rule: &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 5, Per: sec, Burst: 10, Cost: 3}}},
		method{name: "Cheap", rule: &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 5, Per: sec, Burst: 10, Cost: 4, MessageCost: proto.Uint32(1)}}},
		method{name: "Free", rule: &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 5, Per: sec, Burst: 10, MessageCost: proto.Uint32(0)}}},
		method{name: "Bounded", rule: &tollgatev1.Rule{MaxStreams: proto.Uint32(2)}},
	)
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"Default": 3, "Cheap": 1, "Free": 0} {
		r, _ := tab.Rule("/t.v1.Svc/" + name)
		if th, _ := r.Throttle(); th.MessageCost != want {
			t.Errorf("%s: message cost %d, want %d", name, th.MessageCost, want)
		}
	}
	for name, want := range map[string]uint32{"Default": 7, "Bounded": 2} {
		r, _ := tab.Rule("/t.v1.Svc/" + name)
		if n, ok := r.MaxStreams(); !ok || n != want {
			t.Errorf("%s: max streams %d %v, want %d", name, n, ok, want)
		}
	}
	sd = buildService(t, nil, method{name: "Unset", rule: &tollgatev1.Rule{}})
	tab, err = Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := tab.Rule("/t.v1.Svc/Unset"); func() bool { _, ok := r.MaxStreams(); return ok }() {
		t.Error("a rule without max_streams must leave the guard's default")
	}
}

// Methods named by WithAuthenticatedMethods get the rule {} when they have
// none: a token, no permission; WithPublicMethods wins over it.
func TestAuthenticatedMethods(t *testing.T) {
	sd := buildService(t, nil, method{name: "Authn"}, method{name: "Both"}, method{name: "Ruled", rule: &tollgatev1.Rule{Permissions: []string{"x.read"}}})
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd}, Strict(),
		WithAuthenticatedMethods("/t.v1.Svc/Authn", "/t.v1.Svc/Both", "/t.v1.Svc/Ruled"),
		WithPublicMethods("/t.v1.Svc/Both"))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := tab.Rule("/t.v1.Svc/Authn")
	if !ok || r.Public() || len(r.Permissions()) != 0 {
		t.Errorf("Authn: %v %v, want an authenticated rule with no permission", r, ok)
	}
	if r, _ := tab.Rule("/t.v1.Svc/Both"); !r.Public() {
		t.Errorf("Both: %v, want public", r)
	}
	if r, _ := tab.Rule("/t.v1.Svc/Ruled"); len(r.Permissions()) != 1 {
		t.Errorf("Ruled: %v, its own rule must stay", r)
	}
}

func TestPublicServiceOverriddenByMethod(t *testing.T) {
	sd := buildService(t, &tollgatev1.Rule{Public: proto.Bool(true)},
		method{name: "Open"},
		method{name: "Closed", rule: &tollgatev1.Rule{Public: proto.Bool(false), Permissions: []string{"x.read"}}},
		method{name: "Conflict", rule: &tollgatev1.Rule{Permissions: []string{"x.read"}}},
	)
	_, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err == nil || !strings.Contains(err.Error(), "/t.v1.Svc/Conflict") || strings.Contains(err.Error(), "/t.v1.Svc/Closed") {
		t.Fatalf("a method adding permissions under a public service without public: false must fail, naming only it: %v", err)
	}
	sd = buildService(t, &tollgatev1.Rule{Public: proto.Bool(true)},
		method{name: "Open"},
		method{name: "Closed", rule: &tollgatev1.Rule{Public: proto.Bool(false), Permissions: []string{"x.read"}}},
	)
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := tab.Rule("/t.v1.Svc/Open"); !r.Public() {
		t.Error("Open should be public")
	}
	if r, _ := tab.Rule("/t.v1.Svc/Closed"); r.Public() {
		t.Error("Closed should not be public")
	}
}

func TestPublicMethodUnderProtectedService(t *testing.T) {
	sd := buildService(t, &tollgatev1.Rule{Permissions: []string{"svc.read"}, Ownership: []*tollgatev1.Ownership{{Field: "id", Claim: "c"}}},
		method{name: "Health", rule: &tollgatev1.Rule{Public: proto.Bool(true)}},
		method{name: "Read"},
	)
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := tab.Rule("/t.v1.Svc/Health")
	if !r.Public() || len(r.Permissions()) != 0 || r.HasOwnership() {
		t.Errorf("a method declaring public: true must not inherit requirements: %v", r)
	}
	r, _ = tab.Rule("/t.v1.Svc/Read")
	if r.Public() || len(r.Permissions()) != 1 || !r.HasOwnership() {
		t.Errorf("Read must inherit the service rule: %v", r)
	}
}

func TestCompileErrors(t *testing.T) {
	sec := durationpb.New(time.Second)
	cases := []struct {
		name string
		rule *tollgatev1.Rule
		want string
	}{
		{"empty permission", &tollgatev1.Rule{Permissions: []string{""}}, "empty permission"},
		{"empty any permission", &tollgatev1.Rule{AnyPermissions: []string{"a", ""}}, "empty permission"},
		{"wildcard permission", &tollgatev1.Rule{Permissions: []string{"prices.*"}}, "wildcards"},
		{"space in permission", &tollgatev1.Rule{Permissions: []string{"prices read"}}, "white space"},
		{"unknown ownership field", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "seller_id", Claim: "seller_id"}}}, `has no field "seller_id"`},
		{"unknown nested field", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "owner.name", Claim: "c"}}}, `has no field "name"`},
		{"path through a scalar", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "id.x", Claim: "c"}}}, "not a message"},
		{"path ends on a message", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "owner", Claim: "c"}}}, "not a string, integer, bool or enum"},
		{"repeated field", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "tags", Claim: "c"}}}, "repeated"},
		{"double field", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "score", Claim: "c"}}}, "not a string, integer, bool or enum"},
		{"empty claim", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "id"}}}, "empty claim"},
		{"empty path", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Claim: "c"}}}, "empty field path"},
		{"empty bypass", &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "id", Claim: "c", BypassPermissions: []string{""}}}}, "empty permission"},
		{"throttle rate 0", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Per: sec, Burst: 1}}, "rate must be at least 1"},
		{"throttle no period", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Burst: 1}}, "no period"},
		{"throttle zero period", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Per: durationpb.New(0), Burst: 1}}, "period must be positive"},
		{"throttle negative period", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Per: durationpb.New(-time.Second), Burst: 1}}, "period must be positive"},
		{"throttle burst 0", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Per: sec}}, "burst must be at least 1"},
		{"throttle cost above burst", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Per: sec, Burst: 2, Cost: 3}}, "cost 3 above burst 2"},
		{"message cost above burst", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 1, Per: sec, Burst: 2, MessageCost: proto.Uint32(3)}}, "message_cost 3 above burst 2"},
		{"max streams 0", &tollgatev1.Rule{MaxStreams: proto.Uint32(0)}, "max_streams must be at least 1"},
		{"public with permissions", &tollgatev1.Rule{Public: proto.Bool(true), Permissions: []string{"a"}}, "public rule cannot"},
		{"public with ownership", &tollgatev1.Rule{Public: proto.Bool(true), Ownership: []*tollgatev1.Ownership{{Field: "id", Claim: "c"}}}, "public rule cannot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sd := buildService(t, nil, method{name: "Good", rule: &tollgatev1.Rule{}}, method{name: "Bad", rule: tc.rule})
			_, err := Compile([]protoreflect.ServiceDescriptor{sd})
			if err == nil {
				t.Fatal("compile succeeded")
			}
			if !errors.Is(err, ErrCompile) {
				t.Errorf("error does not wrap ErrCompile: %v", err)
			}
			if !strings.Contains(err.Error(), "/t.v1.Svc/Bad") || strings.Contains(err.Error(), "/t.v1.Svc/Good") {
				t.Errorf("error must name the bad method only: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestCompileReportsEveryProblem(t *testing.T) {
	sd := buildService(t, nil,
		method{name: "A", rule: &tollgatev1.Rule{Permissions: []string{""}}},
		method{name: "B", rule: &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "nope", Claim: "c"}}}},
	)
	_, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err == nil || !strings.Contains(err.Error(), "/t.v1.Svc/A") || !strings.Contains(err.Error(), "/t.v1.Svc/B") {
		t.Fatalf("both problems must be reported: %v", err)
	}
}

func TestCompileNumericOwnershipAndDynamicInput(t *testing.T) {
	sd := buildService(t, nil, method{name: "Num", rule: &tollgatev1.Rule{Ownership: []*tollgatev1.Ownership{{Field: "num", Claim: "account"}}}})
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := tab.Rule("/t.v1.Svc/Num")
	if r.InputType() == nil || r.InputType().Descriptor().FullName() != "t.v1.Req" {
		t.Fatalf("a type absent from the registry gets a dynamic type")
	}
	if r.TokenField() == nil || r.TokenField().Name() != "tok" {
		t.Errorf("token field of a dynamic descriptor not found")
	}
}

func TestRuleOwnershipAccessor(t *testing.T) {
	sd := testpb.File_tollgate_testpb_v1_test_proto.Services().ByName("TestService")
	tab, err := Compile([]protoreflect.ServiceDescriptor{sd})
	if err != nil {
		t.Fatal(err)
	}
	upd, _ := tab.Rule("/tollgate.testpb.v1.TestService/Update")
	got := upd.Ownership()
	want := []Ownership{{Field: "owner.id", Claim: "owner_id", BypassPermissions: []string{"test.admin"}}}
	if len(got) != 1 || got[0].Field != want[0].Field || got[0].Claim != want[0].Claim ||
		strings.Join(got[0].BypassPermissions, ",") != "test.admin" {
		t.Fatalf("Update's ownership = %+v, want %+v", got, want)
	}
	// A copy: changing it leaves the rule as compiled.
	got[0].Field = "id"
	got[0].BypassPermissions[0] = "nobody"
	again := upd.Ownership()
	if again[0].Field != "owner.id" || again[0].BypassPermissions[0] != "test.admin" {
		t.Fatalf("Ownership returned the rule's own storage: now %+v", again)
	}
	get, _ := tab.Rule("/tollgate.testpb.v1.TestService/Get")
	if o := get.Ownership(); o != nil {
		t.Errorf("Get checks no field, Ownership = %+v", o)
	}
}
