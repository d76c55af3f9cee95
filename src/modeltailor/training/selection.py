"""The no-pretraining baseline beside every result (issue 19).

Where a modality has a classical baseline (a catalogue backbone that can do `baseline`:
TF-IDF for text, MFCC statistics for audio), its cross-validated macro-F1 over train +
validation is recorded next to the chosen model's: from the text probe's own candidate table
when it was scored there (no extra cost), else by fitting the baseline once (seconds). The
folds are the same as the probe's (same labels, groups and seed). Modalities without a cheap
baseline (images, for now) say that it was skipped.
"""

from __future__ import annotations

from typing import Any

from modeltailor.errors import ModelTailorError

#: What `fit.baseline` says when a modality has no cheap classical baseline.
SKIPPED = "skipped: no cheap no-pretraining baseline for {noun} yet"


def baseline_comparison(clf, strategy, info: dict[str, Any], train, val) -> dict[str, Any]:
    """config.json's `fit.baseline`: the baseline's CV score, the chosen model's when it has
    one, the difference in points and a sentence for the terminal and the model card."""
    selection = info.get("selection") or {}
    base = selection.get("baseline")
    if base is None:
        try:
            base = _fit_baseline(clf, train, val)
        except ModelTailorError as exc:  # e.g. a class too small to cross-validate
            return {"verdict": f"skipped: the baseline could not be scored ({exc})"}
    if base is None:
        return {"verdict": SKIPPED.format(noun=clf.modality_.noun)}
    out: dict[str, Any] = {
        "name": base["name"],
        "macro_f1": base["macro_f1"],
        "scored_by": base.get("scored_by") or selection.get("method"),
    }
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


def _fit_baseline(clf, train, val) -> dict[str, Any] | None:
    """Fit the modality's classical baseline once on `train` (C by CV over train + val)."""
    from modeltailor.backbones import list_backbones
    from modeltailor.backbones.model import TailoredModel

    specs = [s for s in list_backbones(clf.modality) if s.supports("baseline")]
    if not specs:
        return None
    spec = clf.modality_.specialise(clf, specs[0], train)
    model = TailoredModel(spec.build(len(train.class_names), pretrained=False))
    info = model.net.fit_classical(model, train, val, clf._settings())
    selection = info.get("selection") or {}
    base = selection.get("baseline")
    return None if base is None else {**base, "scored_by": selection.get("method")}
