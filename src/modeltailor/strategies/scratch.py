"""scratch: the same architecture from random weights - the baseline that shows what the
pretrained weights bought."""

from modeltailor.strategies.base import Strategy, register_strategy

SCRATCH = register_strategy(
    Strategy(
        name="scratch",
        requires=frozenset({"trainable"}),
        description="same architecture, random initialisation (what transfer is measured against)",
        pretrained=False,
        epochs=30,
        lr=2e-3,
        weight_decay=0.05,
        patience=8,
    )
)
