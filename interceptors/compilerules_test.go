package interceptors

import (
	"slices"
	"testing"
)

// CompileRules is Init's compilation: the same table for the same server,
// and the very same error when rules are missing.
func TestCompileRulesMatchesInit(t *testing.T) {
	h := newHarness(t)
	tab, err := CompileRules(h.grpcSrv.GetServiceInfo(), WithLenientInit())
	if err != nil {
		t.Fatal(err)
	}
	got, want := tab.Methods(), h.guard.Table().Methods()
	if !slices.Equal(got, want) {
		t.Fatalf("CompileRules methods %v, Init's %v", got, want)
	}
	for _, m := range want {
		a, _ := tab.Rule(m)
		b, _ := h.guard.Table().Rule(m)
		if a.String() != b.String() {
			t.Errorf("%s: CompileRules %q, Init %q", m, a, b)
		}
	}
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		r, ok := tab.Rule(m)
		if !ok {
			t.Fatalf("%s has no rule: the guard's defaults were not applied", m)
		}
		if wantPublic := m == "/grpc.health.v1.Health/Check"; r.Public() != wantPublic {
			t.Errorf("%s public = %v, want %v", m, r.Public(), wantPublic)
		}
	}

	strict := newHarness(t, withStrictInit(), withoutInit())
	initErr := strict.guard.Init(strict.grpcSrv)
	_, cErr := CompileRules(strict.grpcSrv.GetServiceInfo())
	if initErr == nil || cErr == nil {
		t.Fatalf("both must fail on the unruled service: Init %v, CompileRules %v", initErr, cErr)
	}
	if initErr.Error() != cErr.Error() {
		t.Errorf("CompileRules error\n%v\ndiffers from Init's\n%v", cErr, initErr)
	}
}
