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


def one_blas_thread():
    """Closed-form fits run with one BLAS thread. scipy's L-BFGS-B (C since scipy 1.15) makes
    many short vector operations over every coefficient (156,281 for spamassassin's TF-IDF):
    with OpenBLAS's 2 threads one fit spent 5.0 s in the optimiser itself, with 1 thread
    0.4 s (2 shared cores; scipy issue 23161 reports the same slowdown). The data products
    are sparse or small, so nothing is lost."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def standardised(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / sd as ONE new array (float32 stays float32), standardised in place, and
    (mean, sd) in float64 as sklearn's StandardScaler computes them (sd 1 where a column is
    constant).

    The pipeline of StandardScaler and LogisticRegression made a copy per step and per fold;
    with the CV on the whole data that grew with it (issue 21: at 50,000 images the head
    added ~960 MB). sklearn's L-BFGS fits float32 as it comes."""
    out = np.array(x, dtype=np.result_type(x.dtype, np.float32))
    mean = out.mean(axis=0, dtype=np.float64)
    out -= mean.astype(out.dtype)
    sd = np.sqrt(np.einsum("ij,ij->j", out, out, dtype=np.float64) / max(len(out), 1))
    sd[sd < 10 * np.finfo(np.float64).eps] = 1.0
    out /= sd.astype(out.dtype)
    return out, mean, sd


class _Standardised:
    """A fitted logistic regression on standardised features that predicts from raw ones."""

    def __init__(self, model, mean: np.ndarray, sd: np.ndarray):
        self.model, self.mean, self.sd = model, mean, sd
        self.classes_ = model.classes_

    def predict_proba(self, x) -> np.ndarray:
        return self.model.predict_proba(((x - self.mean) / self.sd).astype(self.model.coef_.dtype))


def _scaled_fit(x, y: np.ndarray, c: float, balanced: bool, scale: bool = True):
    """A logistic regression on `x` (standardised first unless `scale=False`)."""
    with one_blas_thread():
        if not scale:
            return _logreg(c, balanced).fit(x, y)
        x_std, mean, sd = standardised(x)
        return _Standardised(_logreg(c, balanced).fit(x_std, y), mean, sd)


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
    fitted = _scaled_fit(x, y, c, balanced, scale)
    lr = fitted.model if scale else fitted
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax needs two
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    mean, sd = (fitted.mean, fitted.sd) if scale else (0.0, 1.0)
    weight = np.zeros((n_classes, x.shape[1]))
    bias = np.full(n_classes, -1e4)  # a class absent from training is never predicted
    weight[lr.classes_] = coef / sd
    bias[lr.classes_] = intercept - (coef / sd) @ (mean if scale else np.zeros(x.shape[1]))
    return weight.astype(np.float32), bias.astype(np.float32)


def fit_logreg_head(
    model: TailoredModel,
    x_train,
    y_train,
    x_val,
    y_val,
    n_classes,
    settings,
    grid,
    scale,
    *,
    cv: bool = False,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Choose C, fit on the training data, copy into `model`'s Linear head; returns what
    config.json records.

    `cv=True`: C is chosen by stratified k-fold cross-validation over train + validation
    (`groups`, one per row of both stacked, keeps each group within one fold), scored by
    macro-F1 then log-loss; the returned `cv` entry holds the folds so that other candidates
    (side features, the baseline alone) are scored on the very same folds. Otherwise C is
    chosen on the validation data (or by CV on train when there is none), as before.
    """
    balanced = class_weight_vector(list(y_train), n_classes, settings.class_weights) is not None
    cv_data = None
    if cv:
        y_all = stack_labels(y_train, y_val)
        over = "train + validation" if len(y_all) > len(y_train) else "train"
        folds, record = cv_folds(y_all, groups, settings.seed, over)
        used, folds = rows_in_folds(folds, len(y_all))
        x_all = stack_rows(x_train, x_val, used)
        y_all = y_all if used is None else y_all[used]
        solver = "lbfgs" if scale else SPARSE_SOLVER  # unscaled: TF-IDF alone
        rows, best = choose_c_cv(
            x_all, y_all, folds, n_classes, balanced, grid, scale, over, solver
        )
        cv_data = {**record, "x": x_all, "y": y_all, "indices": folds, "rows": used}
    else:
        rows, best = choose_c(
            x_train, y_train, x_val, y_val, n_classes, balanced, settings.seed, grid, scale
        )
    install_head(model, *fit_head(x_train, y_train, best["C"], balanced, n_classes, scale))
    out = {
        "rows": rows,
        "C": best["C"],
        "selected_by": best["selected_by"],
        "accuracy": best["accuracy"],
        "log_loss": best["log_loss"],
        "balanced": balanced,
    }
    if cv_data is not None:
        out["macro_f1"] = best["macro_f1"]
        out["cv"] = cv_data
    return out


# -- cross-validated selection (issue 19) -----------------------------------------------------
#: Folds of the cross-validation that chooses closed-form heads (fewer when a class is smaller).
CV_FOLDS = 5
#: From this many examples on, 3 folds: each then holds out at least 667 examples, enough to
#: rank the candidates, and the fits cost about half of 5 folds' (5 x 4/5 -> 3 x 2/3 of the
#: data). Spamassassin (5,439): 3 and 5 folds choose the same candidate and C.
CV_FOLDS_MANY, MANY_EXAMPLES = 3, 2000
#: Gradient tolerance of the fits that only score a candidate along the C path, at and below
#: `TOL_FROM_C`; above it the tolerance shrinks as 1/C. A warm start from the previous C is
#: off by a gradient of about (1/C_prev - 1/C) |w| / n, which falls as 1/C: with a fixed
#: tolerance the weak-regularisation end of the path stopped at once (0 iterations) and
#: scored the previous C again (spamassassin: the baseline's C = 30 and 100 rows copied
#: C = 10's, choosing C = 10 where fits to 1e-8 choose C = 100). Scaled so, the scores match
#: fits to 1e-8 (macro-F1 within 0.0005, the same choices) at 40% of their cost. Dense
#: (standardised) features stop at 1e-3 from C = 0.3 down; sparse TF-IDF at 1e-4 from C = 1.
CV_TOL, TOL_FROM_C = 1e-3, 0.3
SPARSE_CV_TOL, SPARSE_TOL_FROM_C = 1e-4, 1.0


def path_tol(c: float, scale: bool) -> float:
    """The gradient tolerance of a scoring fit at `c` (see `CV_TOL`)."""
    tol, start = (CV_TOL, TOL_FROM_C) if scale else (SPARSE_CV_TOL, SPARSE_TOL_FROM_C)
    return tol * min(1.0, start / c)


def stack_rows(x_train, x_val, rows: np.ndarray | None = None):
    """Training rows, then validation rows (dense or sparse); `x_val` may be None. With
    `rows` (sorted indices into that stack) only those rows, without stacking the rest."""
    n = x_train.shape[0]
    if rows is not None:
        in_val = rows[rows >= n] - n
        x_train, x_val = x_train[rows[rows < n]], None if x_val is None else x_val[in_val]
    if x_val is None or x_val.shape[0] == 0:
        return x_train
    import scipy.sparse as sp

    if sp.issparse(x_train):
        return sp.vstack([x_train, x_val]).tocsr()
    return np.concatenate([np.asarray(x_train), np.asarray(x_val)])


def rows_in_folds(folds, n: int) -> tuple[np.ndarray | None, list[tuple[np.ndarray, np.ndarray]]]:
    """(the rows the folds use, the folds re-indexed into those rows), or (None, folds) when
    they use all `n`: a sampled cross-validation then copies only its sample's features."""
    used = np.unique(np.concatenate([te for _, te in folds]))
    if len(used) == n:
        return None, folds
    return used, [(np.searchsorted(used, tr), np.searchsorted(used, te)) for tr, te in folds]


def stack_labels(y_train, y_val) -> np.ndarray:
    y = np.asarray(y_train)
    return y if y_val is None or len(y_val) == 0 else np.concatenate([y, np.asarray(y_val)])


def stack_groups(train, val, n_train: int, n_val: int) -> np.ndarray | None:
    """One group per stacked row when the datasets carry groups (audio `--group-by`)."""
    g_train = getattr(train, "groups", None)
    g_val = getattr(val, "groups", None) if val is not None else None
    if g_train is None or (n_val and g_val is None):
        return None
    groups = list(g_train)[:n_train] + (list(g_val)[:n_val] if n_val else [])
    return np.asarray(groups) if len(groups) == n_train + n_val else None


def cv_folds(
    y: np.ndarray, groups: np.ndarray | None, seed: int, over: str = "train + validation"
) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Stratified k-fold (k = 5, or 3 from `MANY_EXAMPLES` examples on; capped by the smallest
    class), grouped when `groups` holds at least k distinct groups; the same folds score every
    candidate."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    sample = _cv_sample(y, groups, seed)
    if sample is not None:
        folds, record = cv_folds(y[sample], None if groups is None else groups[sample], seed, over)
        record["method"] += f", on a stratified sample of {len(sample)} of {len(y)}"
        record["sampled_from"] = int(len(y))
        return [(sample[tr], sample[te]) for tr, te in folds], record
    present = np.bincount(y)
    wanted = CV_FOLDS_MANY if len(y) >= MANY_EXAMPLES else CV_FOLDS
    k = int(min(wanted, present[present > 0].min()))
    if k < 2:
        raise ModelTailorError("every class needs at least 2 examples in train + validation")
    grouped = groups is not None and len(set(groups.tolist())) >= 2
    if grouped:
        k = min(k, len(set(groups.tolist())))
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        folds = [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y, groups) if len(te)]
    else:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(len(y)), y))
    how = f"{'grouped ' if grouped else ''}stratified {len(folds)}-fold cross-validation"
    record = {
        "method": f"{how} over {over}",
        "folds": len(folds),
        "grouped": bool(grouped),
        "examples": int(len(y)),
        "score": "macro-F1 (mean over folds), then log-loss",
    }
    return folds, record


#: Cross-validation that chooses a closed-form head runs on at most this many examples (a
#: stratified sample beyond): 3 folds of 6,667 rank seven values of C as well as 30,000 would,
#: and the folds' float64 copies stay ~70 MB instead of growing with the data (issue 21: at
#: 50,000 images the CV had added ~960 MB). The final head is fitted on every training row.
CV_MAX_ROWS = 10_000


def _cv_sample(y: np.ndarray, groups: np.ndarray | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a stratified sample of about `CV_MAX_ROWS` rows, or None when `y` is
    no larger (grouped CV then still keeps each group of the sample within one fold)."""
    if len(y) <= CV_MAX_ROWS:
        return None
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=CV_MAX_ROWS, stratify=stratify, random_state=seed
    )
    # a rare class keeps up to CV_FOLDS rows, so the sample folds as the whole data would
    rare = [np.flatnonzero(y == c)[:CV_FOLDS] for c in np.flatnonzero(counts)
            if np.sum(y[keep] == c) < min(counts[c], CV_FOLDS)]  # fmt: skip
    return np.unique(np.concatenate([keep, *rare]))


#: Solver of the scoring fits on TF-IDF alone: Newton-CG's Hessian products are two sparse
#: products, while L-BFGS-B spends its time on bookkeeping over every coefficient (156,281 on
#: spamassassin). There, the baseline's 3-fold C path: 1.7 s instead of 4.8 s of CPU, the same
#: scores. Embeddings + TF-IDF keep L-BFGS (newton-cg 2.5 s vs 2.3 s: the 384 dense columns
#: make each Hessian product dearer); the final fits keep lbfgs too.
SPARSE_SOLVER = "newton-cg"


def cv_scores(
    x, y, folds, grid, balanced, n_classes, scale=True, solver="lbfgs"
) -> list[dict[str, float]]:
    """Mean macro-F1, accuracy and log-loss over the folds for each C of `grid`.

    Per fold the features are standardised once and the regularisation path is followed
    from the strongest to the weakest C, each fit starting from the previous solution (warm
    start): the same optimum as separate fits, several times fewer iterations. Folds run one
    after another: in joblib threads they took as long (spamassassin, 3 folds: 8.8 s alone,
    9.7 s in 2 threads; the optimiser and scipy's sparse products hold the GIL)."""
    from modeltailor.training.features import stored_result

    def per_fold() -> list[list[tuple]]:
        order = sorted(range(len(grid)), key=lambda i: grid[i])
        with one_blas_thread():
            return [
                _fold_path(x, y, tr, te, grid, order, balanced, n_classes, scale, solver)
                for tr, te in folds
            ]

    key = _cv_key(x, y, folds, (grid, balanced, n_classes, scale, solver))
    return _mean_over_folds(stored_result("cross-validation", key, per_fold), len(grid))


#: Bump when how a fold is scored changes: tables kept on disk under the old one are unused.
CV_FORMAT = 1


def _cv_key(x, y, folds, settings: tuple) -> bytes:
    """Everything a CV table depends on: the features' bytes, labels, folds and settings, and
    the versions that compute it. Hashing 10,000 x 1,280 floats takes ~70 ms; the table it
    saves a cached rerun took 0.15 s (hymenoptera) to seconds."""
    import hashlib

    import scipy.sparse as sp
    import sklearn

    digest = hashlib.sha1()
    parts = [x.data, x.indices, x.indptr] if sp.issparse(x) else [x]
    for part in [*parts, y, *[i for fold in folds for i in fold]]:
        digest.update(np.ascontiguousarray(part).view(np.uint8).data)
    tolerances = (CV_TOL, TOL_FROM_C, SPARSE_CV_TOL, SPARSE_TOL_FROM_C)
    meta = (CV_FORMAT, sklearn.__version__, x.shape, str(x.dtype), settings, tolerances)
    return repr(meta).encode() + digest.digest()


def _mean_over_folds(per_fold: list[list], n: int) -> list[dict[str, float]]:
    out = []
    for i in range(n):
        scores = [fold[i] for fold in per_fold]
        out.append(
            {
                "macro_f1": round(float(np.mean([s[0] for s in scores])), 9),
                "accuracy": round(float(np.mean([s[1] for s in scores])), 9),
                "log_loss": float(np.mean([s[2] for s in scores])),
            }
        )
    return out


def _fold_path(x, y, tr, te, grid, order, balanced, n_classes, scale, solver) -> list[tuple]:
    """(macro-F1, accuracy, log-loss) of each C of `grid` on one fold, along the C path."""
    x_tr, x_te = x[tr], x[te]
    if scale:
        x_tr, mean, sd = standardised(x_tr)
        x_te = ((x_te - mean) / sd).astype(x_tr.dtype)
    model = _logreg(grid[order[0]], balanced).set_params(warm_start=True, solver=solver)
    out: list[tuple] = [()] * len(grid)
    for i in order:
        model.set_params(C=grid[i], tol=path_tol(grid[i], scale)).fit(x_tr, y[tr])
        proba = _full_proba(model, x_te, n_classes)
        pred = proba.argmax(1)
        out[i] = (macro_f1(y[te], pred), float((pred == y[te]).mean()), log_loss(y[te], proba))
    return out


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in `y`, as sklearn's `f1_score(labels=sorted(set(y)),
    average="macro")` computes it (2tp / (2tp + fp + fn), 0 where that is 0/0), without its
    input validation: that took 15 ms a call, half of a cached hymenoptera probe's CV."""
    scores = []
    for label in np.unique(y):
        truth, said = y == label, pred == label
        tp = int(np.sum(truth & said))
        denominator = 2 * tp + int(np.sum(~truth & said)) + int(np.sum(truth & ~said))
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean cross-entropy of rows of class probabilities (clipped to [eps, 1 - eps] as
    sklearn's `log_loss` does), without sklearn's per-call validation."""
    eps = np.finfo(proba.dtype).eps
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], eps, 1 - eps))))


def cv_key(row: dict[str, Any]) -> tuple[float, float]:
    """What a cross-validated choice maximises: macro-F1, then lower log-loss."""
    return (row["macro_f1"], -row["log_loss"])


def choose_c_cv(
    x,
    y,
    folds,
    n_classes,
    balanced,
    grid=C_GRID,
    scale=True,
    over="train + validation",
    solver="lbfgs",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every C scored on the same folds; the best by macro-F1, then log-loss."""
    how = f"cross-validation ({len(folds)} folds, {over})"
    scores = cv_scores(x, y, folds, grid, balanced, n_classes, scale, solver)
    rows = [{"C": c, **score, "selected_by": how} for c, score in zip(grid, scores, strict=True)]
    best = max(rows, key=cv_key)
    for r in rows:
        r["chosen"] = r is best
    return rows, best


def selection_record(fitted: dict[str, Any], name: str) -> dict[str, Any]:
    """config.json's `fit.selection`: how the choice was made and every candidate's scores."""
    cv = fitted["cv"]
    keep = ("method", "folds", "grouped", "examples", "score")
    rows = [{"candidate": name, **{k: v for k, v in r.items() if k != "selected_by"}}
            for r in fitted["rows"]]  # fmt: skip
    return {**{k: cv[k] for k in keep}, "candidates": rows, "chosen": name}


def baseline_score(selection: dict[str, Any], name: str) -> dict[str, Any]:
    """The chosen row's cross-validated scores, as `fit.selection.baseline` records them."""
    best = next(r for r in selection["candidates"] if r["chosen"])
    return {"name": name, **{k: best[k] for k in ("C", "macro_f1", "accuracy", "log_loss")}}


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
