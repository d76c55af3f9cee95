"""Defaults that never lose to the baseline (issue 19, "How we will know"): measured.

Every dataset in ../shared/data is laid out ONCE as fixed train/ val/ test/ parts (folders of
symlinks or PNGs; train.csv/val.csv/test.csv for text), so that every command below reads the
very same split; the test part is only ever scored.

- hymenoptera: train = 90% of its train/, val = the other 10% (bench_compare's `lay_out`),
  test = its val/ folder (153 images).
- spamassassin: test = a fixed stratified 30% (seed 0, 1,813 e-mails); from the other 70%,
  `full` = all of it (90% train, 10% val), `32-shot` / `8-shot` = that many e-mails per class
  drawn with seed 0, three quarters train and one quarter val.
- FSDD: `standard` = index 0-4 of every speaker and digit is the test part, val = a stratified
  10% (seed 0) of the rest; `speaker-<name>` = that speaker is the test part, the next
  speaker in alphabetical order is val, the other four train. Speaker folds pass
  `--group-by '_([a-z]+)_'` to every command (cross-validation then folds by speaker, as the
  test does).
  `spam-8@3` is the 8-shot sample drawn with seed 3 (same test part): a few-shot result on
  one draw of 16 e-mails is mostly the draw, so the summary part averages the draws run.
- fashion-mnist: 2,000 official-train images (200 per class, seed 0) as PNG, 1,800 train and
  200 val; 2,000 official-test images (200 per class, seed 0) as the test part.

Part `accuracy`: per dataset, the test accuracy and macro-F1 of
  default   `tailor train DATA` with this tree's src (no --strategy),
  baseline  `tailor train DATA --strategy baseline` (text, audio; images have no baseline
            strategy: the image row says so and the target uses the old probe alone),
  old-probe `tailor train DATA --strategy linear-probe` with the src of commit cec0302 (the
            probe before cross-validated selection), --old-src;
and a summary row: pass when default >= max(baseline, old-probe) - 0.5 point of macro-F1.

Part `auto`: `tailor train DATA --strategy auto --budget 10m` (its wall time, leaderboard and
stage seconds) against `tailor compare DATA --strategies ... --seeds 0` on the same split;
pass when auto's test macro-F1 >= the best strategy's - 0.5 point and its wall time is at
most the budget + 10%. Run that part under `flock /work/bench.lock` (its time is a figure).

One command at a time (a shared 2-core machine). JSON lines to stdout and appended to
bench/results/defaults.jsonl.

    python bench/bench_defaults.py accuracy [--datasets hymenoptera,spam-full,...]
        [--arms default,baseline,old-probe] [--old-src /work/wt-cec0302/src]
    flock /work/bench.lock python bench/bench_defaults.py auto --datasets hymenoptera
        [--budget 10m] [--skip-compare | --skip-auto]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/data")
WORK = Path(os.environ.get("BENCH_DEFAULTS_WORK", "/tmp/bench-defaults"))
OLD_SRC = Path("/work/wt-cec0302/src")
RESULTS = ROOT / "bench" / "results" / "defaults.jsonl"
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
DATASETS = [
    "hymenoptera", "spam-full", "spam-32", "spam-8", "fsdd-standard",
    *[f"fsdd-speaker-{s}" for s in SPEAKERS], "fashion",
]  # fmt: skip
GROUP_BY = "_([a-z]+)_"
#: The strategies `tailor compare` runs per modality (the best of them is auto's target).
COMPARE = {
    "image": "linear-probe,fine-tune,full,scratch",
    "text": "baseline,linear-probe,fine-tune",
    "text-few": "baseline,linear-probe,few-shot,fine-tune",
    # FSDD standard: the probe scores 1.000 on test, which no strategy can beat; fine-tuning
    # Whisper on 2,430 clips takes over half an hour on the shared 2 cores.
    "audio": "baseline,linear-probe",
}
FASHION_CLASSES = [
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
]  # fmt: skip


def emit(row: dict[str, Any]) -> None:
    row = {**row, "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# -- the fixed splits -----------------------------------------------------------------------------
def modality(name: str) -> str:
    if name.startswith("spam"):
        return "text"
    return "audio" if name.startswith("fsdd") else "image"


def laid_out(name: str) -> Path:
    """The dataset's fixed train/val/test layout, made once under WORK and reused."""
    dst = WORK / name
    done = dst / ".done"
    if done.exists():
        return dst / "data"
    dst.mkdir(parents=True, exist_ok=True)
    data = dst / "data"
    if name == "hymenoptera":
        sys.path.insert(0, str(ROOT / "src"))
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_compare import lay_out

        lay_out(SHARED / "hymenoptera_data", data)
    elif name.startswith("spam"):
        lay_out_spam(name.removeprefix("spam-"), data)
    elif name.startswith("fsdd"):
        lay_out_fsdd(name.removeprefix("fsdd-"), data)
    elif name == "fashion":
        lay_out_fashion(data)
    else:
        raise SystemExit(f"unknown dataset {name}")
    done.touch()
    return data


def stratified(labels: list[str], fraction: float, rng: np.random.Generator) -> set[int]:
    """Indices of a stratified `fraction` of each class (at least one)."""
    picked: set[int] = set()
    for label in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(idx)
        picked.update(idx[: max(1, round(fraction * len(idx)))])
    return picked


def lay_out_spam(which: str, dst: Path) -> None:
    csv.field_size_limit(sys.maxsize)  # a few e-mails are longer than csv's 128 KiB default
    with (SHARED / "spamassassin.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [r["label"] for r in rows]
    test = stratified(labels, 0.3, np.random.default_rng(0))
    pool = [i for i in range(len(rows)) if i not in test]
    which, _, draw = which.partition("@")  # 8@3: 8-shot, the sample drawn with seed 3
    rng = np.random.default_rng(int(draw or 0))
    if which == "full":
        val_local = stratified([labels[i] for i in pool], 0.1, rng)
        val = [pool[j] for j in sorted(val_local)]
        train = [i for i in pool if i not in set(val)]
    else:
        k = int(which)
        train, val = [], []
        for label in sorted(set(labels)):
            idx = [i for i in pool if labels[i] == label]
            chosen = [idx[j] for j in rng.choice(len(idx), size=k, replace=False)]
            n_val = k // 4
            val += chosen[:n_val]
            train += chosen[n_val:]
    dst.mkdir(parents=True, exist_ok=True)
    for part, idx in (("train", train), ("val", val), ("test", sorted(test))):
        with (dst / f"{part}.csv").open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows({"text": rows[i]["text"], "label": rows[i]["label"]} for i in idx)


def lay_out_fsdd(protocol: str, dst: Path) -> None:
    clips = sorted((SHARED / "fsdd").glob("*/*.wav"))
    parse = [re.match(r"(\d+)_([a-z]+)_(\d+)\.wav$", p.name) for p in clips]
    digit = [m.group(1) for m in parse]
    speaker = [m.group(2) for m in parse]
    index = [int(m.group(3)) for m in parse]
    parts: dict[str, list[int]] = {}
    if protocol == "standard":
        test = [i for i in range(len(clips)) if index[i] <= 4]
        rest = [i for i in range(len(clips)) if index[i] > 4]
        val_local = stratified([digit[i] for i in rest], 0.1, np.random.default_rng(0))
        val = {rest[j] for j in val_local}
        parts = {"train": [i for i in rest if i not in val], "val": sorted(val), "test": test}
    else:
        held = protocol.removeprefix("speaker-")
        val_speaker = SPEAKERS[(SPEAKERS.index(held) + 1) % len(SPEAKERS)]
        parts = {
            "train": [i for i in range(len(clips)) if speaker[i] not in (held, val_speaker)],
            "val": [i for i in range(len(clips)) if speaker[i] == val_speaker],
            "test": [i for i in range(len(clips)) if speaker[i] == held],
        }
    for part, idx in parts.items():
        for i in idx:
            folder = dst / part / digit[i]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / clips[i].name).symlink_to(clips[i].resolve())


def idx_images(stem: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(SHARED / "fashion-mnist" / f"{stem}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SHARED / "fashion-mnist" / f"{stem}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def lay_out_fashion(dst: Path, per_class: int = 200) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for stem, parts in (("train", ("train", "val")), ("t10k", ("test",))):
        images, labels = idx_images(stem)
        for c, cls in enumerate(FASHION_CLASSES):
            idx = rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
            n_val = per_class // 10 if len(parts) == 2 else 0
            for j, i in enumerate(idx):
                part = parts[1] if j < n_val else parts[0]
                folder = dst / part / cls
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(folder / f"{stem}-{i:05d}.png")


# -- running tailor -------------------------------------------------------------------------------
def tailor(src: Path, args: list[str], log: Path) -> float:
    """`tailor ARGS` in a fresh process with `src` on the path; its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.setdefault("MALLOC_MMAP_MAX_", "0")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "100000000000")
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(
            [sys.executable, "-m", "modeltailor.cli", *args], env=env, stdout=out, stderr=out
        ).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        tail = log.read_text(errors="replace")[-600:]
        raise RuntimeError(f"tailor {' '.join(args)} exited {code}: {tail}")
    return seconds


def extra_args(name: str) -> list[str]:
    return ["--group-by", GROUP_BY] if name.startswith("fsdd-speaker") else []


def run_summary(run: Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    fit = config.get("fit", {})
    test = json.loads((run / "metrics.json").read_text())["test"]
    selection = fit.get("selection") or {}
    return {
        "strategy": config.get("strategy"),
        "backbone": config.get("backbone"),
        "accuracy": round(test["accuracy"], 4),
        "macro_f1": round(test["macro_f1"], 4),
        "train_seconds": fit.get("train_seconds"),
        "chosen": selection.get("chosen") or (fit.get("tfidf_side") or {}).get("kept"),
        "selection_method": selection.get("method"),
        "baseline_verdict": (fit.get("baseline") or {}).get("verdict"),
        "baseline_cv_macro_f1": (fit.get("baseline") or {}).get("macro_f1"),
    }


ARMS = {
    "default": (None, []),
    "baseline": (None, ["--strategy", "baseline"]),
    "old-probe": ("old", ["--strategy", "linear-probe"]),
}


def accuracy(names: list[str], arms: list[str], old_src: Path) -> None:
    for name in names:
        data = laid_out(name)
        scores: dict[str, float | None] = {}
        for arm in arms:
            which, flags = ARMS[arm]
            if arm == "baseline" and modality(name) == "image":
                emit({"bench": "defaults", "dataset": name, "arm": arm,
                      "skipped": "images have no --strategy baseline"})  # fmt: skip
                scores[arm] = None
                continue
            src = old_src if which == "old" else ROOT / "src"
            run = WORK / name / "runs" / arm
            args = ["train", str(data), "--output", str(run), "--quiet", *flags,
                    *extra_args(name)]  # fmt: skip
            if run.exists():
                subprocess.run(["rm", "-rf", str(run)], check=True)
            wall = tailor(src, args, WORK / name / f"{arm}.log")
            row = run_summary(run)
            scores[arm] = row["macro_f1"]
            emit({"bench": "defaults", "dataset": name, "arm": arm, "src": str(src),
                  "command": "tailor " + " ".join(args), "wall_seconds": round(wall, 1),
                  **row})  # fmt: skip
        for arm, value in newest_scores(name).items():  # arms not rerun: their last row
            scores.setdefault(arm, value)
        if "default" in scores and len(scores) > 1:
            rivals = [v for k, v in scores.items() if k != "default" and v is not None]
            target = max(rivals) - 0.005
            emit({"bench": "defaults", "dataset": name, "summary": "default vs max(rivals)",
                  **{f"{k}_macro_f1": v for k, v in scores.items()},
                  "target": round(target, 4), "pass": scores["default"] >= target})  # fmt: skip


def newest_scores(name: str) -> dict[str, float | None]:
    """Each arm's newest test macro-F1 on `name` in defaults.jsonl."""
    out: dict[str, float | None] = {}
    if RESULTS.exists():
        for line in RESULTS.read_text().splitlines():
            r = json.loads(line) if line.strip() else {}
            if r.get("bench") == "defaults" and r.get("dataset") == name and "arm" in r:
                out[r["arm"]] = r.get("macro_f1")
    return out


def compare_strategies(name: str) -> str:
    if name in ("spam-32", "spam-8"):
        return COMPARE["text-few"]
    return COMPARE[modality(name)]


def auto(names: list[str], budget: str, skip_auto: bool, skip_compare: bool) -> None:
    from_budget = {"s": 1, "m": 60, "h": 3600}
    budget_s = float(budget[:-1]) * from_budget[budget[-1]]
    for name in names:
        data = laid_out(name)
        if not skip_auto:
            run = WORK / name / "runs" / "auto"
            if run.exists():
                subprocess.run(["rm", "-rf", str(run)], check=True)
            args = ["train", str(data), "--strategy", "auto", "--budget", budget,
                    "--output", str(run), "--quiet", *extra_args(name)]  # fmt: skip
            wall = tailor(ROOT / "src", args, WORK / name / "auto.log")
            fit = json.loads((run / "config.json").read_text())["fit"]
            info = fit.get("auto") or {}
            emit({"bench": "defaults-auto", "dataset": name, "arm": "auto",
                  "command": "tailor " + " ".join(args), "budget_seconds": budget_s,
                  "wall_seconds": round(wall, 1), "search_seconds": info.get("seconds"),
                  "within_budget_10pct": wall <= 1.1 * budget_s, **run_summary(run),
                  "auto_chosen": info.get("chosen"), "leaderboard": info.get("leaderboard"),
                  "skipped": info.get("skipped"),
                  "load_average_1m": round(os.getloadavg()[0], 2)})  # fmt: skip
        if not skip_compare:
            out = WORK / name / "runs" / "compare"
            if out.exists():
                subprocess.run(["rm", "-rf", str(out)], check=True)
            args = ["compare", str(data), "--strategies", compare_strategies(name),
                    "--seeds", "0", "--output", str(out), *extra_args(name)]  # fmt: skip
            wall = tailor(ROOT / "src", args, WORK / name / "compare.log")
            doc = json.loads((out / "compare.json").read_text())
            keys = ("strategy", "backbone", "accuracy", "macro_f1", "train_seconds", "error")
            rows = [{k: r.get(k) for k in keys} for r in doc["rows"]]
            emit({"bench": "defaults-compare", "dataset": name,
                  "command": "tailor " + " ".join(args), "scored_on": doc["scored_on"],
                  "wall_seconds": round(wall, 1), "rows": rows})  # fmt: skip


def summarise_draws(names: list[str]) -> None:
    """Per k-shot set, each arm's test macro-F1 averaged over the draws run (`spam-8`,
    `spam-8@1`, ...; the newest row of each), and pass/fail on the means."""
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    for base in sorted({n.partition("@")[0] for n in names if n.startswith("spam-") and "@" in n}):
        newest: dict[tuple[str, str], float] = {}
        for r in rows:
            name = r.get("dataset", "")
            if r.get("bench") == "defaults" and "arm" in r and "macro_f1" in r:
                if name == base or name.startswith(base + "@"):
                    newest[(name, r["arm"])] = r["macro_f1"]
        draws = sorted({d for d, _ in newest})
        arms = {a: [newest[(d, a)] for d in draws if (d, a) in newest] for a in ARMS}
        if any(len(v) != len(draws) for v in arms.values()):
            continue
        means = {a: round(float(np.mean(v)), 4) for a, v in arms.items()}
        target = max(means["baseline"], means["old-probe"]) - 0.005
        wins = sum(d >= max(b, o) - 0.005 for d, b, o in zip(*arms.values(), strict=True))
        emit({"bench": "defaults", "dataset": base, "summary": "mean over draws",
              "draws": draws, **{f"{a}_macro_f1_mean": m for a, m in means.items()},
              **{f"{a}_macro_f1": v for a, v in arms.items()}, "target": round(target, 4),
              "pass": means["default"] >= target, "draws_passing": wins})  # fmt: skip


def summarise_auto(names: list[str]) -> None:
    """Auto vs compare's best, from the newest rows of both in defaults.jsonl."""
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    for name in names:
        autos = [r for r in rows if r.get("bench") == "defaults-auto" and r["dataset"] == name]
        comps = [r for r in rows if r.get("bench") == "defaults-compare" and r["dataset"] == name]
        if not autos or not comps:
            continue
        a, c = autos[-1], comps[-1]
        done = [r for r in c["rows"] if r.get("macro_f1") is not None]
        best = max(done, key=lambda r: r["macro_f1"])
        emit({"bench": "defaults-auto", "dataset": name, "summary": "auto vs compare best",
              "auto_macro_f1": a["macro_f1"], "auto_wall_seconds": a["wall_seconds"],
              "best_strategy": best["strategy"], "best_macro_f1": round(best["macro_f1"], 4),
              "pass_score": a["macro_f1"] >= best["macro_f1"] - 0.005,
              "pass_time": a["within_budget_10pct"]})  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("part", choices=["accuracy", "auto", "summary", "layout"])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--old-src", type=Path, default=OLD_SRC)
    p.add_argument("--budget", default="10m")
    p.add_argument("--skip-auto", action="store_true")
    p.add_argument("--skip-compare", action="store_true")
    args = p.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    if args.part == "layout":
        for name in names:
            print(name, laid_out(name))
    elif args.part == "accuracy":
        accuracy(names, args.arms.split(","), args.old_src)
        summarise_draws(names)
    elif args.part == "auto":
        auto(names, args.budget, args.skip_auto, args.skip_compare)
        summarise_auto(names)
    else:
        summarise_draws(names)
        summarise_auto(names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
