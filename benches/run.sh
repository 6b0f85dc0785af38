#!/usr/bin/env bash
# Runs the benchmarks side by side with their peers. Installs the peers it needs (DVC and the
# Python peers from PyPI, in a venv under the target dir, by scripts/pyenv.sh; llama.cpp is the
# library kolm links) and writes the figures to benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
venv="$target/bench-venv"
# DVC, the embedding peer (torch comes with it; large, installed once), the training peer and
# the serving peer (llama-cpp-python builds its llama.cpp from source: about 10 minutes here;
# without AMX, as kolm's own llama.cpp is built (.cargo/config.toml): its AMX kernels crash on
# quantised models).
CFLAGS="${CFLAGS:--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}" \
CXXFLAGS="${CXXFLAGS:--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}" \
KOLM_TEST_VENV="$venv" bash scripts/pyenv.sh 'dvc>=3,<4' 'sentence-transformers>=5,<7' \
  'peft>=0.13,<1' 'llama-cpp-python[server]==0.3.36'
# The HTTP load generator (Debian).
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk
fi
export DVC="$venv/bin/dvc"
export KOLM_BENCH_PYTHON="$venv/bin/python"
bash scripts/embedder.sh
# A real disk, and outside any git checkout (DVC refuses outputs in git-ignored paths).
export KOLM_BENCH_DIR="${KOLM_BENCH_DIR:-/var/tmp}"

cargo bench --bench foundation
cargo bench --bench runtime
cargo bench --bench recall
cargo bench --bench train
cargo bench --bench teacher
# The example built by `make demo` (its artifact, in the same KOLM_HOME).
cargo bench --bench recipes
cargo bench --bench serve
cargo bench --bench serve_http
cargo bench --bench tune
# Make, Bazel and the remote cache (nginx) on the example: scripts/deps.sh installs them.
bash scripts/deps.sh
cargo bench --bench build_systems
