"""few-shot: contrastive sentence-pair tuning of the whole body, then a logistic-regression
head (SetFit's recipe, training/contrastive.py). For a handful of examples per class, where
a head trained by gradient descent on 16 examples would overfit or collapse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modeltailor.strategies.base import FitContext, FitResult, Strategy, register_strategy


@dataclass(frozen=True)
class FewShot(Strategy):
    def fit(self, model, train, val, context: FitContext) -> FitResult:
        """Pairs tune the body; the head is then chosen on validation data. Without any (the
        usual few-shot case) it is SetFit's head, a logistic regression with C=1 on the tuned
        embeddings: cross-validation cannot choose, since the body was tuned on those very
        texts and separates every fold perfectly (so it picked the weakest regularisation),
        and for the same reason no TF-IDF side features are tried."""
        from modeltailor.training.contrastive import tune_contrastive
        from modeltailor.training.heads import C_GRID, fit_fixed_head, fit_logreg_head

        settings = context.settings
        epochs = settings.epochs if settings.epochs is not None else self.epochs
        lr = settings.lr if settings.lr is not None else self.lr
        info, history = tune_contrastive(model, train, lr, epochs, settings)
        x_train = context.embed(model, train)
        y_train, n_classes = np.asarray(train.labels), len(train.class_names)
        if val is None or len(val) == 0:
            fitted = fit_fixed_head(model, x_train, y_train, n_classes, settings, c=1.0)
            info = {"contrastive": info, "C": fitted["C"], "selected_by": fitted["selected_by"]}
            return FitResult(history, info, train=train, val=val)
        x_val = context.embed(model, val)
        fitted = fit_logreg_head(
            model, x_train, y_train, x_val, np.asarray(val.labels), n_classes, settings,
            C_GRID, scale=True,
        )  # fmt: skip
        info = {
            "contrastive": info,
            "C": fitted["C"],
            "selected_by": fitted["selected_by"],
            "head_search": fitted["rows"],
        }
        features = (x_train, x_val)
        return FitResult(
            history, info, features=features, head_choice=fitted, train=train, val=val
        )


FEW_SHOT = register_strategy(
    FewShot(
        name="few-shot",
        requires=frozenset({"trainable", "pretrained", "sentence_pairs"}),
        description="contrastive sentence pairs (SetFit-style) + logistic-regression head",
        # Passes over the training texts, every pair of a batch in the loss. 16 passes forward
        # as many windows as SetFit's sampled pairs at 8 per class (128 pairs, two windows
        # each), so the time matches. 1e-4 chosen on development texts, never the test part
        # (spamassassin 8-shot, five draws: 3e-5 0.859 on draw 0 alone, 6e-5 0.876, 1e-4 0.884,
        # 2e-4 0.865 with one draw collapsing to 0.774; bench/results/text_dev.jsonl).
        epochs=16,
        lr=1e-4,
    )
)
