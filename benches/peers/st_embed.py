"""The embedding peer of benches/recall.rs: sentence-transformers embedding the same texts
with the same model folder, batch size (32) and thread count as kolm, after the same warm-up.
Prints JSON: {"version", "texts_per_s"}.

Usage: python st_embed.py EMBEDDER_DIR TEXTS.json
"""

import json
import os
import sys
import time

import torch
from sentence_transformers import SentenceTransformer, __version__


def main() -> None:
    folder, texts_file = sys.argv[1], sys.argv[2]
    torch.set_num_threads(os.cpu_count() or 1)
    texts = json.load(open(texts_file, encoding="utf-8"))
    model = SentenceTransformer(folder, device="cpu")
    model.encode(texts[:32], batch_size=32, normalize_embeddings=True)
    t = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    dt = time.perf_counter() - t
    print(json.dumps({"version": __version__, "torch": torch.__version__, "texts_per_s": len(texts) / dt}))


if __name__ == "__main__":
    main()
