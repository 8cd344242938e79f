// Package oteltollgate exports the decisions of tollgate's guard as
// OpenTelemetry metrics. It is an [interceptors.Observer] written against
// the go.opentelemetry.io/otel/metric API only: the program chooses the SDK
// and the exporter (Prometheus, OTLP, ...) and hands in its MeterProvider.
//
//	m, err := oteltollgate.New(provider)
//	...
//	guard, err := interceptors.NewGuard(verifier, interceptors.WithObserver(m))
//
// Instruments (attribute names in brackets):
//
//   - tollgate.server.decisions, counter: one per unary call or stream
//     opening [rpc.method, tollgate.decision, tollgate.reason,
//     tollgate.bucket];
//   - tollgate.server.stream.decisions, counter: the same for messages of
//     open streams and streams the guard ended (token expired);
//   - tollgate.verify.duration, histogram in seconds: how long
//     authentication took [tollgate.cache = hit | miss];
//   - tollgate.renewals, counter [tollgate.result = renewed | failed |
//     refused | timed_out | not_renewable];
//   - tollgate.limiter.errors, counter: decisions the limiter's store did
//     not take, because it failed or a throttle.Failover's policy decided
//     instead [rpc.method, tollgate.limiter.source = error | fail-open |
//     fail-closed | local];
//   - tollgate.limiter.breaker.open, gauge: 1 while the Failover's circuit
//     breaker keeps its store out of use, else 0 (reported only when the
//     guard's limiter has a breaker, or one is given with [WithBreaker]);
//   - tollgate.consumer.refusals, counter: throttled and denied calls of
//     the heaviest consumers [rpc.method, tollgate.consumer,
//     tollgate.decision = throttled | denied].
//
// No label grows without bound. rpc.method is the method's fully qualified
// name ("pkg.Service/Method") for the methods the guard compiled, and
// "_OTHER" for any other name a client sends. Consumers are never a label
// of the decision counters: per method and decision, only the K consumers
// refused most often (Space-Saving; K from [WithTopConsumers], default 10)
// are named in tollgate.consumer.refusals, and the rest are summed under
// the consumer "_other". The kept consumers' values are lower bounds of
// their true counts, and with "_other" they add up to every refusal. A
// consumer pushed out of the table and back in later starts again from 1,
// which a Prometheus rate() reads as a counter reset.
//
// The decision counters are observable counters over counts kept in this
// process, one atomic per series: a decision costs the guard an atomic add,
// not a measurement through the SDK, and the series' attribute sets are
// built once per compiled method when the guard's Init runs. Cache-hit
// durations are recorded into the histogram 64 at a time (each one as
// measured; a collection flushes the batch first), since one SDK
// measurement between two calls costs more in cache misses than the rest
// of the observer. An admitted cache-hit call allocates nothing.
package oteltollgate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tollgate/tollgate/interceptors"
)

// ScopeName is the instrumentation scope of the meter.
const ScopeName = "github.com/tollgate/tollgate/oteltollgate"

// Attribute keys.
const (
	KeyMethod        = attribute.Key("rpc.method")
	KeyDecision      = attribute.Key("tollgate.decision")
	KeyReason        = attribute.Key("tollgate.reason")
	KeyBucket        = attribute.Key("tollgate.bucket")
	KeyCache         = attribute.Key("tollgate.cache")
	KeyResult        = attribute.Key("tollgate.result")
	KeyLimiterSource = attribute.Key("tollgate.limiter.source")
	KeyConsumer      = attribute.Key("tollgate.consumer")
)

// OtherMethod is rpc.method of every method the guard did not compile;
// OtherConsumer sums the consumers outside a heavy-hitter table.
const (
	OtherMethod   = "_OTHER"
	OtherConsumer = "_other"
)

// DefaultTopConsumers is how many consumers per method and decision
// tollgate.consumer.refusals names by default.
const DefaultTopConsumers = 10

// VerifyBuckets are the explicit bucket boundaries of
// tollgate.verify.duration, in seconds: from a quarter of a microsecond (a
// cache hit) to 10 ms (a slow signature check).
var VerifyBuckets = []float64{
	0.25e-6, 0.5e-6, 1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
}

// Option configures [New].
type Option func(*config)

type config struct {
	top     int
	breaker func() bool
}

// WithTopConsumers sets how many consumers per method and decision
// (throttled, denied) tollgate.consumer.refusals names; the rest are summed
// under "_other". k must be at least 1.
func WithTopConsumers(k int) Option { return func(c *config) { c.top = k } }

// WithBreaker reports open() as tollgate.limiter.breaker.open, for a
// throttle.Failover the guard cannot see (wrapped in throttle.Shadow, say):
// pass its BreakerOpen method. Without it the guard's own limiter is used
// when it has a breaker.
func WithBreaker(open func() bool) Option { return func(c *config) { c.breaker = open } }

// Metrics is the observer. Build it with [New]; it is safe for concurrent
// use and may observe one guard.
type Metrics struct {
	top int

	renewals, limiterErrors metric.Int64Counter
	keyEvents               metric.Int64Counter
	revEvents               metric.Int64Counter
	revStale                atomic.Int64 // 1 while the revocation feed last reported stale
	verify                  metric.Float64Histogram
	reg                     metric.Registration

	verifyHit, verifyMiss []metric.RecordOption
	hits                  hitBatch              // cache-hit durations not yet recorded
	renewalOpts           [8][]metric.AddOption // by interceptors.RenewalResult

	table       atomic.Pointer[methodTable]
	breaker     atomic.Pointer[func() bool]
	userBreaker bool
}

var _ interceptors.InitObserver = (*Metrics)(nil)

// methodTable is the per-method state for the methods of one Init.
type methodTable struct {
	byMethod map[string]*methodMetrics // by full method, "/pkg.Service/Method"
	other    *methodMetrics
	all      []*methodMetrics
}

// methodMetrics holds a method's prepared attribute sets and its heavy
// hitters.
type methodMetrics struct {
	name    string // rpc.method
	bucket  string
	allowed [2]*series // calls, stream messages

	refusals sync.Map // refusalKey -> *series
	limiter  sync.Map // source -> []metric.AddOption

	mu       sync.Mutex
	throttle *spaceSaving
	denied   *spaceSaving
}

type refusalKey struct {
	stream   bool
	decision interceptors.Decision
	reason   string
	bucket   string
}

// series is one series of a decision counter, counted here and reported
// when the reader collects.
type series struct {
	opt metric.ObserveOption
	n   atomic.Int64
}

func newSeries(method string, d interceptors.Decision, reason, bucket string) *series {
	return &series{opt: metric.WithAttributeSet(attribute.NewSet(
		KeyMethod.String(method), KeyDecision.String(d.String()), KeyReason.String(reason), KeyBucket.String(bucket)))}
}

// New returns the observer, its instruments created on mp's meter named
// [ScopeName].
func New(mp metric.MeterProvider, opts ...Option) (*Metrics, error) {
	if mp == nil {
		return nil, errors.New("oteltollgate: nil MeterProvider")
	}
	c := config{top: DefaultTopConsumers}
	for _, o := range opts {
		o(&c)
	}
	if c.top < 1 {
		return nil, errors.New("oteltollgate: WithTopConsumers needs at least 1")
	}
	meter := mp.Meter(ScopeName)
	m := &Metrics{top: c.top}
	var err error
	errs := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	decisions, err := meter.Int64ObservableCounter("tollgate.server.decisions",
		metric.WithDescription("Decisions of the tollgate guard on unary calls and stream openings."), metric.WithUnit("{decision}"))
	streamDecisions, e := meter.Int64ObservableCounter("tollgate.server.stream.decisions",
		metric.WithDescription("Decisions of the tollgate guard on messages of open streams, and streams it ended."), metric.WithUnit("{decision}"))
	errs(e)
	m.verify, e = meter.Float64Histogram("tollgate.verify.duration",
		metric.WithDescription("Time the tollgate guard took to authenticate a call's token."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(VerifyBuckets...))
	errs(e)
	m.renewals, e = meter.Int64Counter("tollgate.renewals",
		metric.WithDescription("Token renewals by outcome."), metric.WithUnit("{renewal}"))
	errs(e)
	m.limiterErrors, e = meter.Int64Counter("tollgate.limiter.errors",
		metric.WithDescription("Throttling decisions the limiter's store did not take: it failed, or the fail policy decided instead."), metric.WithUnit("{decision}"))
	errs(e)
	m.keyEvents, e = meter.Int64Counter("tollgate.keys.events",
		metric.WithDescription("Events of the issuers' key sources: fetches, failed fetches and refused sets (the last good set is kept), refetches on unknown kids and the ones suppressed."), metric.WithUnit("{event}"))
	errs(e)
	m.revEvents, e = meter.Int64Counter("tollgate.revocations.events",
		metric.WithDescription("Reports of the revocation feed: loaded (the store's whole set), stale (the store was lost; the set keeps enforcing what it has), caught_up."), metric.WithUnit("{event}"))
	errs(e)
	revStale, e := meter.Int64ObservableGauge("tollgate.revocations.stale",
		metric.WithDescription("1 while the revocation feed has lost its store and may lack newer revocations, else 0."))
	errs(e)
	refusals, e := meter.Int64ObservableCounter("tollgate.consumer.refusals",
		metric.WithDescription("Throttled and denied calls of the consumers refused most often, per method; the rest under _other."), metric.WithUnit("{call}"))
	errs(e)
	breaker, e := meter.Int64ObservableGauge("tollgate.limiter.breaker.open",
		metric.WithDescription("1 while the limiter's circuit breaker keeps its store out of use, else 0."))
	errs(e)
	if err != nil {
		return nil, err
	}
	m.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		// The SDK runs callbacks before it reads the synchronous
		// instruments, so the hits batched so far are in this collection.
		m.hits.flush(ctx, m.verify, m.verifyHit)
		m.observeDecisions(o, decisions, streamDecisions)
		m.observeConsumers(o, refusals)
		o.ObserveInt64(revStale, m.revStale.Load())
		if b := m.breaker.Load(); b != nil {
			v := int64(0)
			if (*b)() {
				v = 1
			}
			o.ObserveInt64(breaker, v)
		}
		return nil
	}, decisions, streamDecisions, refusals, breaker, revStale)
	if err != nil {
		return nil, err
	}
	if c.breaker != nil {
		m.breaker.Store(&c.breaker)
		m.userBreaker = true
	}
	m.verifyHit = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(KeyCache.String("hit")))}
	m.verifyMiss = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(KeyCache.String("miss")))}
	for r := interceptors.RenewalRenewed; r <= interceptors.RenewalNotRenewable; r++ {
		m.renewalOpts[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(KeyResult.String(r.String())))}
	}
	m.table.Store(m.newTable(nil, nil))
	return m, nil
}

// Unregister stops the observable instruments' callback, after recording
// the cache-hit durations still batched, so that a last collection (as a
// MeterProvider's Shutdown makes) has them all.
func (m *Metrics) Unregister() error {
	m.hits.flush(context.Background(), m.verify, m.verifyHit)
	return m.reg.Unregister()
}

// ObserveInit prepares the attribute sets of every compiled method. The
// heavy hitters of methods compiled before are kept.
func (m *Metrics) ObserveInit(info interceptors.GuardInfo) {
	m.table.Store(m.newTable(info.Methods, m.table.Load()))
	if !m.userBreaker {
		if info.BreakerOpen != nil {
			m.breaker.Store(&info.BreakerOpen)
		} else {
			m.breaker.Store(nil)
		}
	}
}

func (m *Metrics) newTable(methods []interceptors.MethodInfo, old *methodTable) *methodTable {
	t := &methodTable{byMethod: make(map[string]*methodMetrics, len(methods))}
	for _, mi := range methods {
		mm := m.newMethod(strings.TrimPrefix(mi.FullMethod, "/"), mi.Bucket)
		if old != nil {
			if prev, ok := old.byMethod[mi.FullMethod]; ok && prev.bucket == mi.Bucket {
				mm = prev // its counts go on
			}
		}
		t.byMethod[mi.FullMethod] = mm
		t.all = append(t.all, mm)
	}
	t.other = m.newMethod(OtherMethod, "")
	if old != nil {
		t.other = old.other
	}
	t.all = append(t.all, t.other)
	return t
}

func (m *Metrics) newMethod(name, bucket string) *methodMetrics {
	mm := &methodMetrics{name: name, bucket: bucket, throttle: newSpaceSaving(m.top), denied: newSpaceSaving(m.top)}
	for i := range mm.allowed {
		mm.allowed[i] = newSeries(name, interceptors.DecisionAllowed, "", bucket)
	}
	return mm
}

// maxRefusalSets bounds the series per method: the guard's reasons and
// buckets are a small fixed set, so this is never reached in practice; past
// it refusals are counted under the reason "_OTHER".
const maxRefusalSets = 64

// Observe records one event of the guard.
func (m *Metrics) Observe(e interceptors.Event) {
	ctx := context.Background()
	t := m.table.Load()
	mm, ok := t.byMethod[e.Method]
	if !ok {
		mm = t.other
	}
	switch e.Decision {
	case interceptors.DecisionRenewed:
		if int(e.Renewal) < len(m.renewalOpts) && m.renewalOpts[e.Renewal] != nil {
			m.renewals.Add(ctx, 1, m.renewalOpts[e.Renewal]...)
		}
		return
	case interceptors.DecisionLimiterError:
		m.limiterErrors.Add(ctx, 1, mm.limiterOpts(e.LimiterSource)...)
		return
	case interceptors.DecisionRevocations:
		switch e.Reason {
		case "stale":
			m.revStale.Store(1)
		case "loaded", "caught_up":
			m.revStale.Store(0)
		}
		m.revEvents.Add(ctx, 1, metric.WithAttributes(attribute.String("tollgate.revocations.event", e.Reason)))
		return
	case interceptors.DecisionKeySource:
		// Few issuers and five kinds: the attributes are built per event,
		// which happens at most a few times a minute.
		m.keyEvents.Add(ctx, 1, metric.WithAttributes(
			attribute.String("tollgate.issuer", e.Issuer), attribute.String("tollgate.keys.event", e.Reason)))
		return
	}
	switch e.Cache {
	case interceptors.CacheHit:
		m.hits.add(ctx, e.VerifyDuration.Seconds(), m.verify, m.verifyHit)
	case interceptors.CacheMiss:
		m.verify.Record(ctx, e.VerifyDuration.Seconds(), m.verifyMiss...)
	}
	stream := e.Stage != interceptors.StageCall
	if e.Decision == interceptors.DecisionAllowed && e.Bucket == mm.bucket {
		i := 0
		if stream {
			i = 1
		}
		mm.allowed[i].n.Add(1)
		return
	}
	mm.series(stream, e.Decision, e.Reason, e.Bucket).n.Add(1)
	if e.Consumer == "" {
		return
	}
	switch e.Decision {
	case interceptors.DecisionThrottled:
		mm.mu.Lock()
		mm.throttle.add(e.Consumer)
		mm.mu.Unlock()
	case interceptors.DecisionDenied:
		mm.mu.Lock()
		mm.denied.add(e.Consumer)
		mm.mu.Unlock()
	}
}

// series returns the method's series of a decision, creating it the first
// time.
func (mm *methodMetrics) series(stream bool, d interceptors.Decision, reason, bucket string) *series {
	k := refusalKey{stream, d, reason, bucket}
	if v, ok := mm.refusals.Load(k); ok {
		return v.(*series)
	}
	n := 0
	mm.refusals.Range(func(any, any) bool { n++; return n < maxRefusalSets })
	if n >= maxRefusalSets {
		k.reason, k.bucket = OtherMethod, ""
	}
	v, _ := mm.refusals.LoadOrStore(k, newSeries(mm.name, d, k.reason, k.bucket))
	return v.(*series)
}

// observeDecisions reports every series of the decision counters.
func (m *Metrics) observeDecisions(o metric.Observer, calls, streams metric.Int64Observable) {
	for _, mm := range m.table.Load().all {
		for i, c := range []metric.Int64Observable{calls, streams} {
			if n := mm.allowed[i].n.Load(); n > 0 {
				o.ObserveInt64(c, n, mm.allowed[i].opt)
			}
		}
		mm.refusals.Range(func(k, v any) bool {
			c := calls
			if k.(refusalKey).stream {
				c = streams
			}
			s := v.(*series)
			o.ObserveInt64(c, s.n.Load(), s.opt)
			return true
		})
	}
}

func (mm *methodMetrics) limiterOpts(source string) []metric.AddOption {
	if v, ok := mm.limiter.Load(source); ok {
		return v.([]metric.AddOption)
	}
	opts := []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(KeyMethod.String(mm.name), KeyLimiterSource.String(source)))}
	switch source {
	case interceptors.LimiterSourceError, "fail-open", "fail-closed", "local":
		mm.limiter.Store(source, opts)
	}
	return opts
}

// observeConsumers reports every heavy-hitter table.
func (m *Metrics) observeConsumers(o metric.Observer, c metric.Int64Observable) {
	for _, mm := range m.table.Load().all {
		for _, tbl := range []struct {
			decision string
			s        *spaceSaving
		}{{"throttled", mm.throttle}, {"denied", mm.denied}} {
			mm.mu.Lock()
			if tbl.s.total == 0 {
				mm.mu.Unlock()
				continue
			}
			type kv struct {
				key string
				n   int64
			}
			kept := make([]kv, 0, m.top)
			other := tbl.s.each(func(key string, n int64) { kept = append(kept, kv{key, n}) })
			mm.mu.Unlock()
			for _, e := range kept {
				o.ObserveInt64(c, e.n, metric.WithAttributes(KeyMethod.String(mm.name), KeyConsumer.String(e.key), KeyDecision.String(tbl.decision)))
			}
			o.ObserveInt64(c, other, metric.WithAttributes(KeyMethod.String(mm.name), KeyConsumer.String(OtherConsumer), KeyDecision.String(tbl.decision)))
		}
	}
}

// hitBatchSize is how many cache-hit durations are recorded together.
const hitBatchSize = 64

// hitBatch collects the durations of cache hits and records them into the
// histogram in batches. A cache hit is the guard's most frequent call, and
// one Record through the SDK, between two calls that run all of gRPC, costs
// it several microseconds of cache misses (the instrument, its attribute
// set's map, the buckets): more than the rest of the observer. Recorded 64
// at a time, the SDK's path stays in cache. Every duration is recorded as
// measured; the collection callback flushes what is pending first, so a
// scrape through the SDK misses none (an SDK that reads synchronous
// instruments before running callbacks would see them one collection later).
type hitBatch struct {
	mu  sync.Mutex
	n   int
	buf [hitBatchSize]float64
}

func (h *hitBatch) add(ctx context.Context, v float64, hist metric.Float64Histogram, opts []metric.RecordOption) {
	h.mu.Lock()
	h.buf[h.n] = v
	h.n++
	if h.n < hitBatchSize {
		h.mu.Unlock()
		return
	}
	out := h.buf
	h.n = 0
	h.mu.Unlock()
	for _, d := range out {
		hist.Record(ctx, d, opts...)
	}
}

func (h *hitBatch) flush(ctx context.Context, hist metric.Float64Histogram, opts []metric.RecordOption) {
	h.mu.Lock()
	out, n := h.buf, h.n
	h.n = 0
	h.mu.Unlock()
	for _, d := range out[:n] {
		hist.Record(ctx, d, opts...)
	}
}
