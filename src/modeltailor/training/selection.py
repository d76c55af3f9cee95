"""The no-pretraining baseline beside every result (issue 19).

Where a modality has a classical baseline (a catalogue backbone that can do `baseline`:
TF-IDF for text, MFCC statistics for audio), its cross-validated macro-F1 over train +
validation is recorded next to the chosen model's: from the text probe's own candidate table
when it was scored there (no extra cost), else by fitting the baseline once (seconds). The
folds are the same as the probe's (same labels, groups and seed). A modality with no such
backbone may offer baseline features instead (images: colour, edge and texture histograms),
scored the same way on at most `MAX_ITEMS` items; one with neither says it was skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modeltailor.errors import ModelTailorError

#: Most items a feature baseline (`Modality.baseline_features`) is scored on, so it costs
#: seconds: beyond, a stratified sample.
MAX_ITEMS = 1000

#: What `fit.baseline` says when a modality has no cheap classical baseline.
SKIPPED = "skipped: no cheap no-pretraining baseline for {noun} yet"


def baseline_comparison(clf, strategy, info: dict[str, Any], train, val) -> dict[str, Any]:
    """config.json's `fit.baseline`: the baseline's CV score, the chosen model's when it has
    one, the difference in points and a sentence for the terminal and the model card."""
    import time

    selection = info.get("selection") or {}
    base = selection.get("baseline")
    seconds = None
    if base is None:
        started = time.perf_counter()
        try:
            base = _fit_baseline(clf, train, val)
        except ModelTailorError as exc:  # e.g. a class too small to cross-validate
            return {"verdict": f"skipped: the baseline could not be scored ({exc})"}
        seconds = round(time.perf_counter() - started, 2)
    if base is None:
        return {"verdict": SKIPPED.format(noun=clf.modality_.noun)}
    out: dict[str, Any] = {
        "name": base["name"],
        "macro_f1": base["macro_f1"],
        "scored_by": base.get("scored_by") or selection.get("method"),
    }
    if seconds is not None:  # what fitting it cost this run (nothing when the probe scored it)
        out["seconds"] = seconds
    if not strategy.pretrained:
        out["verdict"] = "this run is the no-pretraining baseline"
        return out
    chosen = selection.get("chosen")
    best = (selection.get("best_per_candidate") or {}).get(chosen)
    if best is None and chosen is not None:
        best = next((r for r in selection.get("candidates", []) if r.get("chosen")), None)
    if best is None:
        out["verdict"] = (
            "this model is not cross-validated (it trained its layers); compare the "
            "baseline with its validation/test figures"
        )
        return out
    points = round(100 * (best["macro_f1"] - base["macro_f1"]), 1)
    out.update(chosen=chosen, chosen_macro_f1=best["macro_f1"], points=points)
    if "baseline" in str(chosen):
        out["verdict"] = "the baseline is better here, and was chosen"
    else:
        out["verdict"] = f"pretraining bought {points:+.1f} points"
    return out


#: Baseline scores of recent fits, by (modality, seed, the splits' contents and labels): the
#: stages of `--strategy auto` share one split, so the baseline is fitted once per search.
_BASELINES: dict[tuple, dict[str, Any] | None] = {}
_BASELINES_KEPT = 4


def _fit_baseline(clf, train, val) -> dict[str, Any] | None:
    """The modality's classical baseline on `train` (C by CV over train + val), fitted once
    per data, labels and seed in this process."""
    key = (
        clf.modality,
        clf.seed,
        clf._settings().class_weights,
        *(
            (tuple(part.digests()), tuple(int(y) for y in part.labels))
            for part in (train, val)
            if part is not None
        ),
    )
    if key not in _BASELINES:
        while len(_BASELINES) >= _BASELINES_KEPT:
            _BASELINES.pop(next(iter(_BASELINES)))
        _BASELINES[key] = _stored_baseline(key, lambda: _fit_baseline_now(clf, train, val))
    return _BASELINES[key]


#: Bump when what a baseline computes changes: scores kept on disk under the old one are unused.
BASELINE_FORMAT = 2


def _stored_baseline(key: tuple, fit) -> dict[str, Any] | None:
    """The baseline's score for `key`, kept on disk beside the embeddings: a cached rerun reads
    it back instead of computing the features again (hymenoptera: 1.0 s of a 1.3 s rerun)."""
    from modeltailor.training.features import stored_result
    from modeltailor.training.heads import C_GRID

    text = repr((BASELINE_FORMAT, MAX_ITEMS, C_GRID, key)).encode()
    return stored_result("baselines", text, fit)


def _fit_baseline_now(clf, train, val) -> dict[str, Any] | None:
    from modeltailor.backbones import list_backbones
    from modeltailor.backbones.model import TailoredModel

    specs = [s for s in list_backbones(clf.modality) if s.supports("baseline")]
    if not specs:
        return _feature_baseline(clf, train, val)
    spec = clf.modality_.specialise(clf, specs[0], train)
    model = TailoredModel(spec.build(len(train.class_names), pretrained=False))
    info = model.net.fit_classical(model, train, val, clf._settings())
    selection = info.get("selection") or {}
    base = selection.get("baseline")
    return None if base is None else {**base, "scored_by": selection.get("method")}


def _feature_baseline(clf, train, val) -> dict[str, Any] | None:
    """The modality's baseline features with a logistic regression, C by cross-validation
    over train + validation (grouped as the probe's), on a stratified sample when large."""
    from modeltailor.training.heads import (
        C_GRID,
        choose_c_cv,
        class_weight_vector,
        cv_folds,
        stack_groups,
    )
    from modeltailor.training.image_baseline import sample

    n_val = len(val) if val is not None else 0
    items = list(train.items) + (list(val.items) if n_val else [])
    labels = np.asarray(list(train.labels) + (list(val.labels) if n_val else []))
    groups = stack_groups(train, val, len(train), n_val)
    settings = clf._settings()
    keep = sample(labels, MAX_ITEMS, settings.seed)
    found = clf.modality_.baseline_features([items[i] for i in keep])
    if found is None:
        return None
    name, rows = found
    readable = [i for i, row in enumerate(rows) if row is not None]
    x = np.stack([rows[i] for i in readable])
    y, kept = labels[keep][readable], keep[readable]
    over = "train + validation" if n_val else "train"
    folds, record = cv_folds(y, None if groups is None else groups[kept], settings.seed, over)
    n_classes = len(train.class_names)
    balanced = class_weight_vector(list(y), n_classes, settings.class_weights) is not None
    _, best = choose_c_cv(x, y, folds, n_classes, balanced, C_GRID, True, over)
    how = record["method"]
    if len(keep) < len(labels):
        how += f", on a stratified sample of {len(keep)} of {len(labels)}"
    return {"name": name, "macro_f1": best["macro_f1"], "C": best["C"], "scored_by": how}
