package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/token"
)

// waitLimit bounds every wait for the server process.
const waitLimit = 30 * time.Second

// built is a binary the package's tests build once, into a directory
// TestMain removes.
type built struct {
	once sync.Once
	path string
	err  error
}

var (
	buildDir     string
	buildDirErr  error
	buildDirOnce sync.Once
	serverBuild  built
	cliBuild     built
)

// binary builds pkg as name, once for all tests of the package.
func (b *built) binary(t *testing.T, name, pkg string) string {
	t.Helper()
	b.once.Do(func() {
		buildDirOnce.Do(func() { buildDir, buildDirErr = os.MkdirTemp("", "pricing-server-test") })
		if b.err = buildDirErr; b.err != nil {
			return
		}
		b.path = filepath.Join(buildDir, name)
		if out, err := exec.Command("go", "build", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = errors.New("go build " + name + ": " + err.Error() + "\n" + string(out))
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// serverBinary builds pricing-server once for all tests of the package.
func serverBinary(t *testing.T) string { return serverBuild.binary(t, "pricing-server", ".") }

// tollgateBinary builds the tollgate CLI once for the package's tests.
func tollgateBinary(t *testing.T) string {
	return cliBuild.binary(t, "tollgate", "github.com/tollgate/tollgate/cmd/tollgate")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// writeKey writes a fresh HMAC secret of n bytes, base64, mode 0600.
func writeKey(t *testing.T, n int) (path string, secret []byte) {
	t.Helper()
	secret = make([]byte, n)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, secret
}

// envWithout returns the environment minus the variable name.
func envWithout(name string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, name+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// process is a running pricing-server.
type process struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	extra  *syncBuffer // stdout after the listening line
	done   chan struct{}
	err    error // the exit error, once done is closed
}

// startServer starts the binary with args and returns it and the address
// it printed.
func startServer(t *testing.T, env []string, args ...string) (*process, string) {
	t.Helper()
	cmd := exec.Command(serverBinary(t), args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: &syncBuffer{}, extra: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		for sc.Scan() {
			p.extra.Write([]byte(sc.Text() + "\n"))
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // a no-op once it has exited
		<-p.done
	})
	select {
	case line, ok := <-first:
		addr, found := strings.CutPrefix(line, "listening on ")
		if !ok || !found {
			t.Fatalf("first line of stdout = %q; want \"listening on HOST:PORT\"; stderr: %s", line, p.stderr)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			t.Fatalf("listening on %q: %v", addr, err)
		}
		return p, addr
	case <-time.After(waitLimit):
		t.Fatalf("no \"listening on\" line within %v; stderr: %s", waitLimit, p.stderr)
	}
	return nil, ""
}

// wait returns the process's exit error, failing the test after waitLimit
// or when the server printed more than its listening line.
func (p *process) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		t.Fatalf("the server did not exit within %v; stderr: %s", waitLimit, p.stderr)
	}
	if extra := p.extra.String(); extra != "" {
		t.Errorf("stdout after the listening line: %q", extra)
	}
	return p.err
}

func mint(t *testing.T, secret []byte, perms ...string) string {
	t.Helper()
	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "test", Audience: []string{"pricing"},
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), Permissions: perms})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func getPrice(t *testing.T, addr, tok string, creds grpc.DialOption) (*pricingv1.Price, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	return pricingv1.NewPriceServiceClient(conn).GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: "sku-3"})
}

func TestServesAndStopsOnSIGTERM(t *testing.T) {
	keyPath, secret := writeKey(t, 32)
	p, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath)

	got, err := getPrice(t, addr, mint(t, secret, "prices.read"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("GetPrice: %v", err)
	}
	if got.GetSku() != "sku-3" || got.GetAmountCents() != 300 {
		t.Errorf("GetPrice = %v; want sku-3 at 300", got)
	}
	// A refused call is logged on stderr, without the token.
	tok := mint(t, secret)
	if _, err := getPrice(t, addr, tok, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Fatal("GetPrice without prices.read succeeded")
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s", err, p.stderr)
	}
	log := p.stderr.String()
	if !strings.Contains(log, "PERMISSION_DENIED") {
		t.Errorf("stderr does not log the denial:\n%s", log)
	}
	if strings.Contains(log, tok) {
		t.Errorf("stderr holds the token:\n%s", log)
	}
}

func TestKeyFromEnvironment(t *testing.T) {
	secret := make([]byte, 48)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	env := append(envWithout(keyEnv), keyEnv+"="+base64.StdEncoding.EncodeToString(secret))
	p, addr := startServer(t, env, "-listen", "127.0.0.1:0")
	if _, err := getPrice(t, addr, mint(t, secret, "prices.read"), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatalf("GetPrice with the key from %s: %v", keyEnv, err)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

func TestServesTLS(t *testing.T) {
	keyPath, secret := writeKey(t, 32)
	certPath, tlsKeyPath, pool := selfSigned(t)
	p, addr := startServer(t, envWithout(keyEnv), "-listen", "127.0.0.1:0", "-key", keyPath, "-tls-cert", certPath, "-tls-key", tlsKeyPath)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if _, err := getPrice(t, addr, mint(t, secret, "prices.read"), grpc.WithTransportCredentials(creds)); err != nil {
		t.Fatalf("GetPrice over TLS: %v", err)
	}
	if _, err := getPrice(t, addr, mint(t, secret, "prices.read"), grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Error("a plaintext call to the TLS server succeeded")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// selfSigned writes a certificate for localhost and 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, pool
}

// runToExit runs the binary, which must exit by itself, and returns its
// exit code and outputs. waitLimit bounds the run only: the binary is built
// (by the first test to need it, which may take longer than waitLimit on a
// loaded machine) before the clock starts.
func runToExit(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := serverBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pricing-server %v did not exit within %v; stderr: %s", args, waitLimit, errOut.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func TestRefusesToStart(t *testing.T) {
	short, _ := writeKey(t, 16)
	good, _ := writeKey(t, 32)
	readable, _ := writeKey(t, 32)
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	shortEnv := append(envWithout(keyEnv), keyEnv+"="+base64.StdEncoding.EncodeToString(make([]byte, 16)))
	cases := []struct {
		name     string
		env      []string
		args     []string
		mentions string
	}{
		{"no key at all", envWithout(keyEnv), nil, keyEnv},
		{"empty TOLLGATE_KEY", append(envWithout(keyEnv), keyEnv+"="), nil, keyEnv},
		{"16-byte key file", envWithout(keyEnv), []string{"-key", short}, "32 bytes"},
		{"16-byte TOLLGATE_KEY", shortEnv, nil, "32 bytes"},
		{"key file readable by others", envWithout(keyEnv), []string{"-key", readable}, "chmod 600"},
		{"missing key file", envWithout(keyEnv), []string{"-key", filepath.Join(t.TempDir(), "none")}, "key"},
		{"key of another algorithm", envWithout(keyEnv), []string{"-key", good, "-alg", "ES256"}, "PEM"},
		{"-tls-cert without -tls-key", envWithout(keyEnv), []string{"-key", good, "-tls-cert", good}, "-tls-key"},
		{"unknown flag", envWithout(keyEnv), []string{"-key", good, "-port", "1"}, "-port"},
		{"bad listen address", envWithout(keyEnv), []string{"-key", good, "-listen", "256.0.0.1:1"}, "-listen: cannot resolve the host"},
		{"unknown algorithm", envWithout(keyEnv), []string{"-key", good, "-alg", "HS257"}, "-alg: unsupported algorithm"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runToExit(t, c.env, append([]string{"-listen", "127.0.0.1:0"}, c.args...)...)
			if code == 0 {
				t.Fatalf("exit status 0; want non-zero")
			}
			if strings.Contains(stdout, "listening on") {
				t.Errorf("printed %q although it refused to start", stdout)
			}
			if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.Contains(stderr, c.mentions) {
				t.Errorf("stderr = %q; want one line mentioning %q", stderr, c.mentions)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
