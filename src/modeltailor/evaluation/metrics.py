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


def classification_metrics(
    y_true: list[int] | np.ndarray, proba: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1/support, ROC AUC, log loss, confusion."""
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
    return out


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
