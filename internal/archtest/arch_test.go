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

const (
	mod     = "github.com/tollgate/tollgate"
	goRedis = "github.com/redis/go-redis"
	// sessionMint is the bridge through which token builds the Sessions of
	// session. Every user of session links it, through session; only
	// session and token may import it (TestOnlyTokenMintsSessions).
	sessionMint = mod + "/internal/sessionmint"
)

// forbids reports whether the rule f forbids the dependency d. The
// internal/ rules do not count internal/sessionmint, which every user of
// session reaches through session itself and cannot import.
func forbids(f, d string) bool {
	if d == sessionMint && f == mod+"/internal/" {
		return false
	}
	return d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/")
}

func TestImportRules(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		// session is the verified caller alone: it imports no tollgate
		// package (internal/sessionmint aside, its own bridge) and knows no
		// transport.
		{mod + "/session", []string{"google.golang.org/grpc", "google.golang.org/protobuf", "net/http",
			mod + "/token", mod + "/permissions", mod + "/throttle", mod + "/interceptors", mod + "/tokenservice",
			mod + "/redisstore", mod + "/oteltollgate", mod + "/proto/", mod + "/cmd/", mod + "/examples/", mod + "/internal/"}},
		// token verifies and signs for any transport: of tollgate it may
		// import session only.
		{mod + "/token", []string{"google.golang.org/grpc", "google.golang.org/protobuf", goRedis,
			mod + "/permissions", mod + "/throttle", mod + "/interceptors", mod + "/tokenservice",
			mod + "/redisstore", mod + "/oteltollgate", mod + "/proto/", mod + "/cmd/", mod + "/examples/", mod + "/internal/"}},
		{mod + "/throttle", []string{"google.golang.org/grpc", "google.golang.org/protobuf", mod + "/session", mod + "/token"}},
		{mod + "/permissions", []string{"google.golang.org/grpc"}},
		{mod + "/proto/tollgate/v1", []string{"google.golang.org/grpc"}},
		{mod + "/examples/...", []string{mod + "/internal/"}},
		// interceptors may import session, token, permissions, throttle and
		// proto; tokenservice session, token and proto; the CLI only public
		// packages.
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
		// Only redisstore may link a Redis client: a program without Redis
		// links no go-redis.
		{mod + "/throttle", []string{goRedis}},
		{mod + "/interceptors", []string{goRedis}},
		{mod + "/session", []string{goRedis}},
		{mod + "/permissions", []string{goRedis}},
		{mod + "/tokenservice", []string{goRedis}},
		{mod + "/redisstore", []string{"google.golang.org/grpc", "google.golang.org/protobuf",
			mod + "/interceptors", mod + "/permissions", mod + "/tokenservice", mod + "/internal/"}},
		// The tests of every package that serves gRPC use internal/loopback
		// (test imports are not deps here, so the rules above allow it): it
		// imports no tollgate package, or the tests of that package would
		// make an import cycle.
		{mod + "/internal/loopback", []string{mod + "/session", mod + "/token", mod + "/permissions", mod + "/throttle",
			mod + "/interceptors", mod + "/tokenservice", mod + "/redisstore", mod + "/oteltollgate",
			mod + "/proto/", mod + "/cmd/", mod + "/examples/"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			for _, f := range r.forbidden {
				if forbids(f, d) {
					t.Errorf("%s depends on %s, which the import rules forbid (%s)", r.pkg, d, f)
				}
			}
		}
	}
}

// examples/inventory is a module of its own, so the patterns above do not
// reach it: it is a user's service, and may import tollgate's public
// packages only, tests included.
func TestInventoryImportsOnlyPublicPackages(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-test", "./...")
	cmd.Dir = "../../examples/inventory"
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -test ./... in examples/inventory: %v", err)
	}
	deps := strings.Fields(string(out))
	var sawTollgate bool
	for _, d := range deps {
		if d == mod+"/interceptors" {
			sawTollgate = true
		}
		for _, f := range []string{mod + "/internal/", mod + "/examples/pricing/"} {
			if forbids(f, d) {
				t.Errorf("examples/inventory depends on %s, which the import rules forbid (%s)", d, f)
			}
		}
	}
	if !sawTollgate {
		t.Fatalf("examples/inventory does not depend on %s/interceptors: was the module listed at all?", mod)
	}
}

// TestTestsOfInterceptorsLinkNoRedis: the interceptors package's own tests
// do not import go-redis either (the guard's Redis tests live in
// redisstore_test), so go vet and go test of interceptors never build it.
func TestTestsOfInterceptorsLinkNoRedis(t *testing.T) {
	out, err := exec.Command("go", "list", "-test", "-deps", mod+"/interceptors").Output()
	if err != nil {
		t.Fatalf("go list -test -deps interceptors: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d == goRedis || strings.HasPrefix(d, goRedis+"/") {
			t.Errorf("the interceptors tests depend on %s", d)
		}
	}
}

// TestBinariesWithoutRedisLinkNoRedis: a client links no go-redis (16 MB
// of it), only the programs that talk to Redis: the servers that ask for a
// Redis limiter or revocation feed, and the CLI, whose revoke writes to
// Redis.
func TestBinariesWithoutRedisLinkNoRedis(t *testing.T) {
	for _, pkg := range []string{
		mod + "/examples/pricing/cmd/pricing-client",
	} {
		for _, d := range deps(t, pkg) {
			if d == goRedis || strings.HasPrefix(d, goRedis+"/") {
				t.Errorf("%s links %s", pkg, d)
			}
		}
	}
	// And the check can see go-redis where it is linked.
	found := false
	for _, d := range deps(t, mod+"/examples/pricing/cmd/pricing-server") {
		found = found || strings.HasPrefix(d, goRedis+"/")
	}
	if !found {
		t.Error("pricing-server, which offers -redis, shows no go-redis: the check above would see nothing either")
	}
}

// TestOnlyTokenMintsSessions: only the verifier (package token) and session
// itself import internal/sessionmint, the one way to build a Session with
// a subject and permissions; tests included, so no test helper grows a
// habit of forging sessions that user code could not.
func TestOnlyTokenMintsSessions(t *testing.T) {
	out, err := exec.Command("go", "list", "-test",
		"-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list -test ./...: %v", err)
	}
	var seen bool
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// A test variant reads "p [p.test] imports...": its path is the
		// first field either way.
		f := strings.Fields(line)
		pkg := f[0]
		for _, imp := range f[1:] {
			if imp != sessionMint {
				continue
			}
			seen = true
			switch pkg {
			case mod + "/session", mod + "/token", mod + "/token_test":
			default:
				t.Errorf("%s imports %s: only session and token may build a Session", pkg, sessionMint)
			}
		}
	}
	if !seen {
		t.Fatalf("no package imports %s: was the module listed at all?", sessionMint)
	}
}
