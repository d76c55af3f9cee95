"""linear-probe (feature extraction): the backbone stays frozen; its embeddings are computed
once, cached on disk, and a regularised linear head is fitted on them in seconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modeltailor.strategies.base import FitContext, FitResult, Strategy, register_strategy
from modeltailor.training.features import EmbeddingCache, extract_embeddings
from modeltailor.training.heads import C_GRID, fit_logreg_head, selection_record, stack_groups


@dataclass(frozen=True)
class LinearProbe(Strategy):
    def fit(self, model, train, val, context: FitContext) -> FitResult:
        return probe_head(model, train, val, context)


def probe_head(model, train, val, context: FitContext) -> FitResult:
    """Embed (cached), choose the regularisation by stratified k-fold cross-validation over
    the train + validation embeddings (grouped when the data carry groups), fit the head on
    the training data. The result holds the datasets minus files that failed to decode.
    """
    pre, settings = context.pre, context.settings
    cache = EmbeddingCache(context.spec, pre)
    x_train, bad = extract_embeddings(
        model, train, pre, cache, settings.batch_size, settings.num_workers, settings.verbose
    )
    train = train.without(bad) if bad else train
    x_val = None
    if val is not None:
        x_val, bad_val = extract_embeddings(
            model, val, pre, cache, settings.batch_size, settings.num_workers, settings.verbose
        )
        val = val.without(bad_val) if bad_val else val
    y_val = np.asarray(val.labels) if val is not None and len(val) else None
    n_val = 0 if y_val is None else len(y_val)
    fitted = fit_logreg_head(
        model,
        x_train,
        np.asarray(train.labels),
        x_val,
        y_val,
        len(train.class_names),
        settings,
        C_GRID,
        scale=True,
        cv=True,
        groups=stack_groups(train, val, len(train), n_val),
    )
    info = {
        "head": "logistic regression (L2) on standardised embeddings, folded into the linear head",
        "C": fitted["C"],
        "selected_by": fitted["selected_by"],
        "embedding_cache": str(cache.dir),
        "embedded_items": len(cache),
        "class_weights": "balanced" if fitted["balanced"] else None,
        "selection": selection_record(fitted, "embeddings"),
    }
    rows = fitted["rows"]
    features = (x_train, x_val)
    return FitResult(rows, info, features=features, head_choice=fitted, train=train, val=val)


LINEAR_PROBE = register_strategy(
    LinearProbe(
        name="linear-probe",
        requires=frozenset({"pretrained", "embeddings"}),
        description="frozen backbone, cached embeddings, logistic-regression head (seconds)",
        uses_feature_cache=True,
        epochs=0,
    )
)
