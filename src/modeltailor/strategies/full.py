"""full: every layer trains from the pretrained start, with a low learning rate."""

from modeltailor.strategies.base import Strategy, register_strategy

FULL = register_strategy(
    Strategy(
        name="full",
        description="every layer trained from the pretrained weights, low learning rate",
        epochs=12,
        lr=1e-3,
        patience=4,
        body_lr_scale=0.2,
        layer_decay=0.8,
    )
)
