"""Gather a run's files into the report: figures as PNGs, then one self-contained HTML page.

Everything comes from files the run already holds (config.json, metrics.json, history.csv,
splits.json, predictions.csv): no model is loaded, so a report builds in about a second,
offline, and can be rebuilt for any finished run with `tailor report`. The model card
(README.md, report/card.py) is rebuilt with it.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modeltailor.modalities import Modality, get_modality
from modeltailor.report import plots
from modeltailor.report.html import render
from modeltailor.report.predictions import read_predictions
from modeltailor.run import RunDir, atomic_write_bytes

REPORT_FILE = "report.html"
FIGURE_DIR = "report"
MAX_MISTAKES = 12
MAX_SKIPPED = 500
SPLIT_KEYS = {"train": "train", "val": "validation", "test": "test"}


def write_report(run_path: str | Path) -> Path:
    """(Re)build runs/<name>/report.html, runs/<name>/report/*.png and the model card
    runs/<name>/README.md; returns the HTML path."""
    from modeltailor.report.card import write_model_card

    started = time.perf_counter()
    run = RunDir(run_path)
    cfg = run.read_json("config.json")
    metrics = run.read_json("metrics.json") if run.has("metrics.json") else {}
    held_name, held = held_out(metrics)
    figures = _figures(run, cfg, held, held_name)
    for name, fig in figures.items():
        target = run.path / FIGURE_DIR / f"{name}.png"
        if fig.get("png"):
            atomic_write_bytes(target, fig["png"])
        else:
            target.unlink(missing_ok=True)  # a stale figure from an earlier build
    labels = run.read_json("labels.json") if run.has("labels.json") else held.get("labels", [])
    context = {
        "name": run.path.resolve().name,
        "cfg": cfg,
        "config_json": json.dumps(cfg, indent=2, ensure_ascii=False),
        "metrics": metrics,
        "headline": _headline(metrics),
        "held_name": held_name,
        "held": held,
        "figures": figures,
        "mistakes": _mistakes(run.path, held_name, get_modality(cfg.get("modality", "image"))),
        "counts": class_counts(run, cfg, labels),
        "skipped": skipped_files(cfg, metrics),
        "data_checks": (cfg.get("fit") or {}).get("data_checks") or {},
        "max_skipped": MAX_SKIPPED,
        "missing_glyphs": plots.missing_glyphs(labels),
    }
    context["seconds"] = round(time.perf_counter() - started, 2)
    path = run.path / REPORT_FILE
    atomic_write_bytes(path, render(context).encode("utf-8"))
    write_model_card(run.path)
    return path


def held_out(metrics: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The split the report judges the model on: test if there is one, else validation."""
    for name in ("test", "validation"):
        if metrics.get(name):
            return name, metrics[name]
    return None, {}


def _headline(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(m, split=name) for name in ("validation", "test") if (m := metrics.get(name))]


# -- figures ------------------------------------------------------------------------------------
NO_HELD_OUT = "metrics.json has no validation or test figures"
NO_BINS = "metrics.json has no calibration bins (a run from before ECE was measured: train again)"


def _figures(run: RunDir, cfg: dict, held: dict, held_name: str | None) -> dict[str, dict]:
    """name -> {"png": bytes | None, "why": reason shown instead of a missing figure}."""
    history = _history(run.path)
    split = held_name or ""
    return {
        "learning_curves": _draw(
            lambda: _learning_curves(history, cfg), None if history else "no history.csv"
        ),
        "confusion_matrix": _draw(
            lambda: plots.confusion(held["confusion_matrix"], held["labels"]),
            None if held else NO_HELD_OUT,
        ),
        "per_class": _draw(
            lambda: plots.per_class(held["per_class"]), None if held else NO_HELD_OUT
        ),
        "reliability": _draw(
            lambda: plots.reliability(held["reliability"], held["ece"], split),
            None if held.get("reliability") else NO_BINS,
        ),
    }


def _learning_curves(history: list[dict[str, str]], cfg: dict[str, Any]) -> bytes:
    """The linear probe's C search (its history has a C column), else curves per epoch."""
    if "C" in history[0]:
        return plots.probe_curves(history)
    best = (cfg.get("fit") or {}).get("best_epoch") or None
    return plots.network_curves(history, _head_epochs(cfg), best)


def _draw(make: Callable[[], bytes], why: str | None) -> dict[str, Any]:
    """One figure; a figure that fails to draw is explained on the page, not fatal."""
    if why:
        return {"png": None, "why": why}
    try:
        return {"png": make(), "why": None}
    except Exception as exc:  # noqa: BLE001 - the rest of the report is still worth having
        return {"png": None, "why": f"could not be drawn: {type(exc).__name__}: {exc}"}


def _history(run_path: Path) -> list[dict[str, str]]:
    path = run_path / "history.csv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _head_epochs(cfg: dict[str, Any]) -> int | None:
    """Epochs of head-only training; older runs did not record it, so ask the strategy."""
    recorded = cfg.get("fit", {}).get("head_epochs")
    if recorded is not None:
        return int(recorded)
    from modeltailor.strategies import get_strategy

    try:
        return get_strategy(cfg.get("strategy", "")).head_epochs
    except Exception:  # noqa: BLE001 - an unknown strategy just gets no unfreeze line
        return None


# -- tables -------------------------------------------------------------------------------------
#: Where the page lists a mistake, by how its modality shows an example.
_GROUPS = {"thumbnail": "rows", "clip": "clips", "text": "texts"}


def _mistakes(run_path: Path, held_name: str | None, modality: Modality) -> dict[str, Any]:
    """The most confident wrong predictions on the held-out split, shown as the run's
    modality shows an example (a thumbnail, a playable clip, or the text's start)."""
    rows = read_predictions(run_path)
    empty = {
        "rows": [],
        "gone": [],
        "texts": [],
        "clips": [],
        "total": 0,
        "n": 0,
        "noun": modality.noun,
    }
    if rows is None:
        return {**empty, "available": False}
    rows = [r for r in rows if r["split"] == held_name]
    wrong = [r for r in rows if r["label"] != r["predicted"]]
    wrong.sort(key=lambda r: -r["confidence"])
    shown: dict[str, list] = {"rows": [], "clips": [], "texts": [], "gone": []}
    for r in wrong[:MAX_MISTAKES]:
        kind, uri = modality.report_example(r["path"])
        group = _GROUPS[kind] if uri is not None else "gone"
        name = Path(r["path"]).name
        shown[group].append({**r, "name": name, "uri": uri, "text": r.get("text") or r["path"]})
    return {
        **empty,
        "available": True,
        **shown,
        "total": len(wrong),
        "n": len(rows),
    }


def class_counts(run: RunDir, cfg: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Class counts per split: from splits.json (every split), else config.json's summary."""
    per_split: dict[str, dict[str, int]] = {}
    if run.has("splits.json"):
        for key, rec in run.read_json("splits.json").items():
            per_split[SPLIT_KEYS.get(key, key)] = dict(Counter(rec.get("labels", [])))
    else:
        for key in ("train", "val"):
            if (cfg.get("data") or {}).get(key):
                per_split[SPLIT_KEYS[key]] = cfg["data"][key]["class_counts"]
    names = list(labels) or sorted({c for counts in per_split.values() for c in counts})
    rows = []
    for c in names:
        counts = [per_split[s].get(c, 0) for s in per_split]
        rows.append({"name": c, "counts": counts, "total": sum(counts)})
    totals = [sum(per_split[s].values()) for s in per_split]
    return {"splits": list(per_split), "rows": rows, "totals": totals}


def skipped_files(cfg: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Files left out while loading/training (config.json) or evaluating (metrics.json)."""
    rows = [
        {"stage": "loading / training", **s} for s in (cfg.get("data") or {}).get("skipped", [])
    ]
    for split in ("validation", "test"):
        for s in (metrics.get(split) or {}).get("skipped", []):
            rows.append({"stage": f"evaluating ({split})", **s})
    return rows
