package e2ebench

import (
	"bytes"
	"io"
	"os"
	"sync"
	"testing"
)

// TestMain makes the test binary the server process when ChildEnv says so.
func TestMain(m *testing.M) {
	if os.Getenv(ChildEnv) == "1" {
		os.Exit(ChildMain(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startServers starts the server process for a test or benchmark, its
// standard error going to stderr, and stops it at the end.
func startServers(tb testing.TB, callers int, stderr io.Writer) *Servers {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := StartServers(exe, callers, stderr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// syncBuffer collects the server process's standard error in a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServers starts the server process for a test. What it prints on
// standard error is shown when the test fails; stop stops the process and
// returns all it printed.
func testServers(t *testing.T, callers int) (s *Servers, stop func() string) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server process's standard error:\n%s", buf)
		}
	})
	s = startServers(t, callers, buf)
	return s, func() string {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		return buf.String()
	}
}
