"""Audio extraction (issue 21): Whisper tiny.en embeddings of FSDD clips, before and after.

"before" is extraction as it was: clips read and windowed in the main thread, then the fp32
forward pass; "after" is `pooled_outputs` as it is now (clips read in a thread while the model
runs) in fp32 and in bf16 autocast. Same clips, same process, rounds alternated. Accuracy: a
logistic regression on standardised embeddings, trained on recordings 5-49 of each speaker and
digit and tested on 0-4 (the usual FSDD test split).

    flock /work/bench.lock python bench/bench_extract_audio.py [--every 5] [--rounds 2]
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

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"


def accuracy(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=3000))
    clf.fit(x[~test], y[~test])
    return round(float((clf.predict(x[test]) == y[test]).mean()), 4)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.data.audio import load_audio_folder
    from modeltailor.training.inputs import pipeline_for, pooled_outputs
    from modeltailor.training.numerics import autocast

    data = load_audio_folder(args.data)
    keep = list(range(0, len(data), args.every))
    items = [data.items[i] for i in keep]
    y = np.array([data.labels[i] for i in keep])
    test = np.array([int(Path(str(p)).stem.split("_")[-1]) < 5 for p in items])
    spec = get_backbone("whisper-tiny-en-encoder")
    model = TailoredModel(spec.build(len(data.class_names))).eval()
    pipeline = pipeline_for(model, spec.inference_preprocessing())

    @torch.inference_mode()
    def before() -> np.ndarray:
        """pooled_outputs as it was: read a batch, run it, average each clip's windows."""
        sums = np.zeros((len(items), model.num_features))
        counts = np.zeros(len(items))
        for x, owners, _ in pipeline.inference_batches(items, args.batch, 0, {}):
            np.add.at(sums, owners, model.embed(x).float().numpy())
            np.add.at(counts, owners, 1)
        return (sums / counts[:, None]).astype(np.float32)

    def after(path: str):
        def run() -> np.ndarray:
            with torch.inference_mode(), autocast(path, "cpu"):
                return pooled_outputs(model.embed, pipeline, items, args.batch, 0, {})[0]

        return run

    runs = {"before_fp32": before, "after_fp32": after("fp32"), "after_bf16": after("bf16")}
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    embeddings: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            embeddings[name] = fn()
            seconds[name].append(time.perf_counter() - t)
    base = min(seconds["before_fp32"])
    for name, s in seconds.items():
        row = {
            "measure": name,
            "clips": len(items),
            "seconds_best": round(min(s), 3),
            "seconds_all": [round(v, 3) for v in s],
            "clips_per_second": round(len(items) / min(s), 2),
            "vs_before": round(base / min(s), 3),
            "test_accuracy": accuracy(embeddings[name], y, test),
            "test_clips": int(test.sum()),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
