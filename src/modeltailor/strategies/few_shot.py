"""few-shot: contrastive sentence-pair tuning of the whole body, then a logistic-regression
head (SetFit's recipe, training/contrastive.py). For a handful of examples per class, where
a head trained by gradient descent on 16 examples would overfit or collapse."""

from modeltailor.strategies.base import Strategy, register_strategy

FEW_SHOT = register_strategy(
    Strategy(
        name="few-shot",
        description="contrastive sentence pairs (SetFit-style) + logistic-regression head",
        epochs=1,
        lr=2e-5,
        contrastive=True,
    )
)
