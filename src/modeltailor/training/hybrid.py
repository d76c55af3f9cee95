"""Pretrained embeddings + TF-IDF in one logistic regression, kept only when it wins on
validation data (or cross-validation when there is none).

On long e-mails a bag of n-grams sees every rare token (URLs, product names, header quirks)
that a sentence embedding averages away, and the embedding sees paraphrases the n-grams miss:
one linear head over both beats either alone (spamassassin: DEVELOPERS notes). The head is
two Linear layers whose logits add: the network's own head on the (window-averaged)
embedding, and a side `TfidfText` head on the text's TF-IDF vector. The issue names this
"combining with the baseline where that wins on validation data".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modeltailor.backbones.model import TailoredModel
from modeltailor.backbones.tfidf import WORD_SETTINGS, TfidfText, pick_settings
from modeltailor.data.dataset import LabeledDataset

#: Weight of the standardised embedding columns next to the TF-IDF columns, and the inverse
#: regularisation strengths tried with each (a small grid: every point is a sparse fit).
EMBED_WEIGHTS = (0.03, 0.1)
HYBRID_C = (3.0, 10.0, 30.0)


def fit_hybrid_head(
    model: TailoredModel,
    x_train: np.ndarray,
    train: LabeledDataset,
    x_val: np.ndarray | None,
    val: LabeledDataset | None,
    plain: dict[str, Any],
    settings: Any,
) -> tuple[TfidfText | None, dict[str, Any]]:
    """Try embedding+TF-IDF heads; if the best beats `plain` (the embedding-only choice, as
    returned by `fit_logreg_head`, already in `model`), install it and return the side model.
    """
    import scipy.sparse as sp

    from modeltailor.training.heads import choose_c, class_weight_vector, fit_head

    texts = [item.text for item in train.items]
    side = TfidfText(pick_settings(texts) if texts else WORD_SETTINGS, len(train.class_names))
    t_train = side.fit_vocabulary(texts)
    mean, sd = x_train.mean(0), x_train.std(0) + 1e-8
    y_train = np.asarray(train.labels)
    has_val = val is not None and len(val) > 0
    t_val = side.transform([i.text for i in val.items]) if has_val else None
    y_val = np.asarray(val.labels) if has_val else None
    n_classes = len(train.class_names)
    balanced = class_weight_vector(train.labels, n_classes, settings.class_weights) is not None

    def joined(x: np.ndarray, t, w: float):
        return sp.hstack([sp.csr_matrix((x - mean) / sd * w), t]).tocsr()

    best: dict[str, Any] | None = None
    rows = []
    for w in EMBED_WEIGHTS:
        xv = joined(x_val, t_val, w) if has_val else None
        found, chosen = choose_c(
            joined(x_train, t_train, w), y_train, xv, y_val, n_classes, balanced,
            settings.seed, HYBRID_C, scale=False,
        )  # fmt: skip
        rows += [{**r, "embedding_weight": w} for r in found]
        if best is None or (chosen["accuracy"], -chosen["log_loss"]) > (
            best["accuracy"],
            -best["log_loss"],
        ):
            best = {**chosen, "embedding_weight": w}
    assert best is not None
    record = {
        "tried": rows,
        "plain": {k: plain[k] for k in ("C", "accuracy", "log_loss", "selected_by")},
        "hybrid": {k: best[k] for k in ("C", "embedding_weight", "accuracy", "log_loss")},
    }
    if (best["accuracy"], -best["log_loss"]) <= (plain["accuracy"], -plain["log_loss"]):
        record["kept"] = "embeddings only"
        return None, record
    w = best["embedding_weight"]
    weight, bias = fit_head(
        joined(x_train, t_train, w), y_train, best["C"], balanced, n_classes, scale=False
    )
    d = x_train.shape[1]
    emb_weight = weight[:, :d] * (w / sd)
    head = model.classifier()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(emb_weight.astype(np.float32)))
        head.bias.copy_(torch.from_numpy((bias - emb_weight @ mean).astype(np.float32)))
        side_head = side.get_classifier()
        side_head.weight.copy_(torch.from_numpy(weight[:, d:]))
        side_head.bias.zero_()
    record["kept"] = "embeddings + TF-IDF"
    return side, record


#: What the text candidates are called in config.json's `fit.selection` and the summary.
PLAIN, HYBRID, BASELINE = "embeddings", "embeddings + TF-IDF", "TF-IDF baseline alone"


def select_text_head_cv(
    model: TailoredModel,
    x_train: np.ndarray,
    train: LabeledDataset,
    plain: dict[str, Any],
    val: LabeledDataset | None,
    settings: Any,
    selection: dict[str, Any],
) -> tuple[TfidfText | None, dict[str, Any]]:
    """Issue 19: the embedding-only head (`plain`, chosen by CV and already in `model`), the
    embedding + TF-IDF head and the TF-IDF baseline alone, each scored on the very folds that
    chose `plain` (train + validation); the best by macro-F1 then log-loss is installed, a tie
    keeping the earlier of those three. Every model is then fitted on the training data.

    The baseline alone is installed as a side TF-IDF head with a zero embedding head (whose
    bias carries the baseline's), so a run that chose it saves, loads, predicts and exports
    as any run with side features. The TF-IDF vocabulary is the training texts' (label-free),
    as in the model that is finally fitted. `selection` (config.json `fit.selection`) gets
    every candidate row, the chosen one and the baseline's score.
    """
    import scipy.sparse as sp

    from modeltailor.backbones.tfidf import C_GRID as BASELINE_C
    from modeltailor.training.heads import (
        SPARSE_SOLVER,
        choose_c_cv,
        class_weight_vector,
        cv_key,
        fit_head,
        stack_rows,
    )

    cv = plain["cv"]
    folds, y_all = cv["indices"], cv["y"]
    x_all = cv["x"]
    texts = [item.text for item in train.items]
    side = TfidfText(pick_settings(texts) if texts else WORD_SETTINGS, len(train.class_names))
    t_train = side.fit_vocabulary(texts)
    has_val = val is not None and len(val) > 0
    t_val = side.transform([i.text for i in val.items]) if has_val else None
    t_all = stack_rows(t_train, t_val, cv["rows"])  # the rows the folds use (a sample if large)
    mean, sd = x_train.mean(0), x_train.std(0) + 1e-8
    n_classes = len(train.class_names)
    y_train = np.asarray(train.labels)
    balanced = class_weight_vector(train.labels, n_classes, settings.class_weights) is not None

    def joined(x: np.ndarray, t, w: float):
        return sp.hstack([sp.csr_matrix((x - mean) / sd * w), t]).tocsr()

    rows = list(selection["candidates"])
    best_plain = next(r for r in rows if r["chosen"])
    hybrid_best: dict[str, Any] | None = None
    for w in EMBED_WEIGHTS:
        found, chosen = choose_c_cv(
            joined(x_all, t_all, w), y_all, folds, n_classes, balanced, HYBRID_C, scale=False
        )
        rows += [_row(HYBRID, r, embedding_weight=w) for r in found]
        if hybrid_best is None or cv_key(chosen) > cv_key(hybrid_best):
            hybrid_best = {**chosen, "embedding_weight": w}
    assert hybrid_best is not None
    found, base_best = choose_c_cv(
        t_all, y_all, folds, n_classes, balanced, BASELINE_C, False, solver=SPARSE_SOLVER
    )
    rows += [_row(BASELINE, r) for r in found]
    finalists = [(PLAIN, best_plain), (HYBRID, hybrid_best), (BASELINE, base_best)]
    name, winner = max(finalists, key=lambda f: cv_key(f[1]))
    for r in rows:
        r["chosen"] = r["candidate"] == name and all(
            r.get(k) == winner.get(k) for k in ("C", "embedding_weight")
        )
    summary = {n: {k: b[k] for k in ("C", "macro_f1", "accuracy", "log_loss")}
               for n, b in finalists}  # fmt: skip
    selection.update(candidates=rows, chosen=name, best_per_candidate=summary)
    selection["baseline"] = {"name": "TF-IDF + logistic regression", **summary[BASELINE]}
    record = {"kept": name, "selected_by": selection["method"]}
    head = model.classifier()
    if name == PLAIN:
        return None, record
    if name == BASELINE:
        weight, bias = fit_head(t_train, y_train, winner["C"], balanced, n_classes, scale=False)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.from_numpy(bias))
            side.get_classifier().weight.copy_(torch.from_numpy(weight))
            side.get_classifier().bias.zero_()
        return side, record
    w = winner["embedding_weight"]
    weight, bias = fit_head(
        joined(x_train, t_train, w), y_train, winner["C"], balanced, n_classes, scale=False
    )
    d = x_train.shape[1]
    emb_weight = weight[:, :d] * (w / sd)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(emb_weight.astype(np.float32)))
        head.bias.copy_(torch.from_numpy((bias - emb_weight @ mean).astype(np.float32)))
        side.get_classifier().weight.copy_(torch.from_numpy(weight[:, d:]))
        side.get_classifier().bias.zero_()
    return side, record


def _row(candidate: str, row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out = {"candidate": candidate, **{k: v for k, v in row.items() if k != "selected_by"}}
    return {**out, **extra}
