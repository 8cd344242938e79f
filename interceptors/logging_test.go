package interceptors

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// lockedBuffer is a bytes.Buffer the server's goroutines may write to while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Case 27, logging half: every denial is logged with its reason, method,
// and, once the token is verified, its consumer and a fingerprint of its
// jti; no token, no segment of one and no part of the secret is ever
// written.
func TestLoggingNeverShowsTokens(t *testing.T) {
	var buf lockedBuffer
	h := newHarness(t, withGuardOptions(WithLogger(slog.New(slog.NewJSONHandler(&buf, nil)))))
	now := h.clock.Now()

	badSig := newTestKey(t, testKID).sign(t, claims(now))
	expired := h.token(t, func(c *token.Claims) {
		c.IssuedAt = now.Add(-30 * time.Minute)
		c.ExpiresAt = now.Add(-10 * time.Minute)
		c.ID = "jti-expired"
	})
	noPerm := h.token(t, func(c *token.Claims) { c.ID = "jti-noperm" })
	notOwner := h.token(t, func(c *token.Claims) {
		c.ID = "jti-notowner"
		c.AuthorizedParty = "billing"
		c.Extra = map[string]any{"owner_id": "o2"}
	})
	streamTok := h.token(t, func(c *token.Claims) { c.ID = "jti-stream" })

	_, err := h.client.Get(bearer(t, badSig), &testpb.GetRequest{})
	wantInvalid(t, err)
	_, err = h.client.Get(bearer(t, expired), &testpb.GetRequest{})
	wantExpired(t, err)
	_, err = h.client.GetAll(bearer(t, noPerm), &testpb.GetAllRequest{})
	if err == nil {
		t.Fatal("GetAll allowed")
	}
	_, err = h.client.Update(bearer(t, notOwner), &testpb.UpdateRequest{Owner: &testpb.Owner{Id: "o1"}})
	wantNotOwner(t, err, "owner.id")
	// A body token that disagrees with the metadata one.
	_, err = h.client.Get(bearer(t, noPerm), &testpb.GetRequest{AccessToken: notOwner})
	wantInvalid(t, err)
	h.wantNotReached(t)
	// A stream that outlives its token: one exchange while it is valid
	// (so the stream is surely open), then one after.
	stream, err := h.client.Chat(bearer(t, streamTok))
	if err != nil {
		t.Fatal(err)
	}
	for _, advance := range []time.Duration{0, 11 * time.Minute} {
		h.clock.Advance(advance)
		// Past its expiry the guard ends the stream at once, so the send
		// may find it closed (io.EOF); the status comes from Recv.
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1"}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if advance == 0 && err != nil {
			t.Fatalf("while valid: %v", err)
		}
	}
	wantExpired(t, err)

	type record struct {
		Msg     string `json:"msg"`
		Level   string `json:"level"`
		Reason  string `json:"reason"`
		Method  string `json:"method"`
		Peer    string `json:"peer"`
		Cause   string `json:"cause"`
		Consumr string `json:"consumer"`
		JTIFP   string `json:"jti_fp"`
	}
	var recs []record
	out := buf.String()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	want := []record{
		{Reason: "TOKEN_INVALID", Method: methodGet},
		{Reason: "TOKEN_EXPIRED", Method: methodGet},
		{Reason: "PERMISSION_DENIED", Method: "/tollgate.testpb.v1.TestService/GetAll", Consumr: "sub:alice", JTIFP: session.Fingerprint("jti-noperm")},
		{Reason: "NOT_OWNER", Method: methodUpdate, Consumr: "azp:billing", JTIFP: session.Fingerprint("jti-notowner")},
		{Reason: "TOKEN_INVALID", Method: methodGet},
		{Reason: "TOKEN_EXPIRED", Method: methodChat, Consumr: "sub:alice", JTIFP: session.Fingerprint("jti-stream")},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d log records, want %d:\n%s", len(recs), len(want), out)
	}
	for i, w := range want {
		r := recs[i]
		if r.Reason != w.Reason || r.Method != w.Method || r.Consumr != w.Consumr || r.JTIFP != w.JTIFP {
			t.Errorf("record %d: reason=%q method=%q consumer=%q jti_fp=%q, want %q %q %q %q",
				i, r.Reason, r.Method, r.Consumr, r.JTIFP, w.Reason, w.Method, w.Consumr, w.JTIFP)
		}
		if r.Level != "WARN" || r.Cause == "" || !strings.HasPrefix(r.Peer, "127.0.0.1:") {
			t.Errorf("record %d: level=%q cause=%q peer=%q", i, r.Level, r.Cause, r.Peer)
		}
		if w.JTIFP == "" && strings.Contains(out, `"jti_fp":""`) {
			t.Errorf("empty jti_fp logged")
		}
	}

	secrets := map[string]string{
		"secret (hex)":       hex.EncodeToString(h.key.secret),
		"secret (base64)":    base64.StdEncoding.EncodeToString(h.key.secret),
		"secret (base64url)": base64.RawURLEncoding.EncodeToString(h.key.secret),
		"secret (raw)":       string(h.key.secret),
	}
	for name, tok := range map[string]string{
		"bad signature": badSig, "expired": expired, "no permission": noPerm,
		"not owner": notOwner, "stream": streamTok,
	} {
		secrets[name+" token"] = tok
		for i, seg := range segments(tok) {
			secrets[name+" segment "+string(rune('0'+i))] = seg
		}
	}
	for name, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log contains the %s", name)
		}
	}
	for _, jti := range []string{"jti-expired", "jti-noperm", "jti-notowner", "jti-stream"} {
		if strings.Contains(out, jti) {
			t.Errorf("the log contains the raw jti %s", jti)
		}
	}
}
