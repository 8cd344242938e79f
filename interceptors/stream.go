package interceptors

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
)

// StreamServerInterceptor returns the guard's stream interceptor.
//
// Server, client and bidi streams are authenticated when they open (from
// metadata, or from the token field of the first message, which is then
// received before the handler runs and handed to it on its first RecvMsg; a
// stream authenticated from metadata whose first message sets the token
// field to another token fails with TOKEN_INVALID).
//
// Opening a stream takes the rule's cost from the caller's bucket (per
// consumer, or per peer when public), and on client and bidi streams every
// message received after the first takes its message cost; a message the
// bucket cannot pay for ends the stream with ResourceExhausted before the
// handler sees it. Ownership is checked on every message received. A
// consumer (a peer, when public) holds at most max_streams streams of a
// method open at once. Once the token expires the stream ends with
// Unauthenticated (TOKEN_EXPIRED), at once even when no message comes.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	g.streamTaken.Store(true)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		obs := g.opts.observer != nil
		pl, err := g.plan(ctx, info.FullMethod)
		if err != nil {
			if obs {
				g.observeCall(info.FullMethod, nil, "", nil, StageCall, err)
			}
			return err
		}
		if pl.rule.Public() {
			return g.publicStream(srv, ss, pl, handler)
		}
		r := pl.rule
		tok, p := g.metadataToken(ctx)
		var first proto.Message
		if p == nil && tok == "" && r.TokenField() != nil && r.InputType() != nil {
			first = r.InputType().New().Interface()
			if err := ss.RecvMsg(first); err != nil {
				if errors.Is(err, io.EOF) {
					g.log(ctx, info.FullMethod, ReasonTokenMissing, nil, "stream closed before its first message")
					if obs {
						g.observeCall(info.FullMethod, pl, "", nil, StageCall, errTokenMissing)
					}
					return errTokenMissing
				}
				return err
			}
			tok, p = g.bodyToken(r.TokenField(), first, tok)
		}
		var vs verifyStat
		sess, err := g.authenticate(ctx, info.FullMethod, tok, p, &vs)
		if err != nil {
			if obs {
				g.observeCall(info.FullMethod, pl, "", &vs, StageCall, err)
			}
			return err
		}
		key := g.consumerKey(sess)
		denial := g.authorize(ctx, info.FullMethod, r, sess)
		if denial == nil && first != nil {
			denial = g.checkMessage(ctx, info.FullMethod, r, sess, first)
		}
		if denial != nil {
			// Charged like an admitted stream (see Guard.admit).
			err := g.admit(ctx, pl, key, sess, ss, denial)
			if obs {
				g.observeCall(info.FullMethod, pl, key, &vs, StageCall, err)
			}
			return err
		}
		open, err := g.openStream(ctx, pl, key)
		if err != nil {
			if obs {
				g.observeCall(info.FullMethod, pl, key, &vs, StageCall, err)
			}
			return err
		}
		defer g.streams.release(open)
		err = g.admit(ctx, pl, key, sess, ss, nil)
		if obs {
			g.observeCall(info.FullMethod, pl, key, &vs, StageCall, err)
		}
		if err != nil {
			return err
		}
		// A stream that can end itself needs no context of the guard's.
		var cancel context.CancelFunc
		end := endableStream(ctx)
		if end == nil {
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
		}
		gs := &guardedStream{
			ServerStream: ss,
			guard:        g,
			plan:         pl,
			sess:         sess,
			key:          key,
			first:        first,
			renewal:      g.startRenewal(pl, tok, sess),
			deadline:     sess.ValidUntil().Add(g.verifier.Leeway()),
			heapIdx:      -1,
			end:          end,
			cancel:       cancel,
		}
		// The session's context lives in the wrapper: no allocation of its
		// own.
		if g.opts.loggingFields {
			ctx = withLoggingFields(ctx, sess)
		}
		gs.sessCtx.Init(ctx, sess)
		gs.ctx = &gs.sessCtx
		if first != nil {
			gs.received = 1
		} else if r.TokenField() != nil {
			// Authenticated from metadata: the first message's token field,
			// if set, must carry the same token.
			gs.mdTok = tok
		}
		// The stream ends when its token does, even if no message comes
		// (see expiries).
		g.expiries.add(gs)
		err = handler(srv, gs)
		g.expiries.remove(gs)
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

// publicStream runs a stream of a public method: bounded and charged per
// peer, with no session.
func (g *Guard) publicStream(srv any, ss grpc.ServerStream, pl *plan, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	key := g.peerKey(ctx)
	obs := g.opts.observer != nil
	open, err := g.openStream(ctx, pl, key)
	if err != nil {
		if obs {
			g.observeCall(pl.method, pl, key, nil, StageCall, err)
		}
		return err
	}
	defer g.streams.release(open)
	err = g.admit(ctx, pl, key, nil, ss, nil)
	if obs {
		g.observeCall(pl.method, pl, key, nil, StageCall, err)
	}
	if err != nil {
		return err
	}
	if !pl.chargesMessages() {
		return handler(srv, ss)
	}
	gs := &guardedStream{ServerStream: ss, ctx: ctx, guard: g, plan: pl, key: key}
	err = handler(srv, gs)
	if denial := gs.denial(); denial != nil {
		return denial
	}
	return err
}

// guardedStream carries the session to the handler and checks every message.
// Once the guard refuses a message (not the owner, throttled, token expired,
// token mismatch), every later RecvMsg and SendMsg returns the same refusal
// and the stream ends with it.
type guardedStream struct {
	grpc.ServerStream
	ctx      context.Context // &sessCtx, or the stream's own on a public method
	sessCtx  session.Carrier // the session, on top of the stream's context
	guard    *Guard
	plan     *plan
	sess     *session.Session // nil on a public method
	key      string           // whose bucket messages are charged to
	first    proto.Message    // received by the interceptor, not yet handed over
	mdTok    string           // metadata token the first message's token field must match
	renewal  *flight          // nil when the call does not renew
	received int              // messages received from the client so far

	// Expiry (see expiries): when the stream ends, its place in the heap,
	// and how to end it from outside its handler.
	deadline time.Time
	heapIdx  int
	end      statusWriter
	cancel   context.CancelFunc

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
// the refusal that stands. The first refusal is the observer's event of the
// given stage.
func (s *guardedStream) deny(err error, stage Stage) error {
	if s.denied.CompareAndSwap(nil, &err) && s.guard.opts.observer != nil {
		s.guard.observeCall(s.plan.method, s.plan, s.key, nil, stage, err)
	}
	return s.denial()
}

// observeMessage reports a received message the guard let through.
func (s *guardedStream) observeMessage() {
	if s.guard.opts.observer != nil {
		s.guard.observeCall(s.plan.method, s.plan, s.key, nil, StageMessage, nil)
	}
}

func (s *guardedStream) rule() *permissions.Rule { return s.plan.rule }

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
		// A refusal that ended the stream meanwhile (its token expired) is
		// the reason the receive failed.
		if d := s.denial(); d != nil {
			return d
		}
		return err
	}
	s.received++
	if s.sess == nil {
		// A public stream: only the charge.
		if s.received > 1 {
			if err := s.guard.admitMessage(s.ctx, s.plan, s.key, nil, nil); err != nil {
				resetMsg(m)
				return s.deny(err, StageMessage)
			}
			s.observeMessage()
		}
		return nil
	}
	if s.mdTok != "" {
		mdTok := s.mdTok
		s.mdTok = ""
		pm, _ := m.(proto.Message)
		if _, p := s.guard.bodyToken(s.rule().TokenField(), pm, mdTok); p != nil {
			s.guard.log(s.ctx, s.plan.method, ReasonTokenInvalid, s.sess, p.cause)
			resetMsg(m)
			return s.deny(errTokenInvalid, StageMessage)
		}
	}
	if err := s.checkExpiry(); err != nil {
		resetMsg(m)
		return s.deny(err, StageMessage)
	}
	denial := s.guard.checkMessage(s.ctx, s.plan.method, s.rule(), s.sess, m)
	if s.received > 1 && s.plan.chargesMessages() {
		// The opening paid for the first message; every later one is
		// charged, refused ones too.
		denial = s.guard.admitMessage(s.ctx, s.plan, s.key, s.sess, denial)
	}
	if denial != nil {
		// The refused message's content must not reach a handler that
		// ignores the error.
		resetMsg(m)
		return s.deny(denial, StageMessage)
	}
	if s.received > 1 {
		// The opening's event stood for the first message.
		s.observeMessage()
	}
	return nil
}

func (s *guardedStream) SendMsg(m any) error {
	if d := s.denial(); d != nil {
		return d
	}
	if s.sess != nil {
		if err := s.checkExpiry(); err != nil {
			return s.deny(err, StageStream)
		}
	}
	if s.guard.opts.renewalHeader && s.renewal != nil && s.headerDone.CompareAndSwap(false, true) {
		if renewed, ok := s.guard.renew.readyToken(s.renewal); ok {
			// Set before the first message, so it travels in its headers.
			_ = s.ServerStream.SetHeader(metadata.Pairs(RenewedTokenKey, renewed))
		}
	}
	if err := s.ServerStream.SendMsg(m); err != nil {
		if d := s.denial(); d != nil {
			return d
		}
		return err
	}
	return nil
}

func resetMsg(m any) {
	if pm, ok := m.(proto.Message); ok && pm != nil {
		proto.Reset(pm)
	}
}

// checkExpiry refuses the message of a stream whose token has expired or
// been revoked since the stream opened.
func (s *guardedStream) checkExpiry() error {
	if s.guard.verifier.Expired(s.sess) {
		s.guard.log(s.ctx, s.plan.method, ReasonTokenExpired, s.sess, "token expired during the stream")
		return errTokenExpired
	}
	if s.guard.verifier.Revoked(s.sess) {
		s.guard.log(s.ctx, s.plan.method, ReasonTokenRevoked, s.sess, "token revoked during the stream")
		return errTokenRevoked
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
