package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/tollgate/tollgate/examples/inventory/proto/inventory/v1"
	"github.com/tollgate/tollgate/token"
)

func newSecret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// The server starts (no init-time "already registered" panic, every rule
// compiles), prints where it listens, serves a public call and a guarded
// one, and stops with status 0 when its context ends.
func TestServes(t *testing.T) {
	secret := newSecret(t)
	t.Setenv(keyEnv, base64.StdEncoding.EncodeToString(secret))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outW := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-audience", "inventory"}, outW, &stderr)
		outW.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line (stderr: %s): %v", stderr.String(), err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q; want \"listening on HOST:PORT\"", line)
	}
	go io.Copy(io.Discard, out)

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inventoryv1.NewInventoryServiceClient(conn)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if _, err := client.Ping(cctx, &inventoryv1.PingRequest{}); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	key, err := token.NewHMACKey("", token.HS256, secret)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := signer.Sign(token.Claims{Issuer: "tollgate-demo", Subject: "clerk-1", Audience: []string{"inventory"},
		IssuedAt: now, ExpiresAt: now.Add(time.Minute), Permissions: []string{"inventory.read"},
		Extra: map[string]any{"warehouse_id": "wh-1"}})
	if err != nil {
		t.Fatal(err)
	}
	authed := metadata.AppendToOutgoingContext(cctx, "authorization", "Bearer "+tok)
	if _, err := client.GetStock(authed, &inventoryv1.GetStockRequest{WarehouseId: "wh-1", Sku: "sku-a"}); err != nil {
		t.Fatalf("GetStock: %v", err)
	}
	_, err = client.GetStock(authed, &inventoryv1.GetStockRequest{WarehouseId: "wh-2", Sku: "sku-a"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetStock of another warehouse: %v; want PermissionDenied", err)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit status %d; want 0 (stderr: %s)", code, stderr.String())
	}
	if strings.Contains(stderr.String(), tok) {
		t.Fatal("the log holds a token")
	}
}

func TestRefusesToStart(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString(newSecret(t))
	for _, tc := range []struct {
		name string
		env  bool
		args []string
		code int
		want string
	}{
		{"no key", false, nil, 1, "no key"},
		{"unknown alg", true, []string{"-alg", "none"}, 2, "-alg"},
		{"extra argument", true, []string{"serve"}, 2, "unexpected argument"},
		{"key pasted as an argument", true, []string{secret}, 2, "unexpected argument"},
		{"missing key file", false, []string{"-key", "/nonexistent/key"}, 1, "-key"},
		{"bad listen", true, []string{"-listen", "127.0.0.1"}, 1, "-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env {
				t.Setenv(keyEnv, secret)
			} else {
				t.Setenv(keyEnv, "")
				// t.Setenv cannot unset; run() looks the variable up.
				unsetenv(t, keyEnv)
			}
			var stdout, stderr syncBuffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit status %d; want %d (stderr: %s)", code, tc.code, stderr.String())
			}
			line := stderr.String()
			if !strings.Contains(line, tc.want) || strings.Count(line, "\n") != 1 {
				t.Fatalf("stderr %q; want one line naming %q", line, tc.want)
			}
			if strings.Contains(line, secret) {
				t.Fatalf("stderr quotes the key: %q", line)
			}
			if stdout.String() != "" {
				t.Fatalf("stdout %q; want nothing", stdout.String())
			}
		})
	}
}

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

// unsetenv removes k for the rest of the test; a t.Setenv(k, …) before it
// restores the old value afterwards.
func unsetenv(t *testing.T, k string) {
	t.Helper()
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}
