"""`tailor doctor DATA`: what is wrong with a labelled dataset, found before any training.

    from modeltailor import doctor
    report = doctor("photos/", output="doctor-photos")   # doctor.json, exclude.txt
    report.suggested_removals                             # what `tailor train --exclude` drops

Reads the data as `tailor train` does (modality registry) and embeds it with the frozen
backbone through the same embedding cache, then finds:

- exact duplicates (content digest) and near duplicates: cosine of the centred, L2-normalised
  embeddings >= the modality's `near_threshold` (0.95; audio 0.985), or, where the modality
  has one (images), of a resize-proof fingerprint >= its `fingerprint_threshold`
  (bench/bench_doctor_threshold.py, bench/bench_doctor.py);
- conflicting labels within a duplicate group, and leakage: groups whose members sit in
  different splits (the ones laid out on disk, or the split `tailor train` would make);
- likely label errors: confident learning on out-of-fold probe probabilities (labels.py);
- outliers far from every class centroid (checks.py), class balance, classes too small to
  train or split, and the files the readers or the backbone could not read.

Suggested removals (exclude.txt): every member but one of each duplicate group (the one kept
carries the label the probe believes most) and the likely label errors. Outliers are listed
for review, not removed. Nothing in the user's data is moved or deleted.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modeltailor.data.dataset import LabeledDataset

#: Cosine of centred, L2-normalised embeddings at or above which two items are near
#: duplicates (`Modality.near_threshold`; this is the default). Measured on the bundled examples
#: (bench/bench_doctor_threshold.py): modified copies (clip gain x0.25-x2, text
#: case/whitespace) score >= 0.976, the nearest distinct item <= 0.94 (audio,
#: speech-embedding), <= 0.44 (texts, MiniLM and e5), <= 0.89 (images). On FSDD distinct
#: recordings of one speaker's digit reach 0.984 (bench/bench_doctor.py): audio uses 0.985.
NEAR_THRESHOLD = 0.95
#: Centring needs enough items for the mean to be the data's common direction.
MIN_ITEMS_TO_CENTRE = 20
SNIPPET_CHARS = 200


@dataclass
class DoctorReport:
    """Everything `doctor` found; `to_dict()` is doctor.json."""

    source: str
    modality: str
    backbone: str
    n_items: int
    settings: dict[str, Any]
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    leakage: dict[str, Any] = field(default_factory=dict)
    label_issues: dict[str, Any] = field(default_factory=dict)
    outliers: dict[str, Any] = field(default_factory=dict)
    class_balance: dict[str, Any] = field(default_factory=dict)
    suggested_removals: list[dict[str, Any]] = field(default_factory=list)
    output: str | None = None
    #: For Python users and bench/bench_doctor.py, not written to doctor.json: the examined
    #: (readable) items in order, their given labels, and the out-of-fold probabilities the
    #: label check used (rows of zeros for classes too small to examine; None when skipped).
    examined_items: list[Any] = field(default_factory=list, repr=False)
    given_labels: np.ndarray | None = field(default=None, repr=False)
    out_of_fold_proba: np.ndarray | None = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        return {
            "items": self.n_items,
            "unreadable": len(self.unreadable),
            "exact_duplicate_groups": len(self.exact_duplicates),
            "near_duplicate_groups": len(self.near_duplicates),
            "groups_with_conflicting_labels": sum(
                g["conflicting_labels"] for g in self.exact_duplicates + self.near_duplicates
            ),
            "groups_leaking_across_splits": len(self.leakage.get("groups", [])),
            "likely_label_errors": len(self.label_issues.get("items", [])),
            "outliers": len(self.outliers.get("items", [])),
            "classes_too_small": len(self.class_balance.get("too_small_to_train", []))
            + len(self.class_balance.get("too_small_to_split", [])),
            "suggested_removals": len(self.suggested_removals),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "modality": self.modality,
            "backbone": self.backbone,
            "counts": self.counts(),
            "settings": self.settings,
            "unreadable": self.unreadable,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "leakage": self.leakage,
            "label_issues": self.label_issues,
            "outliers": self.outliers,
            "class_balance": self.class_balance,
            "suggested_removals": self.suggested_removals,
        }


def doctor(
    data: str | Path,
    *,
    backbone: str | None = None,
    output: str | Path | None = None,
    near_threshold: float | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    batch_size: int = 32,
    group_by: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    verbose: bool = True,
) -> DoctorReport:
    """Examine the labelled data at `data` (anything `tailor train` reads); write doctor.json
    and exclude.txt into `output` when given. `near_threshold` None: the modality's. `seed`
    and the fractions are `tailor train`'s, so the leakage check looks at the split training
    would make."""
    from modeltailor.modalities import modality_for_path

    modality = modality_for_path(data)
    options = {
        "group_by": group_by,
        "text_column": text_column,
        "label_column": label_column,
        "encoding": encoding,
    }
    dataset = modality.load(data, options)
    dataset.validate(str(data), min_per_class=0)
    report = examine(
        dataset, modality, backbone, near_threshold, seed, val_fraction, test_fraction,
        batch_size, verbose,
    )  # fmt: skip
    if output is not None:
        from modeltailor.doctor.output import write_outputs

        write_outputs(report, Path(output))
    return report


def examine(
    data: LabeledDataset,
    modality,
    backbone: str | None,
    near_threshold: float | None,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    batch_size: int,
    verbose: bool,
) -> DoctorReport:
    from modeltailor.data.exclude import item_name
    from modeltailor.doctor.checks import (
        class_balance,
        outlier_fence,
        outlier_scores,
        split_of_items,
    )
    from modeltailor.doctor.duplicates import exact_groups, near_groups, normalise
    from modeltailor.doctor.embed import embed_dataset

    if near_threshold is None:
        near_threshold = modality.near_threshold
    split_of, split_how = split_of_items(data, val_fraction, test_fraction, seed)
    x_raw, bad, backbone_name = embed_dataset(data, modality, backbone, batch_size, verbose)
    good = data.without(bad) if bad else data
    items, labels = good.items, np.asarray(good.labels, dtype=np.int64)
    names = data.class_names
    digests = good.digests()
    centred = len(items) >= MIN_ITEMS_TO_CENTRE
    x = normalise(x_raw - x_raw.mean(axis=0) if centred else x_raw)

    def describe(i: int) -> dict[str, Any]:
        item = items[i]
        d = {"item": str(item), "path": item_name(item), "label": names[labels[i]]}
        text = getattr(item, "text", None)
        if text is not None:
            d["text"] = text[:SNIPPET_CHARS]
        if split_of:
            d["split"] = split_of.get(item)
        return d

    # -- label errors (out-of-fold probe + confident learning) ------------------------------
    exact = exact_groups(digests)
    signals = [("embedding", x, near_threshold)]
    fingerprints = _fingerprints(modality, items)
    if fingerprints is not None:
        signals.append(("fingerprint", fingerprints, modality.fingerprint_threshold))
    near, pair_sims = near_groups(signals, digests)
    proba, label_info = _label_issues(x_raw, labels, len(names), exact + near, seed)

    # -- duplicates, conflicts, leakage ------------------------------------------------------
    removals: dict[int, list[str]] = {}

    def group_record(members: list[int], kind: str) -> dict[str, Any]:
        member_labels = sorted({names[labels[i]] for i in members})
        keep = _keeper(members, labels, proba)
        for i in members:
            if i != keep:
                why = f"{kind} duplicate of {items[keep]}"
                if labels[i] != labels[keep]:
                    why += f" (labelled {names[labels[i]]}, kept copy {names[labels[keep]]})"
                removals.setdefault(i, []).append(why)
        rec = {
            "items": [describe(i) for i in members],
            "labels": member_labels,
            "conflicting_labels": len(member_labels) > 1,
            "keep": str(items[keep]),
        }
        if split_of:
            spans = sorted({s for i in members if (s := split_of.get(items[i]))})
            rec["splits"] = spans
        return rec

    near_members = {i for g in near for i in g}
    exact_records = [group_record(g, "exact") for g in exact if not near_members.issuperset(g)]
    exact_records += [
        {**_exact_only(g, describe, names, labels, split_of), "within_near_group": True}
        for g in exact
        if near_members.issuperset(g)
    ]
    near_records = []
    for g in near:
        rec = group_record(g, "near")
        found = [s for (i, j), s in pair_sims.items() if i in g and j in g]
        rec["similarity"] = {
            k: max(s[k] for s in found if k in s) for k in {k for s in found for k in s}
        }
        near_records.append(rec)
    leaking = [
        {"kind": kind, "group": n, "splits": rec["splits"]}
        for kind, recs in (("exact", exact_records), ("near", near_records))
        for n, rec in enumerate(recs)
        if len(rec.get("splits", [])) > 1
    ]

    # -- label issues, outliers, balance -------------------------------------------------------
    for entry in label_info.get("items", []):
        i = entry.pop("index")
        entry["suggested_label"] = names[entry.pop("suggested_label_index")]
        entry.update({k: v for k, v in describe(i).items() if k not in entry})
        removals.setdefault(i, []).append(
            f"likely label error: labelled {names[labels[i]]}, the probe says "
            f"{entry['suggested_label']} (p={entry['suggested_probability']:.2f})"
        )
    scores = outlier_scores(x, labels, len(names))
    fence = outlier_fence(scores) if len(scores) >= 8 else float("inf")
    outliers = [
        {**describe(int(i)), "distance": round(float(scores[i]), 4)}
        for i in np.argsort(-scores)
        if scores[i] > fence
    ]
    return DoctorReport(
        source=str(data.source),
        modality=modality.name,
        backbone=backbone_name,
        n_items=len(data),
        settings={
            "near_threshold": near_threshold,
            "embeddings": "centred, L2-normalised" if centred else "L2-normalised",
            "fingerprint_threshold": modality.fingerprint_threshold
            if fingerprints is not None
            else None,
            "seed": seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "outlier_rule": "1 - max cosine to a class centroid > Q3 + 3 IQR",
        },
        unreadable=[{"item": s.path, "reason": s.reason} for s in data.skipped]
        + [{"item": str(k), "reason": v} for k, v in bad.items()],
        exact_duplicates=exact_records,
        near_duplicates=near_records,
        leakage={"split": split_how, "groups": leaking},
        label_issues=label_info,
        outliers={"fence": round(fence, 4) if np.isfinite(fence) else None, "items": outliers},
        class_balance=class_balance(data, val_fraction, test_fraction),
        suggested_removals=[
            {**describe(i), "reasons": reasons} for i, reasons in sorted(removals.items())
        ],
        examined_items=list(items),
        given_labels=labels,
        out_of_fold_proba=proba,
    )


def _exact_only(members, describe, names, labels, split_of) -> dict[str, Any]:
    """An exact group whose members are all in a near group: listed, removals decided there."""
    member_labels = sorted({names[labels[i]] for i in members})
    rec = {
        "items": [describe(i) for i in members],
        "labels": member_labels,
        "conflicting_labels": len(member_labels) > 1,
    }
    if split_of:
        rec["splits"] = sorted({s for i in members if (s := describe(i).get("split"))})
    return rec


def _keeper(members: list[int], labels: np.ndarray, proba: np.ndarray | None) -> int:
    """The member to keep: the first carrying the label the probe believes most (the mean
    out-of-fold probability over the group), else the most common label."""
    present = sorted({int(labels[i]) for i in members})
    if len(present) == 1:
        return members[0]
    if proba is not None:
        belief = proba[members].mean(axis=0)
        best = max(present, key=lambda c: belief[c])
    else:
        best = max(present, key=lambda c: sum(labels[i] == c for i in members))
    return next(i for i in members if labels[i] == best)


def _fingerprints(modality, items: list) -> np.ndarray | None:
    from modeltailor.doctor.duplicates import normalise

    rows = [modality.fingerprint(item) for item in items]
    if not rows or all(r is None for r in rows):
        return None
    dim = next(len(r) for r in rows if r is not None)
    return normalise(np.stack([r if r is not None else np.zeros(dim) for r in rows]))


def _label_issues(
    x: np.ndarray, labels: np.ndarray, n_classes: int, groups: list[list[int]], seed: int
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Out-of-fold probabilities (classes with >= 2 examples) and the confident-learning
    findings, ranked by self-confidence; duplicate groups stay within one fold."""
    from modeltailor.doctor.labels import find_label_issues, out_of_fold_proba, self_confidence

    counts = np.bincount(labels, minlength=n_classes)
    usable = np.flatnonzero(counts[labels] >= 2)
    if len(set(labels[usable].tolist())) < 2:
        return None, {"skipped": "fewer than 2 classes with 2 or more readable examples"}
    group_of = np.arange(len(labels))
    for g in groups:
        group_of[g] = g[0]
    oof = out_of_fold_proba(x[usable], labels[usable], n_classes, group_of[usable], seed)
    proba = np.full((len(labels), n_classes), np.nan)
    proba[usable] = oof.proba
    mask = find_label_issues(labels[usable], oof.proba)
    conf = self_confidence(labels[usable], oof.proba)
    flagged = usable[mask]
    order = flagged[np.argsort(conf[mask], kind="stable")]
    items = []
    for rank, i in enumerate(order, start=1):
        p = proba[i]
        items.append({
            "rank": rank,
            "index": int(i),
            "self_confidence": round(float(p[labels[i]]), 4),
            "suggested_label_index": int(np.argmax(p)),
            "suggested_probability": round(float(np.max(p)), 4),
        })  # fmt: skip
    info = {
        "method": "confident learning (prune by noise rate) on out-of-fold probabilities of "
        "a logistic regression on standardised embeddings, ranked by self-confidence",
        "folds": oof.folds,
        "C": oof.C,
        "out_of_fold_accuracy": round(oof.accuracy, 4),
        "examined": int(len(usable)),
        "items": items,
    }
    return np.where(np.isnan(proba), 0.0, proba), info


class _CallableModule(types.ModuleType):
    """`modeltailor.doctor` is this package once imported; calling it runs `doctor()`."""

    def __call__(self, *args: Any, **kwargs: Any) -> DoctorReport:
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
