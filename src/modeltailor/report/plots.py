"""The report's figures as PNG bytes, drawn with matplotlib's Agg canvas.

Figures are built with the object API (`Figure` + `FigureCanvasAgg`), never pyplot, and all
style lives in an `rc_context`: drawing a report must not switch the backend or change the
rcParams of a notebook or program that imported modeltailor.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
#: Fonts with Japanese (and mostly all CJK) glyphs, best first; only installed ones are used.
CJK_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "Source Han Sans JP",
    "IPAexGothic",
    "IPAGothic",
    "TakaoGothic",
    "VL Gothic",
    "Hiragino Sans",
    "Hiragino Kaku Gothic ProN",
    "Yu Gothic",
    "Meiryo",
    "MS Gothic",
    "Noto Sans CJK SC",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "Arial Unicode MS",
)
BLUE, ORANGE, GREEN, GREY = "#3b6ea5", "#e08a2c", "#4f9a5a", "#888888"


@functools.cache
def font_family() -> tuple[str, ...]:
    """DejaVu Sans, then every installed CJK font: matplotlib falls back glyph by glyph.

    Naming a font that is not installed makes matplotlib log a warning per figure, so the
    list is filtered to what the machine has.
    """
    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed & set(CJK_FONTS):
        installed = _rescan_fonts()
    return ("DejaVu Sans", *[f for f in CJK_FONTS if f in installed])


def _rescan_fonts() -> set[str]:
    """matplotlib caches the system's font list on first use, so a CJK font installed later
    (as the report advises) would never be seen; add the system fonts it does not know."""
    known = {f.fname for f in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        if path not in known:
            try:
                font_manager.fontManager.addfont(path)
            except Exception:  # noqa: BLE001 - an unreadable font file is just not used
                continue
    return {f.name for f in font_manager.fontManager.ttflist}


@functools.cache
def _covered_codepoints(families: tuple[str, ...]) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    covered: set[int] = set()
    for family in families:
        path = font_manager.findfont(font_manager.FontProperties(family=family))
        covered.update(FT2Font(path).get_charmap())
    return frozenset(covered)


def missing_glyphs(texts: Iterable[str]) -> list[str]:
    """Characters no installed plot font can draw (they show as boxes in the PNGs)."""
    covered = _covered_codepoints(font_family())
    return sorted({ch for t in texts for ch in t if not ch.isspace() and ord(ch) not in covered})


@contextmanager
def _style() -> Iterator[None]:
    """Report style, and silence for glyphs no installed font has (boxes, not log spam)."""
    rc = {
        "font.family": list(font_family()),
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
    }
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        yield


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _numbers(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(x, y) pairs of history rows that have a value for `key` (CSV cells may be empty)."""
    xs, ys = [], []
    for r in rows:
        if r.get(key) not in (None, ""):
            xs.append(float(r["epoch"]))
            ys.append(float(r[key]))
    return xs, ys


# -- learning curves --------------------------------------------------------------------------
def network_curves(
    rows: list[dict[str, Any]], head_epochs: int | None, best_epoch: int | None
) -> bytes:
    """Train/val loss and val accuracy per epoch; a line where the body starts training."""
    with _style():
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        loss_ax, acc_ax = fig.subplots(1, 2)
        for key, colour, label in (("train_loss", BLUE, "train"), ("val_loss", ORANGE, "val")):
            xs, ys = _numbers(rows, key)
            loss_ax.plot(xs, ys, "o-", color=colour, label=f"{label} loss", ms=3)
        xs, ys = _numbers(rows, "val_acc")
        acc_ax.plot(xs, ys, "o-", color=GREEN, label="val accuracy", ms=3)
        acc_ax.set_ylim(0, 1.02)
        last = max((float(r["epoch"]) for r in rows), default=0)
        for ax in (loss_ax, acc_ax):
            _mark_epochs(ax, head_epochs, best_epoch, last)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(loc="best")
        loss_ax.set_title("loss")
        acc_ax.set_title("validation accuracy")
        return _png(fig)


def _mark_epochs(ax, head_epochs: int | None, best_epoch: int | None, last: float) -> None:
    if head_epochs and head_epochs < last:
        ax.axvline(head_epochs + 0.5, color=GREY, ls="--", lw=1)
        ax.annotate(
            f"body unfrozen\n(epoch {head_epochs + 1} on)",
            (head_epochs + 0.5, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -4),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="#555555",
        )
    if best_epoch:
        ax.axvline(best_epoch, color=GREEN, ls=":", lw=1, label=f"kept: epoch {best_epoch}")


def probe_curves(rows: list[dict[str, Any]]) -> bytes:
    """The linear probe's search over C: accuracy and log loss per C, the chosen C marked."""
    cs = [float(r["C"]) for r in rows]
    chosen = [float(r["C"]) for r in rows if str(r.get("chosen")).lower() == "true"]
    how = rows[0].get("selected_by", "") if rows else ""
    with _style():
        fig = Figure(figsize=(10, 3.4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, key, colour in zip(axes, ("accuracy", "log_loss"), (GREEN, ORANGE), strict=True):
            ax.plot(cs, [float(r[key]) for r in rows], "o-", color=colour, ms=4)
            ax.set_xscale("log")
            ax.set_xlabel("C (inverse L2 regularisation)")
            ax.set_title(key.replace("_", " ") + (f" ({how})" if how else ""))
            for c in chosen:
                ax.axvline(c, color=GREY, ls="--", lw=1, label=f"chosen C = {c:g}")
            if chosen:
                ax.legend(loc="best")
        return _png(fig)


# -- confusion, per class, reliability ----------------------------------------------------------
def confusion(matrix: list[list[int]], labels: list[str]) -> bytes:
    """Counts and row-normalised (recall per true class) side by side."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(labels)
    side = min(max(3.6, 0.42 * n + 1.8), 14.0)  # many classes: smaller labels, not a huge PNG
    with _style(), matplotlib.rc_context({"axes.grid": False}):
        fig = Figure(figsize=(2 * side + 1, side), layout="constrained")
        for ax, values, title, fmt, top in zip(
            fig.subplots(1, 2),
            (counts, rates),
            ("counts", "row-normalised (share of each true class)"),
            ("{:.0f}", "{:.2f}"),
            (counts.max() or 1, 1.0),  # shares on a fixed 0-1 scale, comparable across runs
            strict=True,
        ):
            im = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            _cells(ax, values, fmt, n, top)
            ax.set_xticks(
                range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center"
            )
            ax.set_yticks(range(n), labels)
            ax.tick_params(labelsize=9 if n <= 20 else max(3.0, 180 / n))
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(title)
        return _png(fig)


def _cells(ax, values: np.ndarray, fmt: str, n: int, high: float) -> None:
    if n > 20:  # numbers would be unreadable; the colour carries it
        return
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            if v or fmt == "{:.0f}":  # counts show their zeros; shares leave them blank
                colour = "white" if v > 0.55 * high else "black"
                ax.text(j, i, fmt.format(v), ha="center", va="center", color=colour, fontsize=7)


def per_class(per_class_metrics: dict[str, dict[str, float]]) -> bytes:
    """Grouped precision / recall / F1 bars, one group per class."""
    labels = list(per_class_metrics)
    x = np.arange(len(labels))
    width = 0.27
    with _style():
        fig_width = min(max(6.0, 0.65 * len(labels) + 2), 24.0)
        fig = Figure(figsize=(fig_width, 3.6), layout="constrained")
        ax = fig.subplots()
        for k, (key, colour) in enumerate((("precision", BLUE), ("recall", ORANGE), ("f1", GREEN))):
            values = [per_class_metrics[c][key] for c in labels]
            ax.bar(x + (k - 1) * width, values, width, color=colour, label=key.replace("f1", "F1"))
        ax.set_xticks(
            x,
            labels,
            rotation=45 if len(labels) > 5 else 0,
            ha="right" if len(labels) > 5 else "center",
        )
        ax.set_ylim(0, 1.05)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
        return _png(fig)


def reliability(bins: list[dict[str, Any]], ece: float, split: str) -> bytes:
    """Accuracy against confidence per bin, the diagonal of perfect calibration, bin counts."""
    full = [b for b in bins if b["count"]]
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 1 / 15
    with _style():
        fig = Figure(figsize=(5.2, 5.4), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        top.plot([0, 1], [0, 1], "--", color=GREY, lw=1, label="perfect calibration")
        top.bar(
            [b["lower"] for b in full],
            [b["accuracy"] for b in full],
            width,
            align="edge",
            color=BLUE,
            alpha=0.8,
            edgecolor="white",
            label="accuracy",
        )
        top.plot(  # the gap between a bar's top and its tick is what ECE averages
            [b["lower"] + width / 2 for b in full],
            [b["confidence"] for b in full],
            "_",
            color=ORANGE,
            ms=14,
            mew=2.5,
            clip_on=False,
            label="mean confidence",
        )
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{split}: expected calibration error (ECE) = {ece:.3f}")
        top.legend(loc="upper left")
        bottom.bar(
            [b["lower"] for b in bins],
            [b["count"] for b in bins],
            width,
            align="edge",
            color=GREY,
            edgecolor="white",
        )
        bottom.set_ylabel("examples")
        bottom.set_xlabel("confidence (top-label probability)")
        return _png(fig)


def accuracy_vs_time(rows: list[dict[str, Any]]) -> bytes:
    """`tailor compare`: accuracy against training time, one point per strategy x backbone
    (mean, with the standard deviation over seeds as error bars)."""
    with _style():
        fig = Figure(figsize=(6.4, 4.2), layout="constrained")
        ax = fig.subplots()
        for r in rows:
            ax.errorbar(
                r["train_seconds"],
                r["accuracy"],
                xerr=r["train_seconds_sd"] or None,
                yerr=r["accuracy_sd"] or None,
                fmt="o",
                capsize=3,
                label=f"{r['strategy']} ({r['backbone']})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, log scale)")
        ax.set_ylabel("accuracy on held-out data")
        ax.set_title("What transfer bought: accuracy vs training time")
        ax.legend(fontsize=8, loc="best")
        return _png(fig)
