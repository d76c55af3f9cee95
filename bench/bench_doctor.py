"""`tailor doctor` against injected faults and for speed (issue 20).

    PYTHONPATH=src python bench/bench_doctor.py noise [--datasets hymenoptera,spam,fsdd]
    PYTHONPATH=src python bench/bench_doctor.py duplicates [--datasets ...]
    PYTHONPATH=src python bench/bench_doctor.py speed [--datasets ...]
    PYTHONPATH=src python bench/bench_doctor.py search [--sizes 10000,20000,40000]
    PYTHONPATH=src python bench/bench_doctor.py tables     # markdown of the latest rows

Every dataset is laid out afresh in a temporary folder (symbolic links to the shared files,
or rewritten CSVs) as train/val/test, so /work/shared/data is never touched and the test part
is fixed and clean:
- hymenoptera: test = the shipped val/ folder; train/val = the shipped train/ folder, 90/10
  stratified (seed 0);
- spamassassin: the 80/10/10 stratified split (seed 0) `tailor train` makes by default,
  written as train.csv/val.csv/test.csv;
- FSDD: test = index 0-4 of every speaker and digit (the usual split), val = index 5-9,
  train = index 10-49.

`noise`: flips 5% and 10% of the train+val labels (seeded, to a random other class), runs
doctor on train+val only, and compares doctor's flagged set with
`cleanlab.filter.find_label_issues` on the same out-of-fold probabilities (doctor's, from
`DoctorReport.out_of_fold_proba`): precision, recall, F1, and precision among the k lowest
self-confidences (k = number flipped; both rank by self-confidence). Then `tailor train`
(default linear probe) on the noisy data with and without doctor's exclude.txt, and on the
clean data as the reference; test accuracy and macro-F1 on the untouched test part.

`duplicates`: 20 modified copies per dataset (JPEG quality 70 at 0.8x size; text with changed
case/whitespace and a signature line; FLAC at -6 dB), 10 in the original's split and 10 in
another one. Doctor on the clean layout lists the real duplicates; doctor on the injected one
gives recall (injected pairs found / 20) and precision (found pairs that are injected copies,
or a copy with a real duplicate of its original, over all found pairs not already in the
clean run), and whether each cross-split copy is reported as leakage.

`speed`: wall time of `tailor doctor` vs `tailor train` (linear probe) as processes on a warm
embedding cache, and on an empty cache (MODELTAILOR_CACHE in a temp folder) doctor vs
embedding extraction alone (`doctor.embed.embed_dataset` as a process). Run under
`flock /work/bench.lock`. `search`: near-duplicate search on synthetic unit vectors of the
image backbone's width (1280) at N items: seconds and peak traced memory.

Prints one JSON line per measurement and appends it to bench/results/doctor.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
OUT = ROOT / "bench" / "results" / "doctor.jsonl"
SPEAKER = r"_([a-z]+)_"
SIGNATURE = "\n\n-- \nSent from my phone. Please excuse typos."


def emit(row: dict) -> None:
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}
    print(json.dumps(row), flush=True)
    with OUT.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# -- layouts ------------------------------------------------------------------------------------
@dataclass
class Record:
    """One example of a laid-out dataset: a file (source) or a text, its label and split."""

    split: str
    label: str
    source: Path | None = None
    text: str | None = None
    name: str = ""
    copy_of: int | None = None  # index of the original, for injected copies
    flipped_from: str | None = None


@dataclass
class Layout:
    dataset: str
    modality: str
    records: list[Record]
    classes: list[str]
    options: dict = field(default_factory=dict)


def hymenoptera() -> Layout:
    root = DATA / "hymenoptera_data"
    records = []
    rng = np.random.default_rng(0)
    for cls in ("ants", "bees"):
        files = sorted((root / "train" / cls).iterdir())
        val = set(rng.choice(len(files), round(0.1 * len(files)), replace=False).tolist())
        records += [
            Record("val" if i in val else "train", cls, f, name=f.name)
            for i, f in enumerate(files)
        ]
        shipped_val = sorted((root / "val" / cls).iterdir())
        records += [Record("test", cls, f, name=f.name) for f in shipped_val]
    return Layout("hymenoptera", "image", records, ["ants", "bees"])


def spam() -> Layout:
    from modeltailor.data.text import load_text

    path = DATA / "spamassassin.csv"
    data = load_text(path)
    parts = data.split(0.8, 0.1, 0.1, seed=0)
    records = []
    for split, part in zip(("train", "val", "test"), parts, strict=True):
        for item, label in zip(part.items, part.labels, strict=True):
            records.append(Record(split, data.class_names[label], text=item.text))
    return Layout("spamassassin", "text", records, list(data.class_names))


def fsdd() -> Layout:
    root = DATA / "fsdd"
    records = []
    for cls in sorted(d.name for d in root.iterdir() if d.is_dir()):
        for f in sorted((root / cls).glob("*.wav")):
            index = int(re.match(r"\d+_[a-z]+_(\d+)\.wav$", f.name).group(1))
            split = "test" if index <= 4 else ("val" if index <= 9 else "train")
            records.append(Record(split, cls, f, name=f.name))
    return Layout("fsdd", "audio", records, sorted({r.label for r in records}))


LAYOUTS = {"hymenoptera": hymenoptera, "spam": spam, "fsdd": fsdd}


def write(layout: Layout, root: Path, splits=("train", "val", "test")) -> Path:
    """Materialise the records of `splits` under root: links to files, or one CSV per split."""
    root.mkdir(parents=True)
    if layout.modality == "text":
        for split in splits:
            with (root / f"{split}.csv").open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f)
                w.writerow(["text", "label"])
                w.writerows([r.text, r.label] for r in layout.records if r.split == split)
        return root
    for r in layout.records:
        if r.split not in splits:
            continue
        dst = root / r.split / r.label / r.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(r.source.resolve())
    return root


def keys(layout: Layout, root: Path) -> list[str]:
    """How doctor's outputs name each record laid out under root (item_name), by record."""
    from modeltailor.data.exclude import item_name
    from modeltailor.modalities import modality_for_path

    if layout.modality != "text":
        return [item_name(root / r.split / r.label / r.name) for r in layout.records]
    data = modality_for_path(root).load(root, {})
    out = [""] * len(layout.records)
    for split, part in data.predefined.items():
        mine = [i for i, r in enumerate(layout.records) if r.split == split]
        assert len(mine) == len(part.items), (split, len(mine), len(part.items))
        for i, item in zip(mine, part.items, strict=True):
            assert item.text.split() == layout.records[i].text.split(), i
            out[i] = item_name(item)
    return out


def train(data: Path, run: Path, exclude: Path | None = None) -> dict:
    from modeltailor.cli import main

    argv = ["train", str(data), "--output", str(run), "--quiet"]
    if exclude is not None:
        argv += ["--exclude", str(exclude)]
    assert main(argv) == 0, argv
    test = json.loads((run / "metrics.json").read_text())["test"]
    return {"accuracy": round(test["accuracy"], 4), "macro_f1": round(test["macro_f1"], 4)}


# -- label noise --------------------------------------------------------------------------------
def flip(layout: Layout, rate: float, seed: int) -> Layout:
    rng = np.random.default_rng(seed)
    pool = [i for i, r in enumerate(layout.records) if r.split != "test"]
    chosen = rng.choice(pool, round(rate * len(pool)), replace=False)
    records = list(layout.records)
    for i in chosen.tolist():
        r = records[i]
        others = [c for c in layout.classes if c != r.label]
        records[i] = Record(r.split, str(rng.choice(others)), r.source, r.text, r.name,
                            flipped_from=r.label)  # fmt: skip
    return Layout(layout.dataset, layout.modality, records, layout.classes, layout.options)


def scores(flagged: set[str], truth: set[str]) -> dict:
    hit = len(flagged & truth)
    p = hit / len(flagged) if flagged else 0.0
    r = hit / len(truth) if truth else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"flagged": len(flagged), "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(f1, 4)}  # fmt: skip


def noise(name: str, rates: list[float], tmp: Path) -> None:
    import cleanlab.filter

    from modeltailor import doctor
    from modeltailor.data.exclude import item_name

    clean = LAYOUTS[name]()
    clean_run = train(write(clean, tmp / f"{name}-clean"), tmp / f"{name}-clean-run")
    for rate in rates:
        noisy = flip(clean, rate, seed=int(rate * 1000))
        farm = write(noisy, tmp / f"{name}-{rate}")
        tv = tmp / f"{name}-{rate}-tv"  # what doctor sees: train + val, links into farm
        if noisy.modality == "text":
            tv.mkdir()
            for split in ("train", "val"):
                (tv / f"{split}.csv").symlink_to(farm / f"{split}.csv")
        else:
            write(noisy, tv, splits=("train", "val"))
        key = keys(noisy, farm)
        truth = {key[i] for i, r in enumerate(noisy.records) if r.flipped_from}
        started = time.perf_counter()
        report_dir = tmp / f"{name}-{rate}-doctor"
        report = doctor(tv, output=report_dir, verbose=False)
        seconds = time.perf_counter() - started
        examined = [item_name(it) for it in report.examined_items]
        labels, proba = report.given_labels, report.out_of_fold_proba
        ours = {e["path"] for e in report.label_issues["items"]}
        theirs_mask = cleanlab.filter.find_label_issues(labels, proba)
        theirs = {examined[i] for i in np.flatnonzero(theirs_mask)}
        k = len(truth)
        conf = proba[np.arange(len(labels)), labels]
        top_k = {examined[i] for i in np.argsort(conf, kind="stable")[:k]}
        without = train(farm, tmp / f"{name}-{rate}-run")
        excluded = train(farm, tmp / f"{name}-{rate}-run-x", report_dir / "exclude.txt")
        only_labels = report_dir / "label-errors.txt"  # exclude.txt less the duplicate removals
        only_labels.write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")
        label_excluded = train(farm, tmp / f"{name}-{rate}-run-l", only_labels)
        emit({
            "bench": "doctor-noise", "dataset": noisy.dataset, "rate": rate,
            "train_val_items": len(examined), "flipped": k,
            "out_of_fold_accuracy": report.label_issues["out_of_fold_accuracy"],
            "doctor": {**scores(ours, truth), "precision_at_k": round(len(top_k & truth) / k, 4)},
            "cleanlab": {**scores(theirs, truth),
                         "precision_at_k": round(len(top_k & truth) / k, 4)},
            "same_flags": ours == theirs,
            "exclude_lines": len(report.suggested_removals),
            "test_clean_labels": clean_run, "test_noisy": without,
            "test_noisy_exclude_txt": excluded, "test_noisy_label_errors_excluded": label_excluded,
            "doctor_seconds": round(seconds, 1),
        })  # fmt: skip


# -- duplicates ---------------------------------------------------------------------------------
def modified_copy(layout: Layout, r: Record, dst_dir: Path, k: int) -> Record:
    """A modified copy of r (in the tmp folder), named so it sorts beside nothing in particular."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    if layout.modality == "image":
        from PIL import Image

        out = dst_dir / f"copy{k:02d}-{Path(r.name).stem}.jpg"
        with Image.open(r.source) as im:
            im = im.convert("RGB")
            im.resize((round(im.width * 0.8), round(im.height * 0.8)), Image.BICUBIC).save(
                out, quality=70
            )
        return Record(r.split, r.label, out, name=out.name)
    if layout.modality == "audio":
        import soundfile as sf

        wave, rate = sf.read(r.source)
        out = dst_dir / f"copy{k:02d}-{Path(r.name).stem}.flac"
        sf.write(out, wave * 10 ** (-6 / 20), rate, format="FLAC")
        return Record(r.split, r.label, out, name=out.name)
    words = r.text.split()
    text = "  ".join(words) if k % 2 else " ".join(words)
    text = text.lower() if k % 3 == 0 else (text.upper() if k % 3 == 1 else text)
    return Record(r.split, r.label, text=text + SIGNATURE)


def inject(
    layout: Layout, n: int, copies: Path, seed: int = 0
) -> tuple[Layout, list[tuple[int, int]]]:
    """n modified copies, the first half in the original's split, the rest in another."""
    rng = np.random.default_rng(seed)
    readable = [i for i, r in enumerate(layout.records) if not (r.name or "").endswith(".gif")]
    chosen = rng.choice(readable, n, replace=False).tolist()
    records = list(layout.records)
    pairs = []
    for k, i in enumerate(chosen):
        c = modified_copy(layout, records[i], copies, k)
        if k >= n // 2:
            c.split = {"train": "test", "val": "train", "test": "train"}[c.split]
        c.copy_of = i
        records.append(c)
        pairs.append((i, len(records) - 1))
    return Layout(layout.dataset, layout.modality, records, layout.classes), pairs


def found_pairs(report) -> set[frozenset]:
    out = set()
    for g in report.exact_duplicates + report.near_duplicates:
        out |= {frozenset(p) for p in combinations([m["path"] for m in g["items"]], 2)}
    return out


def short(m: dict) -> str:
    """An item as the figures list it: path under shared/data, or a text's first words."""
    if m.get("text") is not None:
        return " ".join(m["text"].split())[:70]
    return m["path"].split("/shared/data/")[-1]


def describe_groups(report) -> list[dict]:
    out = []
    for kind in ("exact", "near"):
        for g in getattr(report, f"{kind}_duplicates"):
            if g.get("within_near_group"):
                continue
            out.append({
                "kind": kind, "labels": g["labels"], "splits": g.get("splits"),
                "items": [short(m) for m in g["items"]],
            })  # fmt: skip
    return out


def duplicates(name: str, tmp: Path) -> None:
    from modeltailor import doctor

    clean = LAYOUTS[name]()
    farm = write(clean, tmp / f"{name}-clean")
    base = doctor(farm, verbose=False)
    emit({
        "bench": "doctor-real-duplicates", "dataset": clean.dataset, "layout": "bench split",
        "counts": base.counts(), "groups": describe_groups(base),
        "leakage": base.leakage["groups"],
        "likely_label_errors": [
            {"item": short(e), "label": e["label"], "suggested": e["suggested_label"],
             "p": e["suggested_probability"]}
            for e in base.label_issues.get("items", [])[:30]
        ],
    })  # fmt: skip
    injected, pairs = inject(clean, 20, tmp / f"{name}-copies")
    farm2 = write(injected, tmp / f"{name}-dup")
    key = keys(injected, farm2)
    # the clean run's pairs as the injected layout names them (texts: another CSV file; the
    # originals keep their record index, the copies come after them)
    to_injected = dict(zip(keys(clean, farm), key, strict=False))
    base_pairs = {frozenset(to_injected.get(x, x) for x in p) for p in found_pairs(base)}
    report = doctor(farm2, verbose=False)
    found = found_pairs(report)
    ident = {key[c]: key[o] for o, c in pairs}
    base_linked = base_pairs

    def correct(p: frozenset) -> bool:
        a, b = (ident.get(x, x) for x in p)
        return a == b or frozenset((a, b)) in base_linked

    new = found - base_pairs
    hits = [frozenset((key[o], key[c])) in found for o, c in pairs]
    cross = [(o, c) for o, c in pairs if injected.records[o].split != injected.records[c].split]
    leak_groups = [
        {m["path"] for m in (report.exact_duplicates if g["kind"] == "exact"
                             else report.near_duplicates)[g["group"]]["items"]}
        for g in report.leakage["groups"]
    ]  # fmt: skip
    leaked = [any({key[o], key[c]} <= g for g in leak_groups) for o, c in cross]
    missed = [injected.records[o].name or injected.records[o].text[:60]
              for (o, _), h in zip(pairs, hits, strict=True) if not h]  # fmt: skip
    emit({
        "bench": "doctor-duplicates", "dataset": injected.dataset, "copies": len(pairs),
        "recall": round(sum(hits) / len(pairs), 4),
        "precision": round(sum(correct(p) for p in new) / len(new), 4) if new else None,
        "new_pairs_found": len(new), "cross_split_copies": len(cross),
        "cross_split_reported_as_leakage": sum(leaked), "missed": missed,
        "wrong_pairs": [sorted(Path(x).name for x in p) for p in new if not correct(p)][:10],
    })  # fmt: skip


# -- speed --------------------------------------------------------------------------------------
def timed(argv: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{argv}: {done.stderr[-2000:]}")
    return seconds


EXTRACT = """
import sys
from modeltailor.modalities import modality_for_path
from modeltailor.doctor.embed import embed_dataset
m = modality_for_path(sys.argv[1])
opts = {"group_by": sys.argv[2] or None}
d = m.load(sys.argv[1], opts)
embed_dataset(d, m, None, verbose=False)
"""


def speed_targets(name: str, tmp: Path) -> list[tuple[str, Path, list[str]]]:
    if name == "hymenoptera":
        return [("hymenoptera", DATA / "hymenoptera_data", [])]
    if name == "fsdd":
        return [("fsdd", DATA / "fsdd", ["--group-by", SPEAKER])]
    sub = tmp / "spam-1000.csv"  # uncached on the whole file takes minutes on 2 cores
    csv.field_size_limit(sys.maxsize)  # some e-mails are longer than csv's default 128 KB
    with (DATA / "spamassassin.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = np.random.default_rng(0).choice(len(rows), 1000, replace=False)
    with sub.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[i] for i in sorted(keep.tolist()))
    return [("spamassassin", DATA / "spamassassin.csv", []), ("spamassassin-1000", sub, [])]


def speed(name: str, tmp: Path, doctor_first: bool = False, cached: bool = True) -> None:
    py = [sys.executable]
    env = {"PYTHONPATH": str(ROOT / "src")}
    for label, data, extra in speed_targets(name, tmp):
        tailor = [*py, "-m", "modeltailor.cli"]
        doc = [*tailor, "doctor", str(data), "--quiet", *extra]
        trn = [*tailor, "train", str(data), "--quiet", *extra]
        row = {"bench": "doctor-speed", "dataset": label}
        if cached and label != "spamassassin-1000":  # warm cache: both fill it if needed
            timed([*doc, "--output", str(tmp / f"{label}-d0")], env)
            t_train = timed([*trn, "--output", str(tmp / f"{label}-t1")], env)
            t_doc = timed([*doc, "--output", str(tmp / f"{label}-d1")], env)
            row["cached"] = {"doctor_s": round(t_doc, 1), "train_linear_probe_s": round(t_train, 1),
                             "ratio": round(t_doc / t_train, 2)}  # fmt: skip
        if label != "spamassassin":
            group = extra[1] if extra else ""
            cold_x = {**env, "MODELTAILOR_CACHE": str(tmp / f"cache-{label}-x")}
            cold_d = {**env, "MODELTAILOR_CACHE": str(tmp / f"cache-{label}-d")}
            if doctor_first:  # the first process also warms the OS file cache for the second
                t_doc = timed([*doc, "--output", str(tmp / f"{label}-d2")], cold_d)
            t_ext = timed([*py, "-c", EXTRACT, str(data), group], cold_x)
            if not doctor_first:
                t_doc = timed([*doc, "--output", str(tmp / f"{label}-d2")], cold_d)
            row["uncached"] = {"doctor_s": round(t_doc, 1), "extraction_s": round(t_ext, 1),
                               "ratio": round(t_doc / t_ext, 2),
                               "first": "doctor" if doctor_first else "extraction"}  # fmt: skip
        emit(row)


SEARCH = """
import json, sys, time, tracemalloc
import numpy as np
from modeltailor.doctor.duplicates import near_groups, normalise
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = normalise(rng.normal(size=(n, d)).astype(np.float32))
m = len(x[n // 2 :: 97])  # near copies (cosine ~0.98) of the first m rows: pairs to find
noise = rng.normal(size=(m, d)).astype(np.float32) * (0.2 / d**0.5)
x[n // 2 :: 97] = normalise(x[:m] + noise)
digests = [str(i) for i in range(n)]
tracemalloc.start()
t = time.perf_counter()
groups, pairs = near_groups([("embedding", x, 0.95)], digests)
s = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"n": n, "dim": d, "seconds": round(s, 2), "peak_mb": round(peak / 2**20, 1),
                  "embeddings_mb": round(x.nbytes / 2**20, 1), "groups": len(groups),
                  "planted": m}))
"""


def search(sizes: list[int], dim: int = 1280) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for n in sizes:
        done = subprocess.run([sys.executable, "-c", SEARCH, str(n), str(dim)], env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        row = json.loads(done.stdout)
        emit({"bench": "doctor-search", "data": "synthetic unit vectors", **row})


def tables() -> None:
    """Markdown tables of the latest row per (bench, dataset[, rate]) in doctor.jsonl."""
    latest: dict[tuple, dict] = {}
    for line in OUT.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        latest[(r["bench"], r.get("dataset", r.get("n")), r.get("rate"))] = r
    rows = list(latest.values())
    print("| data | flipped | OOF acc | doctor P / R / F1 / P@k | cleanlab P / R / F1 / P@k "
          "| test accuracy (macro-F1): clean / noisy / noisy - exclude.txt / noisy - label flags |")
    print("|---|---|---|---|---|---|")
    for r in (r for r in rows if r["bench"] == "doctor-noise"):
        d, c = r["doctor"], r["cleanlab"]
        t = [r["test_clean_labels"], r["test_noisy"], r.get("test_noisy_exclude_txt",
             r.get("test_noisy_excluded")), r.get("test_noisy_label_errors_excluded")]  # fmt: skip
        print(f"| {r['dataset']} {r['rate']:.0%} | {r['flipped']} of {r['train_val_items']} | "
              f"{r['out_of_fold_accuracy']:.3f} | {d['precision']:.3f} / {d['recall']:.3f} / "
              f"{d['f1']:.3f} / {d['precision_at_k']:.3f} | {c['precision']:.3f} / "
              f"{c['recall']:.3f} / {c['f1']:.3f} / {c['precision_at_k']:.3f} | "
              + " / ".join(f"{x['accuracy']:.4f} ({x['macro_f1']:.4f})" if x else "-" for x in t)
              + " |")  # fmt: skip
    print("\n| data | copies | recall | precision | cross-split copies reported as leakage |")
    print("|---|---|---|---|---|")
    for r in (r for r in rows if r["bench"] == "doctor-duplicates"):
        print(f"| {r['dataset']} | {r['copies']} | {r['recall']:.2f} | {r['precision']} | "
              f"{r['cross_split_reported_as_leakage']} of {r['cross_split_copies']} |")
    print("\n| data | cached: doctor / probe rerun (ratio) "
          "| uncached: doctor / extraction (ratio) |")
    print("|---|---|---|")
    for r in (r for r in rows if r["bench"] == "doctor-speed"):
        c, u = r.get("cached"), r.get("uncached")
        cached = f"{c['doctor_s']} s / {c['train_linear_probe_s']} s ({c['ratio']}x)" if c else "-"
        cold = f"{u['doctor_s']} s / {u['extraction_s']} s ({u['ratio']}x)" if u else "-"
        print(f"| {r['dataset']} | {cached} | {cold} |")
    print("\n| N x 1280 | seconds | peak traced MB (embeddings not counted) "
          "| pairs planted / groups |")
    print("|---|---|---|---|")
    for r in (r for r in rows if r["bench"] == "doctor-search"):
        print(f"| {r['n']} | {r['seconds']} | {r['peak_mb']} | {r.get('planted', '?')} / "
              f"{r['groups']} |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("noise", "duplicates", "speed", "search", "tables"))
    ap.add_argument("--datasets", default="hymenoptera,spam,fsdd")
    ap.add_argument("--rates", default="0.05,0.1")
    ap.add_argument("--sizes", default="10000,20000,40000")
    ap.add_argument("--doctor-first", action="store_true", help="speed: uncached doctor first")
    ap.add_argument("--uncached-only", action="store_true")
    args = ap.parse_args()
    if args.what == "tables":
        tables()
        return 0
    if args.what == "search":
        search([int(s) for s in args.sizes.split(",")])
        return 0
    for name in args.datasets.split(","):
        with tempfile.TemporaryDirectory(prefix=f"doctor-{name}-") as t:
            tmp = Path(t)
            if args.what == "noise":
                noise(name, [float(r) for r in args.rates.split(",")], tmp)
            elif args.what == "duplicates":
                duplicates(name, tmp)
            else:
                speed(name, tmp, args.doctor_first, not args.uncached_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
