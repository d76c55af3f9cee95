"""fine-tune: the head warms up on a frozen backbone, then the top blocks are unfrozen with
lower, layer-wise decaying learning rates (discriminative fine-tuning)."""

from modeltailor.strategies.base import Strategy, register_strategy

FINE_TUNE = register_strategy(
    Strategy(
        name="fine-tune",
        description="head first, then the top blocks with discriminative learning rates",
        epochs=15,
        lr=1e-3,
        patience=5,
        head_epochs=2,
        unfrozen_groups=4,
        body_lr_scale=0.3,
        layer_decay=0.5,
    )
)
