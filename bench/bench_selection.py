"""Cost of cross-validated selection (issue 19): `tailor train` cached reruns, two code trees.

Runs `tailor train DATA` (default: spamassassin, MiniLM linear-probe, embeddings already
cached) with the `src/` of a reference tree (main) and of this tree, alternating A B B A ...
so that drift in the machine's load falls on both alike. Records each run's `train_seconds`
(the fit, as the summary's "trained in"), the whole command's wall time, the test accuracy
and macro-F1 and what was chosen; prints the ratio of the medians (this tree / reference)
and appends one JSON line to bench/results/selection.jsonl. Run it under
`flock /work/bench.lock` so that no other timing overlaps it.

    python bench/bench_selection.py --reference /work/main [--reps 2] [--data FILE] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/spamassassin.csv")


def one_run(tree: Path, data: Path, folder: Path) -> dict[str, Any]:
    """One `tailor train` in a fresh process with `tree`'s sources; what it chose and cost."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    env.setdefault("MALLOC_MMAP_MAX_", "0")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "100000000000")
    cmd = [sys.executable, "-m", "modeltailor.cli", "train", str(data), "--output", str(folder)]
    started = time.perf_counter()
    subprocess.run([*cmd, "--quiet"], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    fit = json.loads((folder / "config.json").read_text())["fit"]
    test = json.loads((folder / "metrics.json").read_text())["test"]
    return {
        "train_seconds": fit["train_seconds"],
        "wall_seconds": round(wall, 2),
        "test_accuracy": round(test["accuracy"], 4),
        "test_macro_f1": round(test["macro_f1"], 4),
        "chosen": chosen(fit),
    }


def chosen(fit: dict[str, Any]) -> str:
    """The head a run kept: CV selection's chosen row, or the validation-split choice."""
    selection = fit.get("selection") or {}
    rows = [r for r in selection.get("candidates", []) if r.get("chosen")]
    if rows:
        r = rows[0]
        weight = f", w={r['embedding_weight']}" if "embedding_weight" in r else ""
        return f"{r['candidate']} C={r['C']}{weight} ({selection['folds']}-fold CV)"
    side = fit.get("tfidf_side") or {}
    if side.get("kept") == "embeddings + TF-IDF":
        h = side["hybrid"]
        return f"embeddings + TF-IDF C={h['C']}, w={h['embedding_weight']} (validation)"
    return f"embeddings C={fit.get('C')} (validation)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reference", type=Path, default=Path("/work/main"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--note", default="", help="what the reference tree is, for the record")
    args = ap.parse_args()
    trees = {"reference": args.reference.resolve(), "this": HERE}
    runs: dict[str, list[dict[str, Any]]] = {"reference": [], "this": []}
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as tmp:
        for rep in range(args.reps):
            order = ["reference", "this"] if rep % 2 == 0 else ["this", "reference"]
            for name in order:
                run = one_run(trees[name], args.data, Path(tmp) / f"{name}-{rep}")
                runs[name].append(run)
                print(json.dumps({"tree": name, "rep": rep, **run}), flush=True)

    def ratio(key: str) -> float:
        mid = {name: statistics.median(r[key] for r in runs[name]) for name in runs}
        return round(mid["this"] / mid["reference"], 2)

    result = {
        "bench": "cached rerun: CV selection vs reference",
        "data": args.data.name,
        "reference": str(trees["reference"]),
        "reference_commit": _commit(trees["reference"]),
        "note": args.note,
        "this_commit": _commit(HERE),
        "reps": args.reps,
        "runs": runs,
        "train_ratio": ratio("train_seconds"),
        "wall_ratio": ratio("wall_seconds"),
        "load_average": os.getloadavg()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    print(f"ratio (median, this / reference): fit {result['train_ratio']}, "
          f"whole command {result['wall_ratio']}")  # fmt: skip
    out = HERE / "bench" / "results" / "selection.jsonl"
    with out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")


def _commit(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip()


if __name__ == "__main__":
    main()
