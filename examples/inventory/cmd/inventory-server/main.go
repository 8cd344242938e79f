// Inventory-server serves the inventory example's InventoryService with
// tollgate in front of it.
//
// Usage:
//
//	inventory-server [-listen 127.0.0.1:8444] [-key PATH] [-alg HS256]
//	    [-issuer tollgate-demo] [-audience inventory] [-metrics-listen ADDR]
//
// The verification key comes from -key (a file, mode 0600 when it holds a
// secret) or else from the environment variable TOLLGATE_KEY, in the text
// form token.ParseKey reads (a base64 secret for HMAC, PEM otherwise).
// There is no default key: without one the server refuses to start.
//
// Tokens name their warehouse in the custom claim warehouse_id; the
// throttles of inventory.proto count per consumer (the token's azp, else its
// sub) in this process's memory.
//
// With -metrics-listen ADDR the guard's decisions are exported as
// OpenTelemetry metrics (oteltollgate on the OpenTelemetry SDK, read by its
// Prometheus exporter) in the Prometheus text format at
// http://ADDR/metrics.
//
// Once the listener is bound the server prints "listening on HOST:PORT" on
// standard output, so -listen 127.0.0.1:0 works and scripts can read the
// port; with -metrics-listen a second line "metrics on
// http://HOST:PORT/metrics" follows, with the bound address. Refused calls are logged on standard
// error, never with their token. SIGINT or SIGTERM stops the server
// gracefully and it exits 0. A start-up problem is one line on standard
// error and exit status 1 (2 for bad usage), naming the flag or variable
// that is wrong and never quoting its value.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/tollgate/tollgate/examples/inventory/server"
	tollgate "github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
)

// keyEnv names the environment variable the key is read from without -key.
const keyEnv = "TOLLGATE_KEY"

// stopGrace is how long a graceful stop may wait for in-flight calls.
const stopGrace = 5 * time.Second

const usage = `usage: inventory-server [-listen 127.0.0.1:8444] [-key PATH] [-alg HS256]
    [-issuer tollgate-demo] [-audience inventory] [-metrics-listen ADDR]
The key is read from -key PATH or else from $TOLLGATE_KEY; there is no default key.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type config struct {
	listen, keyPath, alg, issuer, audience, metricsListen string
}

// run is the whole command; it serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// fail prints err as one line of printable text, with anything shaped
	// like a token or key, or sharing a run with an argument or
	// $TOLLGATE_KEY that is, cut out (the flag package quotes what it was
	// given).
	fail := func(code int, err error) int {
		msg := token.Redact(err.Error(), append([]string{os.Getenv(keyEnv)}, args...)...)
		msg = strings.Map(func(r rune) rune {
			if unicode.IsPrint(r) {
				return r
			}
			return ' '
		}, msg)
		fmt.Fprintln(stderr, "inventory-server: "+strings.Join(strings.Fields(msg), " "))
		return code
	}
	fs := flag.NewFlagSet("inventory-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var c config
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8444", "address to listen on")
	fs.StringVar(&c.keyPath, "key", "", "verification key file (default: $"+keyEnv+")")
	fs.StringVar(&c.alg, "alg", token.HS256, "algorithm of the key")
	fs.StringVar(&c.issuer, "issuer", "tollgate-demo", "issuer tokens must name")
	fs.StringVar(&c.audience, "audience", "inventory", "audience tokens must name")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "address to serve Prometheus metrics on, at /metrics (default: none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return fail(2, err)
	}
	if fs.NArg() > 0 {
		return fail(2, errors.New("unexpected argument after the flags"))
	}
	if !slices.Contains(token.Algorithms(), c.alg) {
		return fail(2, fmt.Errorf("-alg: unsupported algorithm (supported: %s)", strings.Join(token.Algorithms(), ", ")))
	}
	// A host name is looked up in DNS: a key or a token pasted as one would
	// be sent to the resolver.
	for flagName, addr := range map[string]string{"-listen": c.listen, "-metrics-listen": c.metricsListen} {
		if host, _, err := net.SplitHostPort(addr); err == nil && token.Redact(host) != host {
			return fail(2, fmt.Errorf("%s: the host looks like key material or a token", flagName))
		}
	}

	var m *metrics
	var guardOpts []tollgate.Option
	if c.metricsListen != "" {
		var err error
		if m, err = newMetrics(c.metricsListen); err != nil {
			return fail(1, err)
		}
		defer m.close()
		guardOpts = append(guardOpts, tollgate.WithObserver(m.observer))
	}
	srv, err := build(c, stderr, guardOpts)
	if err != nil {
		return fail(1, err)
	}
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		srv.Stop()
		return fail(1, fmt.Errorf("-listen: %s", addressless(err)))
	}
	fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())
	if m != nil {
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", m.lis.Addr())
		go m.serve()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		srv.Stop()
		return fail(1, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil {
		return fail(1, fmt.Errorf("serve: %w", err))
	}
	return 0
}

// build loads the key and builds the guarded server.
func build(c config, stderr io.Writer, guardOpts []tollgate.Option) (*server.Server, error) {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	key, err := loadKey(c.keyPath, c.alg)
	if err != nil {
		return nil, err
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		return nil, err
	}
	v, err := token.NewVerifier(ks, c.issuer, c.audience)
	if err != nil {
		return nil, err
	}
	return server.New(server.Config{Verifier: v, Logger: logger, GuardOptions: guardOpts})
}

// loadKey reads the key from path or, without one, from $TOLLGATE_KEY. The
// loaders' errors hold neither the path nor the value; they get the flag's
// or the variable's name.
func loadKey(path, alg string) (*token.Key, error) {
	if path != "" {
		k, err := token.LoadKeyFile(path, "", alg)
		if err != nil {
			return nil, fmt.Errorf("-key: %w", err)
		}
		return k, nil
	}
	if _, ok := os.LookupEnv(keyEnv); !ok {
		return nil, fmt.Errorf("no key: pass -key PATH or set %s (tollgate has no default key)", keyEnv)
	}
	return token.LoadKeyEnv(keyEnv, "", alg)
}

// addressless returns what went wrong in a net error without the address it
// names ("bind: address already in use", "missing port in address").
func addressless(err error) string {
	var addrErr *net.AddrError
	var opErr *net.OpError
	switch {
	case errors.As(err, &addrErr):
		return addrErr.Err
	case errors.As(err, &opErr):
		return opErr.Err.Error()
	}
	return "cannot listen there"
}
