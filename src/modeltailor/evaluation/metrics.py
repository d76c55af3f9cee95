"""Classification metrics from probabilities (scikit-learn does the arithmetic)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

#: Equal-width confidence bins of the expected calibration error (Guo et al., 2017).
ECE_BINS = 15


def classification_metrics(
    y_true: list[int] | np.ndarray, proba: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1/support, ROC AUC, log loss, confusion,
    expected calibration error (`ece`) and its reliability bins."""
    y = np.asarray(y_true)
    labels = list(range(len(class_names)))
    pred = proba.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = s > 0
    out: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_precision": float(p[present].mean()),
        "macro_recall": float(r[present].mean()),
        "macro_f1": float(f[present].mean()),
        "roc_auc": _roc_auc(y, proba, labels),
        "log_loss": _log_loss(y, proba, labels),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "labels": list(class_names),
    }
    out["ece"], out["reliability"] = calibration(y, proba)
    return out


def calibration(
    y: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[float, list[dict[str, Any]]]:
    """Expected calibration error (top-label, equal-width bins) and the bins behind it.

    A model can be accurate yet over-confident; ECE says by how much its stated confidence
    misleads, and the bins draw the reliability diagram without the per-example predictions.
    Bin i holds confidences in (i/n, (i+1)/n]; empty bins have null confidence/accuracy.
    """
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for i in range(n_bins):
        hit = idx == i
        count = int(hit.sum())
        mean_conf = float(conf[hit].mean()) if count else None
        acc = float(correct[hit].mean()) if count else None
        if count:
            ece += count / len(y) * abs(acc - mean_conf)
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": count,
                "confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return float(ece), bins


def _roc_auc(y: np.ndarray, proba: np.ndarray, labels: list[int]) -> float | None:
    """Binary AUC, or macro one-vs-rest over the classes present; None when undefined."""
    present = np.unique(y)
    if len(present) < 2:
        return None
    if len(labels) == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    aucs = [roc_auc_score(y == c, proba[:, c]) for c in present]
    return float(np.mean(aucs))


def _log_loss(y: np.ndarray, proba: np.ndarray, labels: list[int]) -> float:
    p = np.clip(proba, 1e-12, 1)
    return float(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=labels))
