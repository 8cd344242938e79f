package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
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

// TestBinary builds the command and runs it as a subprocess, proving that
// main wires run to the process: arguments, streams and exit codes.
func TestBinary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH (go test puts it there): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tollgate")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exe := func(stdin string, args ...string) result {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		code := 0
		switch {
		case errors.As(err, &exitErr):
			code = exitErr.ExitCode()
		case err != nil:
			t.Fatalf("running %q: %v", args, err)
		}
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}

	key := filepath.Join(dir, "hs256.key")
	r := exe("", "keygen", "-alg", "HS256", "-out", key)
	mustSucceed(t, r)
	if want := "wrote HS256 key to " + key + "\n"; r.stdout != want {
		t.Fatalf("keygen stdout %q, want %q", r.stdout, want)
	}

	r = exe("", "token", "issue", "-key", key, "-alg", "HS256", "-iss", "auth", "-aud", "orders", "-sub", "alice")
	mustSucceed(t, r)
	tok := strings.TrimSuffix(r.stdout, "\n")
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("issue printed %q, want one compact token and a newline", r.stdout)
	}

	// The subprocess uses the real clock, as a script would.
	r = exe(tok+"\n", "token", "inspect", "-key", key, "-alg", "HS256", "-iss", "auth", "-aud", "orders", "-")
	mustSucceed(t, r)
	if !strings.HasSuffix(r.stdout, "\nvalid\n") {
		t.Errorf("inspect stdout %q, want it to end with the line %q", r.stdout, "valid")
	}

	r = exe("", "token", "inspect", "-key", key, "-alg", "HS256", "-iss", "auth", "-aud", "billing", tok)
	if r.code != exitFail || !strings.HasSuffix(r.stdout, "\ninvalid token: audience mismatch\n") {
		t.Errorf("inspect with the wrong audience: exit %d, stdout %q; want exit 1 and %q", r.code, r.stdout, "invalid token: audience mismatch")
	}

	mustFailUsage(t, exe("", "frob"), "unknown command")
	if r := exe(""); r.code != exitUsage {
		t.Errorf("no arguments: exit %d, want %d", r.code, exitUsage)
	}
}
