package e2ebench

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"

	"github.com/tollgate/tollgate/token"
)

// Servers is the server process as the load process sees it: where its
// servers listen, its control endpoint, and the signers of the tokens it
// accepts.
type Servers struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	addrs   childAddrs
	control *http.Client
	signers map[string]*token.Signer // by algorithm
	waited  chan error

	closeOnce sync.Once
	closeErr  error
}

// StartServers starts exe, the test binary, as the server process with
// ChildEnv set and fresh keys for every algorithm, and waits until it
// listens. The keys go to it on its standard input; its standard error goes
// to stderr. callers is how many callers' SKUs its stores hold.
func StartServers(exe string, callers int, stderr io.Writer) (*Servers, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	hk, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		return nil, err
	}
	ek, err := token.NewPrivateKey("", token.EdDSA, priv)
	if err != nil {
		return nil, err
	}
	s := &Servers{signers: map[string]*token.Signer{}, waited: make(chan error, 1)}
	for _, k := range []*token.Key{hk, ek} {
		sg, err := token.NewSigner(k)
		if err != nil {
			return nil, err
		}
		s.signers[k.Algorithm()] = sg
	}
	cfg, err := json.Marshal(childConfig{
		Keys: map[string]string{
			token.HS256: base64.StdEncoding.EncodeToString(secret),
			token.EdDSA: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		},
		Callers: callers,
	})
	if err != nil {
		return nil, err
	}
	clear(secret)

	s.cmd = exec.Command(exe)
	s.cmd.Env = append(os.Environ(), ChildEnv+"=1")
	s.cmd.Stderr = stderr
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.waited <- s.cmd.Wait() }()
	if _, err := s.stdin.Write(append(cfg, '\n')); err != nil {
		s.stdin.Close()
		return nil, fmt.Errorf("e2ebench: the server process did not take its configuration: %v", <-s.waited)
	}
	clear(cfg)
	line, rerr := bufio.NewReader(out).ReadBytes('\n')
	if rerr == nil {
		rerr = json.Unmarshal(line, &s.addrs)
	}
	if rerr != nil {
		s.stdin.Close()
		return nil, fmt.Errorf("e2ebench: the server process did not start: %v", <-s.waited)
	}
	// The control endpoint is asked twice per slice, over one kept-alive
	// connection.
	s.control = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	return s, nil
}

// Addr returns the address of the server of kind (Bare, Tollgate, Baseline)
// for alg.
func (s *Servers) Addr(kind, alg string) string { return s.addrs.Servers[serverName(kind, alg)] }

// Signer returns the signer of the tokens the servers accept for alg.
func (s *Servers) Signer(alg string) *token.Signer { return s.signers[alg] }

// Usage asks the server process for its CPU time and allocations so far;
// with collect, it first runs a complete garbage collection, whose own CPU
// is then outside whatever is measured from the reading on.
func (s *Servers) Usage(ctx context.Context, collect bool) (Usage, error) {
	url := "http://" + s.addrs.Control + "/usage"
	if collect {
		url += "?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Usage{}, err
	}
	resp, err := s.control.Do(req)
	if err != nil {
		return Usage{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Usage{}, fmt.Errorf("e2ebench: control endpoint: %s", resp.Status)
	}
	var u Usage
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return Usage{}, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return u, nil
}

// Close ends the server process (it stops serving when its stdin closes)
// and waits for it: after Close its CPU profile, if any, is written. Later
// calls return what the first returned.
func (s *Servers) Close() error {
	s.closeOnce.Do(func() {
		s.control.CloseIdleConnections()
		s.stdin.Close()
		if err := <-s.waited; err != nil {
			s.closeErr = fmt.Errorf("e2ebench: server process: %w", err)
		}
	})
	return s.closeErr
}
