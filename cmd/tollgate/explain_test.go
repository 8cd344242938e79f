package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
)

// throttledFile declares thr.v1.Svc/Limited: x.read, 5 a second, burst 10,
// bucket "writes".
func throttledFile() *descriptorpb.FileDescriptorProto {
	fdp := badFile()
	fdp.Name, fdp.Package = proto.String("thr/v1/thr.proto"), proto.String("thr.v1")
	fdp.MessageType[0].Name = proto.String("Req")
	m := &descriptorpb.MethodDescriptorProto{Name: proto.String("Limited"), InputType: proto.String(".thr.v1.Req"), OutputType: proto.String(".thr.v1.Req"), Options: &descriptorpb.MethodOptions{}}
	proto.SetExtension(m.Options, tollgatev1.E_Method, &tollgatev1.Rule{
		Permissions: []string{"x.read"},
		Throttle:    &tollgatev1.Throttle{Rate: 5, Per: durationpb.New(time.Second), Burst: 10, Bucket: "writes"},
	})
	fdp.Service = []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Svc"), Method: []*descriptorpb.MethodDescriptorProto{m}}}
	return fdp
}

type explained struct {
	result
	decision, reason, throttle string
}

func explainRun(t *testing.T, stdin string, args ...string) explained {
	t.Helper()
	r := runAt(t, fixedNow, stdin, append([]string{"explain"}, args...)...)
	x := explained{result: r}
	for line := range strings.SplitSeq(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "decision: "); ok {
			x.decision = v
		}
		if v, ok := strings.CutPrefix(line, "reason: "); ok {
			x.reason = v
		}
		if v, ok := strings.CutPrefix(line, "throttle: "); ok {
			x.throttle = v
		}
	}
	return x
}

func TestExplainOutcomes(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	other, _ := newKey(t, "HS256")
	set := testpbSet(t)
	thr := writeSet(t, throttledFile())
	writer := mint(t, priv, "HS256", "-azp", "portal", "-perms", "test.read,test.write", "-claim", "owner_id=o-1")
	admin := mint(t, priv, "HS256", "-perms", "test.write,test.admin", "-claim", "owner_id=o-1")
	reader := mint(t, priv, "HS256", "-azp", "portal", "-perms", "test.read,x.read")
	expired := mint(t, priv, "HS256", "-perms", "test.write", "-ttl", "1m", "-iat", "-10m")
	forged := mint(t, other, "HS256", "-perms", "test.write")
	key := []string{"-key", priv, "-alg", "HS256", "-iss", "auth", "-aud", "orders"}
	update := testSvc + "Update"
	own := `{"owner":{"id":"o-1"}}`
	foreign := `{"owner":{"id":"o-2"}}`

	for _, tt := range []struct {
		name                  string
		args                  []string
		stdin                 string
		code                  int
		decision, reason, thr string
	}{
		{"owner", append(key, "-descriptor-set", set, "-method", update, "-request", own, writer), "", 0,
			"allowed", `holds all of ["test.write"]; request field owner.id equals the token's claim owner_id`, ""},
		{"not owner", append(key, "-descriptor-set", set, "-method", update, "-request", foreign, writer), "", 1,
			"denied", "NOT_OWNER: request field owner.id is unset or differs from the token's claim owner_id", ""},
		{"owner unset", append(key, "-descriptor-set", set, "-method", update, writer), "", 1,
			"denied", "NOT_OWNER: request field owner.id", ""},
		{"bypass", append(key, "-descriptor-set", set, "-method", update, "-request", foreign, admin), "", 0,
			"allowed", `ownership of owner.id bypassed by "test.admin"`, ""},
		{"missing permission", append(key, "-descriptor-set", set, "-method", update, "-request", own, reader), "", 1,
			"denied", `PERMISSION_DENIED: missing "test.write"`, ""},
		{"any of", append(key, "-descriptor-set", set, "-method", testSvc+"Either", reader), "", 1,
			"denied", `PERMISSION_DENIED: the token holds none of ["test.alpha" "test.beta"]`, ""},
		{"expired", append(key, "-descriptor-set", set, "-method", update, "-request", own, expired), "", 1,
			"unauthenticated", "TOKEN_EXPIRED: token expired", ""},
		{"forged", append(key, "-descriptor-set", set, "-method", update, "-request", own, forged), "", 1,
			"unauthenticated", "TOKEN_INVALID: ", ""},
		{"no token", []string{"-descriptor-set", set, "-method", update, "-request", own}, "", 1,
			"unauthenticated", "TOKEN_MISSING", ""},
		{"public", []string{"-descriptor-set", set, "-method", testSvc + "Ping"}, "", 0,
			"allowed", "public: no token needed", "none declared"},
		{"no rule", append(key, "-descriptor-set", set, "-method", "/tollgate.testpb.v1.UnruledService/Forgotten", writer), "", 1,
			"denied", "PERMISSION_DENIED: the method has no rule", ""},
		{"stdin", append(key, "-descriptor-set", set, "-method", update, "-request", own, "-"), writer + "\n", 0,
			"allowed", "owner.id equals", ""},
		{"throttle", append(key, "-descriptor-set", thr, "-method", "/thr.v1.Svc/Limited", reader), "", 0,
			"allowed", `holds all of ["x.read"]`, "5 per 1s, burst 10, bucket writes, cost 1; charged to consumer portal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := explainRun(t, tt.stdin, tt.args...)
			if x.code != tt.code || x.stderr != "" {
				t.Errorf("exit %d, stderr %q; want %d and nothing", x.code, x.stderr, tt.code)
			}
			if x.decision != tt.decision || !strings.Contains(x.reason, tt.reason) {
				t.Errorf("decision %q, reason %q; want %q, reason containing %q\n%s", x.decision, x.reason, tt.decision, tt.reason, x.stdout)
			}
			if !strings.Contains(x.throttle, tt.thr) || (tt.thr != "" && x.throttle == "") {
				t.Errorf("throttle %q, want %q", x.throttle, tt.thr)
			}
			for _, tok := range []string{writer, admin, reader, expired, forged} {
				sig := tok[strings.LastIndex(tok, ".")+1:]
				if strings.Contains(x.stdout, sig) || strings.Contains(x.stderr, sig) {
					t.Fatalf("a token was printed:\n%s%s", x.stdout, x.stderr)
				}
			}
		})
	}
}

func TestExplainUsage(t *testing.T) {
	priv, _ := newKey(t, "HS256")
	set := testpbSet(t)
	tok := mint(t, priv, "HS256", "-perms", "test.write")
	key := []string{"-key", priv, "-alg", "HS256", "-iss", "auth", "-aud", "orders"}
	reqFile := filepath.Join(t.TempDir(), "req.json")
	os.WriteFile(reqFile, []byte(`{"owner": {"id": "o-1"}, "nope": 1}`), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-method", testSvc + "Get"}, "missing -descriptor-set"},
		{[]string{"-descriptor-set", set}, "missing -method"},
		{[]string{"-descriptor-set", set, "-method", "tollgate.testpb.v1.TestService.Get"}, "want /package.Service/Method"},
		{[]string{"-descriptor-set", set, "-method", testSvc + "Nope"}, "no such method"},
		{[]string{"-descriptor-set", set, "-method", testSvc + "Get", tok}, "needs -key"},
		{[]string{"-descriptor-set", set, "-method", testSvc + "Get", "-key", priv}, "none was given"},
		{append(key, "-descriptor-set", set, "-method", testSvc+"Update", "-request", "{", tok), "not a JSON tollgate.testpb.v1.UpdateRequest"},
		{append(key, "-descriptor-set", set, "-method", testSvc+"Update", "-request", "@"+reqFile, tok), "not a JSON"},
		{append(key, "-descriptor-set", set, "-method", testSvc+"Update", tok, tok), "at most one TOKEN"},
	} {
		r := runCLI(t, append([]string{"explain"}, tt.args...)...)
		mustFailUsage(t, r, tt.want)
		if strings.Contains(r.stderr, tok[strings.LastIndex(tok, ".")+1:]) {
			t.Errorf("%v: the token was printed: %q", tt.args, r.stderr)
		}
	}
	// A request from a file.
	os.WriteFile(reqFile, []byte(`{"owner": {"id": "o-1"}}`), 0o644)
	tok = mint(t, priv, "HS256", "-perms", "test.write", "-claim", "owner_id=o-1")
	x := explainRun(t, "", append(key, "-descriptor-set", set, "-method", testSvc+"Update", "-request", "@"+reqFile, tok)...)
	if x.code != 0 || x.decision != "allowed" {
		t.Errorf("request from a file: exit %d, %q", x.code, x.stdout)
	}
}
