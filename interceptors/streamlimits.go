package interceptors

import (
	"context"
	"strconv"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReasonTooManyStreams is the ErrorInfo reason of a stream refused because
// its consumer (or, on a public method, its peer) already holds the most
// streams of that method the guard allows open at once.
const ReasonTooManyStreams = "TOO_MANY_STREAMS"

const msgTooManyStreams = "too many concurrent streams"

// streamCounts counts the streams open per identity (consumer or peer key)
// and method. Streams are far rarer than unary calls and each already costs
// a goroutine and a transport stream, so one lock is enough.
type streamCounts struct {
	mu   sync.Mutex
	open map[streamKey]int
	// released, set by tests before any stream, is told of every release.
	released func(who, method string)
}

type streamKey struct{ who, method string }

// acquire counts one more stream of p for who, unless who already holds
// p.maxStreams of them; release(k) must be called once the stream ends.
func (c *streamCounts) acquire(who string, p *plan) (streamKey, bool) {
	k := streamKey{who, p.method}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		c.open = make(map[streamKey]int)
	}
	if c.open[k] >= p.maxStreams {
		return k, false
	}
	c.open[k]++
	return k, true
}

// release counts one stream of k fewer.
func (c *streamCounts) release(k streamKey) {
	c.mu.Lock()
	if c.open[k] <= 1 {
		delete(c.open, k)
	} else {
		c.open[k]--
	}
	c.mu.Unlock()
	if c.released != nil {
		c.released(k.who, k.method)
	}
}

// held returns how many streams of method who holds open (for tests).
func (c *streamCounts) held(who, method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[streamKey{who, method}]
}

// openStream counts the stream for who, or returns the status refusing it;
// the caller releases the key it returns once the stream ends.
func (g *Guard) openStream(ctx context.Context, p *plan, who string) (streamKey, error) {
	k, ok := g.streams.acquire(who, p)
	if ok {
		return k, nil
	}
	g.log(ctx, p.method, ReasonTooManyStreams, nil, "already holds "+strconv.Itoa(p.maxStreams)+" open streams of this method")
	return k, tooManyStreamsStatus(p, who)
}

func tooManyStreamsStatus(p *plan, who string) error {
	limit := strconv.Itoa(p.maxStreams)
	st, err := status.New(codes.ResourceExhausted, msgTooManyStreams).WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonTooManyStreams, Domain: Domain, Metadata: map[string]string{"max_streams": limit}},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     who,
			Description: "at most " + limit + " concurrent streams of " + p.method,
		}}},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, msgTooManyStreams)
	}
	return st.Err()
}

// statusWriter is what grpc-go's server transport stream offers to end a
// stream with a status from outside its handler.
type statusWriter interface {
	WriteStatus(*status.Status) error
}

// endableStream returns the stream of ctx as a statusWriter, or nil when its
// transport stream cannot end itself (another grpc version, a test double).
func endableStream(ctx context.Context) statusWriter {
	w, _ := grpc.ServerTransportStreamFromContext(ctx).(statusWriter)
	return w
}

// endStream ends a stream with err now, from outside its handler: a stream
// whose token expired while its handler waits for a message that never
// comes. Writing the final status also cancels the stream's context, which
// ends a pending RecvMsg or SendMsg; the handler then returns and its own
// status is dropped. Without w, cancel ends handlers waiting on their
// context.
func endStream(w statusWriter, err error, cancel context.CancelFunc) {
	if w != nil {
		_ = w.WriteStatus(status.Convert(err))
	}
	if cancel != nil {
		cancel()
	}
}
