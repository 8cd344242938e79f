# tollgate: every target a newcomer or CI needs.
#
#   make demo      run the pricing example end to end (in-memory, fresh key)
#   make test      generated code check, vet, the whole suite under -race, fuzz smoke,
#                  and the inventory example's own module (examples/inventory)
#   make lint      gofmt, go vet, staticcheck, buf lint (the inventory's workspace too)
#   make bench     benchmarks side by side with their baselines -> docs/performance.md
#   make bench-e2e-profile  CPU profile of the tollgate server under the end-to-end load
#   make generate  regenerate Go from the .proto files (buf, local plugins), and
#                  re-export tollgate's options into the inventory's buf workspace

GO          ?= go
BUF_VERSION := v1.75.0
STATICCHECK_VERSION := v0.8.2
BUF         := $(GO) run github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
FUZZTIME    ?= 50000x
BENCHCOUNT  ?= 6
E2E_PKG     := ./examples/pricing/internal/e2ebench
E2E_CASE    ?= unary-miss-HS256
E2E_PROFILE ?= e2e-server.prof

# examples/inventory is a module of its own, with its own buf workspace: the
# path the README documents for a user's service. `go ... ./...` at the root
# does not reach into it; the inventory target does.
INVENTORY   := examples/inventory
INVENTORY_OPTIONS := $(INVENTORY)/third_party/tollgate/v1/options.proto

GENERATED_DIRS := proto internal/testpb examples/pricing/proto $(INVENTORY)/proto $(INVENTORY_OPTIONS)

.PHONY: all demo test unit inventory fuzz check-generated generate lint bench bench-e2e-profile clean

all: lint test

demo:
	bash examples/pricing/demo.sh

test: check-generated unit inventory fuzz

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m ./...

# The inventory example, vetted and tested in its own module. Its go.mod
# must be tidy: a change to tollgate's own imports can leave it short of a
# go.sum line (fix: cd examples/inventory && go mod tidy).
inventory:
	cd $(INVENTORY) && $(GO) mod tidy -diff
	cd $(INVENTORY) && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 5m ./...
	@# The CI lint a user's repository runs: every method has a valid rule.
	cd $(INVENTORY) && set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
		$(BUF) build -o "$$d/inventory.binpb"; \
		$(GO) tool tollgate rules -descriptor-set "$$d/inventory.binpb" -require-all

# Short fuzz runs of the parsers an attacker reaches first; the claims
# differential holds the hand-written claims decoder to the encoding/json one.
# Each new interesting input is minimized for at most FUZZMINIMIZE: with Go's
# default of a minute, a 10 s run spent most of its time minimizing the first
# such input of FuzzVerify and fuzzed nothing (0 execs/s after 3 s).
# FUZZTIME is a count of executions, not a duration: with a duration, Go's
# fuzzing coordinator can fail a clean run with "context deadline exceeded"
# when its workers are starved at the deadline on a loaded machine (seen here
# on 2 cores; golang/go#75804), where a count only makes a slow run slower.
FUZZMINIMIZE ?= 1s
FUZZFLAGS    = -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE)
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' $(FUZZFLAGS) ./token
	$(GO) test -run='^$$' -fuzz='^FuzzClaimsDifferential$$' $(FUZZFLAGS) ./token
	$(GO) test -run='^$$' -fuzz='^FuzzParseJWKS$$' $(FUZZFLAGS) ./token
	$(GO) test -run='^$$' -fuzz='^FuzzMetadataToken$$' $(FUZZFLAGS) ./interceptors

# The inventory's copy of tollgate's options is exported as a user exports
# it, then its own .proto files (only those: see its buf.gen.yaml) are
# generated inside its workspace, with the plugins its go.mod pins.
generate:
	$(BUF) generate
	cd $(INVENTORY) && $(GO) tool tollgate proto export -force third_party
	cd $(INVENTORY) && $(BUF) generate

# Fails when `make generate` would change or add a file: generated code is
# committed and must match its .proto.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- $(GENERATED_DIRS))" ]; then \
		echo "generated code is stale; run make generate and commit:"; \
		git status --porcelain -- $(GENERATED_DIRS); \
		git --no-pager diff --stat -- $(GENERATED_DIRS); \
		exit 1; \
	fi

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(BUF) lint
	cd $(INVENTORY) && $(GO) vet ./... && $(STATICCHECK) ./... && $(BUF) lint

# Each round runs every benchmark once, packages one after another (-p 1: two
# benchmark binaries at once on 2 cores would halve the parallel ones), so run
# i of a candidate sits next to run i of its baseline in time; the report
# takes the median of those paired ratios. The million-consumer memory
# benchmarks run once (each inserts a million keys). The Redis benchmarks
# start their own redis-server and are reported as not measured without one.
# The end-to-end benchmark runs once: it alternates its three servers in
# short slices itself, and takes about three minutes.
bench:
	@rm -f bench.out
	@for i in $$(seq $(BENCHCOUNT)); do \
		echo "== round $$i of $(BENCHCOUNT)"; \
		$(GO) test -p 1 -run='^$$' -bench=. -skip='Memory/million|KIDFlood' -benchmem -count=1 -timeout 30m \
			./token ./permissions ./throttle ./redisstore ./interceptors ./oteltollgate >> bench.out || exit 1; \
	done
	$(GO) test -run='^$$' -bench='Memory/million' -benchtime=1x -count=1 -timeout 10m ./throttle ./token | tee -a bench.out
	@echo "== a flood of random kids against valid calls (BenchmarkKIDFlood: 6 runs of 10 s, it alternates flood and quiet itself)"
	$(GO) test -run='^$$' -bench='^BenchmarkKIDFlood$$' -benchtime=1x -count=6 -timeout 5m ./interceptors | tee -a bench.out
	@echo "== end to end over loopback TCP (BenchmarkE2E: once, it alternates its servers itself)"
	@$(GO) test -run='^$$' -bench='^BenchmarkE2E$$' -benchtime=1x -count=1 -timeout 15m $(E2E_PKG) > bench-e2e.out \
		|| { cat bench-e2e.out; rm -f bench-e2e.out; exit 1; }
	@tail -n 1 bench-e2e.out; cat bench-e2e.out >> bench.out; rm -f bench-e2e.out
	$(GO) run ./internal/benchreport -in bench.out -out docs/performance.md
	@rm -f bench.out

# The end-to-end benchmark for one case, E2E_CASE (unary-hit,
# unary-miss-HS256, unary-miss-EdDSA or stream-hit), with the server process
# writing its CPU profile to E2E_PROFILE; then the tollgate server's share of
# it: the goroutines labelled server=tollgate.
bench-e2e-profile:
	TOLLGATE_E2E_CPUPROFILE=$(abspath $(E2E_PROFILE)) $(GO) test -run='^$$' \
		-bench='^BenchmarkE2E$$/^$(E2E_CASE)$$' -benchtime=1x -count=1 -timeout 15m $(E2E_PKG)
	$(GO) tool pprof -top -nodecount=40 -tagfocus=server=tollgate $(E2E_PROFILE)

clean:
	rm -rf bin bench.out bench-e2e.out $(E2E_PROFILE)
