"""baseline: a classical model with no pretraining (TF-IDF + logistic regression for text),
trained, evaluated and saved like any strategy, so a run shows what pretraining bought."""

from modeltailor.strategies.base import Strategy, register_strategy

BASELINE = register_strategy(
    Strategy(
        name="baseline",
        description="no pretraining: classical features + logistic regression (text: TF-IDF)",
        pretrained=False,
        classical=True,
        epochs=0,
    )
)
