# Contracts, load and benchmarks — included by the top-level Makefile (`include mk/contracts.mk`).
# Uses $(PY), $(VENV) and $(STAMP) from the including Makefile. The load and contract tools
# (pact-python, locust, pyinstrument) come from the project's optional dependencies.
.PHONY: buf-install grpcurl-install buf-lint buf-breaking contracts load-smoke load load-stress load-spike bench bench-floor soak

BUF_SH := bash scripts/contracts/buf.sh

buf-install: ## build buf once into $${SAGASCOPE_CACHE:-~/.cache/sagascope}/bin (Go module proxy)
	$(BUF_SH) install

GRPCURL_VERSION ?= $(shell sed -n 's/^GRPCURL_VERSION=//p' .env)
grpcurl-install: ## build grpcurl (GRPCURL_VERSION in .env) once into $${SAGASCOPE_CACHE:-~/.cache/sagascope}/tools
	bash scripts/backends/go_tool.sh grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl $(GRPCURL_VERSION)

buf-lint: ## buf lint protos/ (STANDARD rules)
	$(BUF_SH) lint

buf-breaking: ## buf breaking protos/ against main (merge-base with origin/main when present)
	$(BUF_SH) breaking

contracts: $(STAMP) buf-lint buf-breaking ## buf checks + Pact consumer tests (write pacts/) + provider verification
	SAGASCOPE_REQUIRE_BUF=1 $(PY) -m pytest tests/contract -q

load-smoke: $(STAMP) ## locust smoke (1 user, 30 s) against a fresh local stack, thresholds checked
	$(PY) -m tests.load.run --scenario smoke

load: $(STAMP) ## locust load: ramp to a target rate on PostgreSQL, thresholds checked (LOAD_ARGS=... to tune)
	$(PY) -m tests.load.run --scenario load --postgres $(LOAD_ARGS)

load-stress: $(STAMP) ## locust stress: add users in steps, report the knee
	$(PY) -m tests.load.run --scenario stress --postgres $(LOAD_ARGS)

load-spike: $(STAMP) ## locust spike: baseline, burst, recovery
	$(PY) -m tests.load.run --scenario spike --postgres $(LOAD_ARGS)

bench: $(STAMP) ## the floor (empty gRPC call) vs direct ProcessPayment vs CreateOrder saga vs telemetry off, 5 interleaved rounds, median verdicts -> benchmarks/REPORT.md
	$(PY) -m benchmarks.bench_saga $(BENCH_ARGS)

bench-floor: $(STAMP) ## what the OTel SDK itself costs per saga, idle and in situ (py-spy), vs the 10% budget -> benchmarks/telemetry_floor.md
	$(PY) -m benchmarks.telemetry_floor --in-situ

SOAK_MINUTES ?= 30
SOAK_WARMUP_MINUTES ?= 5
SOAK_REPORT ?= benchmarks/soak/REPORT.md
SOAK_PLOT ?= benchmarks/soak/soak.png
export SOAK_MINUTES SOAK_WARMUP_MINUTES SOAK_REPORT SOAK_PLOT

soak: $(STAMP) ## the stack on PostgreSQL, telemetry on, at half its measured capacity for SOAK_MINUTES (30): RSS, fds, threads, tasks, pool checkouts, p95 drift judged -> SOAK_REPORT + SOAK_PLOT
	$(PY) -m benchmarks.soak
