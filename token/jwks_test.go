package token

import (
	"context"
	"crypto/elliptic"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// jwksServer is an issuer publishing a key set on loopback. Its handler
// counts requests and serves what the test last set.
type jwksServer struct {
	srv      *httptest.Server
	requests atomic.Int64

	mu           sync.Mutex
	body         []byte
	status       int
	cacheControl string
	block        chan struct{} // when not nil, requests wait for it to close
	entered      chan struct{} // signalled when a request starts waiting
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{body: body, status: http.StatusOK, entered: make(chan struct{}, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	body, status, cc, block := s.body, s.status, s.cacheControl, s.block
	s.mu.Unlock()
	if block != nil {
		s.entered <- struct{}{}
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *jwksServer) set(body []byte, status int, cacheControl string) {
	s.mu.Lock()
	s.body, s.status, s.cacheControl = body, status, cacheControl
	s.mu.Unlock()
}

// hold makes requests wait until the returned function is called.
func (s *jwksServer) hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.block = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.block = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// url is the server's key set URL, with a query that must never show.
func (s *jwksServer) url() string { return s.srv.URL + "/keys?token=querysecret" }

// jwksEvents records a source's events.
type jwksEvents struct {
	mu  sync.Mutex
	evs []KeyEvent
}

func (e *jwksEvents) observe(ev KeyEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *jwksEvents) last() KeyEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.evs) == 0 {
		return KeyEvent{}
	}
	return e.evs[len(e.evs)-1]
}

func (e *jwksEvents) count(kind KeyEventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// jwksFixture is a source on a fake clock following a server.
type jwksFixture struct {
	srv    *jwksServer
	clock  *fakeClock
	src    *JWKS
	events *jwksEvents
}

func newJWKSFixture(t *testing.T, body []byte, opts ...JWKSOption) *jwksFixture {
	t.Helper()
	f := &jwksFixture{srv: newJWKSServer(t, body), clock: newClock(), events: &jwksEvents{}}
	// The wait is real time: a long one, so that a loaded machine (-race,
	// two cores) cannot make a refetch on loopback miss it; tests of the
	// bound set their own.
	opts = append([]JWKSOption{JWKSClock(f.clock.Now, f.clock.AfterFunc), JWKSObserver(f.events.observe), JWKSUnknownKIDWait(time.Minute)}, opts...)
	src, err := NewJWKS(context.Background(), f.srv.url(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	f.src = src
	return f
}

func jwksRSADoc(t testing.TB, kids ...string) []byte {
	t.Helper()
	rsa2, _ := jwksTestKeys(t)
	var keys []map[string]any
	for _, kid := range kids {
		pub := &testRSA(t).PublicKey
		if kid == "k2" {
			pub = &rsa2.PublicKey
		}
		keys = append(keys, jwksJWK(t, kid, pub, map[string]any{"alg": "RS256", "use": "sig"}))
	}
	return jwksDoc(t, keys...)
}

func TestJWKSStartErrors(t *testing.T) {
	huge := make([]byte, MaxJWKSBody+1)
	for i := range huge {
		huge[i] = ' '
	}
	cases := []struct {
		name   string
		body   []byte
		status int
		want   error
		why    string
		secret string
	}{
		{"status 500", []byte(`{"error": "bodysecret"}`), 500, ErrJWKSFetch, "status 500", "bodysecret"},
		{"status 204", nil, 204, ErrJWKSFetch, "status 204", ""},
		{"huge body", huge, 200, ErrJWKSFetch, "body larger than 1048576 bytes", ""},
		{"use enc only", jwksDoc(t, jwksJWK(t, "enc", &testRSA(t).PublicKey, map[string]any{"use": "enc"})), 200, ErrKeySet, `no usable key (skipped: key 0 (kid "enc"): "use" is not "sig")`, ""},
	}
	for _, r := range jwksRefusals(t) {
		cases = append(cases, struct {
			name   string
			body   []byte
			status int
			want   error
			why    string
			secret string
		}{r.name, r.doc, 200, ErrKeySet, r.why, r.secret})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newJWKSServer(t, tc.body)
			srv.set(tc.body, tc.status, "")
			clock := newClock()
			src, err := NewJWKS(context.Background(), srv.url(), JWKSClock(clock.Now, clock.AfterFunc))
			if err == nil {
				src.Close()
				t.Fatal("NewJWKS succeeded")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %q, want %v saying %q", err, tc.want, tc.why)
			}
			if !strings.Contains(err.Error(), srv.srv.URL+"/keys") || strings.Contains(err.Error(), "querysecret") {
				t.Fatalf("error %q should name the URL without its query", err)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret[:min(16, len(tc.secret))]) {
				t.Fatalf("error quotes the body or key material: %q", err)
			}
			if n := clock.Timers(); n != 0 {
				t.Fatalf("a failed NewJWKS left %d timers", n)
			}
		})
	}
}

// During refresh, each bad answer keeps the last good set and says so.
func TestJWKSRefreshKeepsLastGood(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	good := f.src.Current()
	if good == nil || good.lookup([]byte("k1")) == nil {
		t.Fatal("no k1 after start")
	}
	type bad struct {
		name   string
		body   []byte
		status int
		kind   KeyEventKind
		why    string
	}
	cases := []bad{
		{"status 500", []byte("oops"), 500, KeysFetchFailed, "status 500"},
		{"huge body", make([]byte, MaxJWKSBody+10), 200, KeysFetchFailed, "larger than"},
	}
	for _, r := range jwksRefusals(t) {
		cases = append(cases, bad{r.name, r.doc, 200, KeysRejected, r.why})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.srv.set(tc.body, tc.status, "")
			before := f.srv.requests.Load()
			// The next refresh is due at most an hour away (default
			// period, or a backoff after the previous case).
			f.clock.Advance(time.Hour)
			if f.srv.requests.Load() == before {
				t.Fatal("no refresh within an hour")
			}
			ev := f.events.last()
			if ev.Kind != tc.kind || ev.Err == nil || !strings.Contains(ev.Err.Error(), tc.why) {
				t.Fatalf("event %+v, want %s saying %q", ev, tc.kind, tc.why)
			}
			if ev.Source != f.srv.srv.URL+"/keys" || ev.Keys != 1 {
				t.Fatalf("event source %q keys %d", ev.Source, ev.Keys)
			}
			if f.src.Current() != good {
				t.Fatal("the last good set was replaced")
			}
		})
	}
	f.srv.set(jwksRSADoc(t, "k1"), 200, "")
	f.clock.Advance(time.Hour)
	if ev := f.events.last(); ev.Kind != KeysFetched || ev.Err != nil {
		t.Fatalf("after recovery: %+v", ev)
	}
	if f.src.Current() != good {
		t.Fatal("the same document made a new set")
	}
}

// The rotation drill: K1; K1+K2 with a token naming K2 before any scheduled
// refresh; then K1 dropped.
func TestJWKSRotation(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	sets := make(chan *KeySet, 4)
	f.src.Watch(func(ks *KeySet) { sets <- ks })
	k1 := f.src.Current().lookup([]byte("k1"))

	f.srv.set(jwksRSADoc(t, "k1", "k2"), 200, "max-age=600")
	ks := f.src.Unknown(context.Background(), "k2")
	if ks == nil || ks.lookup([]byte("k2")) == nil {
		t.Fatal("Unknown(k2) did not find the new key")
	}
	if f.src.Current() != ks || <-sets != ks {
		t.Fatal("the new set is not current, or not handed to the watcher")
	}
	if ks.lookup([]byte("k1")) != k1 {
		t.Fatal("k1 did not keep its *Key across the refetch")
	}
	if f.srv.requests.Load() != 2 {
		t.Fatalf("%d requests, want 2", f.srv.requests.Load())
	}

	// The refetch's max-age=600 set the next refresh.
	f.srv.set(jwksRSADoc(t, "k2"), 200, "")
	f.clock.Advance(599 * time.Second)
	if f.srv.requests.Load() != 2 {
		t.Fatal("refreshed before the refetch's max-age")
	}
	f.clock.Advance(time.Second)
	after := <-sets
	if after.holds(k1) || f.src.Current().holds(k1) {
		t.Fatal("k1 is still held after it left the published set")
	}
	if after.lookup([]byte("k2")) != ks.lookup([]byte("k2")) {
		t.Fatal("k2 did not keep its *Key")
	}
	// A token still naming k1 costs a refetch at once (the interval counts
	// unknown-kid refetches only, and the last was 10 minutes ago), and
	// finds nothing.
	if got := f.src.Unknown(context.Background(), "k1"); got != nil {
		t.Fatal("Unknown(k1) found a removed key")
	}
}

// A flood of random kids over a minute costs at most two fetches.
func TestJWKSFlood(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	start := f.srv.requests.Load()
	for i := range 10_000 {
		if ks := f.src.Unknown(context.Background(), "random-"+strconv.Itoa(i)); ks != nil {
			t.Fatal("a random kid found a set")
		}
		f.clock.Advance(6 * time.Millisecond) // 10,000 × 6 ms = one minute
	}
	if n := f.srv.requests.Load() - start; n < 1 || n > 2 {
		t.Fatalf("%d fetches for a minute of random kids, want 1 or 2", n)
	}
	if n := f.events.count(KeysRefetchUnknownKID); n < 1 || n > 2 {
		t.Fatalf("%d refetches reported, want 1 or 2", n)
	}
	if f.events.count(KeysUnknownKIDSuppressed) == 0 {
		t.Fatal("no suppressed kid reported")
	}
}

// A kid a fresh set lacked costs no fetch again until the set changes,
// even after the interval.
func TestJWKSNegativeCache(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	if f.src.Unknown(context.Background(), "stale") != nil {
		t.Fatal("found stale")
	}
	n := f.srv.requests.Load()
	f.clock.Advance(2 * time.Minute)
	if f.src.Unknown(context.Background(), "stale") != nil || f.srv.requests.Load() != n {
		t.Fatal("a kid known to be unknown caused a fetch")
	}
	if f.src.Unknown(context.Background(), "other") != nil || f.srv.requests.Load() != n+1 {
		t.Fatal("a new unknown kid after the interval did not cause a fetch")
	}
	// A refresh bringing the same set remembers.
	f.clock.Advance(time.Hour)
	f.clock.Advance(2 * time.Minute)
	if f.src.Unknown(context.Background(), "stale") != nil || f.srv.requests.Load() != n+2 {
		t.Fatal("a refresh with the same set forgot the unknown kids")
	}
	n += 1
	// A new set forgets: stale may have been published since.
	f.srv.set(jwksRSADoc(t, "k1", "stale"), 200, "")
	f.clock.Advance(time.Hour)
	if f.src.Current().lookup([]byte("stale")) == nil {
		t.Fatal("refresh missed stale")
	}
	f.srv.set(jwksRSADoc(t, "k2"), 200, "")
	f.clock.Advance(time.Hour)
	if f.src.Unknown(context.Background(), "stale") != nil || f.srv.requests.Load() != n+4 {
		t.Fatalf("after the set changed, stale should cost one fetch: %d requests, want %d", f.srv.requests.Load(), n+4)
	}
}

// A slow issuer: Unknown returns within its wait, while the server is still
// holding the request; the fetch goes on and the set is adopted.
func TestJWKSSlowIssuer(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"), JWKSUnknownKIDWait(20*time.Millisecond))
	sets := make(chan *KeySet, 1)
	f.src.Watch(func(ks *KeySet) { sets <- ks })
	release := f.srv.hold()
	defer release()
	f.srv.set(jwksRSADoc(t, "k1", "k2"), 200, "")
	t0 := time.Now()
	if f.src.Unknown(context.Background(), "k2") != nil {
		t.Fatal("found k2 while the issuer holds the request")
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Unknown took %v with a 20 ms wait", d)
	}
	<-f.srv.entered // the request is still held: Unknown did not wait for it
	// A second caller joins the fetch in flight, costing no request.
	if f.src.Unknown(context.Background(), "k2") != nil || f.srv.requests.Load() != 2 {
		t.Fatal("a second caller did not join the fetch in flight")
	}
	release()
	if ks := <-sets; ks.lookup([]byte("k2")) == nil {
		t.Fatal("the slow fetch was not adopted")
	}
}

// UnknownKIDWait(0) never waits; a canceled ctx ends a long wait.
func TestJWKSUnknownWaitBounds(t *testing.T) {
	t.Run("zero", func(t *testing.T) {
		f := newJWKSFixture(t, jwksRSADoc(t, "k1"), JWKSUnknownKIDWait(0))
		sets := make(chan *KeySet, 1)
		f.src.Watch(func(ks *KeySet) { sets <- ks })
		release := f.srv.hold()
		defer release()
		f.srv.set(jwksRSADoc(t, "k1", "k2"), 200, "")
		if f.src.Unknown(context.Background(), "k2") != nil {
			t.Fatal("found k2 with no wait")
		}
		<-f.srv.entered
		release()
		if ks := <-sets; ks.lookup([]byte("k2")) == nil {
			t.Fatal("the background refetch was not adopted")
		}
	})
	t.Run("ctx", func(t *testing.T) {
		// Neither the wait nor the fetch's own bound ends before the
		// test's guard: only ctx can.
		f := newJWKSFixture(t, jwksRSADoc(t, "k1"), JWKSUnknownKIDWait(time.Hour), JWKSTimeout(time.Hour))
		release := f.srv.hold()
		defer release()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan *KeySet)
		go func() { done <- f.src.Unknown(ctx, "k2") }()
		<-f.srv.entered
		cancel()
		guard := time.NewTimer(30 * time.Second)
		defer guard.Stop()
		select {
		case ks := <-done:
			if ks != nil {
				t.Fatal("found k2")
			}
		case <-guard.C:
			t.Fatal("Unknown waited past its canceled ctx")
		}
	})
	t.Run("start deadline", func(t *testing.T) {
		srv := newJWKSServer(t, jwksRSADoc(t, "k1"))
		release := srv.hold()
		defer release()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-srv.entered; cancel() }()
		_, err := NewJWKS(ctx, srv.url())
		if !errors.Is(err, ErrJWKSFetch) || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("canceled start: %v", err)
		}
		go func() { <-srv.entered }()
		_, err = NewJWKS(context.Background(), srv.url(), JWKSTimeout(50*time.Millisecond))
		if !errors.Is(err, ErrJWKSFetch) || !strings.Contains(err.Error(), "no response within 50ms") {
			t.Fatalf("timed out start: %v", err)
		}
	})
}

// jwksRefreshAt reports whether a refresh happens exactly at d after the
// last fetch, and not one second before.
func jwksRefreshAt(t *testing.T, f *jwksFixture, d time.Duration) {
	t.Helper()
	n := f.srv.requests.Load()
	f.clock.Advance(d - time.Second)
	if f.srv.requests.Load() != n {
		t.Fatalf("refreshed before %v", d)
	}
	f.clock.Advance(time.Second)
	if f.srv.requests.Load() != n+1 {
		t.Fatalf("no refresh at %v", d)
	}
}

func TestJWKSMaxAge(t *testing.T) {
	for _, tc := range []struct {
		cc   string
		next time.Duration
	}{
		{"", time.Hour},
		{"public, max-age=600", 600 * time.Second},
		{"max-age=10", 5 * time.Minute},
		{"max-age=0", 5 * time.Minute},
		{"no-store", 5 * time.Minute},
		{"max-age=999999", 24 * time.Hour},
		{"max-age=banana", time.Hour},
	} {
		t.Run(tc.cc, func(t *testing.T) {
			f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
			f.srv.set(jwksRSADoc(t, "k1"), 200, tc.cc)
			jwksRefreshAt(t, f, time.Hour) // the first response had none
			jwksRefreshAt(t, f, tc.next)
			jwksRefreshAt(t, f, tc.next)
		})
	}
	t.Run("bounds", func(t *testing.T) {
		f := newJWKSFixture(t, jwksRSADoc(t, "k1"), JWKSRefreshBounds(time.Minute, 10*time.Minute), JWKSDefaultRefresh(2*time.Minute))
		jwksRefreshAt(t, f, 2*time.Minute)
		f.srv.set(jwksRSADoc(t, "k1"), 200, "max-age=3600")
		jwksRefreshAt(t, f, 2*time.Minute)
		jwksRefreshAt(t, f, 10*time.Minute)
	})
}

func TestJWKSBackoff(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	f.srv.set(nil, 503, "")
	jwksRefreshAt(t, f, time.Hour)
	for _, d := range []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300} {
		jwksRefreshAt(t, f, d*time.Second)
	}
	if f.events.count(KeysFetchFailed) != 12 || f.src.Current().lookup([]byte("k1")) == nil {
		t.Fatal("failures not reported, or the set lost")
	}
	f.srv.set(jwksRSADoc(t, "k1"), 200, "")
	jwksRefreshAt(t, f, 300*time.Second)
	jwksRefreshAt(t, f, time.Hour) // success resets the backoff
	f.srv.set(nil, 503, "")
	jwksRefreshAt(t, f, time.Hour)
	jwksRefreshAt(t, f, time.Second)
}

// Close stops the timer and the fetch in flight, and leaves no goroutine.
func TestJWKSClose(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	srv := newJWKSServer(t, jwksRSADoc(t, "k1"))
	client := &http.Client{Transport: &http.Transport{}}
	src, err := NewJWKS(context.Background(), srv.url(), JWKSHTTPClient(client), JWKSUnknownKIDWait(0))
	if err != nil {
		t.Fatal(err)
	}
	release := srv.hold()
	defer release()
	src.Unknown(context.Background(), "k2")
	<-srv.entered // a fetch is in flight, the refresh timer armed
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if src.Current() == nil {
		t.Fatal("Close dropped the last set")
	}
	release()
	n := srv.requests.Load()
	if src.Unknown(context.Background(), "k3") != nil || srv.requests.Load() != n {
		t.Fatal("Unknown fetched after Close")
	}
	srv.srv.Close()
	client.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)

	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	if f.clock.Timers() != 1 {
		t.Fatalf("%d timers armed, want 1", f.clock.Timers())
	}
	f.src.Close()
	if f.clock.Timers() != 0 {
		t.Fatal("Close left the refresh timer armed")
	}
	n = f.srv.requests.Load()
	f.clock.Advance(48 * time.Hour)
	if f.srv.requests.Load() != n {
		t.Fatal("a closed source refreshed")
	}
}

func TestJWKSStartWithoutKeys(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.set(nil, 500, "")
	clock := newClock()
	ev := &jwksEvents{}
	src, err := NewJWKS(context.Background(), srv.url(), JWKSClock(clock.Now, clock.AfterFunc), JWKSStartWithoutKeys(), JWKSObserver(ev.observe))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Current() != nil || ev.last().Kind != KeysFetchFailed {
		t.Fatalf("current %v, event %+v", src.Current(), ev.last())
	}
	sets := make(chan *KeySet, 1)
	src.Watch(func(ks *KeySet) { sets <- ks })
	srv.set(jwksRSADoc(t, "k1"), 200, "")
	clock.Advance(time.Second) // the first retry
	if ks := <-sets; ks.lookup([]byte("k1")) == nil || src.Current() != ks {
		t.Fatal("the retry's set was not adopted")
	}
}

func TestJWKSURLRules(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://idp.example/keys", false, true},
		{"http://127.0.0.1:8080/keys", false, true},
		{"http://127.9.9.9/keys", false, true},
		{"http://[::1]:80/keys", false, true},
		{"http://localhost/keys", false, true},
		{"http://LOCALHOST/keys", false, true},
		{"http://idp.example/keys", false, false},
		{"http://10.0.0.1/keys", false, false},
		{"http://[::ffff:10.0.0.1]/keys", false, false},
		{"http://localhost.idp.example/keys", false, false},
		{"http://idp.example/keys", true, true},
		{"ftp://idp.example/keys", true, false},
		{"file:///etc/keys", false, false},
		{"/keys", false, false},
		{"https:///keys", false, false},
		{"https://user:pass@idp.example/keys", false, false},
	} {
		_, err := checkFetchURL(tc.url, tc.insecure)
		if (err == nil) != tc.ok {
			t.Errorf("%s (insecure %v): %v, want ok %v", tc.url, tc.insecure, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "pass") {
			t.Errorf("error quotes credentials: %v", err)
		}
	}
	if _, err := NewJWKS(context.Background(), "http://idp.example/keys"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("plain http to a remote host: %v", err)
	}
}

func TestJWKSHTTPSAndRedirects(t *testing.T) {
	body := jwksRSADoc(t, "k1")
	plain := newJWKSServer(t, body)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/keys":
			_, _ = w.Write(body)
		case "/moved":
			http.Redirect(w, r, "/keys", http.StatusFound)
		case "/downgrade":
			http.Redirect(w, r, plain.url(), http.StatusFound)
		case "/remote-http":
			http.Redirect(w, r, "http://idp.example/keys", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	}))
	defer tlsSrv.Close()
	opt := JWKSHTTPClient(tlsSrv.Client())
	for _, p := range []string{"/keys", "/moved"} {
		src, err := NewJWKS(context.Background(), tlsSrv.URL+p, opt)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		src.Close()
	}
	for p, why := range map[string]string{
		"/downgrade":   "redirect from https to " + plain.srv.URL + "/keys refused",
		"/remote-http": "redirect to http://idp.example/keys refused",
		"/loop":        "more than 5 redirects",
	} {
		_, err := NewJWKS(context.Background(), tlsSrv.URL+p, opt)
		if !errors.Is(err, ErrJWKSFetch) || !strings.Contains(err.Error(), why) || strings.Contains(err.Error(), "querysecret") {
			t.Fatalf("%s: %v, want %q", p, err, why)
		}
	}
	// Without the server's CA, the certificate is refused.
	if _, err := NewJWKS(context.Background(), tlsSrv.URL+"/keys"); !errors.Is(err, ErrJWKSFetch) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA: %v", err)
	}
}

// Unknown and refreshes race Close, Watch and each other without a data race
// or a lost set.
func TestJWKSConcurrentUnknown(t *testing.T) {
	f := newJWKSFixture(t, jwksRSADoc(t, "k1"))
	var got atomic.Pointer[KeySet]
	f.src.Watch(func(ks *KeySet) { got.Store(ks) })
	f.srv.set(jwksRSADoc(t, "k1", "k2"), 200, "")
	var wg sync.WaitGroup
	var found atomic.Int64
	for range 16 {
		wg.Go(func() {
			if ks := f.src.Unknown(context.Background(), "k2"); ks != nil {
				found.Add(1)
			}
		})
	}
	wg.Go(func() { f.clock.Advance(time.Hour) })
	wg.Wait()
	if found.Load() != 16 || got.Load() == nil || got.Load() != f.src.Current() {
		t.Fatalf("%d of 16 callers found k2; the watcher has the current set: %v", found.Load(), got.Load() == f.src.Current())
	}
	if n := f.srv.requests.Load(); n > 3 {
		t.Fatalf("%d requests for one unknown kid and one refresh", n)
	}
}

// An EC set served as the issuer publishes it, with ES256 bound by curve.
func TestJWKSECKeys(t *testing.T) {
	p256 := jwksEC(t, elliptic.P256())
	f := newJWKSFixture(t, jwksDoc(t, jwksJWK(t, "ec", &p256.PublicKey, nil)))
	jwksWant(t, f.src.Current(), "ec", ES256, &p256.PublicKey)
}
