"""Compare benchmark (issue 4): the strategy table on hymenoptera, and compare's overhead.

1. `tailor compare` with linear-probe, fine-tune, full and scratch over --seeds: the table.
2. Overhead: the same four trainings (seed 0) once through `tailor compare` and once as four
   separate `tailor train` processes, on an identical split, wall-clock time of each in this
   run. The split is made identical by laying the data out as train/ val/ test/ (symlinks):
   train = 90% of hymenoptera's train/, val = the other 10%, test = its val/ folder.

    python bench/bench_compare.py [--data ../shared/data/hymenoptera_data] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import modeltailor  # noqa: F401  (applies the malloc fix first)
from modeltailor.cli import main as tailor
from modeltailor.data import load_image_folder

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera_data"
STRATEGIES = "linear-probe,fine-tune,full,scratch"


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def lay_out(data: Path, dst: Path) -> Path:
    """train/ val/ test/ symlink folders: the split both paths will use as they find it."""
    full = load_image_folder(data)
    train, val, test = full.split(0.8, 0.1, 0.1)
    inner_train, inner_val, _ = train.split(0.9, 0.1, 0.0, seed=0)
    parts = {"train": inner_train, "val": inner_val, "test": test or val}
    for name, part in parts.items():
        for item, label in zip(part.items, part.labels, strict=True):
            folder = dst / name / part.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / Path(item).name).symlink_to(Path(item).resolve())
    return dst


def timed_compare(data: Path, out: Path, seeds: str) -> float:
    started = time.perf_counter()
    code = tailor(["compare", str(data), "--strategies", STRATEGIES, "--seeds", seeds,
                   "--output", str(out)])  # fmt: skip
    assert code == 0
    return time.perf_counter() - started


def timed_one_by_one(data: Path, out: Path) -> float:
    started = time.perf_counter()
    for strategy in STRATEGIES.split(","):
        cmd = [sys.executable, "-m", "modeltailor.cli", "train", str(data), "--strategy",
               strategy, "--output", str(out / strategy), "--quiet"]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        tmp = Path(tmp)
        seconds = timed_compare(args.data, tmp / "table", args.seeds)
        doc = json.loads((tmp / "table" / "compare.json").read_text())
        emit(measure="table", scored_on=doc["scored_on"], seconds=round(seconds, 1))
        for row in doc["rows"]:
            emit(**{k: v for k, v in row.items() if k != "error" or v})
        if args.skip_overhead:
            return
        laid = lay_out(args.data, tmp / "laid-out")
        # The embedding cache is keyed by content: both find the table run's embeddings.
        compare_s = timed_compare(laid, tmp / "overhead-compare", "0")
        single_s = timed_one_by_one(laid, tmp / "overhead-single")
        emit(
            measure="overhead",
            compare_seconds=round(compare_s, 1),
            one_by_one_seconds=round(single_s, 1),
            compare_vs_one_by_one=round(compare_s / single_s, 3),
        )


if __name__ == "__main__":
    main()
