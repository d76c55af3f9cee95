"""Image benchmark (issue 2): each strategy on hymenoptera, fit on train/, scored on val/.

Prints one JSON line per measurement. Measured in the same run, for ratios that survive noisy
shared machines: a bare `torch.inference_mode()` forward pass of the backbone over the same
(pre-decoded) images, and a plain hand-written PyTorch training loop with the same backbone,
batch, resolution, trainable layers and data loading as `fine-tune`.

    python bench/bench_image.py [--data ../shared/data/hymenoptera_data] [--strategies ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import modeltailor  # noqa: F401  (applies the malloc fix first)
from modeltailor import ImageClassifier, load_image_folder
from modeltailor.backbones import get_backbone
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.transforms import eval_transform, load_for_model, train_transform
from modeltailor.strategies import get_strategy
from modeltailor.training.loaders import ImageTensors, make_loader

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera_data"


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def bare_forward(backbone: str, items: list, batch: int, pre) -> float:
    """Seconds of one inference_mode forward pass over pre-decoded images (no I/O)."""
    spec = get_backbone(backbone)
    tf = eval_transform(pre)
    x = torch.stack([tf(load_for_model(p, pre)) for p in items])
    model = TailoredModel(spec.build(2)).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model.embed(x[:batch].contiguous(memory_format=torch.channels_last))  # warm-up
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            model.embed(x[i : i + batch].contiguous(memory_format=torch.channels_last))
        return time.perf_counter() - t


def plain_loop(backbone: str, train, batch: int, epochs: int, workers: int) -> float:
    """Images/s of a hand-written loop training what fine-tune trains after its head epochs."""
    spec = get_backbone(backbone)
    pre = spec.preprocessing
    model = TailoredModel(spec.build(len(train.class_names)))
    strat = get_strategy("fine-tune")
    model.set_trainable(strat.unfrozen_groups)
    model.train().to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    data = ImageTensors(train.items, train.labels, train_transform(pre), pre)
    loader = make_loader(data, batch, shuffle=True, num_workers=workers, drop_last=True)
    seen, seconds = 0, 0.0
    for epoch in range(epochs + 1):  # epoch 0 warms up
        t = time.perf_counter()
        n = 0
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
            loss.backward()
            opt.step()
            n += len(y)
        if epoch:
            seen, seconds = seen + n, seconds + time.perf_counter() - t
    return seen / seconds


def run_strategy(strategy: str, data_dir: Path, args, cache: Path, unfreeze=None) -> dict:
    os.environ["MODELTAILOR_CACHE"] = str(cache)
    t = time.perf_counter()
    data = load_image_folder(data_dir)
    train, val, _ = data.split()
    clf = ImageClassifier(
        backbone=args.backbone,
        strategy=strategy,
        seed=args.seed,
        verbose=False,
        num_workers=args.workers,
        unfreeze=unfreeze,
    ).fit(train)
    m = clf.evaluate(val)
    wall = time.perf_counter() - t
    hist = clf.history_
    body = [r for r in hist if r.get("trainable_params") and r.get("images_per_second")]
    unfrozen = [r for r in body if r["epoch"] > get_strategy(strategy).head_epochs]
    ips = (
        sum(r["images_per_second"] for r in unfrozen) / len(unfrozen)
        if unfrozen
        else (len(train) + len(val)) / wall
    )
    return {
        "strategy": strategy,
        **({"unfreeze": unfreeze} if unfreeze is not None else {}),
        "val_accuracy": round(m["accuracy"], 4),
        "val_macro_f1": round(m["macro_f1"], 4),
        "wall_seconds": round(wall, 2),
        "images_per_second": round(ips, 2),
        "epochs_run": clf.fit_info_.get("epochs_run"),
        "trainable_params": max((r["trainable_params"] for r in body), default=None),
        "train_images": len(train),
        "val_images": len(val),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--strategies", default="linear-probe,fine-tune,full,scratch")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plain-epochs", type=int, default=2)
    ap.add_argument(
        "--unfreeze-choices",
        default="",
        help="also fine-tune once per --unfreeze choice, e.g. 1,default,all (issue 23)",
    )
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    data = load_image_folder(args.data)
    train, val, _ = data.split()
    spec = get_backbone(args.backbone)
    n_images = len(train) + len(val)
    forwards = {}
    for name, pre in (
        ("train_size", spec.preprocessing),
        ("test_size", spec.inference_preprocessing()),
    ):
        forwards[name] = bare_forward(args.backbone, train.items + val.items, args.batch, pre)
        emit(
            measure="bare_forward",
            resolution=pre.input_size,
            images=n_images,
            seconds=round(forwards[name], 3),
            images_per_second=round(n_images / forwards[name], 2),
        )
    forward = forwards["test_size"]  # the linear probe embeds at this resolution
    strategies = args.strategies.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for s in strategies:
            row = run_strategy(s, args.data, args, Path(tmp) / "cache")
            if s == "linear-probe":
                row["vs_bare_forward"] = round(row["wall_seconds"] / forward, 3)
                row["vs_bare_forward_at_train_size"] = round(
                    row["wall_seconds"] / forwards["train_size"], 3
                )
                emit(**row)
                again = run_strategy(s, args.data, args, Path(tmp) / "cache")
                emit(
                    strategy="linear-probe (cached rerun)",
                    wall_seconds=again["wall_seconds"],
                    val_accuracy=again["val_accuracy"],
                    vs_first_run=round(again["wall_seconds"] / row["wall_seconds"], 3),
                )
            else:
                emit(**row)
                if s == "fine-tune":
                    plain = plain_loop(
                        args.backbone, train, args.batch, args.plain_epochs, args.workers
                    )
                    emit(
                        measure="plain_pytorch_loop",
                        images_per_second=round(plain, 2),
                        fine_tune_vs_plain=round(row["images_per_second"] / plain, 3),
                    )
        for choice in filter(None, args.unfreeze_choices.split(",")):
            value = None if choice == "default" else choice if choice == "all" else int(choice)
            row = run_strategy("fine-tune", args.data, args, Path(tmp) / "cache", value)
            emit(**{**row, "unfreeze": choice, "trainable_params": row.get("trainable_params")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
