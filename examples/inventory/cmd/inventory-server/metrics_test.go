package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	inventoryv1 "github.com/tollgate/tollgate/examples/inventory/proto/inventory/v1"
	"github.com/tollgate/tollgate/token"
)

// With -metrics-listen the server says where its metrics are, and a scrape
// of them, parsed as Prometheus text, counts the calls the guard admitted
// and refused, by method and reason.
func TestExportsMetrics(t *testing.T) {
	secret := newSecret(t)
	t.Setenv(keyEnv, base64.StdEncoding.EncodeToString(secret))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outW := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0"}, outW, &stderr)
		outW.Close()
	}()
	lines := bufio.NewReader(out)
	var addr, url string
	for _, want := range []string{"listening on ", "metrics on "} {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("no %q line (stderr: %s): %v", want, stderr.String(), err)
		}
		v, ok := strings.CutPrefix(strings.TrimSpace(line), want)
		if !ok {
			t.Fatalf("line %q; want %q first", line, want)
		}
		if addr == "" {
			addr = v
		} else {
			url = v
		}
	}
	go io.Copy(io.Discard, lines)

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inventoryv1.NewInventoryServiceClient(conn)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
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
	for range 3 {
		if _, err := client.GetStock(authed, &inventoryv1.GetStockRequest{WarehouseId: "wh-1", Sku: "sku-a"}); err != nil {
			t.Fatalf("GetStock: %v", err)
		}
	}
	_, _ = client.GetStock(authed, &inventoryv1.GetStockRequest{WarehouseId: "wh-2", Sku: "sku-a"})
	_, _ = client.GetStock(cctx, &inventoryv1.GetStockRequest{WarehouseId: "wh-1", Sku: "sku-a"})

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the scrape is not Prometheus text: %v", err)
	}
	decisions := fams["tollgate_server_decisions_total"]
	if decisions == nil {
		t.Fatalf("no tollgate_server_decisions_total among %d families", len(fams))
	}
	count := func(decision, reason string) float64 {
		var n float64
		for _, m := range decisions.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["rpc_method"] == "inventory.v1.InventoryService/GetStock" && l["tollgate_decision"] == decision && l["tollgate_reason"] == reason {
				n += m.GetCounter().GetValue()
			}
		}
		return n
	}
	for _, c := range []struct {
		decision, reason string
		want             float64
	}{{"allowed", "", 3}, {"denied", "NOT_OWNER", 1}, {"unauthenticated", "TOKEN_MISSING", 1}} {
		if got := count(c.decision, c.reason); got != c.want {
			t.Errorf("GetStock %s %q = %v; want %v", c.decision, c.reason, got, c.want)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit status %d; want 0 (stderr: %s)", code, stderr.String())
	}
}
