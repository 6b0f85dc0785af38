# The two quick-start commands, and what they need. Each target installs what is missing.
#   make demo   build examples/support-triage end to end, then inspect the artifact
#   make test   every test, plus fmt and clippy
#   make bench  the benchmarks against the peers (figures go in the README)

CARGO ?= cargo
EXAMPLE := examples/support-triage
KOLM_HOME ?= $(CURDIR)/.kolm-home
export KOLM_HOME

.PHONY: demo test bench deps build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --bins

demo: build
	python3 $(EXAMPLE)/gen_data.py --check
	cd $(EXAMPLE) && KOLM_SIGNING_KEY=$${KOLM_SIGNING_KEY:-demo-key-not-secret} ../../target/release/kolmbuild
	KOLM_SIGNING_KEY=$${KOLM_SIGNING_KEY:-demo-key-not-secret} ./target/release/kolm inspect $(EXAMPLE)/dist/support-triage.kolm

test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 $(EXAMPLE)/gen_data.py --check
	$(CARGO) test --no-fail-fast

bench: build
	bash benches/run.sh
