package main

import (
	"bufio"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// startPrinting starts the binary with args and reads the first lines of
// its standard output, which must start with prefixes, in order; it
// returns what follows each prefix. done receives the exit error.
func startPrinting(t *testing.T, args []string, prefixes ...string) (cmd *exec.Cmd, stderr *syncBuffer, values []string, done chan error) {
	t.Helper()
	cmd = exec.Command(serverBinary(t), args...)
	cmd.Env = envWithout(keyEnv)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, len(prefixes))
	done = make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for i := 0; sc.Scan(); i++ {
			if i < len(prefixes) { // later lines are read and dropped
				lines <- sc.Text()
			}
		}
		close(lines)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // a no-op once it has exited
		<-exited
	})
	for _, prefix := range prefixes {
		select {
		case line, ok := <-lines:
			v, found := strings.CutPrefix(line, prefix)
			if !ok || !found {
				t.Fatalf("stdout line %q, want %q...; stderr: %s", line, prefix, stderr)
			}
			values = append(values, v)
		case <-time.After(waitLimit):
			t.Fatalf("no %q line within %v; stderr: %s", prefix, waitLimit, stderr)
		}
	}
	return cmd, stderr, values, done
}

// boundURL fails t unless url is on 127.0.0.1 at a bound (non-zero) port
// and ends in path.
func boundURL(t *testing.T, what, url, path string) {
	t.Helper()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, path) || strings.HasSuffix(url, ":0"+path) {
		t.Fatalf("%s URL %q: want the bound address", what, url)
	}
}

// startWithMetrics starts the binary with -metrics-listen 127.0.0.1:0 and
// returns it with the gRPC address and the metrics URL it printed, the
// second line of its standard output.
func startWithMetrics(t *testing.T, args ...string) (cmd *exec.Cmd, stderr *syncBuffer, addr, url string, done chan error) {
	t.Helper()
	cmd, stderr, v, done := startPrinting(t, append(args, "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0"), "listening on ", "metrics on ")
	boundURL(t, "metrics", v[1], "/metrics")
	return cmd, stderr, v[0], v[1], done
}

func scrapeURL(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// decisionCount sums tollgate_server_decisions_total over the series of
// method (fully qualified, no leading slash) and decision.
func decisionCount(fams map[string]*dto.MetricFamily, method, decision string) float64 {
	var sum float64
	for _, m := range fams["tollgate_server_decisions_total"].GetMetric() {
		var mm, dd string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "rpc_method":
				mm = l.GetValue()
			case "tollgate_decision":
				dd = l.GetValue()
			}
		}
		if mm == method && dd == decision {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// -metrics-listen serves the guard's decisions at /metrics, in the
// Prometheus text format: the counters move as calls are made, and the
// server still stops cleanly.
func TestMetricsListen(t *testing.T) {
	keyPath, secret := writeKey(t, 32)
	cmd, stderr, addr, url, done := startWithMetrics(t, "-key", keyPath)
	const get = "pricing.v1.PriceService/GetPrice"
	if got := decisionCount(scrapeURL(t, url), get, "allowed"); got != 0 {
		t.Fatalf("allowed GetPrice %v before any call", got)
	}
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	for range 3 {
		if _, err := getPrice(t, addr, mint(t, secret, "prices.read"), creds); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := getPrice(t, addr, mint(t, secret), creds); err == nil {
		t.Fatal("GetPrice without prices.read succeeded")
	}
	fams := scrapeURL(t, url)
	if got := decisionCount(fams, get, "allowed"); got != 3 {
		t.Errorf("allowed GetPrice = %v, want 3", got)
	}
	if got := decisionCount(fams, get, "denied"); got != 1 {
		t.Errorf("denied GetPrice = %v, want 1", got)
	}
	if _, ok := fams["tollgate_verify_duration_seconds"]; !ok {
		t.Error("no tollgate_verify_duration_seconds histogram")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr: %s", err, stderr)
		}
	case <-time.After(waitLimit):
		t.Fatalf("no exit within %v", waitLimit)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the metrics server still answers after the exit")
	}
}
