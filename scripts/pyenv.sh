#!/usr/bin/env bash
# The Python packages kolm's tests read its files with (the `gguf` reader llama.cpp's project
# publishes), in a venv of their own: $KOLM_TEST_VENV (default ~/.cache/kolm-test/venv).
# Does nothing when it is there. Safe to run again.
set -euo pipefail

venv="${KOLM_TEST_VENV:-$HOME/.cache/kolm-test/venv}"
if "$venv/bin/python" -c 'import gguf' 2>/dev/null; then
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q 'gguf>=0.10,<1'
echo "python test packages in $venv"
