// Package archtest holds tollgate's import rules (which package may depend
// on which, listed in TestImportRules) as a test: a package that must work
// from any transport must not pull in gRPC, however indirectly.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestImportRules(t *testing.T) {
	const mod = "github.com/tollgate/tollgate"
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{mod + "/session", []string{"google.golang.org/grpc", "google.golang.org/protobuf"}},
		{mod + "/throttle", []string{"google.golang.org/grpc", "google.golang.org/protobuf", mod + "/session"}},
		{mod + "/permissions", []string{"google.golang.org/grpc"}},
		{mod + "/proto/tollgate/v1", []string{"google.golang.org/grpc"}},
		{mod + "/examples/...", []string{mod + "/internal/"}},
		// interceptors may import session, permissions, throttle and proto;
		// tokenservice session and proto; the CLI only public packages.
		{mod + "/interceptors", []string{mod + "/tokenservice", mod + "/internal/", mod + "/cmd/", mod + "/examples/"}},
		// interceptors knows no OpenTelemetry (a program without metrics links
		// none); the adapter may import interceptors, and neither the SDK nor
		// an exporter: the program chooses those.
		{mod + "/interceptors", []string{"go.opentelemetry.io/otel/metric", "go.opentelemetry.io/otel/sdk", "github.com/prometheus/"}},
		{mod + "/oteltollgate", []string{"go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/otel/exporters", "github.com/prometheus/",
			mod + "/tokenservice", mod + "/internal/", mod + "/cmd/", mod + "/examples/"}},
		{mod + "/tokenservice", []string{mod + "/interceptors", mod + "/permissions", mod + "/throttle", mod + "/internal/"}},
		{mod + "/cmd/...", []string{mod + "/internal/", mod + "/examples/"}},
		{mod + "/session", []string{mod + "/permissions", mod + "/throttle", mod + "/interceptors", mod + "/tokenservice"}},
		{mod + "/permissions", []string{mod + "/throttle", mod + "/interceptors", mod + "/tokenservice"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			for _, f := range r.forbidden {
				if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
					t.Errorf("%s depends on %s, which the import rules forbid (%s)", r.pkg, d, f)
				}
			}
		}
	}
}
