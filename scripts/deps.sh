#!/usr/bin/env bash
# Installs what building and testing kolm needs on a fresh Debian/Ubuntu machine, and nothing
# that is already there. Safe to run again.
#
# Each dependency is decided by what the build actually loads, not by a package name or a
# file that merely looks alike: bindgen (in llama-cpp-sys-2) dlopens `libclang.so` or
# `libclang-N.so*` and parses llama.h with clang's own `stddef.h`; `libclang-cpp.so.N` (the C++
# library other packages pull in) is neither.
#
# tests/install_scripts.rs runs it as a fresh machine would see it: KOLM_DEPS_ROOT prefixes every
# file path the script looks at (a fake, empty root), PATH hides the tools, and an `apt-get` on
# that PATH records what the script asks for.
set -euo pipefail

root="${KOLM_DEPS_ROOT:-}"

# True when some file matches one of the glob patterns under the root. Callers quote the
# patterns: expanded at the call, they would match this machine's files, not the root's.
any_file() {
  local pattern f
  for pattern in "$@"; do
    for f in $root$pattern; do
      [ -e "$f" ] && return 0
    done
  done
  return 1
}

# What clang-sys (bindgen's loader) would find: LIBCLANG_PATH first, then the LLVM and
# multiarch library folders, by the file names it accepts.
have_libclang() {
  if [ -n "${LIBCLANG_PATH:-}" ] \
    && any_file "$LIBCLANG_PATH/libclang.so" "$LIBCLANG_PATH/libclang.so.*" \
      "$LIBCLANG_PATH/libclang-[0-9]*.so*"; then
    return 0
  fi
  any_file '/usr/lib/llvm-*/lib/libclang.so' '/usr/lib/llvm-*/lib/libclang.so.*' \
    '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' \
    '/usr/lib/*-linux-gnu/libclang.so' '/usr/lib/*-linux-gnu/libclang.so.*' \
    '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*' '/usr/lib64/libclang.so*' '/usr/lib/libclang.so*'
}

# clang's resource headers (stddef.h and friends): without them bindgen fails on llama.h even
# when libclang itself loads.
have_clang_headers() {
  any_file '/usr/lib/llvm-*/lib/clang/*/include/stddef.h' '/usr/lib/clang/*/include/stddef.h' \
    '/usr/lib64/clang/*/include/stddef.h'
}

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v c++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
# llama.cpp (through llama-cpp-sys-2) builds with cmake, and bindgen needs libclang.
command -v cmake >/dev/null || need_apt+=(cmake)
if ! have_libclang || ! have_clang_headers; then
  need_apt+=(libclang-dev)
fi
command -v python3 >/dev/null || need_apt+=(python3)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# The tests signal builds with the `kill` program (`command -v` would find bash's builtin).
type -P kill >/dev/null || need_apt+=(procps)
# tests/airgap and the replay example build inside a network namespace.
command -v unshare >/dev/null || need_apt+=(util-linux)
# tests/remote_cache.rs serves the Bazel HTTP cache protocol with a real nginx (WebDAV PUT).
# It lives in /usr/sbin, which a non-root PATH may lack.
command -v nginx >/dev/null || any_file /usr/sbin/nginx || need_apt+=(nginx)
# tests/serve_http.rs reads a streamed answer with curl, as a user would.
command -v curl >/dev/null || need_apt+=(curl)
# tests/bazel.rs builds with Bazel: Debian's bazel-bootstrap (4.2) builds Starlark rules offline.
command -v bazel >/dev/null || need_apt+=(bazel-bootstrap)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "kolm needs a Rust toolchain (1.91 or newer): see https://rustup.rs" >&2
  exit 1
fi
