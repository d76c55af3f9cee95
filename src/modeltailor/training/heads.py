"""Closed-form heads: a logistic regression fitted on features and folded into a Linear layer.

The linear probe, few-shot's head, the TF-IDF baseline, the MFCC baseline and the text side
features all fit their heads here, in seconds and without the training loop: choose the
regularisation on validation data (or by stratified cross-validation), fit, and copy the
weights into the model's `nn.Linear` head so every runtime and export sees one plain layer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from modeltailor.backbones.model import TailoredModel
from modeltailor.errors import ModelTailorError

#: Regularisation strengths a head is chosen from.
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def class_weight_vector(labels: list[int], n_classes: int, mode: str) -> torch.Tensor | None:
    """Inverse-frequency weights, used when the largest class is >1.5x the smallest (auto)."""
    counts = Counter(labels)
    c = np.array([max(counts.get(i, 0), 1) for i in range(n_classes)], dtype=np.float64)
    if mode == "none" or (mode == "auto" and c.max() / c.min() <= 1.5):
        return None
    return torch.tensor(c.sum() / (n_classes * c), dtype=torch.float32)


def choose_c(
    x_train,
    y_train: np.ndarray,
    x_val,
    y_val: np.ndarray | None,
    n_classes: int,
    balanced: bool,
    seed: int,
    grid: tuple[float, ...] = C_GRID,
    scale: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score each regularisation strength on validation data (or by stratified CV on the
    training data when there is none); the best has the highest accuracy, then lowest loss.
    `scale=False` for sparse features (TF-IDF), which are already comparable in scale."""
    rows = []
    for c in grid:
        if x_val is not None and y_val is not None and len(y_val):
            score = _val_score(x_train, y_train, x_val, y_val, c, balanced, n_classes, scale)
            how = "validation"
        else:
            score = _cv_score(x_train, y_train, c, balanced, n_classes, seed, scale)
            how = "cross-validation on train"
        rows.append({"C": c, "accuracy": score[0], "log_loss": score[1], "selected_by": how})
    best = max(rows, key=lambda r: (r["accuracy"], -r["log_loss"]))
    for r in rows:
        r["chosen"] = r is best
    return rows, best


def _logreg(c: float, balanced: bool):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if balanced else None)


def _scaled_fit(x, y: np.ndarray, c: float, balanced: bool, scale: bool = True):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [StandardScaler()] if scale else []
    return make_pipeline(*steps, _logreg(c, balanced)).fit(x, y)


def _score(pipe, x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, float]:
    from sklearn.metrics import log_loss

    proba = _full_proba(pipe, x, n_classes)
    acc = float((proba.argmax(1) == y).mean())
    return round(acc, 9), float(log_loss(y, proba, labels=list(range(n_classes))))


def _full_proba(pipe, x: np.ndarray, n_classes: int) -> np.ndarray:
    proba = np.zeros((x.shape[0], n_classes))
    proba[:, pipe.classes_] = pipe.predict_proba(x)
    proba = np.clip(proba, 1e-12, 1)
    return proba / proba.sum(axis=1, keepdims=True)


def _val_score(xt, yt, xv, yv, c, balanced, n_classes, scale=True) -> tuple[float, float]:
    return _score(_scaled_fit(xt, yt, c, balanced, scale), xv, yv, n_classes)


def _cv_score(x, y, c, balanced, n_classes, seed, scale=True) -> tuple[float, float]:
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(5, np.bincount(y).min()))
    if folds < 2:
        raise ModelTailorError("every class needs at least 2 training examples")
    scores = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scores.append(_val_score(x[tr], y[tr], x[te], y[te], c, balanced, n_classes, scale))
    return round(float(np.mean([s[0] for s in scores])), 9), float(np.mean([s[1] for s in scores]))


def fit_head(x, y, c, balanced, n_classes, scale=True) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression (on standardised features unless `scale=False`) folded into one
    Linear layer: W' = W / sigma, b' = b - W' mu, so the exported model needs no scaler."""
    pipe = _scaled_fit(x, y, c, balanced, scale)
    lr = pipe[-1]
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax needs two
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    mean, sd = (pipe[0].mean_, pipe[0].scale_) if scale else (0.0, 1.0)
    weight = np.zeros((n_classes, x.shape[1]))
    bias = np.full(n_classes, -1e4)  # a class absent from training is never predicted
    weight[lr.classes_] = coef / sd
    bias[lr.classes_] = intercept - (coef / sd) @ (mean if scale else np.zeros(x.shape[1]))
    return weight.astype(np.float32), bias.astype(np.float32)


def fit_logreg_head(
    model: TailoredModel, x_train, y_train, x_val, y_val, n_classes, settings, grid, scale
) -> dict[str, Any]:
    """Choose C, fit, copy into `model`'s Linear head; returns what config.json records."""
    balanced = class_weight_vector(list(y_train), n_classes, settings.class_weights) is not None
    rows, best = choose_c(
        x_train, y_train, x_val, y_val, n_classes, balanced, settings.seed, grid, scale
    )
    install_head(model, *fit_head(x_train, y_train, best["C"], balanced, n_classes, scale))
    return {
        "rows": rows,
        "C": best["C"],
        "selected_by": best["selected_by"],
        "accuracy": best["accuracy"],
        "log_loss": best["log_loss"],
        "balanced": balanced,
    }


def fit_fixed_head(model: TailoredModel, x_train, y_train, n_classes, settings, c: float):
    """A logistic regression with a fixed C on the raw features, copied into `model`'s head:
    for when nothing honest is left to choose C on (few-shot without validation data)."""
    balanced = class_weight_vector(list(y_train), n_classes, settings.class_weights) is not None
    install_head(model, *fit_head(x_train, y_train, c, balanced, n_classes, scale=False))
    return {
        "C": c,
        "selected_by": "fixed (SetFit's head; no validation data)",
        "balanced": balanced,
    }


def install_head(model: TailoredModel, weight: np.ndarray, bias: np.ndarray) -> None:
    head = model.classifier()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
