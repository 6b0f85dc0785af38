#!/usr/bin/env bash
# Runs the benchmarks side by side with their peers. Installs the peers it needs (DVC from
# PyPI, in a venv under the target dir; llama.cpp is the library kolm links) and writes the
# figures to benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
venv="$target/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
[ -x "$venv/bin/dvc" ] || "$venv/bin/pip" install -q 'dvc>=3,<4'
# The embedding peer (torch comes with it; large, installed once).
"$venv/bin/python" -c 'import sentence_transformers' 2>/dev/null \
  || "$venv/bin/pip" install -q 'sentence-transformers>=5,<7'
# The training peer.
"$venv/bin/python" -c 'import peft' 2>/dev/null || "$venv/bin/pip" install -q 'peft>=0.13,<1'
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
