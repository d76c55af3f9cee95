"""fine-tune: the head warms up on a frozen backbone, then the top blocks are unfrozen with
lower, layer-wise decaying learning rates (discriminative fine-tuning)."""

from modeltailor.strategies.base import Strategy, register_strategy

FINE_TUNE = register_strategy(
    Strategy(
        name="fine-tune",
        description="head first, then the top blocks with discriminative learning rates",
        epochs=12,
        lr=1e-3,
        patience=4,
        head_epochs=2,
        unfrozen_groups=3,
        body_lr_scale=0.3,
        layer_decay=0.5,
    )
)
