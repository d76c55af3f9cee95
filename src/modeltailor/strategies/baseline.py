"""baseline: a classical model with no pretraining (TF-IDF + logistic regression for text, MFCC
statistics for audio), trained, evaluated and saved like any strategy, so a run shows what
pretraining bought."""

from __future__ import annotations

from dataclasses import dataclass

from modeltailor.strategies.base import FitContext, FitResult, Strategy, register_strategy


@dataclass(frozen=True)
class Baseline(Strategy):
    def fit(self, model, train, val, context: FitContext) -> FitResult:
        """The backbone fits itself in closed form (its features, then a chosen head)."""
        info = model.net.fit_classical(model, train, val, context.settings)
        return FitResult(info.pop("rows"), info, train=train, val=val)


BASELINE = register_strategy(
    Baseline(
        name="baseline",
        requires=frozenset({"classical"}),
        description="no pretraining: classical features + logistic regression (text: TF-IDF)",
        pretrained=False,
        classical=True,
        epochs=0,
    )
)
