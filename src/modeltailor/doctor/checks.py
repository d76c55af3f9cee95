"""Outliers, class balance and leakage across splits."""

from __future__ import annotations

from typing import Any

import numpy as np

from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import DataError

#: Tukey's "far out" fence: a distance above Q3 + 3 x IQR of all items' distances.
OUTLIER_IQR = 3.0
#: A class with fewer training examples than this is warned about by `tailor train`: a
#: head fitted on a handful of embeddings is a guess for that class, however high the
#: overall accuracy reads.
TINY_CLASS = 5


def outlier_scores(x: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """1 - the highest cosine between an item (unit row) and any class centroid (the mean
    of the class's unit rows, made unit): far from every class means far from all of them."""
    centroids = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    for c in range(n_classes):
        members = x[labels == c]
        if len(members):
            m = members.mean(axis=0)
            centroids[c] = m / max(float(np.linalg.norm(m)), 1e-12)
    present = [c for c in range(n_classes) if (labels == c).any()]
    return 1.0 - (x @ centroids[present].T).max(axis=1)


def outlier_fence(scores: np.ndarray) -> float:
    q1, q3 = np.quantile(scores, [0.25, 0.75])
    return float(q3 + OUTLIER_IQR * (q3 - q1))


def class_balance(
    data: LabeledDataset, val_fraction: float, test_fraction: float
) -> dict[str, Any]:
    """Counts per class, the largest/smallest ratio, and classes too small to train (< 2
    examples) or to split (the stratified split would give them no validation or test
    example: round(n x fraction) == 0)."""
    counts = data.class_counts()
    present = {c: n for c, n in counts.items() if n}
    too_small_to_train = sorted(c for c, n in counts.items() if n < 2)
    too_small_to_split = sorted(
        c
        for c, n in counts.items()
        if n >= 2
        and (
            (val_fraction > 0 and round(n * val_fraction) == 0)
            or (test_fraction > 0 and round(n * test_fraction) == 0)
        )
    )
    ratio = max(present.values()) / min(present.values()) if present else None
    return {
        "counts": counts,
        "imbalance_ratio": round(ratio, 3) if ratio else None,
        "empty": sorted(c for c, n in counts.items() if n == 0),
        "too_small_to_train": too_small_to_train,
        "too_small_to_split": too_small_to_split,
    }


def split_of_items(
    data: LabeledDataset, val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[Any, str], str]:
    """{item: "train" | "val" | "test"} and how: the splits laid out on disk, or the split
    `tailor train` would make with these fractions and seed. Empty when none can be made."""
    if data.predefined:
        where = {item: name for name, part in data.predefined.items() for item in part.items}
        return where, "the train/val/test splits laid out on disk"
    try:
        parts = data.split(1.0 - val_fraction - test_fraction, val_fraction, test_fraction, seed)
    except (DataError, ValueError):
        return {}, "no split could be made"
    where = {}
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        for item in part.items if part is not None else []:
            where[item] = name
    how = (
        f"the split `tailor train` makes by default ({1 - val_fraction - test_fraction:g}/"
        f"{val_fraction:g}/{test_fraction:g}, seed {seed}"
        + (", grouped" if data.groups is not None else ", stratified")
        + ")"
    )
    return where, how


def split_checks(splits: dict[str, Any]) -> dict[str, Any]:
    """The checks `tailor train` runs on every run, from content hashes it computes anyway:
    exact duplicates, duplicates whose labels disagree, and duplicates that span the splits
    (the same example in training and test data inflates the test figures).

    `splits` maps a split name to its dataset (None where there is none). Returns counts, a
    few examples, and the warning lines for the terminal (`tailor doctor` finds more).
    """
    where: dict[str, list[tuple[str, str, str]]] = {}  # digest -> (split, item, label)
    for name, data in splits.items():
        if data is None:
            continue
        for i, digest in enumerate(data.digests()):
            label = data.class_names[data.labels[i]]
            where.setdefault(digest, []).append((name, str(data.items[i]), label))
    groups = [members for members in where.values() if len(members) > 1]
    conflicting = [g for g in groups if len({label for _, _, label in g}) > 1]
    leaking = [g for g in groups if len({split for split, _, _ in g}) > 1]
    warnings = []
    if leaking:
        first = leaking[0]
        sides = " and ".join(sorted({split for split, _, _ in first}))
        warnings.append(
            f"{len(leaking)} example(s) appear in more than one split (first: {first[0][1]} = "
            f"{first[1][1]}, in {sides}): the held-out figures count them as unseen; "
            "run `tailor doctor` and train with --exclude"
        )
    if conflicting:
        first = conflicting[0]
        labels = ", ".join(sorted({label for _, _, label in first}))
        warnings.append(
            f"{len(conflicting)} group(s) of identical examples carry different labels (first: "
            f"{first[0][1]} = {first[1][1]}: {labels})"
        )
    tiny = tiny_classes(splits)
    if tiny:
        listed = "; ".join(_tiny_phrase(t) for t in tiny[:5])
        more = f" (and {len(tiny) - 5} more)" if len(tiny) > 5 else ""
        warnings.append(
            f"{len(tiny)} class(es) too small to learn or to judge: {listed}{more}; "
            "add examples, or merge or drop the class"
        )
    return {
        "exact_duplicate_groups": len(groups),
        "duplicates_with_conflicting_labels": len(conflicting),
        "duplicates_across_splits": len(leaking),
        "examples": [[item for _, item, _ in g] for g in (leaking or groups)[:5]],
        "tiny_classes": tiny,
        "warnings": warnings,
    }


def tiny_classes(splits: dict[str, Any]) -> list[dict[str, Any]]:
    """Classes with fewer than TINY_CLASS training examples, or none in a validation or test
    split that exists (their held-out figures are then missing from the averages)."""
    train = splits.get("train")
    if train is None:
        return []
    held = {name: d.class_counts() for name, d in splits.items() if name != "train" and d}
    out = []
    for c, n in train.class_counts().items():
        missing = sorted(name for name, counts in held.items() if not counts.get(c))
        if n < TINY_CLASS or missing:
            out.append({"class": c, "train": n, "missing_from": missing})
    return out


def _tiny_phrase(t: dict[str, Any]) -> str:
    phrase = f"'{t['class']}' has {t['train']} training example(s)"
    if t["missing_from"]:
        phrase += f" and none in {' or '.join(t['missing_from'])}"
    return phrase
