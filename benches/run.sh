#!/usr/bin/env bash
# Runs the benchmarks side by side with their peers. Installs the peers it needs (DVC from
# PyPI, in a venv under the target dir) and writes the figures to benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
venv="$target/bench-venv"
if [ ! -x "$venv/bin/dvc" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'dvc>=3,<4'
fi
export DVC="$venv/bin/dvc"
# Benchmarks need a real disk, not a RAM-backed /tmp.
mkdir -p "$target/bench-scratch"
export KOLM_BENCH_DIR="${KOLM_BENCH_DIR:-$target/bench-scratch}"
cargo bench --bench foundation
