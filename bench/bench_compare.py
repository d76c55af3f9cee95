"""Compare benchmark (issue 4): the strategy table on hymenoptera, and compare's overhead.

1. `tailor compare` with linear-probe, fine-tune, full and scratch over --seeds: the table.
2. Overhead: the same trainings (seed 0) through `tailor compare` and as separate `tailor
   train` processes, on an identical split, wall-clock time of each. The split is made
   identical by laying the data out as train/ val/ test/ (symlinks): train = 90% of
   hymenoptera's train/, val = the other 10%, test = its val/ folder. The two are alternated
   (A B B A ...) and summed, because a shared machine's speed drifts by 2x over minutes.

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


def timed_compare(data: Path, out: Path, seeds: str, strategies: str, extra: list[str]) -> float:
    started = time.perf_counter()
    code = tailor(["compare", str(data), "--strategies", strategies, "--seeds", seeds,
                   "--output", str(out), *extra])  # fmt: skip
    assert code == 0
    return time.perf_counter() - started


def timed_one_by_one(data: Path, out: Path, strategies: str, extra: list[str]) -> float:
    started = time.perf_counter()
    for strategy in strategies.split(","):
        cmd = [sys.executable, "-m", "modeltailor.cli", "train", str(data), "--strategy",
               strategy, "--output", str(out / strategy), "--quiet", *extra]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def train_seconds(out: Path, which: str) -> dict[str, float]:
    """Each training's own fit time, to tell per-run slowness from per-process overhead."""
    if which == "compare":
        trials = json.loads((out / "compare.json").read_text())["trials"]
        return {t["strategy"]: t["train_seconds"] for t in trials}
    return {
        run.name: json.loads((run / "config.json").read_text())["fit"]["train_seconds"]
        for run in sorted(out.iterdir())
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--skip-table", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--overhead-strategies", default=STRATEGIES)
    ap.add_argument("--overhead-epochs", type=int, help="cap epochs in the overhead runs")
    ap.add_argument("--repeats", type=int, default=2, help="alternations of the overhead pair")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        tmp = Path(tmp)
        if not args.skip_table:
            seconds = timed_compare(args.data, tmp / "table", args.seeds, STRATEGIES, [])
            doc = json.loads((tmp / "table" / "compare.json").read_text())
            emit(measure="table", scored_on=doc["scored_on"], seconds=round(seconds, 1))
            for row in doc["rows"]:
                emit(**{k: v for k, v in row.items() if k != "error" or v})
        if args.skip_overhead:
            return
        laid = lay_out(args.data, tmp / "laid-out")
        extra = ["--epochs", str(args.overhead_epochs)] if args.overhead_epochs else []
        strategies = args.overhead_strategies
        # The embedding cache is keyed by content: both find the same embeddings cached.
        totals = {"compare": 0.0, "one_by_one": 0.0}
        for r in range(args.repeats):
            order = ["compare", "one_by_one"] if r % 2 == 0 else ["one_by_one", "compare"]
            for which in order:
                out = tmp / f"overhead-{which}-{r}"
                if which == "compare":
                    took = timed_compare(laid, out, "0", strategies, extra)
                else:
                    took = timed_one_by_one(laid, out, strategies, extra)
                totals[which] += took
                emit(
                    measure="overhead_pass",
                    which=which,
                    repeat=r,
                    seconds=round(took, 1),
                    train_seconds=train_seconds(out, which),
                )
        emit(
            measure="overhead",
            strategies=strategies,
            compare_seconds=round(totals["compare"], 1),
            one_by_one_seconds=round(totals["one_by_one"], 1),
            compare_vs_one_by_one=round(totals["compare"] / totals["one_by_one"], 3),
        )


if __name__ == "__main__":
    main()
