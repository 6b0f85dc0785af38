#!/usr/bin/env bash
# Runs the benchmarks side by side with their peers. Installs or builds the peers it needs:
# DVC from PyPI (in a venv under the target dir), and llama.cpp's own `llama-bench`, built from
# the very llama.cpp sources that llama-cpp-sys-2 vendors (so both sides run the same code).
# Figures go to benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
venv="$target/bench-venv"
if [ ! -x "$venv/bin/dvc" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'dvc>=3,<4'
fi
export DVC="$venv/bin/dvc"
# A real disk, and outside any git checkout (DVC refuses outputs in git-ignored paths).
export KOLM_BENCH_DIR="${KOLM_BENCH_DIR:-/var/tmp}"

# llama-bench from the vendored llama.cpp, with the same native SIMD as our build of it.
sys_dir="$(cargo metadata --format-version 1 | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(os.path.dirname(p["manifest_path"]))')"
lb_build="$target/llama-bench-build"
if [ ! -x "$lb_build/bin/llama-bench" ]; then
  cmake -S "$sys_dir/llama.cpp" -B "$lb_build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
  cmake --build "$lb_build" --target llama-bench -j "$(nproc)" >/dev/null
fi
export LLAMA_BENCH="$lb_build/bin/llama-bench"

cargo bench --bench foundation
cargo bench --bench runtime
