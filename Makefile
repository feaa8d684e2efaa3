# tonic-etcd: `make demo` and `make test` install what is missing first
# (protoc, etcd, etcdctl; see scripts/deps.sh), then run.

CARGO ?= cargo
# Extra arguments for the test harness, e.g. `make test TEST_ARGS=--nocapture`.
TEST_ARGS ?=
# Extra arguments for the benchmark harnesses, e.g. `make bench BENCH_ARGS=--quick`.
BENCH_ARGS ?=

.PHONY: all deps test demo examples bench

all: test

deps:
	@./scripts/deps.sh

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps
	$(CARGO) build --examples
	$(CARGO) test --all-targets -- $(TEST_ARGS)
	$(CARGO) test --doc -- $(TEST_ARGS)

examples: deps
	$(CARGO) build --examples

demo: examples
	./scripts/demo.sh

# The benchmarks (not run in CI): both harnesses against a local etcd, then
# BENCHMARKS.md. Takes several minutes. `make bench BENCH_ARGS=--quick` tries
# the harnesses out (the result goes to target/, not BENCHMARKS.md).
bench: deps
	CARGO="$(CARGO)" BENCH_ARGS="$(BENCH_ARGS)" ./scripts/bench.sh
