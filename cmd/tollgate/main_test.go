package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fixedNow is the clock of every in-process run: whole seconds, so claims
// can be compared exactly.
var fixedNow = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

// runAt runs the command in process with the clock stopped at now.
func runAt(t *testing.T, now time.Time, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stdout, &stderr, func() time.Time { return now })
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	return runAt(t, fixedNow, "", args...)
}

// mustSucceed fails the test unless r exited 0 with nothing on stderr.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout %q; want exit 0 and no stderr", r.code, r.stderr, r.stdout)
	}
}

// mustFailUsage fails the test unless r is a usage error: exit 2, nothing on
// stdout, exactly one line on stderr starting "tollgate: " and containing
// want.
func mustFailUsage(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d (stderr %q)", r.code, exitUsage, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	checkOneLine(t, r.stderr, want)
}

// checkOneLine fails the test unless s is exactly one line starting
// "tollgate: " and containing want.
func checkOneLine(t *testing.T, s, want string) {
	t.Helper()
	if !strings.HasPrefix(s, "tollgate: ") || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("stderr %q, want one line starting %q", s, "tollgate: ")
	}
	if !strings.Contains(s, want) {
		t.Errorf("stderr %q does not contain %q", s, want)
	}
}

func TestUsage(t *testing.T) {
	r := runCLI(t)
	if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, "tollgate keygen -alg ALG -out PATH") {
		t.Errorf("no arguments: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"keygen", "-h"}, {"token", "issue", "-h"}, {"token", "help"}} {
		r := runCLI(t, args...)
		if r.code != exitOK || r.stderr != "" || !strings.Contains(r.stdout, "tollgate token inspect") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestLooksSensitive(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBtq\n-----END PRIVATE KEY-----\n", true},
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl", true},
		{"pdi0orGYEx233H9wu5xXl6sZ/MMHGSnzLDJ4pyHfo+Q=", true},     // HS256 secret, as keygen writes it
		{"pdi0orGYEx233H9wu5xXl6sZ_MMHGSnzLDJ4pyHfo-Q", true},      // the same, base64url
		{"  pdi0orGYEx233H9wu5xXl6sZ/MMHGSnzLDJ4pyHfo+Q=\n", true}, // pasted with white space
		{"/tmp/TestBadInput2810245123/001/keys/hs256abcd", false},  // an absolute path
		{"keys/production/HS256Key2024/current/key.b64", false},    // a path with a dot
		{"orders.read.write", false},                               // a permission
		{"service-account-pricing-worker-1", false},                // a subject
		{"pdi0orGYEx233H9wu5xXl6sZ/MMHGSnzLDJ4pyHfo+Q", true},      // the same, unpadded
		{"a2VybmVsLWtleS10b28tc2hvcnQ=", false},                    // 20 bytes: no usable key
	}
	for _, tt := range tests {
		if got := looksSensitive(tt.s); got != tt.want {
			t.Errorf("looksSensitive(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
