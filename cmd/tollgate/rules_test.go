package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/loopback"
	"github.com/tollgate/tollgate/internal/testpb"
	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
	"github.com/tollgate/tollgate/token"
)

// writeSet writes the files, as a binary FileDescriptorSet, to a temporary
// file and returns its path.
func writeSet(t *testing.T, files ...*descriptorpb.FileDescriptorProto) string {
	t.Helper()
	data, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileProto(fd protoreflect.FileDescriptor) *descriptorpb.FileDescriptorProto {
	return protodesc.ToFileDescriptorProto(fd)
}

// testpbSet is what protoc --include_imports writes for test.proto.
func testpbSet(t *testing.T) string {
	return writeSet(t,
		fileProto(descriptorpb.File_google_protobuf_descriptor_proto),
		fileProto(durationpb.File_google_protobuf_duration_proto),
		fileProto(tollgatev1.File_tollgate_v1_options_proto),
		fileProto(testpb.File_tollgate_testpb_v1_test_proto))
}

func rulesJSON(t *testing.T, args ...string) []ruleRow {
	t.Helper()
	r := runCLI(t, append([]string{"rules", "-format", "json"}, args...)...)
	mustSucceed(t, r)
	var rows []ruleRow
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("rules -format json printed what does not decode: %v\n%s", err, r.stdout)
	}
	return rows
}

func rowOf(t *testing.T, rows []ruleRow, method string) ruleRow {
	t.Helper()
	for _, r := range rows {
		if r.Method == method {
			return r
		}
	}
	t.Fatalf("no row for %s", method)
	return ruleRow{}
}

const testSvc = "/tollgate.testpb.v1.TestService/"

// checkTestpbRows checks the rows of test.proto's rules: read from the
// options, not lost as unknown fields.
func checkTestpbRows(t *testing.T, rows []ruleRow) {
	t.Helper()
	get := rowOf(t, rows, testSvc+"Get")
	if !get.HasRule || get.Public || !slices.Equal(get.Permissions, []string{"test.read"}) || get.Kind != "unary" || get.TokenField != "access_token" {
		t.Errorf("Get: %+v; want the service rule test.read, unary, token field access_token", get)
	}
	upd := rowOf(t, rows, testSvc+"Update")
	if len(upd.Ownership) != 1 || upd.Ownership[0].Field != "owner.id" || upd.Ownership[0].Claim != "owner_id" ||
		!slices.Equal(upd.Ownership[0].BypassPermissions, []string{"test.admin"}) || !slices.Equal(upd.Permissions, []string{"test.write"}) {
		t.Errorf("Update: %+v", upd)
	}
	either := rowOf(t, rows, testSvc+"Either")
	if !slices.Equal(either.AnyPermissions, []string{"test.alpha", "test.beta"}) || !slices.Equal(either.Permissions, []string{"test.read"}) {
		t.Errorf("Either: %+v", either)
	}
	if p := rowOf(t, rows, testSvc+"Ping"); !p.Public || !p.HasRule {
		t.Errorf("Ping: %+v; want public", p)
	}
	kinds := map[string]string{"List": "server_stream", "Upload": "client_stream", "Chat": "bidi_stream"}
	for m, k := range kinds {
		if got := rowOf(t, rows, testSvc+m).Kind; got != k {
			t.Errorf("%s kind %q, want %q", m, got, k)
		}
	}
	for _, m := range []string{"Forgotten", "ForgottenStream"} {
		if r := rowOf(t, rows, "/tollgate.testpb.v1.UnruledService/"+m); r.HasRule || r.Public {
			t.Errorf("%s: %+v; want no rule", m, r)
		}
	}
}

func TestRulesDescriptorSet(t *testing.T) {
	rows := rulesJSON(t, "-descriptor-set", testpbSet(t))
	checkTestpbRows(t, rows)
	if len(rows) != 10 {
		t.Errorf("%d rows, want the 10 methods of test.proto", len(rows))
	}
	for i := 1; i < len(rows); i++ {
		if rows[i-1].Method >= rows[i].Method {
			t.Errorf("rows not sorted: %s before %s", rows[i-1].Method, rows[i].Method)
		}
	}
	only := rulesJSON(t, "-descriptor-set", testpbSet(t), "-services", "tollgate.testpb.v1.UnruledService")
	if len(only) != 2 {
		t.Errorf("-services: %d rows, want UnruledService's 2", len(only))
	}
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", testpbSet(t), "-services", "no.such.Svc"), "no service")
}

// The JSON schema: an array of objects with exactly these members, lists
// never null.
func TestRulesJSONSchema(t *testing.T) {
	r := runCLI(t, "rules", "-format", "json", "-descriptor-set", testpbSet(t))
	mustSucceed(t, r)
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatal(err)
	}
	want := []string{"any_permissions", "has_rule", "kind", "max_streams", "method", "no_renewal", "ownership", "permissions", "public", "throttle", "token_field"}
	for _, row := range rows {
		var keys []string
		for k := range row {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Fatalf("row members %v, want %v", keys, want)
		}
		for _, k := range []string{"permissions", "any_permissions", "ownership"} {
			if _, ok := row[k].([]any); !ok {
				t.Errorf("%s: %s is %T, want an array", row["method"], k, row[k])
			}
		}
	}
}

// Without --include_imports the set holds test.proto alone: the options and
// the well-known files come from the binary. An import it does not link is
// named.
func TestRulesWithoutImports(t *testing.T) {
	checkTestpbRows(t, rulesJSON(t, "-descriptor-set", writeSet(t, fileProto(testpb.File_tollgate_testpb_v1_test_proto))))

	fdp := fileProto(testpb.File_tollgate_testpb_v1_test_proto)
	fdp.Dependency = append(fdp.Dependency, "acme/common/v1/common.proto")
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", writeSet(t, fdp)), "acme/common/v1/common.proto, which is not in the descriptor set: build it with its imports")
}

func TestRulesFormats(t *testing.T) {
	set := testpbSet(t)
	r := runCLI(t, "rules", "-descriptor-set", set)
	mustSucceed(t, r)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "METHOD") {
		t.Fatalf("table: %d lines, want a header and 10 rows:\n%s", len(lines), r.stdout)
	}
	for _, want := range []string{
		"/tollgate.testpb.v1.TestService/Update", "all of test.write", "owner.id = claim owner_id (bypass: test.admin)",
		"any of test.alpha | test.beta", "bidi stream", "client stream", "server stream", "DENIED (no rule)", "public",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	m := runCLI(t, "rules", "-descriptor-set", set, "-format", "markdown")
	mustSucceed(t, m)
	if !strings.HasPrefix(m.stdout, "| Method | Kind | Access | Permissions | Ownership | Throttle | Renewal |\n| --- |") ||
		!strings.Contains(m.stdout, `any of test.alpha \| test.beta`) || strings.Count(m.stdout, "\n") != 12 {
		t.Errorf("markdown:\n%s", m.stdout)
	}
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", set, "-format", "yaml"), "-format")
	mustFailUsage(t, runCLI(t, "rules"), "exactly one of")
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", set, "-addr", "127.0.0.1:1"), "exactly one of")
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", set, "-token", "x"), "-token applies only with -addr")
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", filepath.Join(t.TempDir(), "none")), "-descriptor-set")
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("\xff\xff\xff"), 0o644)
	mustFailUsage(t, runCLI(t, "rules", "-descriptor-set", junk), "not a binary FileDescriptorSet")
}

// -require-all fails naming every method without a rule, and only those.
func TestRulesRequireAll(t *testing.T) {
	r := runCLI(t, "rules", "-require-all", "-descriptor-set", testpbSet(t))
	if r.code != exitFail || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", r.code, r.stdout)
	}
	for _, m := range []string{"/tollgate.testpb.v1.UnruledService/Forgotten: no rule", "/tollgate.testpb.v1.UnruledService/ForgottenStream: no rule"} {
		if !strings.Contains(r.stderr, m) {
			t.Errorf("stderr does not name %s:\n%s", m, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "TestService") {
		t.Errorf("stderr names ruled methods:\n%s", r.stderr)
	}
	ok := runCLI(t, "rules", "-require-all", "-descriptor-set", testpbSet(t), "-services", "tollgate.testpb.v1.TestService")
	mustSucceed(t, ok)
}

// badFile declares bad.v1.Svc: methods with an unknown ownership field, an
// empty permission, a zero-rate throttle, and one with no rule.
func badFile() *descriptorpb.FileDescriptorProto {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	method := func(name string, r *tollgatev1.Rule) *descriptorpb.MethodDescriptorProto {
		m := &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".bad.v1.Req"), OutputType: proto.String(".bad.v1.Req")}
		if r != nil {
			m.Options = &descriptorpb.MethodOptions{}
			proto.SetExtension(m.Options, tollgatev1.E_Method, r)
		}
		return m
	}
	return &descriptorpb.FileDescriptorProto{
		Name: proto.String("bad/v1/bad.proto"), Package: proto.String("bad.v1"), Syntax: proto.String("proto3"),
		Dependency: []string{"tollgate/v1/options.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("seller_id"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("sellerId")},
		}}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Svc"), Method: []*descriptorpb.MethodDescriptorProto{
			method("BadOwner", &tollgatev1.Rule{Permissions: []string{"x.write"}, Ownership: []*tollgatev1.Ownership{{Field: "owner_id", Claim: "seller_id"}}}),
			method("EmptyPerm", &tollgatev1.Rule{Permissions: []string{""}}),
			method("ZeroRate", &tollgatev1.Rule{Throttle: &tollgatev1.Throttle{Rate: 0, Per: durationpb.New(time.Second), Burst: 1}}),
			method("Good", &tollgatev1.Rule{Permissions: []string{"x.read"}}),
			method("NoRule", nil),
		}}},
	}
}

// guardInitError is what Guard.Init says of a server serving bad.v1.Svc.
func guardInitError(t *testing.T, fdp *descriptorpb.FileDescriptorProto, lenient bool) error {
	t.Helper()
	files := new(protoregistry.Files)
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	key, err := token.NewHMACKey("", token.HS256, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := token.NewKeySet(key)
	v, err := token.NewVerifier(ks, "i", "a")
	if err != nil {
		t.Fatal(err)
	}
	opts := []interceptors.Option{interceptors.WithRegistry(files, new(protoregistry.Types))}
	if lenient {
		opts = append(opts, interceptors.WithLenientInit())
	}
	g, err := interceptors.NewGuard(v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	defer srv.Stop()
	desc := grpc.ServiceDesc{ServiceName: "bad.v1.Svc", HandlerType: (*any)(nil)}
	for _, m := range fdp.GetService()[0].GetMethod() {
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: m.GetName(), Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
			return nil, errors.New("not served")
		}})
	}
	srv.RegisterService(&desc, struct{}{})
	return g.Init(srv)
}

// Invalid rules fail with the very lines Guard.Init gives, lenient or not.
func TestRulesInvalidLikeGuardInit(t *testing.T) {
	set := writeSet(t, badFile())
	for _, strict := range []bool{false, true} {
		args := []string{"rules", "-descriptor-set", set}
		if strict {
			args = append(args, "-require-all")
		}
		r := runCLI(t, args...)
		if r.code != exitFail || r.stdout != "" {
			t.Fatalf("strict %v: exit %d, stdout %q; want 1 and nothing", strict, r.code, r.stdout)
		}
		initErr := guardInitError(t, badFile(), !strict)
		if initErr == nil {
			t.Fatal("Guard.Init accepted the invalid rules")
		}
		var want []string
		for line := range strings.SplitSeq(initErr.Error(), "\n") {
			want = append(want, "tollgate: rules: "+line)
		}
		got := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		if !slices.Equal(got, want) {
			t.Errorf("strict %v: stderr\n%s\nwant Guard.Init's lines\n%s", strict, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, w := range []string{"BadOwner: ownership[0]: field \"owner_id\": bad.v1.Req has no field \"owner_id\"", "EmptyPerm: permissions: empty permission", "ZeroRate: throttle: rate must be at least 1"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("strict %v: stderr lacks %q", strict, w)
			}
		}
		if strings.Contains(r.stderr, "NoRule") != strict {
			t.Errorf("strict %v: NoRule named: %v", strict, !strict)
		}
	}
}

// liveServer serves test.proto's services, health and reflection behind a
// guard over loopback TCP, verifying tokens of key (iss "auth", aud
// "orders") at fixedNow. It returns the address.
func liveServer(t *testing.T, keyPath string) string {
	t.Helper()
	key, err := token.LoadKeyFile(keyPath, "", "HS256")
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := token.NewKeySet(key)
	v, err := token.NewVerifier(ks, "auth", "orders", token.WithClock(func() time.Time { return fixedNow }))
	if err != nil {
		t.Fatal(err)
	}
	g, err := interceptors.NewGuard(v, interceptors.WithLenientInit())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close) // after the server's stop, registered below
	srv := grpc.NewServer(g.ServerOptions()...)
	testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
	testpb.RegisterUnruledServiceServer(srv, testpb.UnimplementedUnruledServiceServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	if err := g.Init(srv); err != nil {
		t.Fatal(err)
	}
	return loopback.ServeAddr(t, srv)
}

// Against a live server: reflection lets an authenticated caller through,
// and the rules it serves are the ones the guard enforces.
func TestRulesReflection(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	addr := liveServer(t, priv)
	tok := mint(t, priv, "HS256", "-perms", "")
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	rows := rulesJSON(t, "-addr", addr, "-token-file", tokFile)
	checkTestpbRows(t, rows)
	if h := rowOf(t, rows, "/grpc.health.v1.Health/Check"); !h.HasRule || !h.Public {
		t.Errorf("health: %+v; want public by the guard's default", h)
	}
	for _, m := range []string{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} {
		if r := rowOf(t, rows, m); !r.HasRule || r.Public || len(r.Permissions) != 0 || r.Kind != "bidi_stream" {
			t.Errorf("%s: %+v; want a valid token, no permission", m, r)
		}
	}

	// The token as a flag, and from standard input.
	checkTestpbRows(t, rulesJSON(t, "-addr", addr, "-token", tok))
	r := runAt(t, fixedNow, tok, "rules", "-format", "json", "-addr", addr, "-token-file", "-")
	mustSucceed(t, r)

	// -require-all against the server names its unruled methods.
	r = runCLI(t, "rules", "-addr", addr, "-token-file", tokFile, "-require-all")
	if r.code != exitFail || !strings.Contains(r.stderr, "/tollgate.testpb.v1.UnruledService/Forgotten: no rule") {
		t.Errorf("-require-all: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, "rules", "-addr", addr, "-token-file", tokFile, "-require-all", "-services", "tollgate.testpb.v1.TestService,grpc.health.v1.Health")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "/grpc.health.v1.Health/Watch") || strings.Contains(r.stdout, "Unruled") {
		t.Errorf("-services against a server:\n%s", r.stdout)
	}
}

// Without a token, or with a forged one, the guard refuses reflection; the
// token never appears in the output.
func TestRulesReflectionRefused(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	addr := liveServer(t, priv)
	r := runCLI(t, "rules", "-addr", addr)
	if r.code != exitFail || r.stdout != "" || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("no token: exit %d, stdout %q, stderr %q; want 1 and Unauthenticated", r.code, r.stdout, r.stderr)
	}
	other, _ := newKey(t, "HS256")
	forged := mint(t, other, "HS256")
	r = runCLI(t, "rules", "-addr", addr, "-token", forged)
	if r.code != exitFail || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("forged token: exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, forged[strings.LastIndex(forged, ".")+1:]) {
		t.Errorf("the token leaked into stderr: %q", r.stderr)
	}
	checkOneLine(t, r.stderr, "Unauthenticated")
}

// Loopback defaults to plaintext, anything else to TLS; -insecure and
// -tls / -ca override, and contradict each other.
func TestRulesTransportChoice(t *testing.T) {
	for _, tt := range []struct {
		c    dialConfig
		want string
	}{
		{dialConfig{addr: "127.0.0.1:1"}, "insecure"},
		{dialConfig{addr: "[::1]:1"}, "insecure"},
		{dialConfig{addr: "localhost:1"}, "insecure"},
		{dialConfig{addr: "pricing.internal:443"}, "tls"},
		{dialConfig{addr: "10.0.0.1:443"}, "tls"},
		{dialConfig{addr: "127.0.0.1:1", useTLS: true}, "tls"},
		{dialConfig{addr: "10.0.0.1:443", insecure: true}, "insecure"},
	} {
		creds, err := tt.c.transport()
		if err != nil {
			t.Fatalf("%+v: %v", tt.c, err)
		}
		if got := creds.Info().SecurityProtocol; got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.c, got, tt.want)
		}
	}
	if _, err := (dialConfig{addr: "127.0.0.1:1", insecure: true, useTLS: true}).transport(); err == nil {
		t.Error("-insecure with -tls accepted")
	}
	mustFailUsage(t, runCLI(t, "rules", "-addr", "127.0.0.1:1", "-insecure", "-ca", "x"), "contradicts")
	mustFailUsage(t, runCLI(t, "rules", "-addr", "nohostport"), "HOST:PORT")
}
