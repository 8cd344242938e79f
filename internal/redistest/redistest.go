// Package redistest runs a throwaway redis-server for tests: one process per
// test, on a free loopback port, killed when the test ends.
//
// When redis-server is not installed, [Start] skips the test with a loud
// message, or fails it when the environment sets TOLLGATE_REQUIRE_REDIS=1 (as
// CI does), so that a missing binary never passes silently there.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireEnv is the environment variable that turns a missing redis-server
// from a skip into a failure.
const RequireEnv = "TOLLGATE_REQUIRE_REDIS"

// notFound is the start of the message of a test that cannot find
// redis-server.
const notFound = "redis-server not found: install it (apt-get install -y redis-server)"

const (
	// readyTimeout bounds how long a start waits for the first PING answer.
	readyTimeout = 10 * time.Second
	// pollEvery is the pause between two PINGs while waiting for readiness.
	pollEvery = 5 * time.Millisecond
	// portAttempts is how many free ports Start tries: another process can
	// take the port between the probe and redis-server's bind.
	portAttempts = 3
)

// Server is one redis-server process owned by a test. Its methods are safe
// for concurrent use.
type Server struct {
	t   testing.TB
	bin string
	dir string

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has exited
	log  *bytes.Buffer // the process's output, shown when it fails to start
}

// Start runs a redis-server on a free port of 127.0.0.1, with persistence
// off, and returns once it answers PING. The server is killed when the test
// and its subtests end.
//
// Without a redis-server binary on PATH, Start skips the test, or fails it
// when TOLLGATE_REQUIRE_REDIS=1.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(notFound + " — Redis tests FAIL because " + RequireEnv + "=1")
		} else {
			t.Skip(notFound + " — Redis tests SKIPPED")
		}
		return nil // only reached with a testing.TB whose Fatal and Skip return
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)

	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s.mu.Lock()
		s.port = port
		err = s.startLocked()
		s.mu.Unlock()
		if err == nil {
			return s
		}
		if attempt == portAttempts {
			t.Fatalf("redistest: %v", err)
		}
	}
}

// Addr returns the server's address, "127.0.0.1:PORT". It stays the same
// across [Server.Stop] and [Server.Restart].
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrLocked()
}

// Stop kills the server and waits for it to exit: clients then see
// connection errors, as with a crashed Redis. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart starts the server again on the same port, with no data, and
// returns once it answers PING. A running server is stopped first.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if err := s.startLocked(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Pause freezes the server (SIGSTOP): it keeps accepting connections but
// answers nothing, as a hung Redis does, until [Server.Resume]. Commands
// sent meanwhile run when it resumes.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redistest: %v sent to a stopped server", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Client returns a new client of the server, closed when the test ends. It
// honours context deadlines (ContextTimeoutEnabled), as the throttle package
// requires.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) addrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// startLocked starts redis-server on s.port and waits until it answers PING
// or exits.
func (s *Server) startLocked() error {
	s.log = new(bytes.Buffer)
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.dir,
		"--loglevel", "warning",
	)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(readyTimeout)
	for {
		if ping(s.addrLocked()) == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd, s.done = nil, nil
			return fmt.Errorf("redis-server on port %d exited before answering PING: %s", s.port, s.log.String())
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s", s.port, readyTimeout, s.log.String())
		}
	}
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// ping sends one PING over a fresh connection and reports whether PONG came
// back. A raw connection keeps readiness checks free of client pools.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}
