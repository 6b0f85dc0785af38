#!/usr/bin/env python3
"""Derive the `replay-triage` example's data from the `support-triage` example's.

  data/seeds.jsonl  the first 40 support-triage seeds, inputs only: the teacher labels them
  data/evals.jsonl  the first 20 support-triage evals, unchanged

The answers the teacher gives live in `data/teacher.cassette.jsonl`, which is not made here:
the test `tests/example_replay.rs` records it from kolm itself (see README.md).

Usage:
  python3 derive.py            # (re)write data/seeds.jsonl and data/evals.jsonl
  python3 derive.py --check    # exit 1 if the committed files differ from a fresh derivation

Python 3 standard library only; no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "support-triage" / "data"
N_SEEDS = 40
N_EVALS = 20


def lines(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [line for line in f.read().splitlines() if line.strip()][:n]


def derive() -> dict[str, str]:
    seeds = [
        json.dumps({"input": json.loads(line)["input"]}, ensure_ascii=False)
        for line in lines(SOURCE / "seeds.jsonl", N_SEEDS)
    ]
    evals = lines(SOURCE / "evals.jsonl", N_EVALS)
    return {
        "seeds.jsonl": "\n".join(seeds) + "\n",
        "evals.jsonl": "\n".join(evals) + "\n",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    out = HERE / "data"
    stale = []
    for name, text in derive().items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            out.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"replay-triage: data/{', data/'.join(stale)} differ from a fresh derivation; "
            "run `python3 examples/replay-triage/derive.py` and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
