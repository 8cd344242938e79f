package interceptors

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// Ownership is checked on every message of a client stream: message 1 is
// the caller's, message 2 is not, and the stream ends with NOT_OWNER after
// the handler saw exactly the first.
func TestUploadOwnershipEveryMessage(t *testing.T) {
	h := newHarness(t)
	stream, err := h.client.Upload(bearer(t, h.token(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, owner := range []string{"o1", "o2"} {
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: owner}, Id: "item-of-" + owner}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = stream.CloseAndRecv()
	wantNotOwner(t, err, "owner.id")
	got, _, _ := h.server.recorded()
	if len(got) != 1 || got[0].GetOwner().GetId() != "o1" {
		t.Fatalf("handler saw %v, want exactly the o1 message", got)
	}
}

// The same on a bidi stream.
func TestChatOwnershipEveryMessage(t *testing.T) {
	h := newHarness(t)
	stream, err := h.client.Chat(bearer(t, h.token(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "mine"}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetText() != "alice:mine" {
		t.Fatalf("first message: %v %v", r, err)
	}
	if err := stream.Send(&testpb.ChatRequest{OwnerId: "o2", Text: "theirs"}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantNotOwner(t, err, "owner_id")
	_, got, _ := h.server.recorded()
	if len(got) != 1 || got[0].GetText() != "mine" {
		t.Fatalf("handler saw %v, want exactly the first message", got)
	}
}

// Case 35, expiry mid-stream: a bidi stream opened with a valid token ends
// with TOKEN_EXPIRED on the first message after exp + leeway; one message
// before that instant still passes.
func TestChatExpiresMidStream(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t) // exp = t0 + 10 min
	exp := h.clock.Now().Add(10 * time.Minute)
	stream, err := h.client.Chat(bearer(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	send := func(text string) error {
		t.Helper()
		// A stream the server has ended refuses sends with io.EOF; its
		// status comes from Recv.
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: text}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		_, err := stream.Recv()
		return err
	}
	if err := send("fresh"); err != nil {
		t.Fatal(err)
	}
	// Past exp but inside the leeway: still valid, as Verify would say.
	h.clock.Advance(exp.Sub(h.clock.Now()) + token.DefaultLeeway - time.Second)
	if err := send("within leeway"); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	h.clock.Advance(2 * time.Second) // now past exp + leeway
	wantExpired(t, send("too late"))
	_, got, _ := h.server.recorded()
	if len(got) != 2 {
		t.Fatalf("handler saw %d messages, want 2", len(got))
	}
	// A new call with the same token is refused the same way.
	_, err = h.client.Get(bearer(t, tok), &testpb.GetRequest{})
	wantExpired(t, err)
}

// Case 35: a server stream's sends stop once the token has expired: the
// handler's next Send fails with TOKEN_EXPIRED and the stream ends with it.
func TestListExpiresBeforeSend(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t)
	h.server.beforeListSend = func(i int32) {
		if i == 1 {
			h.clock.Advance(10*time.Minute + token.DefaultLeeway)
		}
	}
	stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetIndex() != 0 {
		t.Fatalf("first item: %v %v", m, err)
	}
	_, err = stream.Recv()
	wantExpired(t, err)
}
