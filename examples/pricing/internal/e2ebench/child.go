package e2ebench

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"syscall"

	"google.golang.org/grpc"

	"github.com/tollgate/tollgate/token"
)

// ChildEnv is the environment variable that makes the test binary the
// server process: TestMain calls ChildMain when it is "1".
const ChildEnv = "TOLLGATE_E2E_SERVER"

// ProfileEnv names the file the server process writes its CPU profile to.
const ProfileEnv = "TOLLGATE_E2E_CPUPROFILE"

// Algorithms are the two key algorithms the servers are built for: one
// tollgate and one baseline server each.
var Algorithms = []string{token.HS256, token.EdDSA}

// childConfig is what the load process sends the server process on its
// standard input: the keys, in the text form token.ParseKey reads (a
// base64 secret, a PEM private key), and how many callers' SKUs to store.
// It never travels in the environment or on a command line.
type childConfig struct {
	Keys    map[string]string `json:"keys"` // by algorithm
	Callers int               `json:"callers"`
}

// childAddrs is the server process's one line on standard output: where
// each server and the control endpoint listen.
type childAddrs struct {
	Servers map[string]string `json:"servers"` // by serverName
	Control string            `json:"control"`
}

// serverName names the server of kind for alg: "bare" (one for both
// algorithms), "tollgate-HS256", "baseline-EdDSA"...
func serverName(kind, alg string) string {
	if kind == Bare {
		return Bare
	}
	return kind + "-" + alg
}

// Usage is what the control endpoint reports: the server process's CPU
// time (user and system) and its heap allocations so far.
type Usage struct {
	CPUMicros int64  `json:"cpu_us"`
	Allocs    uint64 `json:"allocs"`
}

// usage reads the process's own rusage and allocation count. The count is
// /gc/heap/allocs:objects plus /gc/heap/tiny/allocs:objects, which is what
// runtime.MemStats.Mallocs (and so -benchmem's allocs/op) counts, read
// without stopping the world: the runtime adds a span's allocations when
// the span leaves its P's cache, and every GC flushes the caches, so a
// slice's count is off by at most what the caches took since the last GC,
// and the errors of consecutive slices cancel.
func usage() (Usage, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Usage{}, err
	}
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}}
	metrics.Read(s)
	var allocs uint64
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return Usage{}, fmt.Errorf("runtime/metrics: %s is not supported", v.Name)
		}
		allocs += v.Value.Uint64()
	}
	us := func(t syscall.Timeval) int64 { return int64(t.Sec)*1_000_000 + int64(t.Usec) }
	return Usage{CPUMicros: us(ru.Utime) + us(ru.Stime), Allocs: allocs}, nil
}

// ChildMain is the server process: it reads its configuration from stdin,
// serves bare, the tollgate and the baseline servers and the control
// endpoint on loopback ports, prints their addresses as one JSON line on
// stdout, and serves until stdin is closed. It returns the exit status.
func ChildMain(stdin io.Reader, stdout, stderr io.Writer) int {
	if err := child(stdin, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "e2ebench server:", err)
		return 1
	}
	return 0
}

func child(stdin io.Reader, stdout, stderr io.Writer) error {
	dec := json.NewDecoder(stdin)
	var cfg childConfig
	if err := dec.Decode(&cfg); err != nil {
		return errors.New("reading the configuration on stdin: not the expected JSON")
	}
	if path := os.Getenv(ProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("%s: %w", ProfileEnv, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	type served struct {
		name, kind, alg string
		srv             *grpc.Server
		stop            func()
	}
	var all []served
	st, err := newStore(cfg.Callers)
	if err != nil {
		return err
	}
	bare := newBare(st)
	all = append(all, served{Bare, Bare, "", bare, bare.Stop})
	for _, alg := range Algorithms {
		text, ok := cfg.Keys[alg]
		if !ok {
			return fmt.Errorf("no %s key in the configuration", alg)
		}
		key, err := token.ParseKey("", alg, []byte(text))
		if err != nil {
			return err
		}
		raw, err := baselineKey(alg, text)
		if err != nil {
			return err
		}
		lim, err := newScaledMemory()
		if err != nil {
			return err
		}
		if st, err = newStore(cfg.Callers); err != nil {
			return err
		}
		tg, err := newTollgate(key, st, lim, logger)
		if err != nil {
			return err
		}
		all = append(all, served{serverName(Tollgate, alg), Tollgate, alg, tg.Server, tg.Stop})
		if st, err = newStore(cfg.Callers); err != nil {
			return err
		}
		bl := newBaseline(alg, raw, st)
		all = append(all, served{serverName(Baseline, alg), Baseline, alg, bl, bl.Stop})
	}

	addrs := childAddrs{Servers: map[string]string{}}
	done := make(chan struct{}, len(all)+1)
	for _, s := range all {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addrs.Servers[s.name] = lis.Addr().String()
		labels := pprof.Labels("server", s.kind, "alg", s.alg)
		if s.alg == "" {
			labels = pprof.Labels("server", s.kind)
		}
		// Goroutines inherit their creator's labels: every goroutine this
		// server starts (connections, streams, handlers) carries them.
		go pprof.Do(context.Background(), labels, func(context.Context) {
			_ = s.srv.Serve(lis)
			done <- struct{}{}
		})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addrs.Control = lis.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /usage", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			// A slice starts on a collected heap: no collection owed for
			// the slice before (another server's allocations) runs inside
			// it, and this one's CPU is read after, so no slice pays it.
			runtime.GC()
		}
		u, err := usage()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(u)
	})
	hs := &http.Server{Handler: mux}
	go pprof.Do(context.Background(), pprof.Labels("server", "control"), func(context.Context) {
		_ = hs.Serve(lis)
		done <- struct{}{}
	})

	line, err := json.Marshal(addrs)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	// Serve until the load process closes stdin (or exits).
	_, _ = io.Copy(io.Discard, io.MultiReader(dec.Buffered(), stdin))
	_ = hs.Close()
	for _, s := range all {
		s.stop()
	}
	for range len(all) + 1 {
		<-done
	}
	return nil
}

// baselineKey returns the key golang-jwt verifies alg's tokens with, from
// its text form: the HMAC secret, or the Ed25519 public key.
func baselineKey(alg, text string) (any, error) {
	switch alg {
	case token.HS256:
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, errors.New("HS256 key: not standard base64")
		}
		return b, nil
	case token.EdDSA:
		blk, _ := pem.Decode([]byte(text))
		if blk == nil {
			return nil, errors.New("EdDSA key: not PEM")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("EdDSA key: not PKCS#8")
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("EdDSA key: not Ed25519")
		}
		return priv.Public(), nil
	}
	return nil, fmt.Errorf("no baseline for %s", alg)
}
