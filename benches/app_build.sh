#!/usr/bin/env bash
# The example application's cost to compile (examples/cargo-buildrs): its dependency count
# (`cargo tree -e normal`, unique crates) and its clean build time (a fresh target folder,
# `cargo build -p kolm-example-cargo-buildrs`, dev profile), at two commits in turn: by default
# before and after the crate's features split the runtime from the build (fc2a915 and
# fd55fc0); for the workspace of crates, 63bb178 and fc6fb6f. Each build compiles everything
# the app needs, llama.cpp included: about twenty minutes each on 2 cores. Run it on an
# otherwise idle machine; it prints one line per commit.
#
#   bash benches/app_build.sh [BEFORE AFTER]
#
# KOLM_APP_BUILD_SIDES=after measures one side only (each side is a fresh build; the two
# need not share a run to compare, only a machine).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
before="${1:-fc2a915}"
after="${2:-fd55fc0}"
work="$(mktemp -d "${KOLM_BENCH_DIR:-/var/tmp}/kolm-app-build.XXXXXX")"
trap 'git -C "$repo" worktree remove --force "$work/before" 2>/dev/null || true; git -C "$repo" worktree remove --force "$work/after" 2>/dev/null || true; rm -rf "$work"' EXIT
# The build script runs kolmbuild: any build of it will do (it is not what is measured).
cargo build --bins -q
export KOLMBUILD="${CARGO_TARGET_DIR:-$repo/target}/debug/kolmbuild"
export KOLM_SIGNING_KEY=app-build-bench
for side in ${KOLM_APP_BUILD_SIDES:-before after}; do
  rev="$before"; [ "$side" = after ] && rev="$after"
  git worktree add -q "$work/$side" "$rev"
  cd "$work/$side"
  crates=$(cargo tree -p kolm-example-cargo-buildrs -e normal --prefix none --offline \
    | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l)
  start=$(date +%s)
  CARGO_TARGET_DIR="$work/target-$side" KOLM_HOME="$work/home-$side" \
    cargo build -q -p kolm-example-cargo-buildrs
  echo "$side ($rev): $crates crates, clean build $(( $(date +%s) - start )) s"
  cd "$repo"
done
