"""Frozen extraction benchmark (issue 21): the linear probe against a bare fp32 forward pass.

Hymenoptera: train/ trains, val/ is split in half (stratified, seed 0) into validation and test.
Each measurement runs in a fresh process (so its peak RSS is its own) and prints one JSON line:

- bare_fp32_forward: inference_mode fp32 forward over every image, pre-decoded (no I/O)
- probe_fp32: `embed_precision="fp32"`, empty cache: load, embed, fit, evaluate val and test
- probe_bf16 / probe_onnx: the same, forced onto bf16 autocast / ONNX Runtime fp32 (onnx with
  its traced graph already in the cache, as every fit after a machine's first has it)
- probe_auto_first: `auto` on a machine that has decided nothing yet (pays auto's check)
- probe_auto: `auto` with that decision kept, empty embedding cache (every later fit)
- probe_auto_cached: the same fit again, every embedding cached
- probe_auto_no_reading_thread: probe_auto with images read in turn (`PREFETCH_BATCHES = 0`)

Every probe process then also times the bare fp32 forward pass itself (`vs_bare_fp32_after`,
after its peak RSS was read): on a loaded shared machine that neighbour in time is a fairer
reference than the round's first measurement.

`--rounds N` repeats the whole sequence (shared machines are noisy); ratios are against the
bare forward pass of the same round. Run it alone: `flock /work/bench.lock python bench/...`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera_data"


def splits(data_dir: Path):
    """(train, val, test): train/ as is, val/ halved into validation and test."""
    from modeltailor import load_image_folder
    from modeltailor.data.dataset import stratified_split

    train, held, _ = load_image_folder(data_dir).split()
    val_idx, test_idx = stratified_split(held.labels, (0.5, 0.5), seed=0)
    return train, held.subset(val_idx, "val"), held.subset(test_idx, "test")


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bare_forward(args) -> dict:
    import torch

    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.data.transforms import eval_transform, load_for_model

    train, val, test = splits(args.data)
    items = list(train.items) + list(val.items) + list(test.items)
    spec = get_backbone(args.backbone)
    pre = spec.inference_preprocessing()
    tf = eval_transform(pre)
    x = torch.stack([tf(load_for_model(p, pre)) for p in items])
    model = TailoredModel(spec.build(2)).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model.embed(x[: args.batch].contiguous(memory_format=torch.channels_last))  # warm-up
        t = time.perf_counter()
        for i in range(0, len(x), args.batch):
            model.embed(x[i : i + args.batch].contiguous(memory_format=torch.channels_last))
        seconds = time.perf_counter() - t
    return {"images": len(items), "resolution": pre.input_size, "seconds": round(seconds, 3)}


def probe(args) -> dict:
    from modeltailor import ImageClassifier
    from modeltailor.training import inputs

    if args.no_thread:
        inputs.PREFETCH_BATCHES = 0  # read images in turn with the forward pass, as before

    t = time.perf_counter()
    train, val, test = splits(args.data)
    clf = ImageClassifier(
        backbone=args.backbone,
        verbose=False,
        batch_size=args.batch,
        num_workers=args.workers,
        embed_precision=args.precision,
    ).fit(train, val)
    val_acc = clf.evaluate(val, record=False)["accuracy"]
    test_acc = clf.evaluate(test, record=False)["accuracy"]
    seconds = time.perf_counter() - t
    used = clf.fit_info_["embeddings"]
    return {
        "seconds": round(seconds, 3),
        "val_accuracy": round(val_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "numeric_path": used["numeric_path"],
        "reason": used["reason"],
        "forward_rows_per_second": used.get("forward_rows_per_second"),
        "check": used.get("check"),
    }


def child(args) -> None:
    if args.child == "bare":
        row = bare_forward(args)
        print(json.dumps({**row, "peak_rss_mb": peak_mb()}), flush=True)
        return
    row = {**probe(args), "peak_rss_mb": peak_mb()}
    # the same process, right after: a reference the load of a shared machine moves alike
    bare = bare_forward(args)["seconds"]
    row |= {"bare_fp32_seconds_after": bare, "vs_bare_fp32_after": round(row["seconds"] / bare, 3)}
    print(json.dumps(row), flush=True)


def run_child(
    args, kind: str, cache: Path, precision: str = "auto", no_thread: bool = False
) -> dict:
    env = {**os.environ, "MODELTAILOR_CACHE": str(cache)}
    cmd = [sys.executable, __file__, "--child", kind, "--precision", precision]
    cmd += ["--no-thread"] if no_thread else []
    cmd += ["--data", str(args.data), "--backbone", args.backbone, "--batch", str(args.batch)]
    cmd += ["--workers", str(args.workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode:
        raise SystemExit(f"{kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def one_round(args, tmp: Path, k: int) -> None:
    bare = run_child(args, "bare", tmp / "unused")
    base = bare["seconds"]
    print(json.dumps({"round": k, "measure": "bare_fp32_forward", **bare}), flush=True)

    def emit(measure: str, row: dict) -> None:
        ratio = round(row["seconds"] / base, 3)
        row = {"round": k, "measure": measure, "vs_bare_fp32": ratio, **row}
        print(json.dumps(row), flush=True)

    emit("probe_fp32", run_child(args, "probe", tmp / f"fp32-{k}", "fp32"))
    emit("probe_bf16", run_child(args, "probe", tmp / f"bf16-{k}", "bf16"))
    run_child(args, "probe", tmp / f"onnx-{k}", "onnx")  # traces the graph once
    shutil.rmtree(tmp / f"onnx-{k}" / "embeddings")
    emit("probe_onnx", run_child(args, "probe", tmp / f"onnx-{k}", "onnx"))
    cache = tmp / f"auto-{k}"
    emit("probe_auto_first", run_child(args, "probe", cache))
    shutil.rmtree(cache / "embeddings")  # keep the decision, lose the embeddings
    emit("probe_auto", run_child(args, "probe", cache))
    emit("probe_auto_cached", run_child(args, "probe", cache))
    shutil.rmtree(cache / "embeddings")
    emit("probe_auto_no_reading_thread", run_child(args, "probe", cache, no_thread=True))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", choices=("bare", "probe"))
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--no-thread", action="store_true", help="child: no reading thread")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            one_round(args, Path(tmp), k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
