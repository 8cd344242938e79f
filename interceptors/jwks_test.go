package interceptors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// keyIssuer is an issuer publishing a JWK Set on loopback HTTP, whose set
// the test changes, and which counts the fetches.
type keyIssuer struct {
	srv     *httptest.Server
	doc     atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newKeyIssuer(t *testing.T, keys ...*token.Key) *keyIssuer {
	t.Helper()
	ki := &keyIssuer{}
	ki.publish(t, keys...)
	ki.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ki.fetches.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		w.Write(*ki.doc.Load())
	}))
	t.Cleanup(ki.srv.Close)
	return ki
}

func (ki *keyIssuer) publish(t *testing.T, keys ...*token.Key) {
	t.Helper()
	doc, err := token.MarshalJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	ki.doc.Store(&doc)
}

// signingKey is an ES256 key and its signer.
type signingKey struct {
	key    *token.Key
	signer *token.Signer
}

func newSigningKey(t testing.TB, kid string) signingKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.NewPrivateKey(kid, token.ES256, priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{k, s}
}

func (k signingKey) sign(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := k.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newJWKS follows ki's set on clock, with a long wait for the refetch an
// unknown kid starts: the drill asserts that no valid token is refused,
// which holds when the issuer answers within the wait (the default 100 ms
// is for production, where a slower issuer costs a refusal, not a hang).
func newJWKS(t *testing.T, ki *keyIssuer, clock *fakeclock.Clock, opts ...token.JWKSOption) *token.JWKS {
	t.Helper()
	opts = append([]token.JWKSOption{token.JWKSClock(clock.Now, clock.AfterFunc), token.JWKSUnknownKIDWait(10 * time.Second)}, opts...)
	j, err := token.NewJWKS(t.Context(), ki.srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// The rotation drill, under load over real gRPC: the issuer publishes K1
// and signs with it; adds K2 and signs with K2 at once, before any
// scheduled refresh; later drops K1. Callers keep calling throughout with
// the newest token: not one call is refused. Once the verifier has the
// set without K1, a K1 token is refused, even the one it had cached.
func TestRotationDrillUnderLoad(t *testing.T) {
	k1, k2 := newSigningKey(t, "k1"), newSigningKey(t, "k2")
	ki := newKeyIssuer(t, k1.key)
	kclock := fakeclock.New(t0)
	adopted := make(chan int, 16)
	j := newJWKS(t, ki, kclock, token.JWKSObserver(func(e token.KeyEvent) {
		if e.Kind == token.KeysFetched {
			adopted <- e.Keys
		}
	}))
	h := newHarness(t, withKeySource(j))

	tok1 := k1.sign(t, claims(h.clock.Now()))
	var current atomic.Pointer[string]
	current.Store(&tok1)

	const callers = 8
	var (
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		failures atomic.Int64
		firstErr atomic.Pointer[error]
		withK2   [callers]atomic.Int64
		progress = make(chan struct{}, 1) // a caller finished a call
		phase    atomic.Int32
	)
	// waitFor waits, on the callers' progress, until cond holds.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !cond() {
			select {
			case <-progress:
			case <-deadline:
				t.Fatalf("waiting for %s: timed out", what)
			}
		}
	}
	tok2 := k2.sign(t, claims(h.clock.Now()))
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One deadline for all of this caller's calls: nothing may hang.
			base, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := *current.Load()
				ctx := metadata.NewOutgoingContext(base, metadata.Pairs("authorization", "Bearer "+tok))
				_, err := h.client.Get(ctx, &testpb.GetRequest{Id: "x"})
				switch {
				case err != nil:
					failures.Add(1)
					which := "K1"
					if tok == tok2 {
						which = "K2"
					}
					err = errors.New(which + " token, phase " + strconv.Itoa(int(phase.Load())) + ": " + err.Error())
					firstErr.CompareAndSwap(nil, &err)
				case tok == tok2:
					withK2[i].Add(1)
				}
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	// Wait until every caller has done some calls with K1 (the load is on
	// before the rotation starts), through the cache.
	waitFor("calls with K1", func() bool {
		s, ok := h.verifier.Cached(tok1)
		return ok && s != nil && h.reached() >= 4*callers
	})

	// K2 is published and used at once.
	phase.Store(1)
	ki.publish(t, k1.key, k2.key)
	before := ki.fetches.Load()
	current.Store(&tok2)
	waitFor("every caller's calls with K2", func() bool {
		for i := range withK2 {
			if withK2[i].Load() < 5 {
				return false
			}
		}
		return true
	})
	if got := ki.fetches.Load() - before; got != 1 {
		t.Errorf("%d fetches to learn K2, want 1 (single flight)", got)
	}

	// awaitSet waits for the event of a fetch that adopted a set of n
	// keys (the start's fetch and the refetch K2 started report theirs
	// too, the latter after its waiters were released).
	awaitSet := func(n int, what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case got := <-adopted:
				if got == n {
					return
				}
			case <-deadline:
				t.Fatalf("no fetch adopted %s", what)
			}
		}
	}
	awaitSet(2, "the set with K2")

	// K1 is dropped; the verifier learns it at its next scheduled refresh.
	phase.Store(2)
	ki.publish(t, k2.key)
	kclock.Advance(301 * time.Second)
	awaitSet(1, "the set without K1 at the scheduled refresh")
	// The load with K2 goes on past the drop.
	mark := withK2[0].Load()
	waitFor("calls with K2 after the drop", func() bool { return withK2[0].Load() >= mark+5 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d valid calls refused during the rotation; first: %v", n, *firstErr.Load())
	}
	if _, ok := h.verifier.Cached(tok1); ok {
		t.Error("the cached K1 token is still served after K1 left the set")
	}
	_, err := h.client.Get(ctxWith(t, "authorization", "Bearer "+tok1), &testpb.GetRequest{Id: "x"})
	wantInvalid(t, err)
}

// A flood of 10,000 tokens naming random kids, spread over a minute of the
// key source's clock, through real gRPC: at most 2 fetches (one refetch per
// refetch interval), while valid calls in between keep passing. The
// guard's failed-authentication budget is off here (the harness turns it
// off), so every forged token reaches the verifier and its key source.
func TestRandomKIDFloodCostsAtMostTwoFetches(t *testing.T) {
	k1 := newSigningKey(t, "k1")
	forger := newSigningKey(t, "unused")
	ki := newKeyIssuer(t, k1.key)
	kclock := fakeclock.New(t0)
	// The production wait: a flood's callers never wait on a fetch past
	// it, and none is started past the rate anyway.
	j := newJWKS(t, ki, kclock, token.JWKSUnknownKIDWait(token.DefaultJWKSUnknownKIDWait))
	h := newHarness(t, withKeySource(j))
	valid := k1.sign(t, claims(h.clock.Now()))
	forged := forger.sign(t, claims(h.clock.Now()))
	forgedRest := forged[strings.IndexByte(forged, '.'):]
	start := ki.fetches.Load()

	const flood, step = 10_000, 6 * time.Millisecond // 60 s in all
	const workers = 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []error
	next := atomic.Int64{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= flood {
					return
				}
				kclock.Advance(step)
				// A forged token naming a kid nobody published.
				hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"at+jwt","kid":"rnd-` + strconv.FormatInt(i, 36) + `"}`))
				tok := hdr + forgedRest
				_, err := h.client.Get(ctxWith(t, "authorization", "Bearer "+tok), &testpb.GetRequest{Id: "x"})
				if reasonOf(err) != "TOKEN_INVALID" {
					mu.Lock()
					unexpected = append(unexpected, errors.New("forged token: "+errString(err)))
					mu.Unlock()
				}
				if i%100 == 0 {
					if _, err := h.client.Get(ctxWith(t, "authorization", "Bearer "+valid), &testpb.GetRequest{Id: "x"}); err != nil {
						mu.Lock()
						unexpected = append(unexpected, errors.New("valid token: "+errString(err)))
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("%d unexpected results; first: %v", len(unexpected), unexpected[0])
	}
	if got := ki.fetches.Load() - start; got > 2 {
		t.Fatalf("%d fetches for %d random kids over a minute, want at most 2", got, flood)
	}
}

// reasonOf returns the ErrorInfo reason of err's status, or "".
func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// errString is err's status code and reason, or "nil".
func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return status.Code(err).String() + " " + reasonOf(err)
}

// An issuer that stops answering holds no call: a token naming a kid the
// set lacks starts a refetch, waits the default 100 ms for it, and is
// refused while the issuer still has not answered; a known kid's call
// never waits at all. Calls in flight end with their own deadline, not
// the issuer's.
func TestSlowIssuerHoldsNoCall(t *testing.T) {
	k1, k2 := newSigningKey(t, "k1"), newSigningKey(t, "k2")
	doc, err := token.MarshalJWKS(k1.key)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) > 1 {
			select { // the issuer hangs
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write(doc)
	}))
	defer srv.Close()
	defer close(release)
	kclock := fakeclock.New(t0)
	j, err := token.NewJWKS(t.Context(), srv.URL, token.JWKSClock(kclock.Now, kclock.AfterFunc))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	h := newHarness(t, withKeySource(j))

	_, err = h.client.Get(ctxWith(t, "authorization", "Bearer "+k2.sign(t, claims(h.clock.Now()))), &testpb.GetRequest{Id: "x"})
	wantInvalid(t, err)
	if served.Load() != 2 {
		t.Fatalf("%d requests at the issuer, want the start and one refetch", served.Load())
	}
	// release closes only when the test ends: the call was refused
	// while the refetch still hung.
	if _, err := h.client.Get(ctxWith(t, "authorization", "Bearer "+k1.sign(t, claims(h.clock.Now()))), &testpb.GetRequest{Id: "x"}); err != nil {
		t.Fatalf("known kid while the issuer hangs: %v", err)
	}
}

// What a key source does reaches the guard's observer, and a set kept
// after a failed fetch reaches its log: an operator sees that the issuer is
// failing while calls are still served from the last good set.
func TestKeySourceEventsReachObserverAndLog(t *testing.T) {
	k1 := newSigningKey(t, "k1")
	ki := newKeyIssuer(t, k1.key)
	kclock := fakeclock.New(t0)
	j := newJWKS(t, ki, kclock)
	events := make(chan Event, 16)
	obs := ObserverFunc(func(e Event) {
		if e.Decision == DecisionKeySource {
			events <- e
		}
	})
	var logged syncLog
	h := newHarness(t, withKeySource(j), withGuardOptions(WithObserver(obs), WithLogger(slog.New(slog.NewJSONHandler(&logged, nil)))))

	ki.doc.Store(&[]byte{'{'}) // the issuer starts serving garbage
	kclock.Advance(301 * time.Second)
	select {
	case e := <-events:
		if e.Reason != string(token.KeysRejected) || e.Issuer != testIss || e.KeySource != ki.srv.URL {
			t.Fatalf("event %+v, want a rejected set of %s from %s", e, testIss, ki.srv.URL)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no key-source event")
	}
	if _, err := h.client.Get(ctxWith(t, "authorization", "Bearer "+k1.sign(t, claims(h.clock.Now()))), &testpb.GetRequest{Id: "x"}); err != nil {
		t.Fatalf("call with the last good set: %v", err)
	}
	if out := logged.String(); !strings.Contains(out, "kept its last good key set") || !strings.Contains(out, `"event":"rejected"`) {
		t.Fatalf("log %q lacks the kept set", out)
	}
}

// syncLog is a log destination safe for concurrent writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
