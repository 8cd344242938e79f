package tokenservice_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/internal/fakeclock"
	tokenv1 "github.com/tollgate/tollgate/proto/tollgate/token/v1"
	"github.com/tollgate/tollgate/throttle"
	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The shared fixture of the tokenservice tests: an issuer (an EdDSA private
// key, a verifier on a fake clock, the tollgate guard, and the TokenService)
// served over loopback TCP, as a real deployment runs it.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testIss = "https://auth.tollgate.test"
	testAud = "pricing"
)

// t0 is where every fake clock starts.
var t0 = time.Unix(1_800_000_000, 0).UTC()

// issuer is the TokenService behind the guard on loopback TCP.
type issuer struct {
	clock    *fakeclock.Clock
	key      *token.Key // private: the issuer signs
	verifier *token.Verifier
	signer   *token.Signer
	server   *tokenservice.Server
	addr     string
	conn     *grpc.ClientConn
	client   tokenv1.TokenServiceClient
	stopOnce sync.Once
	stopSrv  func()
	revs     *token.Revocations // with revoking: the set the verifier checks and Revoke writes
}

// issuerOption changes the fixture: revoking gives it a revocation set.
type issuerOption func(*issuerConfig)

type issuerConfig struct {
	revoking bool
	guard    []interceptors.Option
}

// withGuard adds options to the issuer's guard.
func withGuard(o ...interceptors.Option) issuerOption {
	return func(c *issuerConfig) { c.guard = append(c.guard, o...) }
}

// revoking makes the fixture's verifier check a revocation set (on the fake
// clock) that its TokenService's Revoke and Logout write.
func revoking(c *issuerConfig) { c.revoking = true }

func newIssuer(t *testing.T, opts ...issuerOption) *issuer {
	t.Helper()
	var cfg issuerConfig
	for _, o := range opts {
		o(&cfg)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.NewPrivateKey("issuer-1", token.EdDSA, priv)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{clock: fakeclock.New(t0), key: key}
	vopts := []token.VerifierOption{token.WithClock(is.clock.Now)}
	if cfg.revoking {
		is.revs = token.NewRevocations(token.RevocationsClock(is.clock.Now, is.clock.AfterFunc))
		t.Cleanup(is.revs.Close)
		vopts = append(vopts, token.WithRevocations(is.revs))
	}
	if is.verifier, err = token.NewVerifier(ks, testIss, testAud, vopts...); err != nil {
		t.Fatal(err)
	}
	if is.signer, err = token.NewSigner(key); err != nil {
		t.Fatal(err)
	}
	renewer, err := token.NewLocalRenewer(is.verifier, token.DefaultRenewalPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var sopts []tokenservice.ServerOption
	if cfg.revoking {
		sopts = append(sopts, tokenservice.WithRevocations(is.revs, is.verifier.RevocationLimits(), is.clock.Now))
	}
	if is.server, err = tokenservice.NewServer(renewer, sopts...); err != nil {
		t.Fatal(err)
	}
	// The refusal tests send several bad tokens from one loopback peer on a
	// frozen clock; the guard's per-peer budget of failed authentications
	// (tested in interceptors) would refuse them before the checks under test.
	guard, err := interceptors.NewGuard(is.verifier, append([]interceptors.Option{interceptors.WithAuthFailureLimit(throttle.Limit{})}, cfg.guard...)...)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(guard.ServerOptions()...)
	tokenservice.Register(gs, is.server)
	if err := guard.Init(gs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	is.stopSrv = func() { gs.Stop(); <-done }
	if is.conn, err = grpc.NewClient("passthrough:///"+is.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		is.stopSrv()
		t.Fatal(err)
	}
	is.client = tokenv1.NewTokenServiceClient(is.conn)
	t.Cleanup(is.stop)
	return is
}

// stop stops the server and closes the client connection; safe to call
// twice.
func (is *issuer) stop() {
	is.stopOnce.Do(func() {
		is.conn.Close()
		is.stopSrv()
	})
}

// claims are a user's first token: issued at iat, 15 minutes, authenticated
// at iat.
func claims(iat time.Time) token.Claims {
	return token.Claims{
		Issuer:          testIss,
		Subject:         "alice",
		Audience:        []string{testAud},
		IssuedAt:        iat,
		ExpiresAt:       iat.Add(15 * time.Minute),
		AuthTime:        iat,
		SessionID:       "sid-1",
		AuthorizedParty: "checkout",
		Permissions:     []string{"prices.read"},
		Extra:           map[string]any{"seller_id": "s-42"},
	}
}

func (is *issuer) mint(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := is.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantStatus checks the code and, when reason is set, the guard's
// ErrorInfo reason.
func wantStatus(t testing.TB, err error, code codes.Code, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("err = %v, want %v", err, code)
	}
	if reason == "" {
		return
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason || info.GetDomain() != interceptors.Domain {
				t.Errorf("ErrorInfo %s/%s, want %s/%s", info.GetDomain(), info.GetReason(), interceptors.Domain, reason)
			}
			return
		}
	}
	t.Errorf("no ErrorInfo in %v, want reason %s", err, reason)
}

// errNoToken reports an error message that quotes a token.
func errNoToken(t testing.TB, err error, toks ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, tok := range toks {
		if tok != "" && containsAny(err.Error(), tok) {
			t.Errorf("error %q quotes a token", err)
		}
	}
}

// containsAny reports whether s holds tok or any of its segments.
func containsAny(s, tok string) bool {
	if strings.Contains(s, tok) {
		return true
	}
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 8 && strings.Contains(s, seg) {
			return true
		}
	}
	return false
}
