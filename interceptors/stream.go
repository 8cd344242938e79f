package interceptors

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
)

// StreamServerInterceptor returns the guard's stream interceptor. Server,
// client and bidi streams are authenticated when they open (from metadata, or
// from the token field of the first message, which is then received before
// the handler runs and handed to it on its first RecvMsg; a stream
// authenticated from metadata whose first message sets the token field to
// another token fails with TOKEN_INVALID). Ownership is
// checked on every message received, and once the token expires the next
// message received or sent fails with Unauthenticated (TOKEN_EXPIRED).
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		pl, err := g.plan(ctx, info.FullMethod)
		if err != nil {
			return err
		}
		r := pl.rule
		if r.Public() {
			// A stream takes one token when it opens.
			if err := g.admit(ctx, pl, "", nil, ss); err != nil {
				return err
			}
			return handler(srv, ss)
		}
		tok, p := g.metadataToken(ctx)
		var first proto.Message
		if p == nil && tok == "" && r.TokenField() != nil && r.InputType() != nil {
			first = r.InputType().New().Interface()
			if err := ss.RecvMsg(first); err != nil {
				if errors.Is(err, io.EOF) {
					g.log(ctx, info.FullMethod, ReasonTokenMissing, nil, "stream closed before its first message")
					return errTokenMissing
				}
				return err
			}
			tok, p = g.bodyToken(r.TokenField(), first, tok)
		}
		sess, err := g.authenticate(ctx, info.FullMethod, r, tok, p)
		if err != nil {
			return err
		}
		if first != nil {
			if err := g.checkMessage(ctx, info.FullMethod, r, sess, first); err != nil {
				return err
			}
		}
		if err := g.admit(ctx, pl, g.consumerOf(sess), sess, ss); err != nil {
			return err
		}
		gs := &guardedStream{
			ServerStream: ss,
			ctx:          session.NewContext(ctx, sess),
			guard:        g,
			rule:         r,
			sess:         sess,
			method:       info.FullMethod,
			first:        first,
			renewal:      g.startRenewal(r, tok, sess),
		}
		if first == nil && r.TokenField() != nil {
			// Authenticated from metadata: the first message's token field,
			// if set, must carry the same token.
			gs.mdTok = tok
		}
		err = handler(srv, gs)
		if denial := gs.denial(); denial != nil {
			// The guard refused a message: that refusal ends the stream
			// whatever the handler made of it, and no renewed token goes
			// out with it.
			return denial
		}
		if gs.renewal != nil {
			if renewed, ok := g.renew.wait(gs.renewal); ok {
				ss.SetTrailer(metadata.Pairs(RenewedTokenKey, renewed))
			}
		}
		return err
	}
}

// guardedStream carries the session to the handler and checks every message.
// Once the guard refuses a message (not the owner, token expired, token
// mismatch), every later RecvMsg and SendMsg returns the same refusal and the
// stream ends with it.
type guardedStream struct {
	grpc.ServerStream
	ctx     context.Context
	guard   *Guard
	rule    *permissions.Rule
	sess    *session.Session
	method  string
	first   proto.Message // received by the interceptor, not yet handed over
	mdTok   string        // metadata token the first message's token field must match
	renewal *flight       // nil when the call does not renew

	denied     atomic.Pointer[error]
	headerDone atomic.Bool
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) denial() error {
	if p := s.denied.Load(); p != nil {
		return *p
	}
	return nil
}

// deny records err as the stream's refusal (the first one wins) and returns
// it.
func (s *guardedStream) deny(err error) error {
	s.denied.CompareAndSwap(nil, &err)
	return s.denial()
}

func (s *guardedStream) RecvMsg(m any) error {
	if d := s.denial(); d != nil {
		return d
	}
	if s.first != nil {
		first := s.first
		s.first = nil
		return handOver(m, first)
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.mdTok != "" {
		mdTok := s.mdTok
		s.mdTok = ""
		pm, _ := m.(proto.Message)
		if _, p := s.guard.bodyToken(s.rule.TokenField(), pm, mdTok); p != nil {
			s.guard.log(s.ctx, s.method, ReasonTokenInvalid, s.sess, p.cause)
			proto.Reset(pm)
			return s.deny(errTokenInvalid)
		}
	}
	if err := s.checkExpiry(); err != nil {
		resetMsg(m)
		return s.deny(err)
	}
	if err := s.guard.checkMessage(s.ctx, s.method, s.rule, s.sess, m); err != nil {
		// The refused message's content must not reach a handler that
		// ignores the error.
		resetMsg(m)
		return s.deny(err)
	}
	return nil
}

func (s *guardedStream) SendMsg(m any) error {
	if d := s.denial(); d != nil {
		return d
	}
	if err := s.checkExpiry(); err != nil {
		return s.deny(err)
	}
	if s.guard.opts.renewalHeader && s.renewal != nil && s.headerDone.CompareAndSwap(false, true) {
		if renewed, ok := s.renewal.readyToken(); ok {
			// Set before the first message, so it travels in its headers.
			_ = s.ServerStream.SetHeader(metadata.Pairs(RenewedTokenKey, renewed))
		}
	}
	return s.ServerStream.SendMsg(m)
}

func resetMsg(m any) {
	if pm, ok := m.(proto.Message); ok && pm != nil {
		proto.Reset(pm)
	}
}

func (s *guardedStream) checkExpiry() error {
	if s.guard.verifier.Expired(s.sess) {
		s.guard.log(s.ctx, s.method, ReasonTokenExpired, s.sess, "token expired during the stream")
		return errTokenExpired
	}
	return nil
}

// handOver copies the message the interceptor received into the handler's
// message. Both are normally the same generated type; a message of another
// registry is copied through its wire form rather than by proto.Merge, which
// panics on mismatched descriptors.
func handOver(dst any, src proto.Message) error {
	pm, ok := dst.(proto.Message)
	if !ok {
		return errors.New("interceptors: stream message is not a protobuf message")
	}
	if pm.ProtoReflect().Descriptor() == src.ProtoReflect().Descriptor() {
		proto.Reset(pm)
		proto.Merge(pm, src)
		return nil
	}
	b, err := proto.Marshal(src)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, pm)
}
