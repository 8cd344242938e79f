package interceptors

import (
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tollgate/tollgate/internal/testpb"
	"github.com/tollgate/tollgate/token"
)

// Case 24: how the token may arrive in metadata.
func TestCase24Metadata(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t)
	rejected := []struct {
		name string
		kv   []string
		want func(testing.TB, error)
	}{
		{"no authorization", nil, wantMissing},
		{"two authorization values", []string{"authorization", "Bearer " + tok, "authorization", "Bearer " + tok}, wantInvalid},
		{"Basic scheme", []string{"authorization", "Basic xxx"}, wantInvalid},
		{"Basic scheme with the token", []string{"authorization", "Basic " + tok}, wantInvalid},
		{"Bearer with no token", []string{"authorization", "Bearer"}, wantInvalid},
		{"Bearer and a space, no token", []string{"authorization", "Bearer "}, wantInvalid},
		{"Bearer, two spaces", []string{"authorization", "Bearer  " + tok}, wantInvalid},
		{"Bearertok", []string{"authorization", "Bearer" + tok}, wantInvalid},
		{"token alone", []string{"authorization", tok}, wantInvalid},
		{"token in another key", []string{"token", tok}, wantMissing},
		{"Bearer token in another key", []string{"x-authorization", "Bearer " + tok}, wantMissing},
		{"x-prc-token without WithTokenHeader", []string{"x-prc-token", tok}, wantMissing},
		{"token with a trailing space", []string{"authorization", "Bearer " + tok + " "}, wantInvalid},
		{"token and junk", []string{"authorization", "Bearer " + tok + " x"}, wantInvalid},
	}
	for _, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.Get(ctxWith(t, tc.kv...), &testpb.GetRequest{})
			tc.want(t, err)
			h.wantNotReached(t)
		})
	}
	for _, scheme := range []string{"bearer ", "BEARER ", "Bearer ", "bEaReR "} {
		t.Run("accepted "+scheme, func(t *testing.T) {
			before := h.reached()
			resp, err := h.client.Get(ctxWith(t, "authorization", scheme+tok), &testpb.GetRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetSubject() != "alice" || h.reached() != before+1 {
				t.Fatalf("subject %q, reached %d", resp.GetSubject(), h.reached()-before)
			}
		})
	}
}

// Case 24 with WithTokenHeader("x-prc-token"): the raw token there is
// accepted; two sources must agree.
func TestCase24TokenHeader(t *testing.T) {
	h := newHarness(t, withGuardOptions(WithTokenHeader("X-Prc-Token")))
	tok := h.token(t)
	other := h.token(t) // another jti: a different, equally valid token

	ok := func(name string, kv ...string) {
		t.Helper()
		before := h.reached()
		resp, err := h.client.Get(ctxWith(t, kv...), &testpb.GetRequest{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.GetSubject() != "alice" || h.reached() != before+1 {
			t.Fatalf("%s: subject %q", name, resp.GetSubject())
		}
	}
	ok("raw token in x-prc-token", "x-prc-token", tok)
	ok("same token in both", "authorization", "Bearer "+tok, "x-prc-token", tok)
	ok("authorization alone still works", "authorization", "Bearer "+tok)

	before := h.reached()
	for _, tc := range []struct {
		name string
		kv   []string
		want func(testing.TB, error)
	}{
		{"different tokens in authorization and x-prc-token", []string{"authorization", "Bearer " + tok, "x-prc-token", other}, wantInvalid},
		{"two x-prc-token values", []string{"x-prc-token", tok, "x-prc-token", tok}, wantInvalid},
		{"Bearer scheme in x-prc-token", []string{"x-prc-token", "Bearer " + tok}, wantInvalid},
		{"leading space in x-prc-token", []string{"x-prc-token", " " + tok}, wantInvalid},
		{"empty x-prc-token", []string{"x-prc-token", ""}, wantMissing},
		{"good x-prc-token, bad authorization", []string{"authorization", "Basic " + tok, "x-prc-token", tok}, wantInvalid},
	} {
		_, err := h.client.Get(ctxWith(t, tc.kv...), &testpb.GetRequest{})
		t.Run(tc.name, func(t *testing.T) { tc.want(t, err) })
	}
	if h.reached() != before {
		t.Fatalf("a handler was reached on a rejected call")
	}
}

// The token in the request's token field (large tokens belong in the body).
func TestBodyToken(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t)
	other := h.token(t)

	t.Run("unary Get, body only", func(t *testing.T) {
		resp, err := h.client.Get(ctxWith(t), &testpb.GetRequest{Id: "x", AccessToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSubject() != "alice" {
			t.Fatalf("subject %q", resp.GetSubject())
		}
	})
	t.Run("unary Get, body and metadata agree", func(t *testing.T) {
		if _, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{AccessToken: tok}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unary Get, body and metadata differ", func(t *testing.T) {
		before := h.reached()
		_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{AccessToken: other})
		wantInvalid(t, err)
		if h.reached() != before {
			t.Fatal("handler reached")
		}
	})
	t.Run("unary Get, bad body token with good metadata", func(t *testing.T) {
		before := h.reached()
		_, err := h.client.Get(bearer(t, tok), &testpb.GetRequest{AccessToken: "garbage"})
		wantInvalid(t, err)
		if h.reached() != before {
			t.Fatal("handler reached")
		}
	})
	t.Run("server stream List, body only", func(t *testing.T) {
		stream, err := h.client.List(ctxWith(t), &testpb.ListRequest{Count: 2, AccessToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.GetSubject() != "alice" {
				t.Fatalf("subject %q", m.GetSubject())
			}
			n++
		}
		if n != 2 {
			t.Fatalf("%d items", n)
		}
	})
}

// Client and bidi streams with the token only in the first message: allowed,
// and the handler receives that first message intact, token included.
func TestStreamFirstMessageToken(t *testing.T) {
	t.Run("client stream Upload", func(t *testing.T) {
		h := newHarness(t)
		tok := h.token(t)
		stream, err := h.client.Upload(ctxWith(t))
		if err != nil {
			t.Fatal(err)
		}
		sent := []*testpb.UploadRequest{
			{Owner: &testpb.Owner{Id: "o1"}, Id: "first", AccessToken: tok},
			{Owner: &testpb.Owner{Id: "o1"}, Id: "second"},
		}
		for _, m := range sent {
			if err := stream.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCount() != 2 {
			t.Fatalf("count %d", resp.GetCount())
		}
		got, _, subs := h.server.recorded()
		if diff := cmp.Diff(sent, got, protocmp.Transform()); diff != "" {
			t.Fatalf("messages the handler received (-sent +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"alice"}, subs); diff != "" {
			t.Fatalf("subjects (-want +got):\n%s", diff)
		}
	})

	t.Run("bidi Chat", func(t *testing.T) {
		h := newHarness(t)
		tok := h.token(t)
		stream, err := h.client.Chat(ctxWith(t))
		if err != nil {
			t.Fatal(err)
		}
		sent := []*testpb.ChatRequest{
			{OwnerId: "o1", Text: "hello", AccessToken: tok},
			{OwnerId: "o1", Text: "again"},
		}
		for _, m := range sent {
			if err := stream.Send(m); err != nil {
				t.Fatal(err)
			}
			r, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.GetText() != "alice:"+m.GetText() {
				t.Fatalf("echo %q", r.GetText())
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end: %v", err)
		}
		_, got, _ := h.server.recorded()
		if diff := cmp.Diff(sent, got, protocmp.Transform()); diff != "" {
			t.Fatalf("messages the handler received (-sent +got):\n%s", diff)
		}
	})

	t.Run("first message without a token", func(t *testing.T) {
		h := newHarness(t)
		stream, err := h.client.Chat(ctxWith(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.ChatRequest{OwnerId: "o1", Text: "hi"}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		wantMissing(t, err)
		h.wantNotReached(t)
	})

	t.Run("first message with a bad token", func(t *testing.T) {
		h := newHarness(t)
		stream, err := h.client.Upload(ctxWith(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, AccessToken: "x.y.z"}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.CloseAndRecv()
		wantInvalid(t, err)
		h.wantNotReached(t)
	})

	t.Run("first message with a token, not owned", func(t *testing.T) {
		h := newHarness(t)
		stream, err := h.client.Upload(ctxWith(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o2"}, AccessToken: h.token(t)}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.CloseAndRecv()
		wantNotOwner(t, err, "owner.id")
		h.wantNotReached(t)
	})

	for _, kind := range []string{"Upload", "Chat"} {
		t.Run("closed before the first message: "+kind, func(t *testing.T) {
			h := newHarness(t)
			var err error
			switch kind {
			case "Upload":
				stream, serr := h.client.Upload(ctxWith(t))
				if serr != nil {
					t.Fatal(serr)
				}
				_, err = stream.CloseAndRecv()
			case "Chat":
				stream, serr := h.client.Chat(ctxWith(t))
				if serr != nil {
					t.Fatal(serr)
				}
				if serr := stream.CloseSend(); serr != nil {
					t.Fatal(serr)
				}
				_, err = stream.Recv()
			}
			wantMissing(t, err)
			h.wantNotReached(t)
		})
	}
}

// A stream authenticated from metadata whose first message carries another
// token in its token field: the two sources disagree, so the stream is
// refused, exactly as a unary call would be.
func TestStreamBodyTokenDisagreesWithMetadata(t *testing.T) {
	h := newHarness(t)
	tok := h.token(t)
	other := h.token(t, func(c *token.Claims) { c.Subject = "mallory" })

	t.Run("Upload", func(t *testing.T) {
		stream, err := h.client.Upload(bearer(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, AccessToken: other}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.CloseAndRecv()
		wantInvalid(t, err)
		if got, _, _ := h.server.recorded(); len(got) != 0 {
			t.Fatalf("handler received %d messages", len(got))
		}
	})
	t.Run("List", func(t *testing.T) {
		stream, err := h.client.List(bearer(t, tok), &testpb.ListRequest{Count: 1, AccessToken: other})
		if err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		wantInvalid(t, err)
	})
	t.Run("same token in both", func(t *testing.T) {
		stream, err := h.client.Upload(bearer(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.UploadRequest{Owner: &testpb.Owner{Id: "o1"}, AccessToken: tok}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	})
}
