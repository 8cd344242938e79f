package redistest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	c := s.Client()
	ctx := context.Background()

	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET on a started server: %v", err)
	}
	addr := s.Addr()

	s.Stop()
	if err := ping(addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Stop() // stopping twice does nothing

	s.Restart()
	if got := s.Addr(); got != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, got)
	}
	if err := ping(addr); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	// The same client reconnects, and the restarted server starts empty.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET of a key set before the restart: %v, want redis: nil", err)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	c := s.Client()
	s.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx).Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PING to a paused server: %v, want a deadline error", err)
	}
	s.Resume()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestStartTwoServers(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share %s", a.Addr())
	}
	ctx := context.Background()
	if err := a.Client().Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client().Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS on the other server = %d, %v; want 0", n, err)
	}
}

func TestCleanupKillsServer(t *testing.T) {
	var addr string
	t.Run("owner", func(t *testing.T) {
		addr = Start(t).Addr()
	})
	if err := ping(addr); err == nil {
		t.Fatalf("server at %s still answers after its test ended", addr)
	}
}

// tb records Skip and Fatal instead of ending the test.
type tb struct {
	testing.TB
	skipped, fatal string
}

func (f *tb) Skip(args ...any)  { f.skipped = args[0].(string) }
func (f *tb) Fatal(args ...any) { f.fatal = args[0].(string) }

func TestMissingBinary(t *testing.T) {
	for _, tc := range []struct {
		require   string
		wantSkip  bool
		wantFatal bool
	}{
		{require: "", wantSkip: true},
		{require: "0", wantSkip: true},
		{require: "1", wantFatal: true},
	} {
		t.Run("require="+tc.require, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv(RequireEnv, tc.require)
			f := &tb{TB: t}
			if s := Start(f); s != nil {
				t.Fatal("Start returned a server without a binary")
			}
			if (f.skipped != "") != tc.wantSkip || (f.fatal != "") != tc.wantFatal {
				t.Fatalf("skipped %q, fatal %q; want skip %v, fatal %v", f.skipped, f.fatal, tc.wantSkip, tc.wantFatal)
			}
			msg := f.skipped + f.fatal
			if !strings.Contains(msg, "redis-server not found") || !strings.Contains(msg, "apt-get install -y redis-server") {
				t.Fatalf("message %q does not say what is missing and how to install it", msg)
			}
		})
	}
}
