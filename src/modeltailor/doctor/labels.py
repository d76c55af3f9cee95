"""Likely label errors: confident learning (Northcutt, Jiang & Chuang, JAIR 2021) on out-of-fold
probabilities of the linear probe.

Out-of-fold: every example's probabilities come from a logistic regression (standardised
embeddings, as `training/heads.py` fits the probe's head) trained on the other folds of a
stratified k-fold, so an example never grades its own label. Duplicate groups are kept within
one fold (StratifiedGroupKFold): a copy in the training folds would otherwise vouch for its twin.

Confident learning, as `cleanlab.filter.find_label_issues` does by default
(filter_by="prune_by_noise_rate"), reimplemented in numpy (tests/test_doctor.py checks it
against cleanlab on the same probabilities):

1. per-class threshold t_j = mean predicted probability of class j over examples labelled j;
2. confident joint C[given, true]: an example counts for the true class j when p_j >= t_j
   (the arg-max among such classes when several), for none when no class passes;
3. C calibrated so each row sums to the class's count and the whole to n;
4. for every off-diagonal C[k, j], the C[k, j] examples labelled k with the largest margin
   p_j - p_k are flagged (leaving at least one example per class);
5. an example whose own label is the arg-max is never flagged.

Flagged examples are ranked by self-confidence p_given (lowest first), cleanlab's default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Regularisation strengths tried; the one with the lowest out-of-fold log loss is kept.
DOCTOR_C_GRID = (0.01, 0.1, 1.0)
MAX_FOLDS = 5


@dataclass
class OutOfFold:
    proba: np.ndarray
    C: float
    folds: int
    log_loss: float
    accuracy: float


def out_of_fold_proba(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    groups: np.ndarray | None = None,
    seed: int = 0,
    grid: tuple[float, ...] = DOCTOR_C_GRID,
) -> OutOfFold:
    """Out-of-fold class probabilities of the probe's logistic regression, for each C in
    `grid`; the C with the lowest out-of-fold log loss wins. Every class needs >= 2 examples."""
    import warnings

    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedGroupKFold

    from modeltailor.training.heads import _full_proba, _scaled_fit, class_weight_vector

    counts = np.bincount(y, minlength=n_classes)
    # a class smaller than the folds is spread over as many folds as it has members (each
    # then trains on the others); that it cannot be in every fold is expected, not warned
    folds = int(min(MAX_FOLDS, counts.max()))
    groups = np.arange(len(y)) if groups is None else groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(
            StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups)
        )
    balanced = class_weight_vector(list(y), n_classes, "auto") is not None
    best: OutOfFold | None = None
    for c in grid:
        proba = np.zeros((len(y), n_classes))
        for train, test in splits:
            pipe = _scaled_fit(x[train], y[train], c, balanced)
            proba[test] = _full_proba(pipe, x[test], n_classes)
        loss = float(log_loss(y, proba, labels=list(range(n_classes))))
        if best is None or loss < best.log_loss:
            acc = float((proba.argmax(1) == y).mean())
            best = OutOfFold(proba, c, folds, loss, acc)
    assert best is not None
    return best


def confident_joint(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Calibrated confident joint C[given, true] (integer counts; rows sum to class counts)."""
    k = proba.shape[1]
    counts = np.bincount(labels, minlength=k)
    thresholds = np.array(
        [proba[labels == j, j].mean() if counts[j] else 1.0 for j in range(k)]
    )
    passing = proba >= thresholds - 1e-6
    n_passing = passing.sum(axis=1)
    guess = np.where(n_passing > 1, proba.argmax(axis=1), passing.argmax(axis=1))
    confident = n_passing > 0
    joint = np.zeros((k, k), dtype=np.float64)
    np.add.at(joint, (labels[confident], guess[confident]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    # calibrate: rows to the class counts, the total to n
    joint = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-12) * counts[:, None]
    joint = joint / max(joint.sum(), 1e-12) * counts.sum()
    return np.vstack([_round_preserving_sum(row) for row in joint]).astype(int)


def _round_preserving_sum(row: np.ndarray) -> np.ndarray:
    """Round, then move the largest rounding errors by one until the sum is the rounded
    sum (cleanlab's round_preserving_sum, so both give the same confident joint)."""
    ints = row.round()
    diff = int(round(row.sum().round() - ints.sum()))
    if diff:
        step = 1 if diff > 0 else -1
        order = np.argsort(row - ints)[::-step][: abs(diff)]
        ints[order] += step
    return ints


def find_label_issues(labels: np.ndarray, proba: np.ndarray, keep_per_class: int = 1):
    """Boolean mask of likely label errors (confident learning, prune by noise rate)."""
    labels = np.asarray(labels)
    k = proba.shape[1]
    joint = confident_joint(labels, proba)
    # leave at least `keep_per_class` examples in each class (cleanlab's
    # _keep_at_least_n_per_class): prune at most n_k - keep from class k
    mask = np.zeros(len(labels), dtype=bool)
    for given in range(k):
        members = np.flatnonzero(labels == given)
        if len(members) <= keep_per_class:
            continue
        for true in range(k):
            n_prune = int(joint[given, true])
            if true == given or n_prune <= 0:
                continue
            margin = proba[members, true] - proba[members, given]
            order = np.argsort(-margin, kind="stable")
            mask[members[order[:n_prune]]] = True
        flagged = np.flatnonzero(mask[members])
        if len(members) - len(flagged) < keep_per_class:  # keep the most confident ones
            conf = proba[members[flagged], given]
            release = flagged[np.argsort(-conf)[: keep_per_class - (len(members) - len(flagged))]]
            mask[members[release]] = False
    own = proba[np.arange(len(labels)), labels]
    mask &= proba.argmax(axis=1) != labels
    mask &= own + 1e-6 < proba.max(axis=1)  # ties with the given label are not errors
    return mask


def self_confidence(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """p(given label | x): the ranking score (low = more likely wrong)."""
    return proba[np.arange(len(labels)), np.asarray(labels)]
