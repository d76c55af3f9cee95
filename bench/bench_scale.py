"""Scale benchmark (issue 2, part 9): peak memory must not grow with the number of images.

Writes Fashion-MNIST images (from ../shared/data) as PNG class folders, then in a fresh process
per size runs the linear probe end to end (load, embed into the sharded cache, fit the head,
evaluate) and prints one JSON line with its peak RSS and images/s.

    python bench/bench_scale.py [--sizes 1000,10000,50000] [--workers 0] [--precision auto]

First a machine's first fit on 1,000 images (auto's numeric check on its validation images,
and tracing the ONNX graph: one-off costs, reported apart); then each size in a cache of its
own holding only what a machine keeps after that first fit (the decision, the traced graph).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]


def write_images(n: int, root: Path, name: str = "fashion") -> Path:
    from PIL import Image

    images = np.frombuffer(
        gzip.open(FASHION / "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16
    ).reshape(-1, 28, 28)
    labels = np.frombuffer(
        gzip.open(FASHION / "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8
    )
    out = root / f"{name}-{n}"
    for name in NAMES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(images[i]).save(out / NAMES[labels[i]] / f"{i:05d}.png")
    return out


def child(folder: Path, workers: int, precision: str) -> None:
    import modeltailor  # noqa: F401
    from modeltailor import ImageClassifier, load_image_folder

    t = time.perf_counter()
    train, val, test = load_image_folder(folder).split(0.8, 0.1, seed=0)
    clf = ImageClassifier(
        strategy="linear-probe", verbose=False, num_workers=workers, embed_precision=precision
    )
    clf.fit(train, val)
    acc = clf.evaluate(test)["accuracy"]
    wall = time.perf_counter() - t
    n = len(train) + len(val) + len(test)
    print(
        json.dumps(
            {
                "images": n,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "wall_seconds": round(wall, 2),
                "images_per_second": round(n / wall, 2),
                "test_accuracy": round(acc, 4),
                "num_workers": workers,
                "numeric_path": clf.fit_info_["embeddings"]["numeric_path"],
                "reason": clf.fit_info_["embeddings"]["reason"],
            }
        ),
        flush=True,
    )


def run_child(folder: Path, cache: Path, args) -> dict:
    """One probe in a fresh process with its own embedding cache: its JSON row."""
    env = {**os.environ, "MODELTAILOR_CACHE": str(cache)}
    res = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), "--workers", str(args.workers),
         "--precision", args.precision],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--child", type=Path)
    ap.add_argument("--precision", default="auto", help="--embed-precision of the probe")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workers, args.precision)
        return 0
    if not FASHION.is_dir():
        print(f"no data at {FASHION}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        machine = Path(tmp) / "cache-first-fit"
        first = run_child(write_images(1000, Path(tmp), "first"), machine, args)
        print(json.dumps({"first_fit_on_this_machine": True, **first}), flush=True)
        for n in map(int, args.sizes.split(",")):
            folder = write_images(n, Path(tmp))
            cache = Path(tmp) / f"cache-{n}"
            for kept in ("numerics", "graphs"):  # what a machine keeps after its first fit
                if (machine / kept).is_dir():
                    shutil.copytree(machine / kept, cache / kept)
            rows.append(run_child(folder, cache, args))
            print(json.dumps(rows[-1]), flush=True)
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(json.dumps({"peak_rss_ratio_largest_vs_smallest": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
