"""Few-shot recipe choices measured on development data, never on the benchmark's test part.

    python bench/bench_fewshot_dev.py [--shots 8] [--draws 5] [--dev 600]
        [--variants default,lr=3e-5,epochs=32,backbone=e5-small-multilingual]

The same stratified 80/20 split (seed 0) as bench_text.py; the few-shot draws come from the
80% training part exactly as there, and the development texts are a stratified sample of the
rest of that part (no drawn text, no test text). A recipe change is chosen here, then
bench_text.py measures it once on the test part. Writes `<out>/text_dev.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_text import few_shot, summary  # noqa: E402


def variant_settings(name: str) -> dict:
    """TextClassifier arguments of a variant: `default`, or `key=value[;key=value]`."""
    if name == "default":
        return {}
    settings = {}
    for part in name.split(";"):
        key, value = part.split("=", 1)
        for kind in (int, float, str):
            try:
                settings[key] = kind(value)
                break
            except ValueError:
                continue
    return settings


def development_texts(train, shots: int, draws: int, size: int, seed: int = 0):
    """A stratified sample of the training part, outside every draw of `shots` per class."""
    drawn = set()
    for draw in range(draws):
        drawn |= {item.origin for item in few_shot(train, shots, seed=draw).items}
    rest = [i for i, item in enumerate(train.items) if item.origin not in drawn]
    labels = np.asarray(train.labels)[rest]
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.asarray(rest)[labels == c]
        share = round(size * len(idx) / len(rest))
        picked += rng.choice(idx, size=share, replace=False).tolist()
    return train.subset(sorted(picked), source=f"{train.source} [development]")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "spamassassin.csv"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--dev", type=int, default=600, help="development texts")
    p.add_argument("--variants", default="default")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MODELTAILOR_CACHE", tempfile.mkdtemp(prefix="bench-dev-cache-"))
    from modeltailor import TextClassifier
    from modeltailor.data.text import load_text

    train, _, _ = load_text(args.data).split(0.8, 0.0, 0.2, seed=0)
    dev = development_texts(train, args.shots, args.draws, args.dev)

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with (out / "text_dev.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    emit({"event": "split", "development": len(dev), "shots": args.shots, "draws": args.draws})
    for variant in args.variants.split(","):
        rows, extra = [], variant_settings(variant)
        for draw in range(args.draws):
            started = time.perf_counter()
            clf = TextClassifier(strategy="few-shot", verbose=False, **extra)
            clf.fit(few_shot(train, args.shots, seed=draw))
            fit_s = time.perf_counter() - started
            metrics = clf.evaluate(dev, record=False)
            row = {
                "name": f"{args.shots}-shot few-shot [{variant}] (draw {draw}, development)",
                "macro_f1": round(metrics["macro_f1"], 4),
                "accuracy": round(metrics["accuracy"], 4),
                "fit_seconds": round(fit_s, 1),
                "head": clf.fit_info_.get("selected_by"),
            }
            emit(row)
            rows.append(row)
        emit(summary(f"{args.shots}-shot few-shot [{variant}] (development)", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
