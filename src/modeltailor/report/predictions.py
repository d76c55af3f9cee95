"""predictions.csv: every held-out example with its probabilities, kept in the run.

The report draws mistakes from this file instead of running the model again, so `tailor
report` is fast, works offline and shows exactly the numbers metrics.json was computed from.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from modeltailor.run import RunDir, atomic_write_bytes

PREDICTIONS_FILE = "predictions.csv"
FIXED_COLUMNS = ("split", "path", "label", "predicted", "confidence")
PROB_PREFIX = "p:"  # prefixed, so a class named "label" or "split" cannot clash
TEXT_COLUMN = "text"  # text runs only: the start of each example, for the report
SNIPPET_CHARS = 300


def write_predictions(
    run_path: str | Path, by_split: dict[str, dict[str, Any]], classes: list[str]
) -> Path:
    """Write {split: {"items", "labels" (class indices), "proba"}} as one UTF-8 CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    from modeltailor.modalities import get_modality

    modality = get_modality(RunDir(run_path).read_json("config.json").get("modality", "image"))
    items = [item for pred in by_split.values() for item in pred["items"]]
    has_text = bool(items) and all(modality.snippet(item) is not None for item in items)
    extra = [TEXT_COLUMN] if has_text else []
    writer.writerow([*FIXED_COLUMNS, *extra, *(PROB_PREFIX + c for c in classes)])
    for split, pred in by_split.items():
        proba = np.asarray(pred["proba"])
        for item, label, p in zip(pred["items"], pred["labels"], proba, strict=True):
            top = int(p.argmax())
            row = [split, str(item), classes[label], classes[top], f"{p[top]:.6f}"]
            if has_text:
                row.append(_snippet(modality.snippet(item)))
            writer.writerow(row + [f"{v:.6f}" for v in p])
    path = Path(run_path) / PREDICTIONS_FILE
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
    return path


def read_predictions(run_path: str | Path) -> list[dict[str, Any]] | None:
    """Rows with `confidence` as float and `proba` as {class: float}; None if absent."""
    path = Path(run_path) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        proba = {k[len(PROB_PREFIX) :]: float(v) for k, v in r.items() if k.startswith(PROB_PREFIX)}
        out.append({**{k: r[k] for k in FIXED_COLUMNS}, "proba": proba, "text": r.get(TEXT_COLUMN)})
        out[-1]["confidence"] = float(r["confidence"])
    return out


def _snippet(text: str) -> str:
    """The start of a text on one line (whitespace runs collapsed), cut at SNIPPET_CHARS."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"
