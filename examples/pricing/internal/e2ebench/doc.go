// Package e2ebench measures tollgate end to end, as a user's server runs it:
// the pricing service over loopback TCP, served three ways and loaded in
// turn by one Go load client.
//
//   - bare: the pricing service with no interceptor;
//   - tollgate: the pricing service behind interceptors.Guard as
//     pricing-server builds it (server.New, rules compiled from
//     pricing.proto, renewal on), except that it sends no rate-limit
//     headers (the baseline sends none; they are an option, on in
//     pricing-server) and that its limiter is a real throttle.Memory asked
//     with every limit's rate and burst multiplied by a large factor: the
//     throttle does all its work but refuses nothing of the bench load;
//   - baseline: what a Go team writes without tollgate: go-grpc-middleware's
//     auth interceptors with golang-jwt's ParseWithClaims, a hand-written
//     method → permission map with the seller_id ownership check, and
//     go-grpc-middleware's ratelimit interceptor over a mutex-guarded map of
//     x/time/rate limiters per consumer, with the same scaled limits.
//
// The servers run in a process of their own (the test binary started again,
// see [ChildEnv]), so that process's getrusage is server CPU alone. It
// answers on a loopback HTTP endpoint with its CPU time and its count of heap
// allocations (runtime/metrics, no stop-the-world), read before and after
// every slice of load; the reading before follows a complete garbage
// collection, so that no slice pays for the garbage of the one before it
// (the baseline's, at twice the allocations, fell on the tollgate slice
// that follows it in every second half-round).
//
// # Cases and pairing
//
// 32 callers on 4 connections (one grpc.NewClient each) run one case at a
// time ([Cases]): SetPrice with a token the guard has cached (unary-hit),
// SetPrice with a new token every call, HS256 or Ed25519 (unary-miss-*),
// and a ListPrices server stream of four prices (stream-hit). The three
// servers are loaded in short slices of a fixed number of calls, in the
// order bare, tollgate, baseline, baseline, tollgate, bare, and again, so
// that every ratio is a ratio of neighbouring slices: a burst of load from
// another tenant of the machine hits both sides of a pair. The report gives
// the median of those per-pair ratios and their 10th and 90th percentiles.
//
// # Running it
//
// make bench runs it once (BenchmarkE2E, -benchtime=1x); on its own:
//
//	go test -run='^$' -bench=E2E -benchtime=1x ./examples/pricing/internal/e2ebench
//
// -e2e.rounds sets the number of six-slice rounds per case, -e2e.slice the
// target length of one slice, e.g. `-args -e2e.rounds=10`.
//
// # Profiling the tollgate server under load
//
// With TOLLGATE_E2E_CPUPROFILE naming a file, the server process writes a
// CPU profile of its whole life there. Every goroutine serving a server
// carries the pprof labels server=bare|tollgate|baseline and
// alg=HS256|EdDSA, so one server's share is one -tagfocus away; pick one
// case with -bench to see only its load:
//
//	TOLLGATE_E2E_CPUPROFILE=/tmp/e2e-server.prof go test -run='^$' \
//	    -bench='E2E/unary-miss-HS256' -benchtime=1x ./examples/pricing/internal/e2ebench
//	go tool pprof -top -tagfocus=server=tollgate /tmp/e2e-server.prof
//
// (make bench-e2e-profile E2E_CASE=unary-miss-HS256 does both, into e2e-server.prof.)
package e2ebench
