package e2ebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/token"
)

// Case is one kind of call the load client makes, on all three servers.
type Case struct {
	Name   string
	Alg    string // of the tokens, and so of the tollgate and baseline servers
	Miss   bool   // a new token every call: tollgate's cache never hits
	Stream bool   // ListPrices (a server stream) instead of SetPrice
}

// Cases are the cases of BenchmarkE2E, in the order it runs them.
var Cases = []Case{
	{Name: "unary-hit", Alg: token.HS256},
	{Name: "unary-miss-HS256", Alg: token.HS256, Miss: true},
	{Name: "unary-miss-EdDSA", Alg: token.EdDSA, Miss: true},
	{Name: "stream-hit", Alg: token.HS256, Stream: true},
}

// Config is the load one case puts on the servers.
type Config struct {
	Callers int // concurrent callers, each making one call at a time
	Conns   int // connections per server; caller c uses connection c mod Conns
	Rounds  int // rounds of six slices: bare, tollgate, baseline, baseline, tollgate, bare
	// Slice is the wall time the slowest server's slices should take: the
	// calls per caller of every slice are calibrated from the second of two
	// warm-up slices per server. With 0, every slice is WarmCalls calls per
	// caller.
	Slice time.Duration
	// WarmCalls is how many calls each caller makes in a warm-up slice.
	WarmCalls int
}

// DefaultConfig is BenchmarkE2E's configuration: 32 callers on 4
// connections, 40 rounds of slices of about 200 ms.
func DefaultConfig() Config {
	return Config{Callers: 32, Conns: 4, Rounds: 40, Slice: 200 * time.Millisecond, WarmCalls: 20}
}

// roundOrder is the order of the slices of one round. Its halves each load
// every server once; the pairs of a ratio are taken within a half, so
// tollgate, in the middle, is next to both of its baselines.
var roundOrder = [6]string{Bare, Tollgate, Baseline, Baseline, Tollgate, Bare}

// SliceResult is what one slice measured.
type SliceResult struct {
	Server string // Bare, Tollgate or Baseline
	Calls  int
	Wall   time.Duration
	CPU    time.Duration // of the server process
	Allocs uint64        // of the server process
}

// Result is what one case measured: its slices in order, rounds after the
// warm-up, and every call's latency as the client saw it.
type Result struct {
	Case           Case
	CallsPerCaller int // per slice
	Slices         []SliceResult
	latencies      map[string][]time.Duration // by server; sorted by Summary
}

type target struct {
	kind    string
	conns   []*grpc.ClientConn
	clients []pricingv1.PriceServiceClient
}

type loader struct {
	servers *Servers
	c       Case
	cfg     Config
	targets []*target
	hit     []context.Context // per caller: its one token
	blocks  [][][]string      // miss: [block][caller][call] "Bearer <token>"
	setReq  []*pricingv1.SetPriceRequest
	listReq []*pricingv1.ListPricesRequest
	lat     [][]time.Duration // per caller, reused by every slice
}

// Run runs case c against the servers: two warm-up slices per server, the
// calibration of the slices' length, then cfg.Rounds rounds.
func Run(ctx context.Context, s *Servers, c Case, cfg Config) (*Result, error) {
	if cfg.Callers < 1 || cfg.Conns < 1 || cfg.Rounds < 1 || cfg.WarmCalls < 1 {
		return nil, errors.New("e2ebench: callers, conns, rounds and warm-up calls must be at least 1")
	}
	l := &loader{servers: s, c: c, cfg: cfg, lat: make([][]time.Duration, cfg.Callers)}
	defer l.close()
	for _, kind := range []string{Bare, Tollgate, Baseline} {
		t := &target{kind: kind}
		l.targets = append(l.targets, t)
		for range cfg.Conns {
			cc, err := grpc.NewClient(s.Addr(kind, c.Alg), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			t.conns = append(t.conns, cc)
			t.clients = append(t.clients, pricingv1.NewPriceServiceClient(cc))
		}
	}
	for i := range cfg.Callers {
		l.setReq = append(l.setReq, &pricingv1.SetPriceRequest{Sku: skuOf(i), SellerId: sellerOf(i), AmountCents: 100 + int64(i), Currency: "USD"})
		l.listReq = append(l.listReq, &pricingv1.ListPricesRequest{SellerId: sellerOf(i)})
	}
	now := time.Now()
	if c.Miss {
		if err := l.mint(now, 2, cfg.WarmCalls); err != nil {
			return nil, err
		}
	} else {
		for i := range cfg.Callers {
			tok, err := l.sign(now, i)
			if err != nil {
				return nil, err
			}
			l.hit = append(l.hit, metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok)))
		}
	}

	// Warm up: connections, caches, the servers' heaps. The second slice of
	// each server calibrates the length of the measured ones.
	var slowest time.Duration
	for w := range 2 {
		for _, t := range l.targets {
			sr, err := l.slice(ctx, t, w, cfg.WarmCalls)
			if err != nil {
				return nil, err
			}
			if w == 1 {
				slowest = max(slowest, sr.Wall)
			}
		}
	}
	k := cfg.WarmCalls
	if cfg.Slice > 0 {
		perCall := slowest / time.Duration(cfg.WarmCalls)
		k = max(1, int(cfg.Slice/max(perCall, time.Microsecond)))
	}
	if c.Miss {
		if err := l.mint(now, 2*cfg.Rounds, k); err != nil {
			return nil, err
		}
	}

	res := &Result{Case: c, CallsPerCaller: k, latencies: map[string][]time.Duration{}}
	for r := range cfg.Rounds {
		for i, kind := range roundOrder {
			t := l.target(kind)
			sr, err := l.slice(ctx, t, 2*r+i/3, k)
			if err != nil {
				return nil, err
			}
			res.Slices = append(res.Slices, sr)
			for _, ls := range l.lat {
				res.latencies[kind] = append(res.latencies[kind], ls...)
			}
		}
	}
	return res, nil
}

func (l *loader) target(kind string) *target {
	for _, t := range l.targets {
		if t.kind == kind {
			return t
		}
	}
	panic("e2ebench: no server " + kind)
}

func (l *loader) close() {
	for _, t := range l.targets {
		for _, cc := range t.conns {
			_ = cc.Close()
		}
	}
}

// sign returns a token for caller, issued at now: its own subject, one of
// a few consumers (azp), its seller_id, and both permissions the cases
// need. Every token gets a random jti.
func (l *loader) sign(now time.Time, caller int) (string, error) {
	return l.servers.Signer(l.c.Alg).Sign(token.Claims{
		Issuer:          issuer,
		Subject:         fmt.Sprintf("bench-user-%d", caller),
		Audience:        []string{audience},
		IssuedAt:        now,
		ExpiresAt:       now.Add(tokenLifetime),
		AuthTime:        now,
		SessionID:       fmt.Sprintf("bench-session-%d", caller),
		AuthorizedParty: fmt.Sprintf("bench-service-%d", caller%benchSellers),
		Permissions:     []string{"prices.read", "prices.write"},
		Extra:           map[string]any{"seller_id": sellerOf(caller)},
	})
}

// mint replaces the token blocks with n blocks of k tokens per caller,
// signed on every core.
func (l *loader) mint(now time.Time, n, k int) error {
	l.blocks = make([][][]string, n)
	for b := range l.blocks {
		l.blocks[b] = make([][]string, l.cfg.Callers)
		for c := range l.blocks[b] {
			l.blocks[b][c] = make([]string, k)
		}
	}
	work := make(chan int) // caller
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				for b := range n {
					for j := range k {
						tok, err := l.sign(now, c)
						if err != nil {
							errs <- err
							return
						}
						l.blocks[b][c][j] = "Bearer " + tok
					}
				}
			}
		}()
	}
	var err error
feed:
	for c := range l.cfg.Callers {
		select {
		case work <- c:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// slice loads t with k calls from every caller, the miss tokens from block,
// and reads the server process's usage before and after. The reading
// before follows a complete collection: otherwise the collection a slice's
// allocations leave owing runs in the next slice, and the server loaded
// after the baseline (133 allocations a call) would pay for the baseline's
// garbage. Each slice pays for the collections its own allocations start.
func (l *loader) slice(ctx context.Context, t *target, block, k int) (SliceResult, error) {
	before, err := l.servers.Usage(ctx, true)
	if err != nil {
		return SliceResult{}, err
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, l.cfg.Callers)
	for c := range l.cfg.Callers {
		l.lat[c] = l.lat[c][:0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := range k {
				t0 := time.Now()
				if err := l.call(ctx, t, c, block, j); err != nil {
					errs[c] = err
					return
				}
				l.lat[c] = append(l.lat[c], time.Since(t0))
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	after, err := l.servers.Usage(ctx, false)
	if err != nil {
		return SliceResult{}, err
	}
	if err := errors.Join(errs...); err != nil {
		return SliceResult{}, err
	}
	return SliceResult{
		Server: t.kind,
		Calls:  k * l.cfg.Callers,
		Wall:   wall,
		CPU:    time.Duration(after.CPUMicros-before.CPUMicros) * time.Microsecond,
		Allocs: after.Allocs - before.Allocs,
	}, nil
}

// call makes caller's j-th call of a slice on t.
func (l *loader) call(ctx context.Context, t *target, c, block, j int) error {
	client := t.clients[c%len(t.clients)]
	var cctx context.Context
	if l.c.Miss {
		cctx = metadata.NewOutgoingContext(ctx, metadata.MD{"authorization": {l.blocks[block][c][j]}})
	} else {
		cctx = l.hit[c]
	}
	if !l.c.Stream {
		if _, err := client.SetPrice(cctx, l.setReq[c]); err != nil {
			return callError(l.c, t.kind, err)
		}
		return nil
	}
	st, err := client.ListPrices(cctx, l.listReq[c])
	if err != nil {
		return callError(l.c, t.kind, err)
	}
	n := 0
	for {
		_, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return callError(l.c, t.kind, err)
		}
		n++
	}
	if want := pricesOf(c, l.cfg.Callers); n != want {
		return fmt.Errorf("e2ebench: %s on %s: ListPrices streamed %d prices, want %d", l.c.Name, t.kind, n, want)
	}
	return nil
}

// pricesOf is how many prices ListPrices streams for caller's seller when
// the store holds the SKUs of callers callers.
func pricesOf(caller, callers int) int {
	n := 0
	for c := caller % benchSellers; c < callers; c += benchSellers {
		n++
	}
	return n
}

// callError says which call failed and how, by its status code and message:
// neither the tollgate server's nor the baseline's messages name a token.
func callError(c Case, kind string, err error) error {
	st := status.Convert(err)
	return fmt.Errorf("e2ebench: %s on %s: %s: %s", c.Name, kind, st.Code(), st.Message())
}
