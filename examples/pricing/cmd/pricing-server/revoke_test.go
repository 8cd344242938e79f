package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
)

// propagationLimit is what the issue promises: every replica applies a
// revocation within a second of it being written.
const propagationLimit = time.Second

// tollgate runs the CLI and returns its standard output; it fails the test
// unless it exits 0.
func tollgate(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(tollgateBinary(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tollgate %s: %v; stderr: %s", args[0], err, stderr.String())
	}
	return string(out)
}

// restartableRedis is a redis-server on a fixed loopback port that can be
// stopped and started again there, empty.
type restartableRedis struct {
	t    *testing.T
	bin  string
	port string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newRestartableRedis(t *testing.T) *restartableRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			t.Fatal("redis-server not found, and " + requireRedisEnv + "=1 makes that a failure")
		}
		t.Skip("redis-server not found: install it (apt-get install -y redis-server) — Redis test SKIPPED")
	}
	r := &restartableRedis{t: t, bin: bin}
	t.Cleanup(r.stop)
	for attempt := 0; attempt < 3; attempt++ {
		_, r.port, _ = net.SplitHostPort(deadAddr(t))
		if r.start() {
			return r
		}
	}
	t.Fatal("could not start redis-server")
	return nil
}

func (r *restartableRedis) addr() string { return net.JoinHostPort("127.0.0.1", r.port) }

// start runs redis-server on r.port and reports whether it became ready.
func (r *restartableRedis) start() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := &syncBuffer{}
	cmd := exec.Command(r.bin, "--port", r.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.t.TempDir())
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for !strings.Contains(out.String(), "Ready to accept connections") {
		select {
		case <-done:
			r.cmd = nil
			r.t.Logf("redis-server on port %s exited:\n%s", r.port, out)
			return false
		case <-deadline.C:
			r.stopLocked()
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

func (r *restartableRedis) restart() {
	r.t.Helper()
	r.stop()
	if !r.start() {
		r.t.Fatalf("redis-server did not restart on port %s", r.port)
	}
}

func (r *restartableRedis) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *restartableRedis) stopLocked() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

func randomSID(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "sid-" + hex.EncodeToString(b)
}

// revokedReason reports whether err is Unauthenticated with the ErrorInfo
// reason TOKEN_REVOKED.
func revoked(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == "TOKEN_REVOKED" {
			return true
		}
	}
	return false
}

// waitRevoked calls GetPrice with tok until it is refused as revoked and
// returns when that was; any answer but OK, ResourceExhausted (the shared
// budget) or the refusal fails the test.
func waitRevoked(t *testing.T, api pricingv1.PriceServiceClient, tok string, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		_, err := get(t, api, tok)
		if revoked(err) {
			return time.Now()
		}
		if c := status.Code(err); c != codes.OK && c != codes.ResourceExhausted {
			t.Fatalf("GetPrice before the revocation applied: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token was not refused as revoked within %v", limit)
		}
	}
}

// openSync opens a SyncPrices stream with tok, sends one price and reads
// its echo, so that the stream is established and then idle; the returned
// channel gets the time and error of the stream's end.
func openSync(t *testing.T, api pricingv1.PriceServiceClient, tok string) <-chan streamEnd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	stream, err := api.SyncPrices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pricingv1.SetPriceRequest{Sku: "sku-e2e", SellerId: "s-1", AmountCents: 100, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("SyncPrices echo: %v", err)
	}
	ended := make(chan streamEnd, 1)
	go func() {
		_, err := stream.Recv()
		ended <- streamEnd{time.Now(), err}
	}()
	return ended
}

type streamEnd struct {
	at  time.Time
	err error
}

// Two replicas on one Redis: a session revoked through the CLI is refused
// by both within a second, a call that was a cache hit and an open idle
// stream included. With Redis stopped both keep refusing it and keep
// serving other tokens; a revocation written after Redis restarts empty
// is applied by each replica once it reconnects.
func TestReplicasFollowRevocations(t *testing.T) {
	rds := newRestartableRedis(t)
	keyPath, _ := writeKey(t, 32)
	issue := func(sid string) string {
		return strings.TrimSpace(tollgate(t, "token", "issue", "-key", keyPath, "-alg", "HS256", "-iss", "tollgate-demo", "-aud", "pricing",
			"-sub", "alice", "-azp", "revoke-e2e", "-perms", "prices.read,prices.write", "-claim", "seller_id=s-1", "-sid", sid))
	}
	sidA, sidB := randomSID(t), randomSID(t)
	tokA, tokB := issue(sidA), issue(sidB)

	var procs []*process
	var replicas []pricingv1.PriceServiceClient
	for range 2 {
		p, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath, "-redis", rds.addr())
		procs = append(procs, p)
		replicas = append(replicas, dial(t, addr))
	}
	var streams []<-chan streamEnd
	for _, api := range replicas {
		if _, err := get(t, api, tokA); err != nil { // verified, and cached from here on
			t.Fatalf("GetPrice before the revocation: %v", err)
		}
		streams = append(streams, openSync(t, api, tokA))
	}

	// Load on both replicas while the revocation is made: tokA until it is
	// refused, tokB throughout.
	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	serving := make(chan struct{}, len(replicas))
	for _, api := range replicas {
		load.Add(1)
		go func() {
			defer load.Done()
			tick := time.NewTicker(100 * time.Millisecond) // 20 calls a second in all: the consumer's budget
			defer tick.Stop()
			first := true
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := api.GetPrice(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokB), &pricingv1.GetPriceRequest{Sku: "sku-1"})
				cancel()
				if err == nil && first {
					first = false
					serving <- struct{}{}
				}
				select {
				case <-stopLoad:
					return
				case <-tick.C:
				}
			}
		}()
	}
	for range replicas {
		select {
		case <-serving:
		case <-time.After(waitLimit):
			t.Fatal("the replicas did not serve the load")
		}
	}

	started := time.Now()
	tollgate(t, "revoke", "-redis", rds.addr(), "-sid", sidA)
	returned := time.Now()
	t.Logf("the revoke command ran %v (process start to exit)", returned.Sub(started))
	for i, api := range replicas {
		unary := waitRevoked(t, api, tokA, 5*time.Second).Sub(returned)
		var end streamEnd
		select {
		case end = <-streams[i]:
		case <-time.After(5 * time.Second):
			t.Fatalf("replica %d: the open SyncPrices stream did not end within 5 s", i+1)
		}
		if !revoked(end.err) {
			t.Errorf("replica %d: the stream ended with %v, want Unauthenticated TOKEN_REVOKED", i+1, end.err)
		}
		stream := end.at.Sub(returned)
		// Negative: the replica applied it before the command had exited.
		t.Logf("replica %d: from the revoke command's return: unary call (a cache hit until then) refused after %v, idle bidi stream ended after %v (%v after the command started)",
			i+1, unary, stream, end.at.Sub(started))
		if unary > propagationLimit || stream > propagationLimit {
			t.Errorf("replica %d: applied after %v (unary) and %v (stream), want ≤ %v", i+1, unary, stream, propagationLimit)
		}
	}
	close(stopLoad)
	load.Wait()

	// Redis goes away: both replicas keep refusing the revoked session and
	// serving the other one.
	rds.stop()
	for i, api := range replicas {
		if _, err := get(t, api, tokA); !revoked(err) {
			t.Errorf("replica %d with Redis down: revoked token answered %v, want TOKEN_REVOKED", i+1, err)
		}
		if _, err := get(t, api, tokB); err != nil {
			t.Errorf("replica %d with Redis down: valid token answered %v", i+1, err)
		}
	}
	for i, p := range procs {
		waitLog(t, p, "revocation feed lost its store", i+1)
	}

	// Redis comes back, empty; a revocation written now reaches each
	// replica once its feed reconnects.
	rds.restart()
	tollgate(t, "revoke", "-redis", rds.addr(), "-sid", sidB)
	returned = time.Now()
	for i, api := range replicas {
		at := waitRevoked(t, api, tokB, 15*time.Second)
		t.Logf("replica %d: revocation written after Redis restarted applied %v after the command returned", i+1, max(at.Sub(returned), 0))
		if _, err := get(t, api, tokA); !revoked(err) {
			t.Errorf("replica %d after the restart: the session Redis lost answered %v, want TOKEN_REVOKED", i+1, err)
		}
	}
	for i, p := range procs {
		waitLog(t, p, "revocation feed caught up", i+1)
	}
}

// waitLog waits until the server's stderr holds a line containing want.
func waitLog(t *testing.T, p *process, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(p.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("replica %d: no log line %q within %v; stderr:\n%s", n, want, waitLimit, p.stderr)
		}
		select {
		case <-p.done:
			t.Fatalf("replica %d exited; stderr:\n%s", n, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "sid-") {
			t.Errorf("replica %d logged a sid: %s", n, sc.Text())
		}
	}
}
