#!/usr/bin/env bash
# A Python venv with the packages kolm's tests use: the `gguf` reader llama.cpp's project
# publishes, and the `mcp` and `openai` SDKs, real clients of `kolm serve`. $KOLM_TEST_VENV (default
# ~/.cache/kolm-test/venv). Extra requirements given as arguments are installed too
# (benches/run.sh makes its peers' venv this way). Does nothing when every module is there.
# Safe to run again.
#
# Whether venvs work is decided by making one, not by a module's presence: Debian's python3
# imports `venv` without python3-venv and then fails to make one (no ensurepip wheels).
set -euo pipefail

venv="${KOLM_TEST_VENV:-$HOME/.cache/kolm-test/venv}"
reqs=('gguf>=0.10,<1' 'mcp==2.3.0' 'openai==3.57.0' "$@")
# The import name of each requirement: the part before any version bound, `-` as `_`.
modules=()
for r in "${reqs[@]}"; do
  m="${r%%[<>=!~ ]*}"
  modules+=("${m//-/_}")
done
check="import $(IFS=,; echo "${modules[*]}")"
if "$venv/bin/python" -c "$check" 2>/dev/null; then
  exit 0
fi
if ! [ -x "$venv/bin/pip" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    echo "pyenv: python3 cannot make a venv here; installing python3-venv" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/pip" install -q "${reqs[@]}"
echo "python packages in $venv: ${reqs[*]}"
